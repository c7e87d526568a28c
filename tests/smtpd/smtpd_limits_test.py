"""Per-client limits of the mailfarm-smtpd farm (Postfix's anvil), with the
real farm and raw sockets from several loopback addresses: one address
holding 100 idle sessions does not lock another out (it gets its banner and
sends); connection, message and recipient rates; the short idle timeout once
the farm is near max_children; the total session deadline. Wait limits are
generous guards against hangs, not benchmarks."""

import select
import socket
import smtplib
import time
import unittest

import mailfarm_harness as h
import smtpd_testlib as lib


def connect(port, source, timeout=30):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0))


def first_reply(sock):
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace")


class Case(unittest.TestCase):
    def start(self, **kw):
        server = lib.Smtpd(**kw)
        self.addCleanup(server.stop)
        return server

    def hold(self, sock):
        self.addCleanup(sock.close)
        return sock


class ConcurrencyTest(Case):
    def test_one_address_with_100_idle_sessions_does_not_lock_out_another(self):
        # max_children 32: the default per-client limit is 16 sessions.
        server = self.start()
        held = [self.hold(connect(server.port, "127.0.0.2")) for _ in range(100)]
        replies = [first_reply(s) for s in held]
        admitted = [r for r in replies if r.startswith("220 ")]
        refused = [r for r in replies if r.startswith("421 ")]
        self.assertEqual(len(admitted), 16, replies)
        self.assertEqual(len(refused), 84, replies)
        self.assertEqual(refused[0].strip(),
                         "421 4.7.0 mx.test Error: too many connections from 127.0.0.2")
        # Another address: its banner within the 5 s, then a message.
        other = self.hold(connect(server.port, "127.0.0.3", timeout=5))
        self.assertTrue(first_reply(other).startswith("220 "))
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30,
                          source_address=("127.0.0.3", 0)) as s:
            s.sendmail("c@client.test", ["alice@example.test"], b"Subject: in\r\n\r\nhi\r\n")
        h.wait_for(lambda: server.messages_for("alice"), 30, what="the other client's message")
        self.assertIn("Connection concurrency limit exceeded: 17 from [127.0.0.2] "
                      "for service smtp", server.log())
        # The held sessions are still served.
        for s in held:
            if replies[held.index(s)].startswith("220 "):
                s.sendall(b"NOOP\r\n")
                self.assertTrue(first_reply(s).startswith("250 "))
                break


class RateTest(Case):
    def test_connection_message_and_recipient_rates(self):
        server = self.start(extra="client_connection_rate_limit: 4 "
                                  "client_message_rate_limit: 2 "
                                  "client_recipient_rate_limit: 3")
        r = lib.Raw(server.port, source="127.0.0.4")
        r.expect(220)
        r.send("EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<u1@example.test>\r\n"
               "RCPT TO:<u2@example.test>\r\nRCPT TO:<u3@example.test>\r\n"
               "RCPT TO:<u4@example.test>\r\nRSET\r\nMAIL FROM:<a@c.test>\r\nRSET\r\n"
               "MAIL FROM:<a@c.test>\r\n")
        self.assertEqual(r.codes(6), [250, 250, 250, 250, 250, 450])
        self.assertEqual(r.codes(4)[3], 450)
        r.send("QUIT\r\n")
        r.expect(221)
        r.close()
        log = server.log()
        self.assertIn("Recipient address rate limit exceeded: 4 from [127.0.0.4]", log)
        self.assertIn("Message delivery request rate limit exceeded: 3 from [127.0.0.4]", log)
        codes = []
        for _ in range(3):  # the 2nd, 3rd and 4th connection pass, the 5th does not
            s = connect(server.port, "127.0.0.4")
            codes.append(first_reply(s)[:3])
            s.close()
        s = connect(server.port, "127.0.0.4")
        last = first_reply(s)
        s.close()
        self.assertEqual(codes, ["220", "220", "220"])
        self.assertEqual(last.strip(),
                         "421 4.7.0 mx.test Error: too many connections from 127.0.0.4")
        # Another address is not affected; a trusted one is never limited.
        for source in ("127.0.0.5", "127.0.0.1"):
            s = connect(server.port, source)
            self.assertTrue(first_reply(s).startswith("220 "), source)
            s.close()


class StressTest(Case):
    def test_idle_sessions_time_out_early_when_the_farm_is_nearly_full(self):
        # 10 children at most, all held by idle clients; stressed from 8
        # sessions on. With the normal idle timeout (300 s) an 11th client
        # would wait longer than the test does.
        server = self.start(extra="farm { start_children: 2 min_spare: 1 max_spare: 10 "
                                  "max_children: 10 } client_connection_count_limit: 10 "
                                  "stress_command_timeout_ms: 2000")
        held = []
        for i in range(10):
            s = self.hold(connect(server.port, "127.0.1.%d" % (i + 1), timeout=120))
            self.assertTrue(first_reply(s).startswith("220 "))
            held.append(s)
        late = self.hold(connect(server.port, "127.0.0.6", timeout=60))
        self.assertTrue(first_reply(late).startswith("220 "))
        readable, _, _ = select.select(held, [], [], 0)
        timed_out = [first_reply(s).strip() for s in readable]
        self.assertIn("421 4.4.2 mx.test Error: timeout exceeded", timed_out)
        self.assertIn("timed out under stress", server.log())

    def test_quiet_farm_keeps_the_normal_idle_timeout(self):
        server = self.start(extra="stress_command_timeout_ms: 500")
        s = self.hold(connect(server.port, "127.0.0.7", timeout=30))
        self.assertTrue(first_reply(s).startswith("220 "))
        time.sleep(3)  # far past the stress timeout; not stressed, so still open
        s.sendall(b"NOOP\r\n")
        self.assertTrue(first_reply(s).startswith("250 "))


class DeadlineTest(Case):
    def test_session_deadline_ends_a_busy_session(self):
        server = self.start(extra="max_session_ms: 3000")
        r = lib.Raw(server.port, source="127.0.0.8", timeout=60)
        r.expect(220)
        codes = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r.send("NOOP\r\n")
            code, lines = r.reply()
            codes.append(code)
            if code != 250:
                break
            time.sleep(0.3)
        self.assertEqual(codes[-1], 421, codes)
        self.assertIn("session deadline reached for [127.0.0.8]", server.log())


if __name__ == "__main__":
    unittest.main(verbosity=2, warnings="ignore")
