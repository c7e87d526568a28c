"""mailfarm-transport smtp channel against aiosmtpd on loopback.

Per-recipient outcomes (250 / 451 / 550), a body with leading dots and no final
newline arriving byte-identical (plus the CRLF SMTP requires), the Received and
added headers written before it, connection reuse seen at the sink (several
jobs, one connection, Result.open_session), max_messages_per_connection, the
idle timeout closing the session, BODY=8BITMIME and SMTPUTF8 with a server
that offers them, the sink hanging up after the data (deferred, the next job
reconnects), and a refused connection.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mailfarm_harness as mh  # noqa: E402
import transport_testlib as tl  # noqa: E402


def channel(name, extra=""):
    return ('channel { name: "%s" type: SMTP farm { start_children: 1 min_spare: 1 max_spare: 2 }'
            ' smtp { tls { level: NONE } %s } }' % (name, extra))


def split_message(content):
    """(trace and added header block, original message) of what the sink got."""
    marker = b"X-Original-Start: yes\r\n"
    at = content.index(marker)
    return content[:at], content[at:]


def main():
    check = tl.Check()
    root = mh.make_temp_dir("mf-tsmtp-")
    sink = tl.Sink()
    farms = []
    try:
        config = tl.farm_config(root, [
            channel("out"),
            channel("few", "max_messages_per_connection: 2"),
            channel("idle", "idle_timeout_ms: 300"),
        ])
        out = tl.TransportFarm(root, config, "out")
        farms.append(out)
        nexthop = "[127.0.0.1]:%d" % sink.port
        conn = out.connect()
        check.eq(conn.hello.farm, "transport-out", "hello farm name")

        # 1. One job, three recipients, three outcomes; a tricky body.
        body = (b"X-Original-Start: yes\r\nSubject: dots\r\n\r\n.\r\n..two\r\n"
                b"line . middle\r\n.leading\r\n\r\n.\r\nno final newline")
        job = tl.make_job(root, body, ["ok@dest.test", "temp@dest.test", "perm@dest.test"],
                          nexthop=nexthop, added_headers=[("X-Filter", "checked")])
        result = conn.run(job)
        got = tl.outcomes(result)
        check.eq(got[0][0], "OUTCOME_OK", "accepted recipient")
        check.true("queued as SINK1" in got[0][2], "remote reply in text: %r" % (got[0][2],))
        check.eq(got[1][:2], ("OUTCOME_TEMPFAIL", "4.2.1"), "451 recipient")
        check.true("451 4.2.1 mailbox busy" in got[1][2] and "RCPT TO" in got[1][2],
                   "451 text: %r" % (got[1][2],))
        check.eq(got[2][:2], ("OUTCOME_PERMFAIL", "5.1.1"), "550 recipient")
        check.true("no such user here" in got[2][2], "550 text: %r" % (got[2][2],))
        check.eq(result.open_session, "out " + nexthop, "open_session after job 1")
        check.eq(result.connection_failure, False, "no connection failure")
        for r in result.recipients:
            check.true(r.relay.startswith("127.0.0.1[127.0.0.1]:%d" % sink.port),
                       "relay %r" % r.relay)
        msgs = sink.messages
        check.eq(len(msgs), 1, "messages at the sink")
        if msgs:
            m = msgs[0]
            check.eq(m["rcpt_tos"], ["ok@dest.test"], "sink recipients")
            check.eq(m["mail_from"], "sender@origin.test", "sink sender")
            head, original = split_message(m["content"])
            check.eq(original, body + b"\r\n", "body byte-identical (with the closing CRLF)")
            check.true(head.startswith(b"Received: from client.origin.test"),
                       "Received first: %r" % head[:80])
            check.true(b"by mx.mailfarm.test (mailfarm) with ESMTP id " + job.qid.encode()
                       in head, "Received names us and the qid: %r" % head)
            check.true(head.endswith(b"X-Filter: checked\r\n"), "added header: %r" % head)
            check.true(any(o.startswith("SIZE=") for o in m["mail_options"]),
                       "SIZE= sent: %r" % m["mail_options"])

        # 2. Connection reuse: two more jobs on the same child, same connection.
        for i in range(2):
            job = tl.make_job(root, b"X-Original-Start: yes\r\n\r\nmessage %d\r\n" % i,
                              ["ok%d@dest.test" % i], nexthop=nexthop)
            result = conn.run(job)
            check.eq(tl.outcomes(result)[0][0], "OUTCOME_OK", "reuse job %d" % i)
            check.eq(result.open_session, "out " + nexthop, "open_session job %d" % i)
        msgs = sink.messages
        check.eq(len(msgs), 3, "three messages at the sink")
        check.eq(sink.counts()["resets"], 2, "RSET before each reused transaction")
        check.eq(len({m["peer"] for m in msgs}), 1, "one connection for three jobs")
        log = out.log()
        check.true("to=<perm@dest.test>, relay=127.0.0.1[127.0.0.1]:%d" % sink.port in log and
                   "status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1" in log,
                   "bounce delivery line in the log")
        check.true("dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as SINK1)" in log,
                   "sent delivery line in the log")
        conn.close()

        # 3. max_messages_per_connection: 2 -> three jobs need two connections.
        few = tl.TransportFarm(root, config, "few")
        farms.append(few)
        before = len(sink.messages)
        conn = few.connect()
        sessions = []
        for i in range(3):
            job = tl.make_job(root, b"X-Original-Start: yes\r\n\r\nfew %d\r\n" % i,
                              ["few%d@dest.test" % i], channel="few", nexthop=nexthop)
            result = conn.run(job)
            check.eq(tl.outcomes(result)[0][0], "OUTCOME_OK", "few job %d" % i)
            sessions.append(result.open_session)
        check.eq(sessions, ["few " + nexthop, "", "few " + nexthop],
                 "open_session with max 2 messages per connection")
        peers = [m["peer"] for m in sink.messages[before:]]
        check.eq(len(peers), 3, "few: messages")
        check.true(len(peers) == 3 and peers[0] == peers[1] and peers[1] != peers[2],
                   "few: new connection after two messages: %r" % peers)
        conn.close()

        # 4. Idle timeout: a session idle past 300 ms is closed; the next job reconnects.
        idle = tl.TransportFarm(root, config, "idle")
        farms.append(idle)
        before = len(sink.messages)
        conn = idle.connect()
        job = tl.make_job(root, b"X-Original-Start: yes\r\n\r\nidle 1\r\n", ["i1@dest.test"],
                          channel="idle", nexthop=nexthop)
        check.eq(conn.run(job).open_session, "idle " + nexthop, "idle: session open")
        # The sink sees the QUIT when the idle tick closes the session.
        quits = sink.counts()["quits"]
        mh.wait_for(lambda: sink.counts()["quits"] > quits, 30, what="QUIT after idle timeout")
        job = tl.make_job(root, b"X-Original-Start: yes\r\n\r\nidle 2\r\n", ["i2@dest.test"],
                          channel="idle", nexthop=nexthop)
        check.eq(tl.outcomes(conn.run(job))[0][0], "OUTCOME_OK", "idle: second job")
        peers = [m["peer"] for m in sink.messages[before:]]
        check.true(len(peers) == 2 and peers[0] != peers[1],
                   "idle: a new connection after the idle timeout: %r" % peers)
        conn.close()

        # 5. BODY=8BITMIME and SMTPUTF8 when the message needs them and they are offered.
        utf8_sink = tl.Sink(smtputf8=True)
        try:
            conn = out.connect()
            body8 = "X-Original-Start: yes\r\nSubject: caf\u00e9\r\n\r\n\u00fcml\u00e4ut\r\n"
            job = tl.make_job(root, body8.encode("utf-8"), ["j\u00fcrgen@d\u00e9st.test"],
                              sender="s\u00e9nder@origin.test",
                              nexthop="[127.0.0.1]:%d" % utf8_sink.port, smtputf8=True,
                              eight_bit=True)
            result = conn.run(job)
            conn.close()
            check.eq(tl.outcomes(result)[0][0], "OUTCOME_OK", "SMTPUTF8 offered: delivered")
            msgs = utf8_sink.messages
            check.eq(len(msgs), 1, "SMTPUTF8 message at the sink")
            if msgs:
                opts = [o.upper() for o in msgs[0]["mail_options"]]
                check.true("BODY=8BITMIME" in opts, "BODY=8BITMIME sent: %r" % opts)
                check.true("SMTPUTF8" in opts, "SMTPUTF8 sent: %r" % opts)
                check.eq(msgs[0]["rcpt_tos"], ["j\u00fcrgen@d\u00e9st.test"], "UTF-8 recipient")
                check.true(split_message(msgs[0]["content"])[1] == body8.encode("utf-8"),
                           "8-bit body intact")
        finally:
            utf8_sink.stop()

        # 6. The sink hangs up after the data instead of answering it.
        conn = out.connect()
        before = len(sink.messages)
        job = tl.make_job(root, b"Subject: hangup\r\n\r\nx\r\n",
                          ["hangup@dest.test", "perm@dest.test"], nexthop=nexthop)
        result = conn.run(job)
        got = tl.outcomes(result)
        check.eq(got[0][:2], ("OUTCOME_TEMPFAIL", "4.4.2"), "hangup after data: deferred")
        check.true("lost connection" in got[0][2] and "end of data" in got[0][2],
                   "hangup text %r" % (got[0][2],))
        check.eq(got[1][:2], ("OUTCOME_PERMFAIL", "5.1.1"), "hangup: RCPT 550 kept")
        check.eq(result.open_session, "", "hangup: no open session")
        check.eq(len(sink.messages), before, "hangup: nothing stored")
        # The child reconnects for the next job.
        job = tl.make_job(root, b"X-Original-Start: yes\r\n\r\nafter\r\n", ["ok@dest.test"],
                          nexthop=nexthop)
        check.eq(tl.outcomes(conn.run(job))[0][0], "OUTCOME_OK", "delivery after a hangup")
        conn.close()

        # 7. Nobody listening: tempfail with connection_failure.
        dead = mh.free_port()
        conn = out.connect()
        job = tl.make_job(root, b"Subject: x\r\n\r\ny\r\n", ["a@dest.test", "b@dest.test"],
                          nexthop="[127.0.0.1]:%d" % dead)
        result = conn.run(job)
        got = tl.outcomes(result)
        check.eq([got[0][:2], got[1][:2]], [("OUTCOME_TEMPFAIL", "4.4.1")] * 2,
                 "refused: both recipients deferred")
        check.true("Connection refused" in got[0][2], "refused text %r" % (got[0][2],))
        check.eq(result.connection_failure, True, "refused: connection_failure")
        check.eq(result.open_session, "", "refused: no session")
        check.eq(result.outcome, 2, "refused: job-level TEMPFAIL")
        conn.close()
    finally:
        logs = "".join(f.log() for f in farms)
        for f in farms:
            f.stop()
        sink.stop()
    check.done(logs)


if __name__ == "__main__":
    main()
