"""transport_testlib: what the mailfarm-transport integration tests share.

Starts `mailfarm-transport --channel X` on a private config, plays the
scheduler's side of the wire protocol (Hello, Job, Result) on
run_dir/transport-X.sock, writes queue files for Jobs, and runs SMTP sinks on
loopback: aiosmtpd with per-recipient answers, and a raw socket server for
what aiosmtpd cannot do (PIPELINING, dropping the connection mid-DATA).
"""

import os
import socket
import subprocess
import threading
import time

import mailfarm_harness as mh
import wire_pb2

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as AioSMTP


class Check:
    """Collects failed expectations so one run reports all of them."""

    def __init__(self):
        self.failures = []

    def eq(self, got, want, what):
        if got != want:
            self.failures.append("%s: got %r, want %r" % (what, got, want))

    def true(self, cond, what):
        if not cond:
            self.failures.append(what)

    def done(self, logs=""):
        if self.failures:
            print("FAILED:\n  " + "\n  ".join(self.failures))
            if logs:
                print("---- logs ----\n" + logs[-15000:])
            raise SystemExit(1)
        print("all checks passed")


def farm_config(root, channels, hostname="mx.mailfarm.test"):
    """A config with only the given channel blocks (textproto snippets)."""
    return ('hostname: "%s"\npaths { spool_dir: "%s/spool" run_dir: "%s/run" log_dir: "" }\n'
            % (hostname, root, root)) + "\n".join(channels) + "\n"


class TransportFarm:
    """One mailfarm-transport manager (own process group) and its socket."""

    def __init__(self, root, config_text, channel, env=None):
        self.root = root
        self.channel = channel
        self.config_path = os.path.join(root, "mailfarm-%s.conf" % channel)
        with open(self.config_path, "w") as f:
            f.write(config_text)
        os.makedirs(os.path.join(root, "run"), exist_ok=True)
        self.socket_path = os.path.join(root, "run", "transport-%s.sock" % channel)
        self.proc = mh.Process([mh.binary("mailfarm-transport"), "--config", self.config_path,
                                "--channel", channel],
                               log_path=os.path.join(root, "transport-%s.log" % channel),
                               cwd=root, env=env)
        mh.wait_for(lambda: os.path.exists(self.socket_path) or not self.proc.alive(), 60,
                    what="the farm socket " + self.socket_path)
        if not self.proc.alive():
            raise AssertionError("mailfarm-transport exited:\n" + self.proc.log())

    def connect(self):
        """A scheduler-side connection to one child, after its Hello.

        The socket file appears at bind(), a moment before listen(): a refused
        connect right after start is retried.
        """
        def attempt():
            try:
                return mh.FrameSocket.connect_unix(self.socket_path, timeout=120)
            except ConnectionRefusedError:
                return None
        return SchedulerConn(mh.wait_for(attempt, 30, what="connect to " + self.socket_path))

    def log(self):
        return self.proc.log()

    def stop(self):
        return self.proc.stop()


class SchedulerConn:
    def __init__(self, frames):
        self.frames = frames
        frame = frames.recv(wire_pb2.ChildFrame)
        assert frame.WhichOneof("kind") == "hello", frame
        self.hello = frame.hello

    def run(self, job):
        """Sends a Job, returns the Result."""
        self.frames.send(job)
        frame = self.frames.recv(wire_pb2.ChildFrame)
        assert frame.WhichOneof("kind") == "result", frame
        return frame.result

    def close(self):
        self.frames.close()


_qid_counter = [0]


def make_job(root, body, recipients, sender="sender@origin.test", channel="out",
             nexthop="", added_headers=(), smtputf8=False, eight_bit=False):
    """Writes a queue file (a fake envelope, then `body`) and returns a Job for it."""
    _qid_counter[0] += 1
    qid = "TQ%06d%04d" % (os.getpid() % 1000000, _qid_counter[0])
    envelope = b"ENVELOPE-" + qid.encode() + b"\n" * 7
    path = os.path.join(root, "queue-" + qid)
    with open(path, "wb") as f:
        f.write(envelope + body + b"TRAILING-JUNK-NOT-PART-OF-THE-MESSAGE")
    job = wire_pb2.Job(qid=qid, stage=wire_pb2.STAGE_DELIVER, sender=sender,
                       channel=channel, nexthop=nexthop, attempt=1,
                       message_path=path, body_offset=len(envelope), body_size=len(body),
                       arrival_unix_ms=int(time.time() * 1000), smtputf8=smtputf8,
                       eight_bit=eight_bit)
    for i, r in enumerate(recipients):
        job.recipients.add(index=i, address=r, original=r)
    for name, value in added_headers:
        job.added_headers.add(name=name, value=value)
    job.client.helo = "client.origin.test"
    job.client.address = "192.0.2.7"
    job.client.hostname = "client.origin.test"
    job.client.protocol = "ESMTP"
    return job


def outcomes(result):
    """{index: (outcome name, dsn, text)} of a Result."""
    return {r.index: (wire_pb2.Outcome.Name(r.outcome), r.dsn, r.text) for r in result.recipients}


# --- aiosmtpd sink --------------------------------------------------------------

class SinkHandler:
    """Per-recipient answers by local part: temp* -> 451, perm* -> 550, else 250;
    a recipient hangup* makes the sink hang up after the data instead of replying.

    Records every message with the connection it came on (session peer).
    """

    def __init__(self):
        self.messages = []
        self.quits = 0
        self.resets = 0
        self.lock = threading.Lock()

    async def handle_QUIT(self, server, session, envelope):
        with self.lock:
            self.quits += 1
        return "221 2.0.0 Bye"

    async def handle_RSET(self, server, session, envelope):
        with self.lock:
            self.resets += 1
        return "250 2.0.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("temp"):
            return "451 4.2.1 mailbox busy, try later"
        if local.startswith("perm"):
            return "550 5.1.1 <%s>: no such user here" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(r.startswith("hangup") for r in envelope.rcpt_tos):
            # The whole message arrived; hang up instead of answering it.
            server.transport.close()
            return "421 4.4.2 never sent"
        with self.lock:
            self.messages.append({
                "peer": session.peer, "tls": session.ssl is not None,
                "mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                "content": envelope.original_content, "mail_options": list(envelope.mail_options),
            })
        return "250 2.0.0 Ok: queued as SINK%d" % len(self.messages)


class Sink:
    """aiosmtpd on 127.0.0.1:<free port>; tls_context enables STARTTLS."""

    def __init__(self, tls_context=None, smtputf8=False):
        self.handler = SinkHandler()
        self.port = mh.free_port()
        kwargs = {"enable_SMTPUTF8": smtputf8}
        if tls_context is not None:
            kwargs["tls_context"] = tls_context
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     server_hostname="sink.test", **kwargs)
        self.controller.start()

    @property
    def messages(self):
        with self.handler.lock:
            return list(self.handler.messages)

    def counts(self):
        with self.handler.lock:
            return {"quits": self.handler.quits, "resets": self.handler.resets}

    def stop(self):
        self.controller.stop()


# --- raw SMTP server --------------------------------------------------------------

class RawServer:
    """A hand-driven SMTP server on a thread, for behaviour aiosmtpd lacks.

    greeting: the first line; ehlo_lines: capability lines after the name;
    drop_in_data_after: close the connection after this many DATA bytes (None:
    never); starttls_hangup: answer STARTTLS with 220, then hang up; mail_reply
    (text, or a function of the MAIL count) and end_reply answer MAIL FROM and
    the end of DATA. RCPT and DATA are accepted even after a refused MAIL, as
    a sloppy server would, so the client's handling of that is visible. Records each recv() chunk so tests can see what arrived together.
    """

    def __init__(self, greeting="220 raw.test ESMTP", ehlo_lines=("PIPELINING", "8BITMIME"),
                 drop_in_data_after=None, rcpt_reply=None, starttls_hangup=False,
                 mail_reply="250 2.1.0 ok", end_reply="250 2.0.0 raw ok"):
        self.greeting = greeting
        self.ehlo_lines = list(ehlo_lines)
        self.drop_in_data_after = drop_in_data_after
        self.starttls_hangup = starttls_hangup
        self.mail_reply = mail_reply  # a str, or a callable of the MAIL count
        self.end_reply = end_reply
        self.mails = 0
        self.rcpt_reply = rcpt_reply or (lambda addr: "250 2.1.5 ok")
        self.chunks = []
        self.commands = []
        self.messages = []
        self.connections = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            try:
                self._session(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def _session(self, conn):
        conn.settimeout(30)
        buf = b""
        conn.sendall(self.greeting.encode() + b"\r\n")
        if not self.greeting.startswith("2"):
            return

        def lines():
            nonlocal buf
            while True:
                while b"\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    self.chunks.append(data)
                    buf += data
                line, buf = buf.split(b"\r\n", 1)
                yield line

        it = lines()
        for line in it:
            cmd = line.decode("utf-8", "replace")
            self.commands.append(cmd)
            verb = cmd.split(" ")[0].upper()
            if verb == "EHLO":
                caps = ["250-raw.test"] + ["250-" + c for c in self.ehlo_lines[:-1]]
                caps.append("250 " + (self.ehlo_lines[-1] if self.ehlo_lines else "HELP"))
                if not self.ehlo_lines:
                    caps = ["250 raw.test"]
                conn.sendall(("\r\n".join(caps) + "\r\n").encode())
            elif verb == "HELO":
                conn.sendall(b"250 raw.test\r\n")
            elif verb == "MAIL":
                self.mails += 1
                reply = self.mail_reply(self.mails) if callable(self.mail_reply) \
                    else self.mail_reply
                conn.sendall(reply.encode() + b"\r\n")
            elif verb == "RCPT":
                addr = cmd[cmd.find("<") + 1:cmd.rfind(">")]
                conn.sendall((self.rcpt_reply(addr) + "\r\n").encode())
            elif verb == "DATA":
                conn.sendall(b"354 go ahead\r\n")
                data = b""
                while not (data.endswith(b"\r\n.\r\n") or data == b".\r\n"):
                    if self.drop_in_data_after is not None and \
                            len(data) >= self.drop_in_data_after:
                        return  # hang up in the middle of the message
                    if buf:
                        data, buf = data + buf, b""
                        continue
                    more = conn.recv(65536)
                    if not more:
                        return
                    self.chunks.append(more)
                    data += more
                self.messages.append(data)
                conn.sendall(self.end_reply.encode() + b"\r\n")
            elif verb == "STARTTLS" and self.starttls_hangup:
                conn.sendall(b"220 2.0.0 ready to start TLS\r\n")
                return  # hang up instead of a TLS handshake
            elif verb == "RSET":
                conn.sendall(b"250 2.0.0 ok\r\n")
            elif verb == "QUIT":
                conn.sendall(b"221 2.0.0 bye\r\n")
                return
            else:
                conn.sendall(b"502 5.5.2 unknown\r\n")

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_ca(root):
    """A CA (key, cert) made with the openssl CLI in root."""
    key, cert = os.path.join(root, "ca.key"), os.path.join(root, "ca.pem")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
            "-days", "2", "-subj", "/CN=mailfarm test CA")
    return key, cert


def make_server_cert(root, ca, name, san):
    """A server key and certificate for CN=name with subjectAltName `san`, signed by ca."""
    ca_key, ca_cert = ca
    key = os.path.join(root, name + ".key")
    csr = os.path.join(root, name + ".csr")
    cert = os.path.join(root, name + ".pem")
    ext = os.path.join(root, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\n" % san)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
            "-subj", "/CN=" + name)
    openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
            "-out", cert, "-days", "2", "-extfile", ext)
    return key, cert


# --- a tiny DNS server --------------------------------------------------------

class FakeDns:
    """Answers UDP DNS queries on 127.0.0.1 from a table, for MX tests.

    zone: {(name, "MX"): [(pref, host), ...] or "NODATA"; (name, "A"): ["1.2.3.4"]};
    names missing from every key are NXDOMAIN; a known name with a missing
    type is NODATA.
    """

    TYPES = {1: "A", 15: "MX", 28: "AAAA"}

    def __init__(self, zone):
        self.zone = {(n.lower(), t): v for (n, t), v in zone.items()}
        self.names = {n for n, _ in self.zone}
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @staticmethod
    def _name(data, pos):
        labels = []
        while data[pos] != 0:
            n = data[pos]
            labels.append(data[pos + 1:pos + 1 + n].decode())
            pos += 1 + n
        return ".".join(labels), pos + 1

    @staticmethod
    def _encode(name):
        out = b""
        for label in name.split("."):
            if label:
                out += bytes([len(label)]) + label.encode()
        return out + b"\0"

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stopping:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                continue
            self.sock.sendto(self._answer(data), addr)

    def _answer(self, q):
        qid = q[:2]
        name, pos = self._name(q, 12)
        qtype = int.from_bytes(q[pos:pos + 2], "big")
        question = q[12:pos + 4]
        tname = self.TYPES.get(qtype, str(qtype))
        self.queries.append((name, tname))
        key = (name.lower(), tname)
        rcode = 0
        answers = []
        if name.lower() not in self.names:
            rcode = 3  # NXDOMAIN
        elif key in self.zone and self.zone[key] != "NODATA":
            for value in self.zone[key]:
                if tname == "MX":
                    rdata = value[0].to_bytes(2, "big") + self._encode(value[1])
                elif tname == "A":
                    rdata = socket.inet_pton(socket.AF_INET, value)
                else:
                    rdata = socket.inet_pton(socket.AF_INET6, value)
                answers.append(b"\xc0\x0c" + qtype.to_bytes(2, "big") + b"\x00\x01" +
                               (60).to_bytes(4, "big") + len(rdata).to_bytes(2, "big") + rdata)
        flags = 0x8180 | rcode
        header = qid + flags.to_bytes(2, "big") + b"\x00\x01" + \
            len(answers).to_bytes(2, "big") + b"\x00\x00\x00\x00"
        return header + question + b"".join(answers)

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()
