"""farm_peercred_test.py: the farm sockets check the peer's uid both ways,
not only their file modes (here opened to everyone, as a mistake would).
A farm child refuses a connection from another uid with a log line, sending
it nothing; the scheduler refuses a "farm" served by another uid (a socket
put at router.sock's path) with a log line, sending it no job.
Needs root to act as uid 65534: otherwise it prints why and exits 77."""
import os
import subprocess
import sys

import sched_harness as h

# A connection to a farm socket as another uid: what does the child send?
PEER = r'''
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(%r)
s.settimeout(30)
data = s.recv(4096)
print("got %%d bytes" %% len(data))
'''

# A "router" served by uid 65534: says Hello like a child, then reports
# whether the scheduler sent it a job or closed the connection.
ROGUE = r'''
import os, socket
path = %r
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
os.chmod(path, 0o666)
s.listen(8)
print("listening", flush=True)
c, _ = s.accept()
# ChildFrame{hello: Hello{farm: "router", pid: 1}}, varint-length framed.
hello = b"\x0a\x06router\x10\x01"
msg = b"\x0a" + bytes([len(hello)]) + hello
c.settimeout(60)
try:
    c.sendall(bytes([len(msg)]) + msg)
    data = c.recv(4096)
    print("got job" if data else "closed", flush=True)
except OSError as e:
    print("closed:", e, flush=True)
'''


def as_nobody():
    return lambda: (os.setgid(65534), os.setuid(65534))


def test_child_refuses_another_uid(mf):
    mf.start_scheduler()
    mf.start_farms()
    sock = os.path.join(mf.run, "transport-test.sock")
    h.wait_until(lambda: os.path.exists(sock), 60, "transport-test.sock")
    for d in (mf.dir, mf.run):
        os.chmod(d, 0o755)
    os.chmod(sock, 0o666)
    # Root (like the scheduler here) is served: the child says Hello.
    r = subprocess.run([sys.executable, "-c", PEER % sock], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("got ") and not r.stdout.startswith(
        "got 0 "), r
    r = subprocess.run([sys.executable, "-c", PEER % sock], capture_output=True, text=True,
                       timeout=60, preexec_fn=as_nobody())
    assert r.returncode == 0 and r.stdout.strip() == "got 0 bytes", r
    h.wait_until(lambda: "refused a connection: peer uid 65534" in mf.log("transport.log"), 30,
                 "the child's refusal in its log")


def test_scheduler_refuses_a_farm_of_another_uid(mf):
    mf.start_scheduler()
    # The rogue binds in a directory it may write, then the socket is moved to
    # where the router's would be (as a wrong mode on run/ would allow).
    spot = h.mailfarm_harness.make_temp_dir("mf-rogue-")
    os.chmod(spot, 0o777)
    rogue_path = os.path.join(spot, "r.sock")
    rogue = subprocess.Popen([sys.executable, "-c", ROGUE % rogue_path],
                             stdout=subprocess.PIPE, text=True, preexec_fn=as_nobody())
    try:
        assert rogue.stdout.readline().strip() == "listening"
        os.rename(rogue_path, os.path.join(mf.run, "router.sock"))
        reply = mf.inject("a@example.com", ["b@test.example"], b"Subject: x\r\n\r\nx\r\n")
        assert reply.status == 1, reply
        out, _ = rogue.communicate(timeout=120)
    finally:
        if rogue.poll() is None:
            rogue.kill()
            rogue.wait()
    assert out.startswith("closed"), out
    h.wait_until(lambda: "peer uid 65534" in mf.log("scheduler.log"), 30,
                 "the scheduler's refusal in its log")
    assert "is neither root nor uid 0" in mf.log("scheduler.log")


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("SKIP: needs root to connect and listen as another uid (65534)")
        sys.exit(77)
    h.run(test_child_refuses_another_uid, "farm-peercred-child")
    h.run(test_scheduler_refuses_a_farm_of_another_uid, "farm-peercred-scheduler")
