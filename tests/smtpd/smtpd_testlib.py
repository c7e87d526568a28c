"""smtpd_testlib: what mailfarm-smtpd's integration tests share.

- FakeScheduler: a small inject.sock server (InjectFrame in, InjectReply out)
  whose verdict a test chooses; used where a test needs a scheduler that
  tempfails, rejects, hangs or watches the body arrive in chunks.
- Smtpd: mailfarm-smtpd started on its own (no mailfarmd) on a free port.
- RealSystem: mailfarmd with the real scheduler, router, transports and smtpd,
  with smtpd settings of the test's choosing (tests/lib/mailfarm_harness.py).
- Raw: a line-level SMTP client for pipelining, smuggling and limit tests.
- make_certs: a CA and a server certificate made with the openssl CLI.
"""

import os
import socket
import subprocess
import threading

import mailfarm_harness as h
import wire_pb2
from google.protobuf.internal.decoder import _DecodeVarint32


# --- a fake scheduler ---------------------------------------------------------------

class FakeScheduler:
    """inject.sock server. mode: accept | tempfail | reject | hang | close."""

    def __init__(self, path, mode="accept"):
        self.path = path
        self.mode = mode
        self.messages = []        # (InjectRequest, body bytes) of accepted messages
        self.partial_bytes = 0    # body bytes of the message in progress
        self.connections = 0
        self.aborted = 0          # connections closed in the middle of a message
        self._lock = threading.Lock()
        self._qid = 0
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self._stop = False
        self._conns = []
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        request, body = None, []
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    if request is not None:
                        with self._lock:
                            self.aborted += 1
                    return
                buf += data
                while buf:
                    try:
                        length, pos = _DecodeVarint32(buf, 0)
                    except IndexError:
                        break
                    if len(buf) < pos + length:
                        break
                    frame = wire_pb2.InjectFrame()
                    frame.ParseFromString(buf[pos:pos + length])
                    buf = buf[pos + length:]
                    if frame.WhichOneof("kind") == "request":
                        request, body = frame.request, []
                        self.partial_bytes = 0
                        continue
                    body.append(frame.chunk.data)
                    with self._lock:
                        self.partial_bytes += len(frame.chunk.data)
                    if not frame.chunk.last:
                        continue
                    done = (request, b"".join(body))
                    request, body = None, []
                    if not self._answer(conn, done):
                        return
        except OSError:
            return
        finally:
            conn.close()

    def _answer(self, conn, message):
        mode = self.mode
        if mode == "close":
            return False
        if mode == "hang":
            threading.Event().wait(3600)
            return False
        reply = wire_pb2.InjectReply()
        if mode == "accept":
            with self._lock:
                self._qid += 1
                reply.qid = "FAKE%04d" % self._qid
                self.messages.append(message)
            reply.status = wire_pb2.InjectReply.ACCEPTED
        elif mode == "tempfail":
            reply.status = wire_pb2.InjectReply.TEMPFAIL
            reply.dsn = "4.3.1"
            reply.text = "Insufficient system storage"
        else:
            reply.status = wire_pb2.InjectReply.REJECT
            reply.dsn = "5.7.1"
            reply.text = "Message refused by policy"
        conn.sendall(h.encode_frame(reply))
        return True

    def close(self):
        self._stop = True
        self.sock.close()
        with self._lock:
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if os.path.exists(self.path):
            os.unlink(self.path)


# --- configs ----------------------------------------------------------------------

def smtpd_block(port, extra="", trusted=("127.0.0.1/32",), listen_extra=""):
    lines = ['listen { address: "127.0.0.1" port: %d }' % port]
    if listen_extra:
        lines.append(listen_extra)
    lines += ['trusted_networks: "%s"' % t for t in trusted]
    if "farm {" not in extra:
        lines.append("farm { start_children: 2 min_spare: 1 max_spare: 8 max_children: 32 }")
    lines.append(extra)
    return "smtpd {\n  " + "\n  ".join(lines) + "\n}\n"


def system_config(root, smtp_port, metrics_port, smtpd, sink_port=None, system_extra=""):
    """The harness's whole-system config with our own smtpd block."""
    text = h.default_config(root, smtp_port, metrics_port, sink_port, system_extra)
    start = text.index("smtpd {")
    end = text.index("\n}\n", start) + 3
    return 'hostname: "mx.test"\n' + text[:start] + smtpd + text[end:]


def can_run_real_system():
    return all(os.path.exists(h.binary(b)) for b in ("mailfarmd", "mailfarm-scheduler"))


class Smtpd:
    """mailfarm-smtpd alone, with a FakeScheduler on its inject.sock when asked."""

    def __init__(self, extra="", trusted=("127.0.0.1/32",), listen_extra="", scheduler="accept",
                 root=None):
        self.root = root or h.make_temp_dir("mf-smtpd-")
        self.run_dir = os.path.join(self.root, "run")
        os.makedirs(self.run_dir, exist_ok=True)
        self.port = h.free_port()
        self.config_path = os.path.join(self.root, "mailfarm.conf")
        with open(self.config_path, "w") as f:
            f.write('hostname: "mx.test"\n')
            f.write('paths { spool_dir: "%s/spool" run_dir: "%s" log_dir: "" }\n'
                    % (self.root, self.run_dir))
            f.write('routing { local_domains: "example.test" relay_domains: "relay.test" }\n')
            f.write('channel { name: "local" type: LOCAL }\n')
            f.write(smtpd_block(self.port, extra, trusted, listen_extra))
        self.scheduler = None
        if scheduler:
            self.scheduler = FakeScheduler(os.path.join(self.run_dir, "inject.sock"), scheduler)
        self.proc = h.Process([h.binary("mailfarm-smtpd"), "--config", self.config_path],
                              log_path=os.path.join(self.root, "smtpd.log"), cwd=self.root)
        h.wait_for(self._up, 30, what="smtpd on port %d" % self.port)

    def _up(self):
        if not self.proc.alive():
            raise AssertionError("mailfarm-smtpd exited:\n" + self.proc.log())
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                return s.recv(512).startswith(b"220")
        except OSError:
            return False

    def messages_for(self, user):
        """Bodies of accepted messages with a recipient user@example.test (polled)."""
        rcpt = user + "@example.test"
        return [body for req, body in list(self.scheduler.messages) if rcpt in req.recipients]

    def stop(self):
        code = self.proc.stop()
        if self.scheduler:
            self.scheduler.close()
        return code

    def log(self):
        return self.proc.log()


class RealSystem:
    """mailfarmd + the real scheduler and farms; smtpd configured by the test."""

    def __init__(self, extra="", trusted=("127.0.0.1/32",), listen_extra="", sink_port=None,
                 system_extra=""):
        self.root = h.make_temp_dir("mf-sys-")
        port = h.free_port()
        smtpd = smtpd_block(port, extra, trusted, listen_extra)
        self.system = h.MailfarmSystem(
            config_text=system_config(self.root, port, h.free_port(), smtpd, sink_port,
                                      system_extra),
            root=self.root)
        self.system.smtp_port = port
        self.port = port
        self.system.start()

    def stop(self):
        return self.system.stop()

    def log(self):
        return self.system.log()

    def pid_of(self, binary_name):
        """Pid of this system's process running `binary_name` (None if there is none)."""
        for pid in h.pids_matching(self.root):
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    argv0 = f.read().split(b"\0")[0].decode()
            except OSError:
                continue
            if os.path.basename(argv0) == binary_name:
                return pid
        return None

    def messages_for(self, user):
        """Messages delivered to the Maildir of user@example.test so far."""
        return self.system.maildir_messages(user)


# --- a raw client ---------------------------------------------------------------------

class Raw:
    """Line-level SMTP client: send exactly these bytes, read whole replies."""

    def __init__(self, port, source=None, timeout=30, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self):
        """(code, [lines]) of the next reply; (None, []) when the server closed."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    return (None, lines)
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return (int(line[:3]), lines)

    def expect(self, code):
        got, lines = self.reply()
        assert got == code, "expected %s, got %s %r" % (code, got, lines)
        return lines

    def codes(self, n):
        return [self.reply()[0] for _ in range(n)]

    def closed(self):
        """True when the server closed the connection (EOF, nothing left to read)."""
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        self.buf += data
        return not data

    def close(self):
        self.sock.close()


def make_certs(root, hostname="mx.test"):
    """A CA and a server certificate for `hostname`; returns (ca, cert, key) paths."""
    ca_key, ca = os.path.join(root, "ca.key"), os.path.join(root, "ca.pem")
    key, csr, cert = (os.path.join(root, n) for n in ("server.key", "server.csr", "server.pem"))
    ext = os.path.join(root, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:%s\n" % hostname)
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
        "-out", ca, "-days", "2", "-subj", "/CN=mailfarm test CA")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
        "-subj", "/CN=%s" % hostname)
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext)
    # mailfarmd started as root drops to its service user: let it read them
    # (a throw-away test key in a temp dir).
    os.chmod(root, 0o755)
    for path in (ca, cert, key, ca_key):
        os.chmod(path, 0o644)
    return ca, cert, key


# --- Dovecot's auth service -------------------------------------------------------------

class Dovecot:
    """A private Dovecot (Debian's dovecot-core) running only its auth service:
    own base_dir, config and passwd-file under `root`, the auth-client listener
    on a Unix socket there (mode 0666: smtpd's children run as the service
    user). users: {name: password}. Stopped by pid."""

    def __init__(self, root, users):
        self.root = os.path.join(root, "dovecot")
        os.makedirs(os.path.join(self.root, "run"))
        os.makedirs(os.path.join(self.root, "state"))
        os.chmod(self.root, 0o755)
        self.socket = os.path.join(self.root, "auth-client")
        passwd = os.path.join(self.root, "passwd")
        with open(passwd, "w") as f:
            for user, password in users.items():
                f.write("%s:{PLAIN}%s\n" % (user, password))
        run_as = ""
        if os.geteuid() != 0:
            import pwd
            me = pwd.getpwuid(os.geteuid()).pw_name
            run_as = "default_internal_user = %s\ndefault_login_user = %s\n" % (me, me)
        self.config = os.path.join(self.root, "dovecot.conf")
        with open(self.config, "w") as f:
            f.write("""base_dir = {d}/run
state_dir = {d}/state
instance_name = mailfarm-test-{pid}
log_path = {d}/dovecot.log
protocols = none
ssl = no
auth_mechanisms = plain login
{run_as}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}}
service auth {{
  unix_listener {sock} {{
    mode = 0666
  }}
}}
""".format(d=self.root, pid=os.getpid(), run_as=run_as, passwd=passwd, sock=self.socket))
        binary = "/usr/sbin/dovecot"
        if not os.path.exists(binary):
            raise AssertionError("dovecot is not installed: scripts/bootstrap --test "
                                 "installs dovecot-core")
        self.proc = h.Process([binary, "-F", "-c", self.config],
                              log_path=os.path.join(self.root, "stdout.log"))
        h.wait_for(self._up, 30, what="dovecot's auth-client socket")

    def _up(self):
        if not self.proc.alive():
            raise AssertionError("dovecot exited:\n" + self.proc.log() + self.log())
        if not os.path.exists(self.socket):
            return False
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(self.socket)
                return True
            except OSError:
                return False

    def log(self):
        path = os.path.join(self.root, "dovecot.log")
        if not os.path.exists(path):
            return ""
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self):
        return self.proc.stop()
