"""protocol_test.py: inject.sock under bad and excessive input, and the CLI.

- a garbage frame closes only that connection: another one mid-message goes on;
- an out-of-sequence frame and an oversized frame close the connection;
- limits give precise replies: recipients (5.5.3), size (5.3.4, announced or
  actual), bad addresses (5.1.3 / 5.1.7), no recipients (5.5.1), concurrent
  connections (4.3.2); the scheduler keeps serving after each;
- a second scheduler on the same spool is refused with a clear message (exit 75);
- mailfarm-inject: exit 0 after the ack, -t recipients, the sendmail symlink,
  64 without recipients, 65 for a malformed address (nothing sent), 75 when
  the scheduler is down.
"""
import os
import socket
import subprocess

import sched_harness as h
import wire_pb2


def cli(mf, args, text=b"Subject: cli\n\nhello\n", name="mailfarm-inject"):
    return subprocess.run([os.path.join(h.BIN, name), "--config", mf.config] + args,
                          input=text, capture_output=True, timeout=60)


def closed(sock):
    sock.settimeout(30)
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test(mf):
    mf.start_scheduler()
    # A good connection part-way through a message.
    good = h.InjectConn(mf.inject_sock)
    req = wire_pb2.InjectFrame()
    req.request.sender = "a@example.com"
    req.request.recipients.append("b@example.org")
    good.sock.sendall(h.frame(req))
    # Garbage on another connection: a valid length prefix, an unparsable payload.
    bad = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bad.connect(mf.inject_sock)
    bad.sendall(b"\x05\xff\xff\xff\xff\xff")
    assert closed(bad)
    # Oversized frame (length prefix of 100 MB) and a chunk before any request.
    big = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    big.connect(mf.inject_sock)
    big.sendall(b"\x80\x80\x80\x30")
    assert closed(big)
    seq = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    seq.connect(mf.inject_sock)
    chunk = wire_pb2.InjectFrame()
    chunk.chunk.data = b"x"
    chunk.chunk.last = True
    seq.sendall(h.frame(chunk))
    assert closed(seq)
    # The good connection finishes its message.
    end = wire_pb2.InjectFrame()
    end.chunk.data = h.message_body("survivor")
    end.chunk.last = True
    good.sock.sendall(h.frame(end))
    r = h.read_frame(good.sock, wire_pb2.InjectReply)
    assert r.status == r.ACCEPTED, r
    # Limits, on one connection that stays usable after each refusal.
    c = h.InjectConn(mf.inject_sock)
    r = c.send_message("a@example.com", ["r%d@example.org" % i for i in range(11)], b"x\r\n")
    assert r.status == r.REJECT and r.dsn == "5.5.3" and "limit 10" in r.text, r
    r = c.send_message("a@example.com", ["b@example.org"], b"x" * 20001)
    assert r.status == r.REJECT and r.dsn == "5.3.4", r
    r = c.send_message("a@example.com", ["b@example.org"], b"x\r\n", size=30000)
    assert r.status == r.REJECT and r.dsn == "5.3.4" and "30000" in r.text, r
    r = c.send_message("a@example.com", ["bad address@example.org"], b"x\r\n")
    assert r.status == r.REJECT and r.dsn == "5.1.3", r
    r = c.send_message("a@@", ["b@example.org"], b"x\r\n")
    assert r.status == r.REJECT and r.dsn == "5.1.7", r
    r = c.send_message("a@example.com", [], b"x\r\n")
    assert r.status == r.REJECT and r.dsn == "5.5.1", r
    r = c.send_message("", ["b@example.org"], h.message_body("null sender ok"))
    assert r.status == r.ACCEPTED, r
    c.close()
    # Connection limit (4): the fifth is told to come back later.
    conns = [h.InjectConn(mf.inject_sock) for _ in range(4)]
    extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    extra.connect(mf.inject_sock)
    r = h.read_frame(extra, wire_pb2.InjectReply)
    assert r.status == r.TEMPFAIL and r.dsn == "4.3.2" and "limit 4" in r.text, r
    for k in conns:
        k.close()
    h.wait_until(lambda: mf.inject("a@example.com", ["b@example.org"], b"x\r\n").status ==
                 wire_pb2.InjectReply.ACCEPTED, 30, "accepting after the burst")

    # A second scheduler on the same spool.
    second = subprocess.run([os.path.join(h.BIN, "mailfarm-scheduler"), "--config", mf.config],
                            capture_output=True, timeout=60)
    assert second.returncode == 75, second
    assert b"locked by another mailfarm-scheduler (pid %d)" % mf.scheduler.pid in second.stderr, second.stderr
    assert mf.scheduler.poll() is None
    r = mf.inject("a@example.com", ["b@example.org"], b"still here\r\n")
    assert r.status == r.ACCEPTED, r

    # mailfarm-inject.
    n = len(mf.queue_files())
    p = cli(mf, ["-f", "s@example.com", "-oi", "x@example.org"])
    assert p.returncode == 0, p
    p = cli(mf, ["-t"], b"To: T <t1@example.org>\nCc: t2@example.org\nBcc: t3@example.org\nSubject: t\n\nbody\n.\nmore\n")
    assert p.returncode == 0, p
    os.symlink(os.path.join(h.BIN, "mailfarm-inject"), os.path.join(mf.dir, "sendmail"))
    p = subprocess.run([os.path.join(mf.dir, "sendmail"), "--config", mf.config, "-i", "root"],
                       input=b"Subject: via sendmail\n\nhi\n", capture_output=True, timeout=60)
    assert p.returncode == 0, p
    assert len(mf.queue_files()) == n + 3
    by_rcpts = {}
    for path in mf.queue_files():
        env, body = h.read_queue_file(path)
        by_rcpts[tuple(r.address for r in env.recipients)] = (env, body)
    env, body = by_rcpts[("t1@example.org", "t2@example.org", "t3@example.org")]
    assert b"Bcc" not in body and b"\r\nmore\r\n" not in body and b"Message-ID: <" in body, body
    env, body = by_rcpts[("root@test.example",)]
    assert env.sender.endswith("@test.example") and b"via sendmail" in body, env
    p = cli(mf, ["-f", "s@example.com"])
    assert p.returncode == 64 and b"no recipients" in p.stderr, p
    p = cli(mf, ["bad address"])
    assert p.returncode == 65 and b"bad recipient" in p.stderr, p
    p = cli(mf, ["-X"])
    assert p.returncode == 64, p
    assert len(mf.queue_files()) == n + 3, "a refused CLI call queued something"
    mf.stop()
    # With the scheduler down, sendmail hands the message to the maildrop
    # (mailfarm-postdrop, Postfix's postdrop) and exit 0 means it is on disk.
    p = cli(mf, ["x@example.org"])
    assert p.returncode == 0, p
    dropped = os.listdir(os.path.join(mf.spool, "maildrop"))
    assert len([f for f in dropped if not f.startswith(".")]) == 1, dropped


h.run(test, "protocol", scheduler_extra="max_recipients: 10 max_message_bytes: 20000 "
      "max_inject_connections: 4 max_frame_bytes: 100000")
