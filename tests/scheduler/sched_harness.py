"""sched_harness.py: shared set-up of the scheduler's integration tests.

Starts mailfarm-scheduler and stand-in farms (mailfarm-standin-farm) in a
temporary directory with their own config, speaks inject.sock and control.sock
with the generated protobuf modules, and stops every process it started (by
process group) even when a test fails.
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

from google.protobuf.internal.decoder import _DecodeVarint32
from google.protobuf.internal.encoder import _VarintBytes

import mailfarm_harness
import spool_pb2
import wire_pb2

BIN = os.environ.get("MAILFARM_BIN", "")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(pred, timeout=60.0, what="condition"):
    """Polls pred() until it is true; fails the test after a generous deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def frame(message):
    data = message.SerializeToString()
    return _VarintBytes(len(data)) + data


def read_frame(sock, cls, timeout=60.0):
    sock.settimeout(timeout)
    buf = b""
    while True:
        try:
            size, pos = _DecodeVarint32(buf, 0)
            if len(buf) >= pos + size:
                msg = cls()
                msg.ParseFromString(buf[pos:pos + size])
                return msg
        except IndexError:
            pass
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk


class InjectConn:
    """One inject.sock connection; several messages may go over it."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)

    def send_message(self, sender, recipients, body, chunk=65536, size=None):
        req = wire_pb2.InjectFrame()
        req.request.sender = sender
        req.request.recipients.extend(recipients)
        req.request.size = len(body) if size is None else size
        out = frame(req)
        for i in range(0, max(len(body), 1), chunk):
            f = wire_pb2.InjectFrame()
            f.chunk.data = body[i:i + chunk]
            f.chunk.last = i + chunk >= len(body)
            out += frame(f)
        self.sock.sendall(out)
        return read_frame(self.sock, wire_pb2.InjectReply)

    def close(self):
        self.sock.close()


# A separate Python that injects one message over inject.sock and prints
# "status dsn text" (the refusal of a peer arrives before it finishes sending).
_INJECT_CLIENT = r'''
import sys
sys.path[:0] = %r
import sched_harness as h
import wire_pb2
c = h.InjectConn(%r)
try:
    r = c.send_message("n@example.com", ["x@example.org"], b"hi\r\n")
except BrokenPipeError:  # refused at once: the reply waits in our buffer
    r = h.read_frame(c.sock, wire_pb2.InjectReply)
print(r.status, r.dsn, r.text)
'''


def inject_as(path, preexec_fn):
    """Injects one message over the inject.sock `path` from a child process
    that runs preexec_fn first (to become another uid); the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", _INJECT_CLIENT % (sys.path, path)],
                          capture_output=True, text=True, timeout=60, preexec_fn=preexec_fn)


def message_body(subject="test", size=0, extra=""):
    head = ("From: sender@example.com\r\nTo: rcpt@example.org\r\nSubject: %s\r\n"
            "Message-ID: <%s@test>\r\n\r\n" % (subject, time.monotonic_ns()))
    body = extra + "hello\r\n"
    missing = max(0, size - len(head) - len(body))
    body += ("x" * 76 + "\r\n") * ((missing + 77) // 78)
    return (head + body).encode()


# --- queue-file validation (the format at the top of proto/spool.proto) -----

def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = (c >> 8) ^ _TABLE[(c ^ b) & 0xFF]
    return c ^ 0xFFFFFFFF


def read_queue_file(path):
    """Returns (Envelope, body) or raises ValueError naming what is wrong."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"MFQ1":
        raise ValueError("bad magic")
    (length,) = struct.unpack("<I", data[4:8])
    env_bytes = data[8:8 + length]
    (crc,) = struct.unpack("<I", data[8 + length:12 + length])
    if len(env_bytes) != length or crc32c(env_bytes) != crc:
        raise ValueError("envelope checksum")
    env = spool_pb2.Envelope()
    env.ParseFromString(env_bytes)
    body = data[12 + length:12 + length + env.body_size]
    if len(body) != env.body_size or crc32c(body) != env.body_crc32c:
        raise ValueError("body checksum")
    return env, body


class Mailfarm:
    """A scheduler plus optional stand-in farms in a private directory."""

    def __init__(self, name, scheduler_extra="", channel_extra="delivery_timeout_ms: 20000",
                 filter_enabled=True, backoff=(1, 2), metrics_port=0,
                 env=None, parent="/tmp"):
        # parent: the file system the spool is on (bench/inject's --dir).
        self.dir = mailfarm_harness.make_temp_dir("mf-%s." % name, parent)  # removed at exit
        self.spool = os.path.join(self.dir, "spool")
        self.run = os.path.join(self.dir, "run")
        self.record = os.path.join(self.dir, "deliveries.log")
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.state)
        open(self.record, "w").close()
        self.config = os.path.join(self.dir, "mailfarm.conf")
        self.procs = []
        self.scheduler = None
        self.sched_env = env
        with open(self.config, "w") as f:
            f.write("""
hostname: "test.example"
paths { spool_dir: "%s" run_dir: "%s" log_dir: "" }
scheduler {
  min_backoff_s: %d max_backoff_s: %d filter_enabled: %s
  route_timeout_ms: 20000 filter_timeout_ms: 20000
  %s
}
router { start_children: 2 min_spare: 1 max_spare: 4 max_children: 8 }
filter { start_children: 2 min_spare: 1 max_spare: 4 max_children: 8 }
channel {
  name: "test" type: DISCARD concurrency: 8
  farm { start_children: 2 min_spare: 1 max_spare: 4 max_children: 8 }
  %s
}
routing { local_domains: "test.example" local_channel: "test" }
metrics { address: "127.0.0.1" port: %d }
""" % (self.spool, self.run, backoff[0], backoff[1], "true" if filter_enabled else "false", scheduler_extra,
            channel_extra, metrics_port))
        self.filter_enabled = filter_enabled

    @property
    def inject_sock(self):
        return os.path.join(self.run, "inject.sock")

    @property
    def control_sock(self):
        return os.path.join(self.run, "control.sock")

    def _spawn(self, argv, log, env=None):
        out = open(os.path.join(self.dir, log), "ab")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                             env=full_env)
        self.procs.append(p)
        return p

    def start_scheduler(self, wait=True):
        self.scheduler = self._spawn([os.path.join(BIN, "mailfarm-scheduler"), "--config",
                                      self.config], "scheduler.log", self.sched_env)
        if wait:
            def ready():
                if self.scheduler.poll() is not None:
                    raise AssertionError("scheduler exited %s:\n%s" %
                                         (self.scheduler.returncode, self.log("scheduler.log")))
                try:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect(self.inject_sock)
                    s.close()
                    return True
                except OSError:
                    return False
            wait_until(ready, 60, "the scheduler's inject.sock")
        return self.scheduler

    def start_farms(self):
        base = [os.path.join(BIN, "mailfarm-standin-farm"), "--config", self.config,
                "--record", self.record, "--state_dir", self.state]
        self._spawn(base + ["--role", "router"], "router.log")
        if self.filter_enabled:
            self._spawn(base + ["--role", "filter"], "filter.log")
        self._spawn(base + ["--role", "transport", "--channel", "test"], "transport.log")

    def log(self, name):
        try:
            with open(os.path.join(self.dir, name), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def inject(self, sender, recipients, body):
        c = InjectConn(self.inject_sock)
        try:
            return c.send_message(sender, recipients, body)
        finally:
            c.close()

    def control(self, **verb):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.control_sock)
        req = wire_pb2.ControlRequest()
        for k, v in verb.items():
            field = getattr(req, k)
            if isinstance(v, dict):
                for kk, vv in v.items():
                    if isinstance(vv, list) and vv and isinstance(vv[0], dict):
                        for item in vv:
                            getattr(field, kk).add(**item)
                    elif isinstance(vv, list):
                        getattr(field, kk).extend(vv)
                    else:
                        setattr(field, kk, vv)
            else:
                setattr(req, k, v)
        s.sendall(frame(req))
        replies = []
        while True:
            r = read_frame(s, wire_pb2.ControlReply)
            replies.append(r)
            if not r.more:
                break
        s.close()
        return replies

    def queue_files(self):
        out = []
        qdir = os.path.join(self.spool, "queue")
        for h in sorted(os.listdir(qdir)) if os.path.isdir(qdir) else []:
            for name in os.listdir(os.path.join(qdir, h)):
                out.append(os.path.join(qdir, h, name))
        return out

    def tmp_files(self):
        tdir = os.path.join(self.spool, "tmp")
        return os.listdir(tdir) if os.path.isdir(tdir) else []

    def deliveries(self):
        with open(self.record) as f:
            return [line.split() for line in f if line.strip()]

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()

    def fail_dump(self):
        for name in ("scheduler.log", "router.log", "filter.log", "transport.log"):
            text = self.log(name)
            if text:
                sys.stderr.write("==== %s (last 60 lines)\n%s\n" % (name, "\n".join(text.splitlines()[-60:])))


def run(test_main, name, **kwargs):
    """Runs test_main(farm) with a fresh Mailfarm; dumps logs on failure."""
    mf = Mailfarm(name, **kwargs)
    ok = False
    try:
        test_main(mf)
        ok = True
    finally:
        mf.stop()
        if not ok:
            mf.fail_dump()
    print("PASS", name)
