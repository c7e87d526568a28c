#!/usr/bin/python3
"""e2e: mailfarm against Postfix, end to end, in the same run (bench/e2e/run calls it).

Both systems relay loopback SMTP to a sink on loopback, with their queues on the
same (non-tmpfs) filesystem and fsync before 250. For each round, each load is
run on mailfarm then on Postfix (A B A B ...), each time on a freshly started
system in a fresh directory:
  20-session and 1-session throughput: smtp-source into the system, smtp-sink
      behind it (injection = until smtp-source exits, end to end = until the
      sink has counted every message);
  latency: bench/e2e/smtp_latency.py (client and sink) record the time of each
      250 and of each arrival at the sink.
While a load runs, every process of the system under test (the tree under
mailfarmd, or under Postfix's master) is sampled from /proc every 100 ms for
RSS (and PSS every 500 ms); CPU time is the growth of sum(utime + stime +
cutime + cstime) over that tree, which also counts children that exited and
were reaped inside the tree (a per-program breakdown of the processes' own time
is sampled every 200 ms). The disk's raw fdatasync (and syncfs) rate is
measured at the start. Prints a table and one `name: value` line per figure.
"""

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
LATENCY_TOOL = os.path.join(HERE, "smtp_latency.py")
PY = "/usr/bin/python3"
SENDER = "bench@bench.test"
RECIPIENT = "sink@relay.test"
PAGE = os.sysconf("SC_PAGE_SIZE")
HZ = os.sysconf("SC_CLK_TCK")

_cleanups = []  # callables run at exit, newest first (processes to stop)


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(0.02)


def smtp_greets(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            return s.recv(512).startswith(b"220")
    except OSError:
        return False


# --- /proc ----------------------------------------------------------------------

def _stat(pid):
    """(ppid, state, utime+stime+cutime+cstime, utime+stime (ticks), comm) of a pid, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            head, tail = f.read().rsplit(")", 1)
    except OSError:
        return None
    fields = tail.split()
    # fields[0] is field 3 (state): ppid is 4, utime..cstime are 14..17.
    return (int(fields[1]), fields[0], sum(int(x) for x in fields[11:15]),
            int(fields[11]) + int(fields[12]), head.split("(", 1)[1])


def process_tree(root):
    """{pid: (state, cpu ticks with reaped children, own cpu ticks, comm)} for a tree."""
    stats = {}
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                stats[int(entry)] = st
                children.setdefault(st[0], []).append(int(entry))
    tree = {}
    todo = [root] if root in stats else []
    while todo:
        pid = todo.pop()
        tree[pid] = stats[pid][1:]
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root):
    """CPU seconds of the tree, including every child reaped inside it."""
    return sum(cpu for _, cpu, _, _ in process_tree(root).values()) / HZ


def _rss(pid):
    try:
        with open("/proc/%d/statm" % pid) as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


def _pss(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """Samples the summed RSS (every 100 ms) and PSS (every 500 ms) of a process tree,
    and each process's own CPU time every 200 ms (for the per-program breakdown:
    a process's last 200 ms before it exits are missed there, never in the totals)."""

    def __init__(self, root_fn):
        super().__init__(daemon=True)
        self.root_fn = root_fn  # the tree's root pid, asked each time
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_procs = 0
        self.own = {}  # pid -> [comm, own ticks when first seen, own ticks when last seen]
        self._halt = threading.Event()
        self._sample_cpu(first=True)

    def _sample_cpu(self, first=False):
        tree = process_tree(self.root_fn())
        for pid, (_, _, own, comm) in tree.items():
            seen = self.own.setdefault(pid, [comm, own if first else 0, own])
            seen[2] = own
        return tree

    def by_program(self):
        """{program: own CPU seconds while sampled}."""
        out = {}
        for comm, first, last in self.own.values():
            out[comm] = out.get(comm, 0) + (last - first) / HZ
        return out

    def run(self):
        n = 0
        pids = []
        while not self._halt.is_set():
            if n % 2 == 0:  # the tree (and CPU) every 200 ms, RSS every 100 ms
                tree = self._sample_cpu()
                pids = [p for p, (state, _, _, _) in tree.items() if state != "Z"]
            self.peak_rss = max(self.peak_rss, sum(_rss(p) for p in pids))
            self.peak_procs = max(self.peak_procs, len(pids))
            if n % 5 == 0:
                self.peak_pss = max(self.peak_pss, sum(_pss(p) for p in pids))
            n += 1
            self._halt.wait(0.1)

    def stop(self):
        self._halt.set()
        self.join()
        self._sample_cpu()


# --- the disk -------------------------------------------------------------------

def fdatasync_rate(directory, seconds, append, syncfs=False):
    """4 KB writes, each followed by fdatasync (or syncfs), for `seconds`: syncs per second."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    path = os.path.join(directory, "fdatasync.test")
    block = b"x" * 4096
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        n = 0
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            if append:
                os.write(fd, block)
            else:
                os.pwrite(fd, block, 0)
            if syncfs:
                if libc.syncfs(fd) != 0:
                    raise OSError(ctypes.get_errno(), "syncfs")
            else:
                os.fdatasync(fd)
            n += 1
        return n / (time.monotonic() - start)
    finally:
        os.close(fd)
        os.unlink(path)


# --- sinks ----------------------------------------------------------------------

class SmtpSink:
    """Postfix's smtp-sink with -c; a thread follows its running counters."""

    def __init__(self, port):
        self.port = port
        self.messages = 0
        self.sessions = 0  # sessions that have ended
        self.proc = subprocess.Popen(
            ["smtp-sink", "-c", "-u", "nobody", "127.0.0.1:%d" % port, "256"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        _cleanups.append(self.stop)
        threading.Thread(target=self._follow, daemon=True).start()
        wait_for(lambda: smtp_greets(port), 10, "smtp-sink")

    def _follow(self):
        buf = b""
        while True:
            data = self.proc.stdout.read1(65536)
            if not data:
                return
            buf += data
            parts = buf.replace(b"\n", b"\r").split(b"\r")
            buf = parts.pop()
            for part in reversed(parts):
                fields = dict(f.split(b"=", 1) for f in part.split() if b"=" in f)
                if b"mesg" in fields:
                    self.messages = int(fields[b"mesg"])
                    self.sessions = int(fields[b"sess"])
                    break

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        time.sleep(0.05)  # let the follower read the last counters
        with contextlib.suppress(ValueError):
            _cleanups.remove(self.stop)


class LatencySink:
    """bench/e2e/smtp_latency.py sink: arrival time per message, connection count."""

    def __init__(self, port, expect, out):
        self.out = out
        self.proc = subprocess.Popen([PY, LATENCY_TOOL, "sink", "--port", str(port),
                                      "--expect", str(expect), "--out", out],
                                     stdout=subprocess.PIPE, start_new_session=True)
        _cleanups.append(self.stop)
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("latency sink did not start")

    def wait_all(self, timeout):
        wait_for(lambda: os.path.exists(self.out) or self.proc.poll() is not None, timeout,
                 "every message at the latency sink")
        if not os.path.exists(self.out):
            raise RuntimeError("latency sink exited early")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        with contextlib.suppress(ValueError):
            _cleanups.remove(self.stop)
        with open(self.out) as f:
            return json.load(f)


# --- the systems ------------------------------------------------------------------

def _kill_tree(pids):
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Mailfarm:
    name = "mailfarm"

    def __init__(self, bin_dir, root, smtp_port, sink_port):
        self.bin_dir = bin_dir
        self.root = root
        self.smtp_port = smtp_port
        self.proc = None
        os.chmod(root, 0o755)  # the mailfarm user must reach it
        self.config = os.path.join(root, "mailfarm.conf")
        with open(self.config, "w") as f:
            f.write(MAILFARM_CONF.format(root=root, smtp_port=smtp_port, sink_port=sink_port))

    def start(self):
        self.log_file = open(os.path.join(self.root, "mailfarmd.out"), "wb")
        self.proc = subprocess.Popen(
            [os.path.join(self.bin_dir, "mailfarmd"), "--config", self.config, "--foreground"],
            stdout=self.log_file, stderr=subprocess.STDOUT, cwd=self.root,
            start_new_session=True)
        _cleanups.append(self.stop)
        # smtpd may greet before the scheduler listens (it then answers 451):
        # wait for both, as tests/lib/mailfarm_harness.py does.
        inject = os.path.join(self.root, "run", "inject.sock")
        wait_for(lambda: os.path.exists(inject) or self.proc.poll() is not None, 60,
                 "the scheduler's inject.sock")
        wait_for(lambda: smtp_greets(self.smtp_port) or self.proc.poll() is not None, 60,
                 "mailfarm smtpd")
        if self.proc.poll() is not None:
            raise RuntimeError("mailfarmd exited: see %s/mailfarmd.out" % self.root)

    def root_pid(self):
        return self.proc.pid

    def stop(self):
        with contextlib.suppress(ValueError):
            _cleanups.remove(self.stop)
        if not self.proc:
            return
        pids = list(process_tree(self.proc.pid))
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        _kill_tree(pids)
        self.proc.wait()
        self.log_file.close()


MAILFARM_CONF = """\
# bench/e2e: mailfarm configured like the private Postfix beside it: SMTP on
# loopback, relay.test relayed to the sink, no content filter (Postfix has none
# by default), no TLS, fsync before 250 (always on).
identity {{ user: "mailfarm" group: "mailfarm" }}
paths {{ spool_dir: "{root}/spool" run_dir: "{root}/run" log_dir: "{root}/log" }}
smtpd {{
  listen {{ address: "127.0.0.1" port: {smtp_port} }}
  trusted_networks: "127.0.0.1/32"
  farm {{ start_children: 4 min_spare: 2 max_spare: 8 max_children: 64 }}
}}
scheduler {{ filter_enabled: false }}
routing {{
  relay_domains: "relay.test"
  route {{ domain: "relay.test" channel: "smtp" nexthop: "[127.0.0.1]:{sink_port}" }}
  route {{ domain: "*" channel: "discard" }}
}}
router {{ start_children: 2 min_spare: 1 max_spare: 4 }}
filter {{ start_children: 1 min_spare: 1 max_spare: 2 }}
channel {{ name: "local" type: LOCAL local {{ mailbox: "{root}/mail/${{user}}/" }}
          farm {{ start_children: 1 min_spare: 1 max_spare: 2 }} }}
channel {{
  name: "smtp"
  type: SMTP
  farm {{ start_children: 2 min_spare: 1 max_spare: 8 max_children: 64 }}
  concurrency: 32
  smtp {{ tls {{ level: NONE }} }}
}}
channel {{ name: "discard" type: DISCARD farm {{ start_children: 1 min_spare: 1 max_spare: 2 }} }}
metrics {{ port: 0 }}
supervisor {{ run_replay: true }}
"""


class Postfix:
    name = "postfix"

    def __init__(self, root, smtp_port, sink_port):
        self.root = root
        self.smtp_port = smtp_port
        self.etc = os.path.join(root, "etc")
        self.queue = os.path.join(root, "queue")
        self.data = os.path.join(root, "data")
        os.chmod(root, 0o755)
        os.makedirs(self.etc)
        os.makedirs(self.queue)
        os.makedirs(self.data)
        shutil.chown(self.data, "postfix", "postfix")
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(POSTFIX_MAIN_CF.format(root=root, sink_port=sink_port))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(POSTFIX_MASTER_CF.format(smtp_port=smtp_port))
        self.master = None

    def _postfix(self, verb):
        return subprocess.run(["postfix", "-c", self.etc, verb], capture_output=True, text=True)

    def start(self):
        _cleanups.append(self.stop)
        r = self._postfix("start")
        if r.returncode != 0:
            raise RuntimeError("postfix start failed: %s%s" % (r.stdout, r.stderr))
        pid_file = os.path.join(self.queue, "pid", "master.pid")
        wait_for(lambda: os.path.exists(pid_file), 30, "postfix master.pid")
        with open(pid_file) as f:
            self.master = int(f.read().strip())
        wait_for(lambda: smtp_greets(self.smtp_port), 60, "postfix smtpd (see %s/maillog)" % self.root)

    def root_pid(self):
        return self.master

    def stop(self):
        with contextlib.suppress(ValueError):
            _cleanups.remove(self.stop)
        if not self.master:
            return
        pids = list(process_tree(self.master))
        self._postfix("stop")
        with contextlib.suppress(RuntimeError):
            wait_for(lambda: not os.path.exists("/proc/%d" % self.master), 30, "postfix master exit")
        _kill_tree(pids)
        self.master = None


POSTFIX_MAIN_CF = """\
# bench/e2e: a private Postfix relaying everything to the sink; Debian's
# defaults otherwise (queue files are fsynced before 250).
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-bench.localdomain
mydomain = localdomain
myorigin = $myhostname
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relayhost = [127.0.0.1]:{sink_port}
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
biff = no
append_dot_mydomain = no
"""

# Debian's master.cf without chroot and without the services a relay does not use.
POSTFIX_MASTER_CF = """\
127.0.0.1:{smtp_port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


# --- one measured run -------------------------------------------------------------

def make_system(kind, args, workdir, sink_port):
    root = tempfile.mkdtemp(prefix="%s-" % kind, dir=workdir)
    port = free_port()
    if kind == "mailfarm":
        return Mailfarm(args.bin_dir, root, port, sink_port)
    return Postfix(root, port, sink_port)


def measure(system, load, wait_all):
    """Runs load() against a started system; CPU and memory of its process tree."""
    time.sleep(1.0)  # let start-up work (replay, spare children) settle
    root = system.root_pid()
    sampler = Sampler(system.root_pid)
    sampler.start()
    cpu0 = tree_cpu_seconds(root)
    t0 = time.monotonic()
    load()
    t_inj = time.monotonic()
    wait_all()
    t_e2e = time.monotonic()
    cpu1 = tree_cpu_seconds(root)
    sampler.stop()
    by_comm = {c: round(v, 2) for c, v in sampler.by_program().items()}
    return {"inject_s": t_inj - t0, "e2e_s": t_e2e - t0, "cpu_s": cpu1 - cpu0,
            "cpu_by_program": {c: v for c, v in by_comm.items() if v},
            "peak_rss": sampler.peak_rss, "peak_pss": sampler.peak_pss,
            "peak_procs": sampler.peak_procs}


def smtp_source(port, sessions, messages, size):
    r = subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(messages), "-d",
                        "-l", str(size), "-f", SENDER, "-t", RECIPIENT, "-M", "bench.test",
                        "127.0.0.1:%d" % port], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("smtp-source failed (%d): %s" % (r.returncode, r.stderr[-2000:]))


def throughput_run(kind, args, workdir, sessions, messages):
    sink = SmtpSink(free_port())
    system = make_system(kind, args, workdir, sink.port)
    try:
        system.start()
        if args.warmup:
            time.sleep(1.0)  # as measure() does
            # Not measured: lets a system grow its process pools first.
            smtp_source(system.smtp_port, sessions, args.warmup, args.size)
            wait_for(lambda: sink.messages >= args.warmup, args.drain_timeout, "warm-up")
        base = sink.messages

        def wait_all():
            wait_for(lambda: sink.messages - base >= messages, args.drain_timeout,
                     "%d messages at smtp-sink (has %d)" % (messages, sink.messages - base))

        m = measure(system, lambda: smtp_source(system.smtp_port, sessions, messages, args.size),
                    wait_all)
    finally:
        system.stop()  # closes its cached outbound connections: the sink counts them
        sink.stop()
    m["sink_messages"] = sink.messages
    m["sink_sessions"] = sink.sessions
    m["inject_rate"] = messages / m["inject_s"]
    m["e2e_rate"] = messages / m["e2e_s"]
    m["cpu_per_1k"] = m["cpu_s"] * 1000.0 / messages
    if not args.keep:
        shutil.rmtree(system.root, ignore_errors=True)
    return m


def latency_run(kind, args, workdir, sessions, messages):
    out_dir = tempfile.mkdtemp(prefix="lat-", dir=workdir)
    sink_out = os.path.join(out_dir, "sink.json")
    client_out = os.path.join(out_dir, "client.json")
    sink_port = free_port()
    sink = LatencySink(sink_port, messages, sink_out)
    system = make_system(kind, args, workdir, sink_port)
    try:
        system.start()

        def load():
            r = subprocess.run([PY, LATENCY_TOOL, "client", "--port", str(system.smtp_port),
                                "--sessions", str(sessions), "--messages", str(messages),
                                "--size", str(args.size), "--rate", str(args.latency_rate),
                                "--sender", SENDER,
                                "--recipient", RECIPIENT, "--out", client_out],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("latency client failed: %s" % r.stderr[-2000:])

        m = measure(system, load, lambda: sink.wait_all(args.drain_timeout))
    finally:
        system.stop()
        result = sink.stop()
    with open(client_out) as f:
        acks = json.load(f)["acks"]
    lat = sorted(result["arrivals"][k] - acks[k] for k in acks if k in result["arrivals"])
    if len(lat) != messages:
        raise RuntimeError("latency: %d of %d messages matched" % (len(lat), messages))
    m["p50_ms"] = 1000 * lat[len(lat) // 2]
    m["p99_ms"] = 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    m["client_rate"] = messages / m["inject_s"]
    m["sink_connections"] = result["connections"]
    shutil.rmtree(out_dir, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(system.root, ignore_errors=True)
    return m


# --- report -----------------------------------------------------------------------

def fmt(value, unit):
    if unit == "MB":
        return "%.1f" % (value / 1e6)
    if unit in ("ms", "s"):
        return "%.2f" % value
    return "{:,.0f}".format(value)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="A B rounds (medians are reported)")
    p.add_argument("--bin-dir", default=os.path.join(SRC, "build", "bin"),
                   help="where mailfarmd and the programs it runs are")
    p.add_argument("--workdir", default="/var/tmp",
                   help="where queues go (must be a real disk, not tmpfs)")
    p.add_argument("--size", type=int, default=5120, help="message payload bytes")
    p.add_argument("--sessions", type=int, default=20, help="sessions of the many-session load")
    p.add_argument("--mf-messages", type=int, default=40000,
                   help="messages per 20-session run on mailfarm")
    p.add_argument("--pf-messages", type=int, default=16000,
                   help="messages per 20-session run on Postfix")
    p.add_argument("--mf-messages-1", type=int, default=20000,
                   help="messages per 1-session run on mailfarm")
    p.add_argument("--pf-messages-1", type=int, default=8000,
                   help="messages per 1-session run on Postfix")
    p.add_argument("--latency-messages", type=int, default=3000,
                   help="messages per latency run (20 sessions, both systems)")
    p.add_argument("--latency-rate", type=float, default=200,
                   help="paced rate of the latency runs, msgs/s (0: unpaced)")
    p.add_argument("--warmup", type=int, default=0,
                   help="messages sent (same sessions) before each measured throughput load")
    p.add_argument("--min-seconds", type=float, default=20.0,
                   help="warn when a throughput run is shorter than this")
    p.add_argument("--fsync-seconds", type=float, default=3.0,
                   help="length of each disk sync-rate measurement")
    p.add_argument("--drain-timeout", type=float, default=600.0,
                   help="give up when the sink lacks messages this long after the start")
    p.add_argument("--systems", default="mailfarm,postfix", help="comma-separated")
    p.add_argument("--loads", default="s20,s1,latency",
                   help="comma-separated: s20 (--sessions), s1, latency")
    p.add_argument("--keep", action="store_true", help="keep the systems' directories")
    args = p.parse_args()

    fs = subprocess.run(["stat", "-f", "-c", "%T", args.workdir], capture_output=True,
                        text=True).stdout.strip()
    if fs in ("tmpfs", "ramfs"):
        sys.exit("--workdir %s is on %s: the queues must be on a disk" % (args.workdir, fs))
    workdir = tempfile.mkdtemp(prefix="mailfarm-e2e-", dir=args.workdir)
    os.chmod(workdir, 0o755)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    systems = args.systems.split(",")
    loads = args.loads.split(",")
    results = {}  # (load, system) -> list of run dicts
    try:
        log("disk: fdatasync rate in %s (%s)" % (workdir, fs))
        sync_over = fdatasync_rate(workdir, args.fsync_seconds, append=False)
        sync_append = fdatasync_rate(workdir, args.fsync_seconds, append=True)
        syncfs_append = fdatasync_rate(workdir, args.fsync_seconds, append=True, syncfs=True)
        for rnd in range(1, args.rounds + 1):
            for load in loads:
                for kind in systems:
                    log("round %d: %s on %s" % (rnd, load, kind))
                    mf = kind == "mailfarm"
                    if load == "s20":
                        m = throughput_run(kind, args, workdir, args.sessions,
                                           args.mf_messages if mf else args.pf_messages)
                    elif load == "s1":
                        m = throughput_run(kind, args, workdir, 1,
                                           args.mf_messages_1 if mf else args.pf_messages_1)
                    else:
                        m = latency_run(kind, args, workdir, args.sessions,
                                        args.latency_messages)
                    log("  " + ", ".join("%s=%.4g" % kv for kv in sorted(m.items())
                                         if not isinstance(kv[1], dict)))
                    results.setdefault((load, kind), []).append(m)
    finally:
        for fn in list(reversed(_cleanups)):
            with contextlib.suppress(Exception):
                fn()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    def med(load, kind, key):
        runs = results.get((load, kind))
        return statistics.median(r[key] for r in runs) if runs else None

    rows = []  # (label, name, unit, load, key, higher_is_better)
    for load, label in (("s20", "%d sessions" % args.sessions), ("s1", "1 session")):
        rows += [
            ("injection msgs/s, " + label, "inject_%s" % load, "/s", load, "inject_rate"),
            ("end-to-end msgs/s, " + label, "e2e_%s" % load, "/s", load, "e2e_rate"),
            ("CPU s per 1,000 msgs, " + label, "cpu_per_1k_%s" % load, "s", load, "cpu_per_1k"),
            ("peak RSS sum MB, " + label, "peak_rss_mb_%s" % load, "MB", load, "peak_rss"),
            ("peak PSS sum MB, " + label, "peak_pss_mb_%s" % load, "MB", load, "peak_pss"),
            ("peak processes, " + label, "peak_procs_%s" % load, "", load, "peak_procs"),
        ]
    rows += [
        ("latency p50 ms (250 -> sink)", "latency_p50_ms", "ms", "latency", "p50_ms"),
        ("latency p99 ms (250 -> sink)", "latency_p99_ms", "ms", "latency", "p99_ms"),
        ("latency client msgs/s", "latency_client_rate", "/s", "latency", "client_rate"),
    ]
    lines = []
    print()
    print("| figure (median of %d rounds) | mailfarm | postfix | mailfarm/postfix |" % args.rounds)
    print("|---|---|---|---|")
    for label, name, unit, load, key in rows:
        a, b = med(load, "mailfarm", key), med(load, "postfix", key)
        if a is None and b is None:
            continue
        ratio = "%.2f" % (a / b) if a is not None and b else "-"
        print("| %s | %s | %s | %s |" % (label, fmt(a, unit) if a is not None else "-",
                                          fmt(b, unit) if b is not None else "-", ratio))
        for kind, v in (("mailfarm", a), ("postfix", b)):
            if v is not None:
                lines.append("%s_%s: %s" % (kind, name, fmt(v, unit).replace(",", "")))
        if a is not None and b:
            lines.append("ratio_%s: %.3f" % (name, a / b))
    # Outbound connection reuse, as counted by the sinks.
    for load in ("s20", "s1"):
        for kind in systems:
            runs = results.get((load, kind))
            if runs:
                per = statistics.median(r["sink_messages"] / max(1, r["sink_sessions"])
                                        for r in runs)
                print("| msgs per outbound connection, %s, %s | %.1f |" % (load, kind, per))
                lines.append("%s_msgs_per_connection_%s: %.1f" % (kind, load, per))
    for kind in systems:
        runs = results.get(("latency", kind))
        if runs:
            per = statistics.median(args.latency_messages / max(1, r["sink_connections"])
                                    for r in runs)
            print("| msgs per outbound connection, latency, %s | %.1f |" % (kind, per))
            lines.append("%s_msgs_per_connection_latency: %.1f" % (kind, per))
    short = [(k, r["e2e_s"]) for k, runs in results.items() for r in runs
             if k[0] != "latency" and r["e2e_s"] < args.min_seconds]
    if short:
        print("| WARNING: %d throughput runs took less than %.0f s: raise the message counts |"
              % (len(short), args.min_seconds))
    lines.append("short_runs: %d" % len(short))
    print("| disk fdatasync/s, 4 KB overwrite | %s |" % fmt(sync_over, "/s"))
    print("| disk fdatasync/s, 4 KB append | %s |" % fmt(sync_append, "/s"))
    lines.append("disk_fdatasync_overwrite_per_s: %.0f" % sync_over)
    print("| disk syncfs/s, 4 KB append (mailfarm's group commit) | %s |" % fmt(syncfs_append, "/s"))
    lines.append("disk_fdatasync_append_per_s: %.0f" % sync_append)
    lines.append("disk_syncfs_append_per_s: %.0f" % syncfs_append)
    print()
    for load, label in (("s20", "%d sessions" % args.sessions), ("s1", "1 session")):
        for kind in systems:
            runs = results.get((load, kind))
            if not runs:
                continue
            n = args.mf_messages if kind == "mailfarm" else args.pf_messages
            if load == "s1":
                n = args.mf_messages_1 if kind == "mailfarm" else args.pf_messages_1
            progs = {}
            for r in runs:
                for prog, sec in r["cpu_by_program"].items():
                    progs.setdefault(prog, []).append(sec)
            parts = sorted(((statistics.median(v + [0] * (len(runs) - len(v))) * 1000 / n, prog)
                            for prog, v in progs.items()), reverse=True)
            print("CPU ms per message by program (own time, sampled), %s, %s: %s" % (
                kind, label, ", ".join("%s %.3f" % (prog, ms) for ms, prog in parts if ms >= 0.005)))
    print()
    for line in lines:
        print(line)
    print()
    print("raw: " + json.dumps({"%s/%s" % k: v for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
