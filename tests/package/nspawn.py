# nspawn.py: a Debian container booted with systemd as PID 1 (systemd-nspawn -b),
# for tests/package/systemd_test.py. Makes and caches the root file system with
# mmdebstrap, boots it on a throw-away overlay, runs commands inside with nsenter.
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import time

CACHE_DIR = "/var/cache/mailfarm-test"
# What the container needs besides the package's own dependencies: systemd as
# init, and the clients the test drives (swaks) and reads with (procps).
BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus", "swaks", "procps",
                 "iproute2", "adduser", "passwd"]
INSIDE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def host_sources():
    """The Debian archive this machine already uses (deb822 or one-line)."""
    for path in ("/etc/apt/sources.list.d/debian.sources",
                 "/etc/apt/sources.list"):
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return path
    return None


def skip_reason():
    """Why this kernel cannot boot a container, or None when it can."""
    with open("/proc/filesystems") as f:
        filesystems = f.read()
    if "cgroup2" not in filesystems:
        return "the kernel has no cgroup v2 (systemd-nspawn -b needs it)"
    if "overlay" not in filesystems:
        subprocess.run(["modprobe", "overlay"], capture_output=True)
        with open("/proc/filesystems") as f:
            if "overlay" not in f.read():
                return "the kernel has no overlayfs (--volatile=overlay needs it)"
    probe = subprocess.run(
        ["unshare", "--mount", "--pid", "--uts", "--ipc", "--net", "--fork",
         "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return "the kernel refuses new namespaces: " + probe.stderr.strip()
    return None


def rootfs(packages, log):
    """A cached Debian root file system with `packages` installed.

    Cached by the package list and the archive; made once with mmdebstrap
    (minutes), reused read-only afterwards. Old caches are removed."""
    sources = host_sources()
    suite = "bookworm"
    with open("/etc/os-release") as f:
        for line in f:
            if line.startswith("VERSION_CODENAME="):
                suite = line.split("=", 1)[1].strip().strip('"') or suite
    wanted = sorted(set(BASE_PACKAGES) | set(packages))
    key = hashlib.sha256(
        ("\n".join(wanted) + suite +
         (open(sources).read() if sources else "")).encode()).hexdigest()[:16]
    os.makedirs(CACHE_DIR, exist_ok=True)
    path = os.path.join(CACHE_DIR, "rootfs-" + key)
    with open(os.path.join(CACHE_DIR, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(path, "etc/os-release")):
            log(f"rootfs: cached {path}")
            return path
        for old in os.listdir(CACHE_DIR):
            if old.startswith("rootfs-"):
                shutil.rmtree(os.path.join(CACHE_DIR, old), ignore_errors=True)
        partial = path + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        command = ["mmdebstrap", "--variant=minbase",
                   "--include=" + ",".join(wanted), suite, partial]
        if sources:
            command.append(sources)
        log("rootfs: " + " ".join(command))
        started = time.monotonic()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        os.rename(partial, path)
        log(f"rootfs: made in {time.monotonic() - started:.0f}s")
        return path


class Container:
    """One booted container; stop() (also on failure) shuts it down."""

    def __init__(self, root, name, binds_ro, log_path):
        self.root = root
        self.name = name
        self.binds_ro = binds_ro
        self.log_path = log_path
        self.nspawn = None
        self.leader = None

    def boot(self, timeout=300):
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
        command = ["systemd-nspawn", "--quiet", "--boot", "--directory",
                   self.root, "--machine", self.name, "--register=no",
                   "--keep-unit", "--private-network", "--volatile=overlay",
                   "--console=read-only"]
        for source, target in self.binds_ro:
            command.append(f"--bind-ro={source}:{target}")
        self.log_file = open(self.log_path, "w")
        self.nspawn = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                       stdout=self.log_file,
                                       stderr=subprocess.STDOUT,
                                       start_new_session=True)
        deadline = time.monotonic() + timeout
        while self.leader is None:
            if self.nspawn.poll() is not None:
                raise RuntimeError("systemd-nspawn exited with status "
                                   f"{self.nspawn.returncode}; see "
                                   + self.log_path)
            if time.monotonic() > deadline:
                raise RuntimeError(f"no container init after {timeout}s")
            self.leader = self._container_init()
            if self.leader is None:
                time.sleep(0.2)
        # "degraded" still means booted; the caller checks what it needs.
        while True:
            state = self.run("systemctl is-system-running --wait",
                             check=False, timeout=timeout).stdout.strip()
            if state in ("running", "degraded"):
                return state
            if time.monotonic() > deadline:
                raise RuntimeError(f"the container did not boot: {state}")
            time.sleep(0.5)

    def _container_init(self):
        """The pid (on the host) of the container's PID 1: a child of nspawn
        that is pid 1 in its own pid namespace (nspawn's helper children are not)."""
        children = subprocess.run(
            ["ps", "--ppid", str(self.nspawn.pid), "-o", "pid="],
            capture_output=True, text=True).stdout.split()
        for pid in children:
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("NSpid:"):
                            ids = line.split()[1:]
                            if len(ids) > 1 and ids[-1] == "1":
                                return int(pid)
            except OSError:
                continue
        return None

    def run(self, script, user=None, check=True, timeout=300, input=None):
        """Runs a shell script inside the container (as `user`, or root)."""
        inner = ["sh", "-c", script]
        if user:
            inner = ["runuser", "-u", user, "--"] + inner
        command = ["nsenter", "--target", str(self.leader), "--all",
                   "env", "-i", "PATH=" + INSIDE_PATH, "LANG=C.UTF-8",
                   "HOME=/root"] + inner
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(
                f"inside the container: {script!r} exited "
                f"{result.returncode}\nstdout: {result.stdout}\n"
                f"stderr: {result.stderr}")
        return result

    def stop(self):
        if self.nspawn is None or self.nspawn.poll() is not None:
            return
        # SIGTERM makes nspawn ask the container's systemd for a clean poweroff.
        self.nspawn.send_signal(signal.SIGTERM)
        try:
            self.nspawn.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.nspawn.pid, signal.SIGKILL)
            self.nspawn.wait()
        self.log_file.close()
