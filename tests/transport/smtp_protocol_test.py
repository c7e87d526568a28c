"""mailfarm-transport smtp channel: protocol details against a hand-driven server.

PIPELINING (MAIL, RCPT and DATA arrive in one write), a server without
PIPELINING (one command at a time), MAIL FROM refused 5xx/4xx with the session
kept for the next transaction, the end of DATA refused, the connection dropped in the middle of
DATA (every recipient deferred, no open session), a 554 greeting (bounced),
SMTPUTF8 needed but not offered (bounced 5.6.7), a SIZE limit (bounced 5.3.4),
a 1 MB body with dot lines arriving intact, policy MAY retrying in clear after
a failed TLS handshake, a CR LF in an address refused, a server that never
greets (greeting timeout, and the Job's deadline cutting a longer one); and MX resolution through a fake
DNS server: preference order with fallback to the next MX, null MX (5.1.10),
NXDOMAIN (5.1.2), no MX -> the domain's A record, and a job without nexthop
holding two domains (one transaction per domain).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mailfarm_harness as mh  # noqa: E402
import transport_testlib as tl  # noqa: E402


def unstuff(data):
    """What a server stores from DATA bytes (RFC 5321 4.5.2), terminator removed."""
    assert data.endswith(b"\r\n.\r\n") or data == b".\r\n", data[-20:]
    lines = data[:-3].split(b"\r\n")[:-1] if data != b".\r\n" else []
    return b"".join((l[1:] if l.startswith(b".") else l) + b"\r\n" for l in lines)


def main():
    check = tl.Check()
    root = mh.make_temp_dir("mf-tproto-")
    servers = []
    farms = []
    dns = None
    try:
        piped = tl.RawServer(ehlo_lines=("PIPELINING", "SIZE 100000000", "8BITMIME"))
        plain = tl.RawServer(ehlo_lines=("8BITMIME",))
        dropper = tl.RawServer(drop_in_data_after=1000)
        refuser = tl.RawServer(greeting="554 5.7.1 go away")
        small = tl.RawServer(ehlo_lines=("PIPELINING", "SIZE 500"))
        badtls = tl.RawServer(ehlo_lines=("PIPELINING", "STARTTLS"), starttls_hangup=True)
        mailno = tl.RawServer(mail_reply=lambda n: "550 5.7.1 sender rejected" if n == 1
                              else "451 4.3.2 slow down" if n == 2 else "250 2.1.0 ok")
        enddeny = tl.RawServer(ehlo_lines=("8BITMIME",), end_reply="554 5.7.0 content rejected")
        servers += [piped, plain, dropper, refuser, small, badtls, mailno, enddeny]
        dns = tl.FakeDns({
            ("pref.test", "MX"): [(20, "up.pref.test"), (10, "down.pref.test")],
            ("up.pref.test", "A"): ["127.0.0.1"],
            ("down.pref.test", "A"): ["127.0.0.2"],  # nothing listens there
            ("nullmx.test", "MX"): [(0, "")],
            ("nomx.test", "MX"): "NODATA",
            ("nomx.test", "A"): ["127.0.0.1"],
        })
        config = tl.farm_config(root, [
            'channel { name: "out" type: SMTP farm { start_children: 1 min_spare: 1 '
            'max_spare: 2 } smtp { tls { level: MAY } command_timeout_ms: 20000 } }',
            'channel { name: "slow" type: SMTP farm { start_children: 1 min_spare: 1 '
            'max_spare: 2 } smtp { tls { level: NONE } greeting_timeout_ms: 700 } }',
            'channel { name: "dns" type: SMTP farm { start_children: 1 min_spare: 1 '
            'max_spare: 2 } smtp { tls { level: NONE } dns_servers: "127.0.0.1:%d" '
            'default_port: %d connect_timeout_ms: 5000 } }' % (dns.port, piped.port),
        ])
        out = tl.TransportFarm(root, config, "out")
        farms.append(out)

        def run(server, recipients, body=b"Subject: t\r\n\r\nhello\r\n", **kw):
            conn = out.connect()
            try:
                return conn.run(tl.make_job(root, body, recipients,
                                            nexthop="[127.0.0.1]:%d" % server.port, **kw))
            finally:
                conn.close()

        # PIPELINING: the command group is one write; a big dotted body is intact.
        big = b"Subject: big\r\n\r\n" + b"".join(
            (b"." * (i % 3)) + b"line %d of a long message body\r\n" % i for i in range(30000))
        r = run(piped, ["a@dest.test", "b@dest.test"], body=big)
        check.eq([o[0] for o in tl.outcomes(r).values()], ["OUTCOME_OK"] * 2, "pipelined: ok")
        check.true(any(b"MAIL FROM:<sender@origin.test> SIZE=" in c and
                       b"RCPT TO:<a@dest.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n" in c
                       for c in piped.chunks),
                   "MAIL, RCPTs and DATA in one chunk: %r" % piped.chunks[:4])
        check.eq(len(piped.messages), 1, "pipelined: one message")
        if piped.messages:
            stored = unstuff(piped.messages[0])
            check.true(stored.endswith(big), "1 MB dotted body intact (%d vs %d bytes)"
                       % (len(stored), len(big)))

        # No PIPELINING: each command waits for its reply.
        r = run(plain, ["a@dest.test", "b@dest.test"])
        check.eq([o[0] for o in tl.outcomes(r).values()], ["OUTCOME_OK"] * 2, "plain: ok")
        check.true(all(b"\r\n" not in c.rstrip(b"\r\n") for c in plain.chunks
                       if c.startswith((b"MAIL", b"RCPT"))),
                   "one command per write without PIPELINING: %r" % plain.chunks)

        # MAIL FROM refused (pipelined): every recipient gets the MAIL reply; the
        # sloppy server's 354 is ended with an empty message; the session lives on.
        conn = out.connect()
        outs = []
        for i in range(3):
            r = conn.run(tl.make_job(root, b"Subject: m\r\n\r\nx\r\n", ["a@d.test", "b@d.test"],
                                     nexthop="[127.0.0.1]:%d" % mailno.port))
            outs.append(r)
        conn.close()
        got = tl.outcomes(outs[0])
        check.eq([g[:2] for g in got.values()], [("OUTCOME_PERMFAIL", "5.7.1")] * 2,
                 "MAIL 550: both bounced")
        check.true("sender rejected (in reply to MAIL FROM command)" in got[0][2],
                   "MAIL 550 text %r" % (got[0][2],))
        check.eq([g[:2] for g in tl.outcomes(outs[1]).values()],
                 [("OUTCOME_TEMPFAIL", "4.3.2")] * 2, "MAIL 451: both deferred")
        check.eq([g[0] for g in tl.outcomes(outs[2]).values()], ["OUTCOME_OK"] * 2,
                 "third transaction on the same session delivered")
        check.eq(mailno.connections, 1, "MAIL refusals keep the session")
        check.eq(mailno.messages[:2], [b".\r\n", b".\r\n"],
                 "an unwanted 354 is ended with an empty message")
        check.eq(mailno.commands.count("RSET"), 2, "RSET between transactions")

        # The end of DATA refused (no PIPELINING): accepted recipients bounced.
        r = run(enddeny, ["a@d.test", "b@d.test"])
        got = tl.outcomes(r)
        check.eq([g[:2] for g in got.values()], [("OUTCOME_PERMFAIL", "5.7.0")] * 2,
                 "end of DATA 554: bounced")
        check.true("(in reply to end of DATA command)" in got[0][2], "554 text %r" % (got[0][2],))

        # Dropped mid-DATA.
        r = run(dropper, ["a@dest.test", "b@dest.test"], body=big)
        got = tl.outcomes(r)
        check.eq([g[:2] for g in got.values()], [("OUTCOME_TEMPFAIL", "4.4.2")] * 2,
                 "dropped mid-DATA: deferred")
        check.true("lost connection" in got[0][2] and "message body" in got[0][2],
                   "dropped text %r" % (got[0][2],))
        check.eq(r.open_session, "", "dropped: no open session")
        check.eq(len(dropper.messages), 0, "dropped: nothing stored")

        # 554 greeting.
        r = run(refuser, ["a@dest.test"])
        got = tl.outcomes(r)[0]
        check.eq(got[:2], ("OUTCOME_PERMFAIL", "5.7.1"), "554 greeting: bounced")
        check.true("refused to talk to me: 554 5.7.1 go away" in got[2], "554 text %r" % (got[2],))

        # SMTPUTF8 needed but not offered.
        r = run(piped, ["a@dest.test"], smtputf8=True)
        got = tl.outcomes(r)[0]
        check.eq(got[:2], ("OUTCOME_PERMFAIL", "5.6.7"), "SMTPUTF8 not offered: bounced")
        check.true("SMTPUTF8 is required" in got[2], "SMTPUTF8 text %r" % (got[2],))

        # SIZE limit.
        r = run(small, ["a@dest.test"], body=b"Subject: x\r\n\r\n" + b"x" * 1000 + b"\r\n")
        got = tl.outcomes(r)[0]
        check.eq(got[:2], ("OUTCOME_PERMFAIL", "5.3.4"), "over SIZE: bounced")
        check.true("exceeds size limit 500" in got[2], "SIZE text %r" % (got[2],))
        check.eq(len(small.messages), 0, "over SIZE: nothing sent")

        # TLS policy MAY: a failed handshake is retried in clear on a new connection.
        r = run(badtls, ["a@dest.test"])
        check.eq(tl.outcomes(r)[0][0], "OUTCOME_OK", "may: delivered after TLS failure")
        check.eq(badtls.connections, 2, "may: second connection without TLS")
        check.eq(len(badtls.messages), 1, "may: message in clear")
        check.eq(sum(1 for c in badtls.commands if c == "STARTTLS"), 1,
                 "may: STARTTLS tried once")

        # An address with CR LF cannot inject commands.
        before = len(piped.messages)
        r = run(piped, ["evil@dest.test>\r\nRSET\r\nRCPT TO:<x@y.test", "good@dest.test"])
        got = tl.outcomes(r)
        check.eq(got[0][:2], ("OUTCOME_PERMFAIL", "5.1.3"), "CRLF address refused")
        check.eq(got[1][0], "OUTCOME_OK", "the other recipient delivered")
        check.true("RCPT TO:<x@y.test>" not in piped.commands, "nothing injected")
        check.true("\nRCPT TO:<x@y.test>, relay" not in out.log(),
                   "no line break injected into the log")
        check.eq(len(piped.messages), before + 1, "message sent for the good recipient")

        # A server that accepts the connection but never greets: greeting timeout.
        import socket
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever writes
        try:
            slow = tl.TransportFarm(root, config, "slow")
            farms.append(slow)
            conn = slow.connect()
            r = conn.run(tl.make_job(root, b"Subject: x\r\n\r\ny\r\n", ["a@dest.test"],
                                     channel="slow",
                                     nexthop="[127.0.0.1]:%d" % silent.getsockname()[1]))
            conn.close()
            got = tl.outcomes(r)[0]
            check.eq(got[:2], ("OUTCOME_TEMPFAIL", "4.4.2"), "greeting timeout: deferred")
            check.true("timed out while receiving the initial server greeting" in got[2],
                       "greeting timeout text %r" % (got[2],))
            check.eq(r.connection_failure, True, "greeting timeout: connection_failure")
            # Channel "out" waits 300 s for a greeting; the job's deadline cuts that.
            import time
            conn = out.connect()
            job = tl.make_job(root, b"Subject: x\r\n\r\ny\r\n", ["a@dest.test"],
                              nexthop="[127.0.0.1]:%d" % silent.getsockname()[1])
            job.deadline_unix_ms = int(time.time() * 1000) + 1500
            r = conn.run(job)  # without the deadline: 300 s, past the socket's 120 s
            conn.close()
            got = tl.outcomes(r)[0]
            check.eq(got[:2], ("OUTCOME_TEMPFAIL", "4.4.2"), "deadline: deferred")
            check.true("timed out while receiving the initial server greeting" in got[2],
                       "deadline text %r" % (got[2],))
        finally:
            silent.close()

        # MX through the fake DNS server.
        dnsfarm = tl.TransportFarm(root, config, "dns")
        farms.append(dnsfarm)

        def run_dns(domain):
            conn = dnsfarm.connect()
            try:
                return conn.run(tl.make_job(root, b"Subject: mx\r\n\r\nvia mx\r\n",
                                            ["u@" + domain], channel="dns"))
            finally:
                conn.close()

        before = len(piped.messages)
        r = run_dns("pref.test")
        got = tl.outcomes(r)[0]
        check.eq(got[0], "OUTCOME_OK", "MX: delivered via the second MX %r" % (got,))
        check.true(r.recipients[0].relay.startswith("up.pref.test[127.0.0.1]:"),
                   "MX relay %r" % r.recipients[0].relay)
        check.eq(len(piped.messages), before + 1, "MX: message at the server")
        log = dnsfarm.log()
        check.true(log.find("down.pref.test[127.0.0.2]") != -1,
                   "the preferred MX was tried first")
        check.eq(r.open_session, "dns pref.test", "MX: session key is channel + domain")

        r = run_dns("nullmx.test")
        got = tl.outcomes(r)[0]
        check.eq(got[:2], ("OUTCOME_PERMFAIL", "5.1.10"), "null MX: bounced")
        check.true("null MX" in got[2], "null MX text %r" % (got[2],))

        r = run_dns("nxdomain.test")
        got = tl.outcomes(r)[0]
        check.eq(got[:2], ("OUTCOME_PERMFAIL", "5.1.2"), "NXDOMAIN: bounced")
        check.eq(r.connection_failure, False, "NXDOMAIN is no connection failure")

        # One job, no nexthop, recipients in two domains: one transaction each.
        before = len(piped.messages)
        commands_before = len(piped.commands)
        conn = dnsfarm.connect()
        r = conn.run(tl.make_job(root, b"Subject: two\r\n\r\ntwo domains\r\n",
                                 ["a@pref.test", "b@nomx.test", "c@PREF.test"], channel="dns"))
        conn.close()
        check.eq([g[0] for g in tl.outcomes(r).values()], ["OUTCOME_OK"] * 3,
                 "two domains: all delivered")
        check.eq(len(piped.messages), before + 2, "two domains: two transactions")
        rcpts = [c for c in piped.commands[commands_before:] if c.startswith("RCPT")]
        check.eq(rcpts, ["RCPT TO:<a@pref.test>", "RCPT TO:<c@PREF.test>",
                         "RCPT TO:<b@nomx.test>"], "two domains: recipients grouped by domain")
        relays = {x.index: x.relay for x in r.recipients}
        check.true(relays.get(0, "").startswith("up.pref.test[") and
                   relays.get(2, "").startswith("up.pref.test[") and
                   relays.get(1, "").startswith("nomx.test["),
                   "two domains: relays %r" % relays)
        check.eq(r.open_session, "dns nomx.test", "two domains: the last session stays open")

        before = len(piped.messages)
        r = run_dns("nomx.test")
        check.eq(tl.outcomes(r)[0][0], "OUTCOME_OK", "no MX: delivered to the A record")
        check.eq(len(piped.messages), before + 1, "no MX: message at the server")
        check.true(("nomx.test", "A") in dns.queries, "A lookup after NODATA MX")
    finally:
        logs = "".join(f.log() for f in farms)
        for f in farms:
            f.stop()
        for s in servers:
            s.stop()
        if dns:
            dns.stop()
    check.done(logs)


if __name__ == "__main__":
    main()
