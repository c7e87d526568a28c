"""inflight_test.py: large bodies stream to the spool while they arrive and the
bytes in flight are capped (scheduler.max_inflight_mb).

A message over 256 KiB is written to an unnamed file in spool/tmp/ as its
chunks arrive and copied behind the queue file's header at the end: the queue
file must hold exactly the bytes sent, with a valid checksum. While one client
holds most of the cap in an unfinished message, another client's message is
refused with TEMPFAIL 4.3.1 (smtpd's 452), and accepted once the first is done.
A client that disconnects mid-body gives its bytes back. Nothing is left in
spool/tmp/.
"""
import re
import socket
import urllib.request

import sched_harness as h
import wire_pb2

CAP_MB = 4


def inflight_bytes(mf):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=30) as r:
        text = r.read().decode()
    m = re.search(r"^mailfarm_inject_inflight_bytes (\S+)$", text, re.M)
    assert m, "no mailfarm_inject_inflight_bytes in /metrics"
    return float(m.group(1))


def start_message(path, body, size):
    """Sends the request and every chunk of `body` but the last marker."""
    conn = h.InjectConn(path)
    req = wire_pb2.InjectFrame()
    req.request.sender = "a@example.com"
    req.request.recipients.append("b@test.example")
    req.request.size = size
    out = h.frame(req)
    for i in range(0, len(body), 65536):
        f = wire_pb2.InjectFrame()
        f.chunk.data = body[i:i + 65536]
        out += h.frame(f)
    conn.sock.sendall(out)
    return conn


def finish_message(conn, tail):
    f = wire_pb2.InjectFrame()
    f.chunk.data = tail
    f.chunk.last = True
    conn.sock.sendall(h.frame(f))
    return h.read_frame(conn.sock, wire_pb2.InjectReply)


def main(mf):
    mf.start_scheduler()
    mf.start_farms()
    # 3 MB held unfinished by one client: 3 of the 4 MB cap.
    head = h.message_body("big", size=3 * 1024 * 1024)
    tail = b"the last line\r\n"
    first = start_message(mf.inject_sock, head, len(head) + len(tail))
    h.wait_until(lambda: inflight_bytes(mf) >= len(head), 60, "the first body to arrive")
    assert not mf.tmp_files(), "the spill file has a name: %s" % mf.tmp_files()

    second = h.message_body("second", size=2 * 1024 * 1024)
    r = mf.inject("a@example.com", ["b@test.example"], second)
    assert r.status == r.TEMPFAIL, r
    assert r.dsn == "4.3.1" and "insufficient system storage" in r.text, r
    assert "scheduler.max_inflight_mb" in mf.log("scheduler.log")

    # A client that goes away mid-body gives its bytes back.
    gone = start_message(mf.inject_sock, h.message_body("gone", size=512 * 1024), 1 << 20)
    h.wait_until(lambda: inflight_bytes(mf) >= len(head) + 512 * 1024, 60, "the third body")
    gone.sock.shutdown(socket.SHUT_RDWR)
    gone.close()
    h.wait_until(lambda: inflight_bytes(mf) < len(head) + 512 * 1024, 60, "its bytes given back")

    r = finish_message(first, tail)
    assert r.status == r.ACCEPTED, r
    first.close()
    path = [p for p in mf.queue_files() if p.endswith("/" + r.qid)]
    assert path, "no queue file for " + r.qid
    env, body = h.read_queue_file(path[0])  # checks both checksums
    assert body == head + tail, "the queue file does not hold the bytes sent"
    assert env.body_size == len(head) + len(tail)
    h.wait_until(lambda: inflight_bytes(mf) == 0, 60, "nothing in flight")

    r = mf.inject("a@example.com", ["b@test.example"], second)
    assert r.status == r.ACCEPTED, r
    h.wait_until(lambda: len(mf.deliveries()) >= 2, 60, "both deliveries")
    assert not mf.tmp_files(), mf.tmp_files()
    assert mf.scheduler.poll() is None, "the scheduler died"


port = h.free_port()
h.run(main, "inflight", scheduler_extra="max_inflight_mb: %d" % CAP_MB, metrics_port=port)
