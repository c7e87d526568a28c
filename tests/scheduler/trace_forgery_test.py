"""trace_forgery_test.py: only root and the service account (smtpd) may
describe the SMTP client of an injected message. A member of the injection
set (here uid 65534 through identity.inject_uids) that claims a HELO, client
address, protocol and TLS gets protocol "local", none of them, and its real
uid in the queue file, with a log line; root's description is kept.
Needs root to inject as another uid: otherwise it prints why and exits 77."""
import os
import subprocess
import sys

import sched_harness as h

CLIENT = r'''
import sys
sys.path[:0] = %r
import sched_harness as h
import wire_pb2
c = h.InjectConn(%r)
req = wire_pb2.InjectFrame()
req.request.sender = "forger@example.com"
req.request.recipients.append("victim@example.org")
req.request.size = 8
cl = req.request.client
cl.helo = "mx.trusted.example"
cl.address = "203.0.113.9"
cl.port = 25
cl.hostname = "mx.trusted.example"
cl.protocol = "ESMTPS"
cl.tls = "TLSv1.3 TLS_AES_256_GCM_SHA384"
cl.uid = 0
body = wire_pb2.InjectFrame()
body.chunk.data = b"forged\r\n"
body.chunk.last = True
c.sock.sendall(h.frame(req) + h.frame(body))
r = h.read_frame(c.sock, wire_pb2.InjectReply)
print(r.status, r.qid)
'''


def inject(mf, preexec_fn=None):
    r = subprocess.run([sys.executable, "-c", CLIENT % (sys.path, mf.inject_sock)],
                       capture_output=True, text=True, timeout=60, preexec_fn=preexec_fn)
    assert r.returncode == 0, r
    status, qid = r.stdout.split()
    assert status == "1", r.stdout
    return qid


def envelope_of(mf, qid):
    for path in mf.queue_files():
        if os.path.basename(path) == qid:
            return h.read_queue_file(path)[0]
    raise AssertionError("no queue file for " + qid)


def test(mf):
    with open(mf.config, "a") as f:
        f.write("\nidentity { inject_uids: 65534 }\n")
    # No farms: the messages stay in the queue to be read.
    mf.start_scheduler()
    for d in (mf.dir, mf.run):
        os.chmod(d, 0o755)
    os.chmod(mf.inject_sock, 0o666)
    forged = envelope_of(mf, inject(mf, lambda: (os.setgid(65534), os.setuid(65534))))
    c = forged.client
    assert (c.protocol, c.helo, c.address, c.port, c.hostname, c.tls, c.uid) == \
        ("local", "", "", 0, "", "", 65534), c
    assert "inject.sock: uid 65534" in mf.log("scheduler.log")
    assert "recorded as a local submission instead" in mf.log("scheduler.log")
    # Root (and the service account, smtpd's uid) describe real SMTP clients.
    trusted = envelope_of(mf, inject(mf)).client
    assert (trusted.protocol, trusted.helo, trusted.address, trusted.uid) == \
        ("ESMTPS", "mx.trusted.example", "203.0.113.9", 0), trusted


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("SKIP: needs root to inject as another uid (65534)")
        sys.exit(77)
    h.run(test, "trace-forgery", scheduler_extra="", channel_extra="")
