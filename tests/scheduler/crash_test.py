"""crash_test.py: kill -9 the scheduler in the middle of injection; every qid
whose acknowledgement a client received is in the spool, intact (magic,
checksums, body), and a new scheduler starts on the same spool (the lock died
with the old one; spool/tmp is cleaned). Then SIGTERM in the middle of
injection: the scheduler exits 0 (under ASan: no leak, every thread joined)
and again every acknowledged qid is on disk. No farms run, so nothing is
delivered meanwhile."""
import os
import signal
import threading
import time

import sched_harness as h


def inject_and_stop(mf, sched, sig):
    acked = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n):
        try:
            c = h.InjectConn(mf.inject_sock)
            i = 0
            while not stop.is_set():
                body = h.message_body("crash %d %d" % (n, i), size=3000)
                r = c.send_message("c%d@example.com" % n, ["r%d@example.org" % i], body)
                if r.status == r.ACCEPTED:
                    with lock:
                        acked.append((r.qid, body))
                i += 1
        except (ConnectionError, OSError):
            pass  # the scheduler died under us: unacknowledged, so not counted

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    h.wait_until(lambda: len(acked) >= 300, 120, "300 acknowledged injections")
    os.kill(sched.pid, sig)
    sched.wait(timeout=60)
    stop.set()
    for t in threads:
        t.join()
    check_on_disk(mf, acked)
    return sched.returncode


def check_on_disk(mf, acked):
    files = {os.path.basename(p): p for p in mf.queue_files()}
    missing = [q for q, _ in acked if q not in files]
    assert not missing, "acknowledged but not in the spool: %s" % missing[:10]
    for qid, body in acked:
        env, stored = h.read_queue_file(files[qid])
        assert env.qid == qid and stored == body, qid
    print("acked %d, files %d" % (len(acked), len(files)))


def test(mf):
    inject_and_stop(mf, mf.start_scheduler(), signal.SIGKILL)
    # A second life on the same spool: the lock was released by the kernel.
    mf.start_scheduler()
    assert not mf.tmp_files()
    r = mf.inject("after@example.com", ["x@example.org"], h.message_body("after crash"))
    assert r.status == r.ACCEPTED, r
    rc = inject_and_stop(mf, mf.scheduler, signal.SIGTERM)
    assert rc == 0, "SIGTERM: exit %s\n%s" % (rc, mf.log("scheduler.log")[-3000:])
    assert "mailfarm-scheduler stopped" in mf.log("scheduler.log")
    assert not os.path.exists(mf.inject_sock)


h.run(test, "crash")
