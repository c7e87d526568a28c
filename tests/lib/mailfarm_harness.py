"""mailfarm_harness: what every integration test needs to run the real binaries.

Free ports, private temp dirs, processes started in their own process group and
always stopped by pid (even when the test fails), the wire framing, a reader of
the farm scoreboards, and MailfarmSystem, which writes a config for a whole
system in a temp dir and runs mailfarmd on it.
"""

import atexit
import contextlib
import mmap
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

from google.protobuf.internal.decoder import _DecodeVarint32
from google.protobuf.internal.encoder import _VarintBytes

BIN = os.environ.get("MAILFARM_BIN", os.path.join(os.getcwd(), "bin"))
SRC = os.environ.get("MAILFARM_SRC", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

_live = []  # every Process started and not yet stopped; stopped at exit too


def binary(name):
    return os.path.join(BIN, name)


def free_port(address="127.0.0.1"):
    """A TCP port nobody listens on right now (bind to 0 and ask)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=30.0, interval=0.05, what="condition"):
    """Polls predicate() until it returns a true value; fails the test after timeout.

    Deadlines here are generous guards against hangs, never performance checks.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def make_temp_dir(prefix="mf-", parent="/tmp"):
    """A private temp dir under parent (/tmp: short enough for Unix socket
    paths); removed at exit."""
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    if not os.environ.get("MAILFARM_KEEP_TMP"):
        atexit.register(shutil.rmtree, path, True)
    return path


class Process:
    """A child process in its own process group, stopped by pid on stop() or exit."""

    def __init__(self, argv, log_path=None, env=None, cwd=None, stdin=None):
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=stdin or subprocess.DEVNULL, env=full_env,
                                      cwd=cwd, start_new_session=True)
        self.pid = self.popen.pid
        _live.append(self)

    def alive(self):
        return self.popen.poll() is None

    def signal(self, signo):
        if self.alive():
            os.kill(self.pid, signo)

    def wait(self, timeout):
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=20.0):
        """SIGTERM, wait, then SIGKILL the whole process group. Returns the exit code."""
        code = None
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            code = self.wait(timeout)
        if code is None and self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            code = self.wait(10)
        # Whatever is left in its group (farm children) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self in _live:
            _live.remove(self)
        if self._log is not subprocess.DEVNULL:
            self._log.close()
            self._log = subprocess.DEVNULL
        return self.popen.returncode if code is None else code

    def log(self):
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


@atexit.register
def _stop_everything():
    for p in list(_live):
        with contextlib.suppress(Exception):
            p.stop(timeout=5)


SKIP_CODE = 77  # ctest's SKIP_RETURN_CODE for mailfarm_py_test (tests/CMakeLists.txt)


def unittest_main():
    """unittest.main(), but a run where some test was skipped (and none failed)
    exits SKIP_CODE, so ctest reports it as skipped, never as a silent pass."""
    import unittest
    program = unittest.main(exit=False)
    result = program.result
    if not result.wasSuccessful():
        sys.exit(1)
    if result.skipped:
        for test, why in result.skipped:
            print("SKIPPED %s: %s" % (test.id(), why), file=sys.stderr)
        sys.exit(SKIP_CODE)
    sys.exit(0)


def pids_matching(text):
    """Pids of live processes whose command line contains `text` (e.g. a temp dir)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open("/proc/%s/stat" % entry) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z" and int(entry) != os.getpid():
            found.append(int(entry))
    return found


# --- wire framing -------------------------------------------------------------

def encode_frame(message):
    data = message.SerializeToString()
    return _VarintBytes(len(data)) + data


class FrameSocket:
    """Blocking varint-delimited protobuf frames over a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    @classmethod
    def connect_unix(cls, path, timeout=30.0):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
        return cls(s)

    def send(self, message):
        self.sock.sendall(encode_frame(message))

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv(self, message_type):
        """Returns the next frame parsed as message_type; raises EOFError on close."""
        while True:
            if self.buf:
                try:
                    length, pos = _DecodeVarint32(self.buf, 0)
                except IndexError:
                    length, pos = None, None
                if length is not None and len(self.buf) >= pos + length:
                    payload = self.buf[pos:pos + length]
                    self.buf = self.buf[pos + length:]
                    msg = message_type()
                    msg.ParseFromString(payload)
                    return msg
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.buf += data

    def close(self):
        self.sock.close()


# --- scoreboard ---------------------------------------------------------------

SLOT_STATES = {0: "free", 1: "starting", 2: "idle", 3: "connected", 4: "busy", 5: "exiting"}
_HEADER = struct.Struct("<8sIi48sQI4xQQ")  # 96 bytes, see farm/scoreboard.h
_SLOT = struct.Struct("<iIQQqqI4x")        # 48 bytes


def read_scoreboard(path):
    """The scoreboard as a dict: header fields and a list of live slots."""
    with open(path, "rb") as f:
        data = f.read()
    magic, count, manager_pid, farm, gen, stopping, total_jobs, total_children = \
        _HEADER.unpack_from(data, 0)
    assert magic == b"MFSCORE1", "not a scoreboard: %r" % magic
    slots = []
    for i in range(count):
        pid, state, sgen, jobs, job_started, started, exit_req = _SLOT.unpack_from(
            data, _HEADER.size + i * _SLOT.size)
        if state != 0:
            slots.append({"slot": i, "pid": pid, "state": SLOT_STATES.get(state, state),
                          "generation": sgen, "jobs_done": jobs,
                          "exit_requested": exit_req})
    return {"farm": farm.rstrip(b"\0").decode(), "manager_pid": manager_pid,
            "generation": gen, "stopping": stopping, "total_jobs": total_jobs,
            "total_children": total_children, "slots": slots}


def count_states(board, generation=None):
    counts = {}
    for s in board["slots"]:
        if generation is not None and s["generation"] != generation:
            continue
        counts[s["state"]] = counts.get(s["state"], 0) + 1
    return counts


# --- a whole system -------------------------------------------------------------

def default_config(root, smtp_port, metrics_port, sink_port=None, extra="",
                   scheduler="min_backoff_s: 1 max_backoff_s: 2"):
    """A complete config for a system under `root` (a temp dir).

    Domains: localhost and example.test are local (Maildirs under root/mail/),
    relay.test is relayed to the SMTP sink at 127.0.0.1:sink_port when given.
    """
    sink_route = ""
    if sink_port:
        sink_route = ('  route { domain: "relay.test" channel: "smtp" '
                      'nexthop: "[127.0.0.1]:%d" }\n' % sink_port)
    return """
identity {{ user: "mailfarm" group: "mailfarm" }}
paths {{ spool_dir: "{root}/spool" run_dir: "{root}/run" log_dir: "{root}/log" }}
smtpd {{
  listen {{ address: "127.0.0.1" port: {smtp_port} }}
  trusted_networks: "127.0.0.1/32"
  farm {{ start_children: 2 min_spare: 1 max_spare: 8 max_children: 32 }}
}}
scheduler {{ {scheduler} }}
routing {{
  local_domains: "localhost"
  local_domains: "example.test"
  relay_domains: "relay.test"
  local_users_any: true
{sink_route}  route {{ domain: "*" channel: "discard" }}
}}
router {{ start_children: 1 min_spare: 1 max_spare: 4 }}
filter {{ start_children: 1 min_spare: 1 max_spare: 4 }}
channel {{ name: "local" type: LOCAL local {{ mailbox: "{root}/mail/${{user}}/" }}
          farm {{ start_children: 1 min_spare: 1 max_spare: 4 }} }}
channel {{ name: "smtp" type: SMTP farm {{ start_children: 1 min_spare: 1 max_spare: 8 }}
          smtp {{ tls {{ level: NONE }} }} }}
channel {{ name: "discard" type: DISCARD farm {{ start_children: 1 min_spare: 1 max_spare: 2 }} }}
metrics {{ address: "127.0.0.1" port: {metrics_port} }}
{extra}
""".format(root=root, smtp_port=smtp_port, metrics_port=metrics_port, sink_route=sink_route,
           extra=extra, scheduler=scheduler)


class MailfarmSystem:
    """mailfarmd and everything it starts, in a private temp dir with free ports.

    Use as a context manager; stop() always kills every process by pid.
    config_text: a full config (default_config(...) is used when None).
    """

    def __init__(self, config_text=None, sink_port=None, extra="", root=None,
                 scheduler="min_backoff_s: 1 max_backoff_s: 2"):
        self.root = root or make_temp_dir()
        # Started as root, mailfarmd runs everything as the mailfarm user, which
        # must be able to reach the directories under root.
        os.chmod(self.root, 0o755)
        self.smtp_port = free_port()
        self.metrics_port = free_port()
        self.config_path = os.path.join(self.root, "mailfarm.conf")
        if config_text is None:
            config_text = default_config(self.root, self.smtp_port, self.metrics_port,
                                         sink_port, extra, scheduler)
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.daemon = None

    @property
    def run_dir(self):
        return os.path.join(self.root, "run")

    @property
    def spool_dir(self):
        return os.path.join(self.root, "spool")

    def start(self, wait_smtp=True, argv_prefix=()):
        """argv_prefix: a wrapper for mailfarmd (["prlimit", "--nofile=512"])."""
        self.daemon = Process(list(argv_prefix) +
                              [binary("mailfarmd"), "--config", self.config_path, "--foreground"],
                              log_path=os.path.join(self.root, "mailfarmd.log"), cwd=self.root)
        wait_for(lambda: os.path.exists(os.path.join(self.run_dir, "inject.sock"))
                 or not self.daemon.alive(), 60, what="the scheduler's inject.sock")
        if not self.daemon.alive():
            raise AssertionError("mailfarmd exited:\n" + self.daemon.log())
        if wait_smtp:
            wait_for(self._smtp_up, 60, what="smtpd on port %d" % self.smtp_port)
        return self

    def _smtp_up(self):
        try:
            with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=2) as s:
                return s.recv(512).startswith(b"220")
        except OSError:
            return False

    def stop(self):
        code = self.daemon.stop() if self.daemon else None
        leftovers = pids_matching(self.root)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return code, leftovers

    def maildir_messages(self, user):
        """Contents of every message in root/mail/<user>/new, sorted by name."""
        new = os.path.join(self.root, "mail", user, "new")
        if not os.path.isdir(new):
            return []
        out = []
        for name in sorted(os.listdir(new)):
            with open(os.path.join(new, name), "rb") as f:
                out.append(f.read())
        return out

    def log(self):
        return self.daemon.log() if self.daemon else ""

    def ctl(self, *args, check=True):
        """Runs mailfarmctl on this system; returns the CompletedProcess."""
        r = subprocess.run([binary("mailfarmctl"), "--config", self.config_path] + list(args),
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError("mailfarmctl %s: exit %d\n%s%s" %
                                 (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def queue_files(self):
        """Paths of every file under spool/queue/."""
        out = []
        queue = os.path.join(self.spool_dir, "queue")
        for dirpath, _, files in os.walk(queue):
            out.extend(os.path.join(dirpath, f) for f in files)
        return sorted(out)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if exc[0] is not None:
            sys.stderr.write("---- mailfarmd log ----\n" + self.log()[-20000:] + "\n")
        return False
