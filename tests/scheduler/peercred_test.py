"""peercred_test.py: inject.sock checks the peer's SO_PEERCRED credentials.

The refusal can only be seen from a uid other than the scheduler's, so the
client part runs as uid 65534 and needs root to switch to it; without root
the test reports that and checks only the reload path. As root: an unlisted
uid gets REJECT 5.7.1 (and the scheduler keeps serving); after adding it to
identity.inject_uids and SIGHUP, the same uid is accepted.
"""
import os
import signal

import sched_harness as h


def as_nobody(mf):
    return h.inject_as(mf.inject_sock, lambda: (os.setgid(65534), os.setuid(65534)))


def test(mf):
    mf.start_scheduler()
    if os.geteuid() != 0:
        print("not root: cannot connect as another uid; peer-credential refusal not exercised")
        return
    for d in (mf.dir, mf.run):
        os.chmod(d, 0o755)
    os.chmod(mf.inject_sock, 0o666)
    p = as_nobody(mf)
    assert p.returncode == 0 and p.stdout.startswith("3 5.7.1 permission denied: uid 65534"), p
    assert mf.inject("a@example.com", ["b@example.org"], b"x\r\n").status == 1
    with open(mf.config, "a") as f:
        f.write("\nidentity { inject_uids: 65534 }\n")
    os.kill(mf.scheduler.pid, signal.SIGHUP)
    h.wait_until(lambda: "configuration reloaded" in mf.log("scheduler.log"), 30, "reload")
    p = as_nobody(mf)
    assert p.returncode == 0 and p.stdout.startswith("1 2.0.0 queued as "), p


h.run(test, "peercred")
