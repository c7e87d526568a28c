"""outcomes_test.py: per-recipient outcomes through stand-in farms.

- ok: delivered once, filter headers passed along; the spool ends empty.
- tempfail-once: deferred, retried after the backoff, delivered exactly once.
- permfail from a real sender: an RFC 3464 DSN is queued and delivered to it.
- permfail from the null sender: no DSN.
- router permfail (unknown user), filter reject: DSNs with 5.1.1 / 5.7.1.
- alias to two routes: both delivered.
- filter hold: the job waits on hold until released through control.sock.
- farms started after the injection: jobs wait, then go (farm unreachable).
"""
import sched_harness as h


def delivered(mf, address):
    return [d for d in mf.deliveries() if d[1] == address]


def test(mf):
    mf.start_scheduler()
    # Farms are not up yet: injection still works and jobs wait.
    r = mf.inject("alice@example.com", ["ok1@example.org"], h.message_body("early"))
    assert r.status == r.ACCEPTED, r
    early_qid = r.qid
    assert len(mf.queue_files()) == 1
    mf.start_farms()
    h.wait_until(lambda: delivered(mf, "ok1@example.org"), 60, "delivery after farms start")
    d = delivered(mf, "ok1@example.org")
    assert d[0][0] == early_qid and d[0][2] == "alice@example.com" and d[0][4] == "headers=1", d

    acks = {}
    for rcpt, sender in [("tempfail-once@example.org", "bob@example.com"),
                         ("permfail@example.org", "carol@example.com"),
                         ("permfail2@example.org", ""),
                         ("unknown@example.org", "dave@example.com"),
                         ("alias2-x@example.org", "erin@example.com")]:
        r = mf.inject(sender, [rcpt], h.message_body(rcpt))
        assert r.status == r.ACCEPTED, r
        acks[rcpt] = r.qid
    r = mf.inject("frank@example.com", ["ok2@example.org"], h.message_body("bad", extra="FILTER-REJECT\r\n"))
    acks["reject"] = r.qid
    r = mf.inject("gina@example.com", ["ok3@example.org"], h.message_body("hold", extra="FILTER-HOLD\r\n"))
    acks["hold"] = r.qid

    def dsn_to(sender):
        return [d for d in mf.deliveries() if d[1] == sender and d[3] == "dsn" and d[2] == "<>"]

    h.wait_until(lambda: delivered(mf, "tempfail-once@example.org"), 60, "tempfail-once retried")
    h.wait_until(lambda: dsn_to("carol@example.com"), 60, "DSN for permfail")
    h.wait_until(lambda: dsn_to("dave@example.com"), 60, "DSN for unknown user")
    h.wait_until(lambda: dsn_to("frank@example.com"), 60, "DSN for filter reject")
    h.wait_until(lambda: len(delivered(mf, "a1-x@example.org")) == 1 and
                 len(delivered(mf, "a2-x@example.org")) == 1, 60, "both alias routes")

    # The hold: still queued, listed as hold; release sends it.
    h.wait_until(lambda: any(e.qid == acks["hold"] and e.state == "hold"
                             for rep in mf.control(queue_list={"all": True}) for e in rep.entries),
                 60, "held job listed")
    assert not delivered(mf, "ok3@example.org")
    rep = mf.control(release={"qids": [acks["hold"]]})[0]
    assert rep.affected == 1, rep
    h.wait_until(lambda: delivered(mf, "ok3@example.org"), 60, "released job delivered")

    # Everything settles: the spool is empty, nothing in any state.
    h.wait_until(lambda: not mf.queue_files(), 60, "empty spool")
    assert not [e for rep in mf.control(queue_list={"all": True}) for e in rep.entries]

    assert len(delivered(mf, "tempfail-once@example.org")) == 1, "delivered more than once"
    # The DSN contents.
    dsn_qid = dsn_to("carol@example.com")[0][0]
    with open(mf.state + "/dsn-" + dsn_qid) as f:
        dsn = f.read()
    for needle in ["multipart/report; report-type=delivery-status", "Status: 5.1.1",
                   "Final-Recipient: rfc822; permfail@example.org", "Action: failed",
                   "X-Mailfarm-Queue-ID: " + acks["permfail@example.org"],
                   "Subject: permfail@example.org", "To: <carol@example.com>"]:
        assert needle in dsn, (needle, dsn)
    with open(mf.state + "/dsn-" + dsn_to("frank@example.com")[0][0]) as f:
        assert "Status: 5.7.1" in f.read()
    # Null sender: no DSN anywhere, and only the expected DSNs exist.
    dsns = [d for d in mf.deliveries() if d[3] == "dsn"]
    assert sorted(d[1] for d in dsns) == ["carol@example.com", "dave@example.com",
                                          "frank@example.com"], dsns
    log = mf.log("scheduler.log")
    assert "no DSN: null sender" in log
    assert "status=deferred" in log and "status=sent" in log and "status=bounced" in log
    assert ", delays=" in log and "dsn=4.4.1" in log


h.run(test, "outcomes")
