"""mailfarm-smtpd's side of inject.sock, against a fake scheduler whose verdict
the test chooses: "queued as" only after the durable ack, tempfail -> 451,
reject -> 554, no reply / closed / absent scheduler -> 451 (never 250), the
body streamed while DATA arrives, and one inject connection reused across
messages."""

import os
import unittest

import mailfarm_harness as h
import smtpd_testlib as lib

TXN = "MAIL FROM:<a@c.test>\r\nRCPT TO:<ann@example.test>\r\nDATA\r\n"


class InjectTest(unittest.TestCase):
    def start(self, scheduler="accept", extra=""):
        server = lib.Smtpd(scheduler=scheduler, extra=extra)
        self.addCleanup(server.stop)
        return server

    def session(self, server):
        r = lib.Raw(server.port)
        r.expect(220)
        r.send("EHLO c.test\r\n")
        r.expect(250)
        return r

    def send_message(self, r, body="Subject: t\r\n\r\nbody\r\n"):
        r.send(TXN)
        self.assertEqual(r.codes(3), [250, 250, 354])
        r.send(body + ".\r\n")
        return r.reply()

    def test_accepted_messages_reuse_one_connection(self):
        server = self.start()
        r = self.session(server)
        for i in range(3):
            code, lines = self.send_message(r, "Subject: %d\r\n\r\nmessage %d\r\n" % (i, i))
            self.assertEqual(code, 250)
            self.assertEqual(lines[0], "250 2.0.0 Ok: queued as FAKE%04d" % (i + 1))
        self.assertEqual(server.scheduler.connections, 1)
        req, body = server.scheduler.messages[2]
        self.assertEqual(req.sender, "a@c.test")
        self.assertEqual(list(req.recipients), ["ann@example.test"])
        self.assertEqual(req.client.address, "127.0.0.1")
        self.assertEqual(req.client.helo, "c.test")
        self.assertEqual(req.client.protocol, "ESMTP")
        self.assertTrue(body.startswith(b"Received: from c.test ([127.0.0.1])\r\n"), body)
        self.assertTrue(body.endswith(b"\r\nSubject: 2\r\n\r\nmessage 2\r\n"), body)

    def test_storage_tempfail_gives_452(self):
        # The scheduler's 4.3.1 (insufficient system storage) is Postfix's
        # "452 4.3.1"; any other tempfail stays 451.
        server = self.start("tempfail")
        code, lines = self.send_message(self.session(server))
        self.assertEqual(code, 452)
        self.assertIn("4.3.1", lines[0])

    def test_reject_gives_554(self):
        server = self.start("reject")
        code, lines = self.send_message(self.session(server))
        self.assertEqual(code, 554)
        self.assertIn("5.7.1 Message refused by policy", lines[0])

    def test_no_reply_gives_451_after_inject_timeout(self):
        server = self.start("hang", extra="inject_timeout_ms: 1500")
        r = self.session(server)
        code, _ = self.send_message(r)
        self.assertEqual(code, 451)
        r.send("NOOP\r\n")
        self.assertEqual(r.reply()[0], 250)

    def test_scheduler_closing_gives_451(self):
        server = self.start("close")
        code, _ = self.send_message(self.session(server))
        self.assertEqual(code, 451)

    def test_absent_scheduler_gives_451_at_data_then_recovers(self):
        server = self.start(scheduler=None)
        r = self.session(server)
        r.send(TXN)
        code = r.codes(3)
        self.assertEqual(code, [250, 250, 451])
        server.scheduler = lib.FakeScheduler(os.path.join(server.run_dir, "inject.sock"))
        code, lines = self.send_message(r)
        self.assertEqual(code, 250, lines)

    def test_scheduler_restart_between_messages(self):
        server = self.start()
        r = self.session(server)
        self.assertEqual(self.send_message(r)[0], 250)
        server.scheduler.close()
        server.scheduler = lib.FakeScheduler(os.path.join(server.run_dir, "inject.sock"))
        # The kept connection is dead; smtpd must notice and reconnect, not 250 into the void.
        code, lines = self.send_message(r)
        self.assertEqual(code, 250, lines)
        self.assertEqual(len(server.scheduler.messages), 1)

    def test_body_is_streamed_while_data_arrives(self):
        server = self.start(extra="max_message_bytes: 10000000")
        r = self.session(server)
        r.send(TXN)
        self.assertEqual(r.codes(3), [250, 250, 354])
        line = "x" * 98 + "\r\n"
        r.send("Subject: big\r\n\r\n" + line * 4000)  # 400 kB, no end of data yet
        h.wait_for(lambda: server.scheduler.partial_bytes >= 256 * 1024, 60,
                   what="body chunks reaching the scheduler before the end of data")
        self.assertEqual(server.scheduler.messages, [])
        r.send(".\r\n")
        self.assertEqual(r.reply()[0], 250)
        body = server.scheduler.messages[0][1]
        self.assertTrue(body.startswith(b"Received: "))
        self.assertTrue(body.endswith(("Subject: big\r\n\r\n" + line * 4000).encode()))

    def test_rejected_data_never_reaches_the_queue(self):
        server = self.start(extra="max_message_bytes: 1000")
        r = self.session(server)
        code, _ = self.send_message(r, "Subject: big\r\n\r\n" + ("y" * 98 + "\r\n") * 20)
        self.assertEqual(code, 552)
        code, _ = self.send_message(r, "Subject: smuggle\r\n\r\na\n.\nb\r\n")
        self.assertEqual(code, 550)
        code, _ = self.send_message(r, "Subject: fine\r\n\r\nok\r\n")
        self.assertEqual(code, 250)
        self.assertEqual(len(server.scheduler.messages), 1)
        self.assertIn(b"Subject: fine", server.scheduler.messages[0][1])
        # farm::InjectClient sends a message under 64 KiB only at its end, so
        # the refused ones never reached the scheduler at all: nothing of them
        # was sent, nothing had to be aborted there.
        self.assertEqual(server.scheduler.aborted, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2, warnings="ignore")
