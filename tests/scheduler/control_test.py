"""control_test.py: control.sock verbs and the stuck-task rule.

- hold / release / flush / delete / bounce by qid, with affected counts and
  NOT_FOUND for unknown jobs; queue_list and queue_show;
- adopt (what mailfarm-replay sends): a queue file written by an earlier
  scheduler is taken over and delivered; a job already held counts in
  already_known; a corrupt file is reported, not adopted;
- a transport child dying mid-job (crash-once) and a child running past the
  channel's delivery timeout: the job is requeued (counted) and still delivered;
- stats, reload (bad config refused, good one applied) and stop.
"""
import os
import shutil

import sched_harness as h


def entries(mf, **sel):
    return [e for rep in mf.control(queue_list=sel or {"all": True}) for e in rep.entries]


def test(mf):
    mf.start_scheduler()
    # Without farms every job waits active; tempfail ones get deferred later.
    r1 = mf.inject("a@example.com", ["tempfail@example.org"], h.message_body("t1"))
    r2 = mf.inject("b@example.com", ["ok@example.org"], h.message_body("t2"))
    r3 = mf.inject("c@example.com", ["ok-bounce@example.org"], h.message_body("t3"))
    r4 = mf.inject("d@example.com", ["ok-delete@example.org"], h.message_body("t4"))
    assert {e.qid for e in entries(mf)} == {r1.qid, r2.qid, r3.qid, r4.qid}
    rep = mf.control(hold={"qids": [r2.qid]})[0]
    assert rep.status == rep.OK and rep.affected == 1, rep
    rep = mf.control(hold={"qids": ["0000000000000000"]})[0]
    assert rep.status == rep.NOT_FOUND and rep.affected == 0, rep
    rep = mf.control(queue_show=r2.qid)[0]
    assert rep.detail.entry.sender == "b@example.com", rep
    assert mf.control(queue_show="nope")[0].status == rep.NOT_FOUND
    rep = mf.control(delete={"qids": [r4.qid]})[0]
    assert rep.affected == 1, rep
    h.wait_until(lambda: r4.qid not in {e.qid for e in entries(mf)} and
                 not any(p.endswith(r4.qid) for p in mf.queue_files()), 30, "deleted job gone")

    mf.start_farms()
    h.wait_until(lambda: any(e.qid == r1.qid and e.state == "deferred" for e in entries(mf)), 60,
                 "tempfail job deferred")
    rep = mf.control(bounce={"qids": [r1.qid]})[0]
    assert rep.affected == 1, rep
    h.wait_until(lambda: any(d[1] == "a@example.com" and d[3] == "dsn" for d in mf.deliveries()), 60,
                 "operator bounce DSN")
    # Held job: not delivered until released.
    assert not [d for d in mf.deliveries() if d[1] == "ok@example.org"]
    assert any(e.qid == r2.qid and e.state == "hold" for e in entries(mf))
    assert mf.control(release={"qids": [r2.qid]})[0].affected == 1
    h.wait_until(lambda: [d for d in mf.deliveries() if d[1] == "ok@example.org"], 60, "released")
    h.wait_until(lambda: [d for d in mf.deliveries() if d[1] == "ok-bounce@example.org"], 60, "t3")

    # Flush: a deferred job is tried at once.
    r5 = mf.inject("e@example.com", ["tempfail-flush@example.org"], h.message_body("t5"))
    h.wait_until(lambda: any(e.qid == r5.qid and e.state == "deferred" and e.attempts == 1
                             for e in entries(mf)), 60, "deferred once")
    assert mf.control(flush={"qids": [r5.qid]})[0].affected == 1
    h.wait_until(lambda: any(e.qid == r5.qid and e.attempts >= 2 for e in entries(mf)), 60,
                 "flushed attempt")
    mf.control(delete={"qids": [r5.qid]})

    # A child dying mid-job and one running past the timeout: requeued, delivered.
    r6 = mf.inject("f@example.com", ["crash-once@example.org"], h.message_body("t6"))
    h.wait_until(lambda: [d for d in mf.deliveries() if d[0] == r6.qid], 60, "crash-once delivered")
    r7 = mf.inject("g@example.com", ["slow@example.org"], h.message_body("t7"))
    h.wait_until(lambda: "ran past the 1500 ms job timeout" in mf.log("scheduler.log"), 60,
                 "timeout noticed")
    stats = {s.name: s.value for s in mf.control(stats=True)[0].stats.samples if not s.labels}
    assert stats["mailfarm_scheduler_requeued_total"] >= 2, stats
    mf.control(delete={"qids": [r7.qid]})

    # Adopt: a queue file from "an earlier life" is taken over.
    h.wait_until(lambda: not mf.queue_files(), 60, "quiet spool")
    r8 = mf.inject("h@example.com", ["tempfail-adopt@example.org"], h.message_body("t8"))
    h.wait_until(lambda: any(e.qid == r8.qid and e.state == "deferred" for e in entries(mf)), 60,
                 "t8 deferred")
    assert mf.control(hold={"qids": [r8.qid]})[0].affected == 1
    [path] = [p for p in mf.queue_files() if p.endswith(r8.qid)]
    # Forge a second job: same body, new qid, by copying and renaming is not
    # valid (the qid is inside the envelope), so adopt the real file twice
    # and a corrupt one once.
    corrupt = os.path.join(os.path.dirname(path), "0000000000000001")
    shutil.copy(path, corrupt)
    with open(corrupt, "r+b") as f:
        f.seek(10)
        f.write(b"\xff\xff")
    rep = mf.control(adopt={"jobs": [{"qid": r8.qid, "path": path},
                                     {"qid": "0000000000000001", "path": corrupt}]})[0]
    assert rep.already_known == 1 and rep.affected == 0 and "failed 1" in rep.text, rep
    os.unlink(corrupt)

    # The Prometheus endpoint serves the same counters.
    import urllib.request
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mf.metrics_port, timeout=30).read().decode()
    assert "mailfarm_scheduler_requeued_total" in text and 'mailfarm_queue_jobs{state="deferred"}' in text, text
    assert "mailfarm_inject_durable_seconds_count" in text and "mailfarm_delivery_seconds_bucket" in text, text

    # Reload: a broken config is refused, the scheduler keeps running.
    with open(mf.config) as f:
        good = f.read()
    with open(mf.config, "w") as f:
        f.write(good + "\nnot_a_key: 1\n")
    assert "refused" in mf.control(reload=True)[0].text
    with open(mf.config, "w") as f:
        f.write(good)
    assert "reloaded" in mf.control(reload=True)[0].text
    rep = mf.control(stop=True)[0]
    assert rep.text == "stopping"
    mf.scheduler.wait(timeout=60)
    assert mf.scheduler.returncode == 0, mf.scheduler.returncode

    # A new scheduler knows nothing until replay adopts the surviving file.
    mf.start_scheduler()
    assert not entries(mf)
    rep = mf.control(adopt={"jobs": [{"qid": r8.qid, "path": path}]})[0]
    assert rep.affected == 1 and rep.already_known == 0, rep
    assert [e.qid for e in entries(mf)] == [r8.qid]
    assert mf.control(adopt={"jobs": [{"qid": r8.qid, "path": path}]})[0].already_known == 1
    h.wait_until(lambda: any(e.qid == r8.qid and e.state == "hold" for e in entries(mf)), 60,
                 "adopted job keeps its hold")


PORT = h.free_port()


def main(mf):
    mf.metrics_port = PORT
    test(mf)


h.run(main, "control", channel_extra="delivery_timeout_ms: 1500", metrics_port=PORT,
      backoff=(20, 30))
