"""mailfarm-smtpd against real clients (swaks, smtplib, raw sockets): plain,
pipelined and STARTTLS sessions, relay control by source address, every limit
and bad-input case with its exact reply code, SMTP smuggling, PROXY v1/v2,
IPv6. Each server is the real mailfarm-smtpd farm; SERVER picks what sits
behind inject.sock (see smtpd_testlib)."""

import os
import smtplib
import socket
import ssl
import struct
import subprocess
import unittest

import mailfarm_harness as h
import smtpd_testlib as lib

# The real system (mailfarmd + scheduler + farms) once it is built; tests that
# need a scheduler with a chosen verdict live in smtpd_inject_test.py.
SERVER = lib.RealSystem if os.environ.get("SMTPD_TEST_FAKE") != "1" else lib.Smtpd


class ServerCase(unittest.TestCase):
    def start(self, **kw):
        server = SERVER(**kw)
        self.addCleanup(server.stop)
        return server


class PlainSessionTest(ServerCase):
    @classmethod
    def setUpClass(cls):
        cls.server = SERVER(extra="max_errors: 8 max_recipients: 3 max_message_bytes: 100000")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def raw(self, source=None):
        r = lib.Raw(self.server.port, source=source)
        r.expect(220)
        return r

    def test_smtplib_message_is_queued_and_delivered(self):
        with smtplib.SMTP("127.0.0.1", self.server.port, timeout=60) as s:
            code, banner = s.ehlo("client.test")
            self.assertEqual(code, 250)
            for ext in ("pipelining", "size", "enhancedstatuscodes", "8bitmime", "smtputf8"):
                self.assertTrue(s.has_extn(ext), ext)
            self.assertFalse(s.has_extn("starttls"))  # no certificate configured
            self.assertEqual(s.esmtp_features["size"], "100000")
            s.mail("sender@client.test")
            s.rcpt("alice@example.test")
            code, text = s.data(b"Subject: plain\r\n\r\nhello alice\r\n.leading dot\r\n")
            self.assertEqual(code, 250)
            self.assertRegex(text.decode(), r"^2\.0\.0 Ok: queued as \S+$")
        msgs = h.wait_for(lambda: self.server.messages_for("alice"), 60, what="alice's message")
        self.assertIn(b"hello alice", msgs[0])
        self.assertIn(b"\n.leading dot", msgs[0])
        self.assertRegex(msgs[0], rb"Received: from client\.test \(\[127\.0\.0\.1\]\)\r?\n"
                                  rb"\tby mx\.test \(mailfarm\) with ESMTP\r?\n\tfor "
                                  rb"<alice@example\.test>; ")

    def test_swaks_plain_and_pipelined(self):
        for extra in ([], ["--pipeline"]):
            out = subprocess.run(
                ["swaks", "--server", "127.0.0.1", "--port", str(self.server.port),
                 "--from", "s@client.test", "--to", "bob@example.test", "--helo", "swaks.test",
                 "--header", "Subject: swaks" + ("".join(extra))] + extra,
                capture_output=True, text=True, timeout=120)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertRegex(out.stdout, r"<-\s+250 2\.0\.0 Ok: queued as \S+")
        h.wait_for(lambda: len(self.server.messages_for("bob")) >= 2, 60, what="bob's messages")

    def test_pipelined_commands_in_one_packet(self):
        r = self.raw(source="127.0.0.2")
        r.send("EHLO c.test\r\n")
        r.expect(250)
        r.send("MAIL FROM:<a@c.test>\r\nRCPT TO:<carol@example.test>\r\n"
               "RCPT TO:<nobody@elsewhere.test>\r\nRCPT TO:<dave@example.test>\r\nDATA\r\n")
        self.assertEqual(r.codes(5), [250, 250, 554, 250, 354])
        r.send("Subject: pipelined\r\n\r\nbody\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        self.assertEqual(r.codes(4), [250, 250, 250, 221])
        h.wait_for(lambda: self.server.messages_for("carol") and self.server.messages_for("dave"),
                   60, what="the pipelined message")

    def test_relay_denied_from_untrusted_source(self):
        # 127.0.0.2 is not in trusted_networks (only 127.0.0.1/32 is).
        r = self.raw(source="127.0.0.2")
        r.send("EHLO c.test\r\nMAIL FROM:<a@c.test>\r\n")
        self.assertEqual(r.codes(2), [250, 250])
        r.send("RCPT TO:<victim@elsewhere.test>\r\n")
        code, lines = r.reply()
        self.assertEqual(code, 554)
        self.assertIn("5.7.1", lines[0])
        self.assertIn("Relay access denied", lines[0])
        for rcpt in ("u%elsewhere.test@example.test", "\"u@elsewhere.test\"@example.test",
                     "u@[192.0.2.1]"):
            r.send("RCPT TO:<%s>\r\n" % rcpt)
            self.assertEqual(r.reply()[0], 554, rcpt)
        r.send("RCPT TO:<erin@example.test>\r\nRCPT TO:<x@relay.test>\r\nQUIT\r\n")
        self.assertEqual(r.codes(3), [250, 250, 221])
        with smtplib.SMTP("127.0.0.1", self.server.port, source_address=("127.0.0.2", 0),
                          timeout=60) as s:
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                s.sendmail("a@c.test", ["victim@elsewhere.test"], b"Subject: x\r\n\r\nx\r\n")
            self.assertEqual(cm.exception.recipients["victim@elsewhere.test"][0], 554)

    def test_relay_allowed_from_trusted_source(self):
        r = self.raw(source="127.0.0.1")
        r.send("EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<someone@elsewhere.test>\r\n"
               "QUIT\r\n")
        self.assertEqual(r.codes(4), [250, 250, 250, 221])

    def test_bad_sequence_unknown_and_unimplemented(self):
        r = self.raw()
        r.send("MAIL FROM:<a@c.test>\r\n")
        self.assertEqual(r.reply()[0], 503)
        r.send("HELO c.test\r\nRCPT TO:<f@example.test>\r\nDATA\r\n")
        self.assertEqual(r.codes(3), [250, 503, 503])
        r.send("FROBNICATE\r\nEXPN staff\r\nVRFY f\r\nHELP\r\nNOOP\r\nQUIT\r\n")
        self.assertEqual(r.codes(6), [500, 502, 252, 214, 250, 221])

    def test_too_many_errors_gives_421_and_disconnect(self):
        r = self.raw()
        r.send("".join("BAD%d\r\n" % i for i in range(8)) + "NOOP\r\n")
        self.assertEqual(r.codes(9), [500] * 8 + [421])
        self.assertTrue(r.closed())
        self.raw().close()  # and the server keeps serving

    def test_command_line_limit_512(self):
        r = self.raw()
        r.send("NOOP " + "x" * 505 + "\r\n")  # exactly 512 octets with CRLF
        self.assertEqual(r.reply()[0], 250)
        r.send("NOOP " + "x" * 506 + "\r\n")
        code, lines = r.reply()
        self.assertEqual(code, 500)
        self.assertIn("5.5.2", lines[0])
        r.send("NOOP " + "y" * 5000 + "\r\nNOOP\r\n")
        self.assertEqual(r.codes(2), [500, 250])

    def test_nul_byte_in_command_and_data(self):
        r = self.raw()
        r.send(b"NOOP\x00\r\nEHLO c.test\r\n")
        self.assertEqual(r.codes(2), [500, 250])
        r.send("MAIL FROM:<a@c.test>\r\nRCPT TO:<gina@example.test>\r\nDATA\r\n")
        self.assertEqual(r.codes(3), [250, 250, 354])
        r.send(b"Subject: nul\r\n\r\na\x00b\r\n.\r\nNOOP\r\n")
        code, lines = r.reply()
        self.assertEqual(code, 550)
        self.assertIn("NUL", lines[0])
        self.assertEqual(r.reply()[0], 250)

    def test_text_line_limit_1000(self):
        r = self.raw()
        r.send("EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<hank@example.test>\r\nDATA\r\n")
        self.assertEqual(r.codes(4), [250, 250, 250, 354])
        r.send("Subject: long\r\n\r\n" + "z" * 1200 + "\r\n.\r\n")
        code, lines = r.reply()
        self.assertEqual(code, 500)
        self.assertIn("1000", lines[0])
        # The session goes on: a 998-octet line (1000 with CRLF) is fine.
        r.send("MAIL FROM:<a@c.test>\r\nRCPT TO:<hank@example.test>\r\nDATA\r\n")
        self.assertEqual(r.codes(3), [250, 250, 354])
        r.send("Subject: ok\r\n\r\n" + "z" * 998 + "\r\n.\r\n")
        self.assertEqual(r.reply()[0], 250)

    def test_size_announced_and_enforced(self):
        r = self.raw()
        r.send("EHLO c.test\r\n")
        self.assertIn("250-SIZE 100000", r.expect(250))
        r.send("MAIL FROM:<a@c.test> SIZE=100001\r\n")
        code, lines = r.reply()
        self.assertEqual(code, 552)
        self.assertIn("5.3.4", lines[0])
        r.send("MAIL FROM:<a@c.test> SIZE=1000\r\nRCPT TO:<ivan@example.test>\r\nDATA\r\n")
        self.assertEqual(r.codes(3), [250, 250, 354])
        r.send("Subject: big\r\n\r\n" + ("y" * 98 + "\r\n") * 1100 + ".\r\nNOOP\r\n")
        code, lines = r.reply()
        self.assertEqual(code, 552)
        self.assertEqual(r.reply()[0], 250)
        with smtplib.SMTP("127.0.0.1", self.server.port, timeout=60) as s:
            with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                s.sendmail("a@c.test", ["ivan@example.test"], b"x" * 100 + b"\r\n" * 60000)
            self.assertEqual(cm.exception.smtp_code, 552)

    def test_recipient_limit(self):
        r = self.raw()
        r.send("EHLO c.test\r\nMAIL FROM:<a@c.test>\r\n")
        self.assertEqual(r.codes(2), [250, 250])
        r.send("".join("RCPT TO:<r%d@example.test>\r\n" % i for i in range(4)))
        codes = [r.reply() for _ in range(4)]
        self.assertEqual([c for c, _ in codes], [250, 250, 250, 452])
        self.assertIn("4.5.3", codes[3][1][0])

    def test_syntax_errors(self):
        r = self.raw()
        r.send("EHLO\r\nEHLO c.test\r\nMAIL FROM:a@c.test\r\nMAIL FROM:<a@c.test> FOO=1\r\n"
               "MAIL FROM:<j\xf6@c.test>\r\nMAIL FROM:<>\r\nRCPT TO:<bad address@x>\r\n"
               "RCPT TO:<@x>\r\nQUIT\r\n".encode("latin-1"))
        # "j\xf6" is not even UTF-8: a bad address
        self.assertEqual(r.codes(9), [501, 250, 501, 555, 501, 250, 501, 501, 221])

    def test_smtputf8(self):
        r = self.raw()
        r.send("EHLO c.test\r\nMAIL FROM:<j\u00f6rg@c.test>\r\n".encode())
        self.assertEqual(r.codes(2), [250, 553])
        with smtplib.SMTP("127.0.0.1", self.server.port, timeout=60) as s:
            s.ehlo("c.test")
            code, _ = s.mail("j\u00f6rg@c.test", ["SMTPUTF8", "BODY=8BITMIME"])
            self.assertEqual(code, 250)
            self.assertEqual(s.rcpt("jack@example.test")[0], 250)
            code, text = s.data("Subject: \u00fcml\u00e4ut\r\n\r\nb\u00f6dy\r\n".encode())
            self.assertEqual(code, 250, text)

    def test_smuggling_fake_end_of_data_is_never_executed(self):
        for fake in (b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"):
            r = self.raw()
            r.send("EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<kate@example.test>\r\nDATA\r\n")
            self.assertEqual(r.codes(4), [250, 250, 250, 354])
            r.send(b"Subject: outer\r\n\r\nouter body" + fake +
                   b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<leo@example.test>\r\nDATA\r\n"
                   b"Subject: smuggled\r\n\r\nsmuggled\r\n.\r\nNOOP\r\n")
            code, lines = r.reply()
            self.assertEqual(code, 550, (fake, lines))
            self.assertIn("bare", lines[0])
            # The very next reply is the NOOP's: nothing smuggled ran.
            self.assertEqual(r.reply(), (250, ["250 2.0.0 Ok"]))
            r.close()
        r = self.raw()  # a clean message afterwards still goes through
        r.send("EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<kate@example.test>\r\nDATA\r\n")
        self.assertEqual(r.codes(4), [250, 250, 250, 354])
        r.send("Subject: clean\r\n\r\nclean\r\n.\r\n")
        self.assertEqual(r.reply()[0], 250)
        h.wait_for(lambda: self.server.messages_for("kate"), 60, what="kate's clean message")
        self.assertEqual(len(self.server.messages_for("kate")), 1)
        self.assertEqual(self.server.messages_for("leo"), [])


class ConcurrencyTest(ServerCase):
    def test_20_concurrent_sessions_all_delivered(self):
        """Postfix's smtp-source, 20 sessions, messages kept per connection and not."""
        server = self.start(
            extra="farm { start_children: 4 min_spare: 4 max_spare: 24 max_children: 40 }")
        for keep in (["-d"], []):
            out = subprocess.run(
                ["smtp-source", "-s", "20", "-m", "100", "-l", "3000", "-f", "src@c.test",
                 "-t", "bench@example.test", "-M", "source.test"] + keep +
                ["127.0.0.1:%d" % server.port],
                capture_output=True, text=True, timeout=300)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        h.wait_for(lambda: len(server.messages_for("bench")) >= 200, 180, interval=0.5,
                   what="200 messages in bench's Maildir")
        self.assertEqual(len(server.messages_for("bench")), 200)


class SchedulerKilledTest(ServerCase):
    """The real scheduler SIGKILLed under smtpd: 4xx, never 250, then recovery."""

    def send(self, r, user, subject):
        r.send("MAIL FROM:<a@c.test>\r\nRCPT TO:<%s@example.test>\r\nDATA\r\n" % user)
        codes = r.codes(3)
        self.assertEqual(codes[:2], [250, 250])
        if codes[2] != 354:
            return codes[2]
        r.send("Subject: %s\r\n\r\nbody\r\n.\r\n" % subject)
        return r.reply()[0]

    def test_scheduler_killed_gives_4xx_never_250(self):
        if SERVER is not lib.RealSystem:
            self.fail("needs the real system")
        import signal
        # mailfarmd waits 20 s before restarting the scheduler: the window under test.
        server = self.start(system_extra="supervisor { restart_backoff_min_ms: 20000 }")
        r = lib.Raw(server.port)
        r.expect(220)
        r.send("EHLO c.test\r\n")
        r.expect(250)
        self.assertEqual(self.send(r, "tom", "before"), 250)
        # Delivered first, so that what follows depends on smtpd alone (not on
        # whether the restarted scheduler re-reads its spool).
        h.wait_for(lambda: server.messages_for("tom"), 60, what="the first message")
        pid = server.pid_of("mailfarm-scheduler")
        self.assertIsNotNone(pid)
        os.kill(pid, signal.SIGKILL)
        h.wait_for(lambda: server.pid_of("mailfarm-scheduler") != pid, 30, what="the kill")
        # The kept inject connection (this session) and fresh ones (new sessions).
        self.assertIn(self.send(r, "tom", "during-1"), (421, 451))
        for i in range(3):
            r2 = lib.Raw(server.port)
            r2.expect(220)
            r2.send("EHLO c.test\r\n")
            r2.expect(250)
            self.assertIn(self.send(r2, "tom", "during-new-%d" % i), (421, 451))
            r2.close()
        # After mailfarmd restarts the scheduler, mail flows again.
        def accepted():
            r3 = lib.Raw(server.port)
            r3.expect(220)
            r3.send("EHLO c.test\r\n")
            r3.expect(250)
            return self.send(r3, "tom", "after") == 250
        h.wait_for(accepted, 90, interval=1, what="the restarted scheduler")
        h.wait_for(lambda: b"Subject: after" in b"".join(server.messages_for("tom")), 90,
                   what="the message sent after the restart")
        joined = b"".join(server.messages_for("tom"))
        self.assertIn(b"Subject: before", joined)
        self.assertIn(b"Subject: after", joined)
        self.assertNotIn(b"Subject: during", joined)


class DefaultConfigTest(ServerCase):
    def test_no_trusted_networks_is_not_an_open_relay(self):
        server = self.start(trusted=())
        r = lib.Raw(server.port, source="127.0.0.1")
        r.expect(220)
        r.send("EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<v@elsewhere.test>\r\n"
               "RCPT TO:<mia@example.test>\r\nQUIT\r\n")
        self.assertEqual(r.codes(5), [250, 250, 554, 250, 221])


class TimeoutTest(ServerCase):
    def test_command_and_data_timeouts(self):
        server = self.start(extra="command_timeout_ms: 1500 data_timeout_ms: 1500")
        r = lib.Raw(server.port)
        r.expect(220)
        code, lines = r.reply()  # say nothing: the server gives up
        self.assertEqual(code, 421)
        self.assertIn("4.4.2", lines[0])
        self.assertTrue(r.closed())
        r = lib.Raw(server.port)
        r.expect(220)
        r.send("EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<nina@example.test>\r\nDATA\r\n")
        self.assertEqual(r.codes(4), [250, 250, 250, 354])
        r.send("Subject: stalled\r\n\r\npartial")
        self.assertEqual(r.reply()[0], 421)
        self.assertTrue(r.closed())
        lib.Raw(server.port).expect(220)  # still serving


class TlsTest(ServerCase):
    def setUp(self):
        self.certdir = h.make_temp_dir("mf-certs-")
        self.ca, cert, key = lib.make_certs(self.certdir)
        self.server = self.start(extra='tls_cert_file: "%s" tls_key_file: "%s"' % (cert, key))
        self.ctx = ssl.create_default_context(cafile=self.ca)

    def test_starttls_message_with_received_header(self):
        with smtplib.SMTP("127.0.0.1", self.server.port, local_hostname="tls.test",
                          timeout=60) as s:
            s.ehlo()
            self.assertTrue(s.has_extn("starttls"))
            s._host = "mx.test"  # verify the certificate against its name
            code, _ = s.starttls(context=self.ctx)
            self.assertEqual(code, 220)
            s.ehlo()
            self.assertFalse(s.has_extn("starttls"))
            self.assertEqual(s.sendmail("a@tls.test", ["olga@example.test"],
                                        b"Subject: tls\r\n\r\nsecret\r\n"), {})
        msgs = h.wait_for(lambda: self.server.messages_for("olga"), 60, what="the TLS message")
        self.assertRegex(msgs[0], rb"with ESMTPS\r?\n\t\(using TLSv1\.[23] with cipher \S+ "
                                  rb"\(\d+/\d+ bits\)\)")

    def test_plaintext_pipelined_after_starttls_is_discarded(self):
        r = lib.Raw(self.server.port)
        r.expect(220)
        r.send("EHLO c.test\r\n")
        r.expect(250)
        # CVE-2011-0411: commands injected behind STARTTLS in the same packet.
        r.send("STARTTLS\r\nMAIL FROM:<injected@c.test>\r\nRCPT TO:<quinn@example.test>\r\n")
        r.expect(220)
        tls = self.ctx.wrap_socket(r.sock, server_hostname="mx.test")
        r.sock = tls
        # State was reset: MAIL before EHLO is a bad sequence, and the first
        # reply is the MAIL's (the injected commands produced none).
        r.send("MAIL FROM:<a@c.test>\r\n")
        code, lines = r.reply()
        self.assertEqual(code, 503, lines)
        r.send("EHLO c.test\r\nSTARTTLS\r\nQUIT\r\n")
        lines = r.expect(250)
        self.assertNotIn("250-STARTTLS", lines)
        self.assertEqual(r.codes(2), [503, 221])

    def test_failed_handshake_does_not_kill_the_server(self):
        r = lib.Raw(self.server.port)
        r.expect(220)
        r.send("EHLO c.test\r\nSTARTTLS\r\n")
        r.expect(250)
        r.expect(220)
        r.send(b"this is not a TLS client hello\r\n" * 4)
        self.assertTrue(r.closed())
        lib.Raw(self.server.port).expect(220)


def proxy_v2(src, dst, sport, dport):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


class ProxyProtocolTest(ServerCase):
    def setUp(self):
        self.proxy_port = h.free_port()
        # The load balancer is 127.0.0.1; the only trusted client network is 192.0.2.0/24,
        # which can only be reached through a PROXY header.
        self.server = self.start(
            trusted=("192.0.2.0/24",), extra='proxy_networks: "127.0.0.1/32"',
            listen_extra='listen { address: "127.0.0.1" port: %d proxy_protocol: true }'
            % self.proxy_port)

    def relay_codes(self, header, source="127.0.0.1"):
        r = lib.Raw(self.proxy_port, source=source)
        r.send(header)
        code, _ = r.reply()
        if code != 220:
            return [code]
        r.send("EHLO lb.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<x@elsewhere.test>\r\n"
               "RCPT TO:<rita@example.test>\r\nDATA\r\n")
        codes = r.codes(5)
        r.send("Subject: proxied\r\n\r\nvia the load balancer\r\n.\r\nQUIT\r\n")
        return codes + r.codes(2)

    def test_v1_and_v2_headers_set_the_client_address(self):
        self.assertEqual(self.relay_codes("PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n"),
                         [250, 250, 250, 250, 354, 250, 221])
        self.assertEqual(self.relay_codes(proxy_v2("192.0.2.8", "127.0.0.1", 40001, 25)),
                         [250, 250, 250, 250, 354, 250, 221])
        # A client the load balancer says is untrusted may not relay.
        codes = self.relay_codes("PROXY TCP4 198.51.100.9 127.0.0.1 40002 25\r\n")
        self.assertEqual(codes[:3], [250, 250, 554])
        msgs = h.wait_for(lambda: len(self.server.messages_for("rita")) >= 3 and
                          self.server.messages_for("rita"), 60, what="proxied messages")
        joined = b"\n".join(msgs)
        for addr in (b"192.0.2.7", b"192.0.2.8", b"198.51.100.9"):
            self.assertIn(b"([" + addr + b"])", joined)
        # Without PROXY, 127.0.0.1 on the plain port is not trusted.
        r = lib.Raw(self.server.port)
        r.expect(220)
        r.send("EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<x@elsewhere.test>\r\n")
        self.assertEqual(r.codes(3), [250, 250, 554])

    def test_refused_from_unlisted_address_or_malformed(self):
        self.assertEqual(self.relay_codes("PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n",
                                          source="127.0.0.2"), [421])
        self.assertEqual(self.relay_codes("PROXY TCP4 nonsense\r\n"), [421])
        self.assertEqual(self.relay_codes("EHLO no-header.test\r\n"), [421])
        r = lib.Raw(self.server.port)  # the server keeps serving
        r.expect(220)


class Ipv6Test(ServerCase):
    def test_ipv6_listener(self):
        port6 = h.free_port("::1")
        server = self.start(trusted=("::1/128",),
                            listen_extra='listen { address: "::1" port: %d }' % port6)
        r = lib.Raw(port6, host="::1")
        r.expect(220)
        r.send("EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<x@elsewhere.test>\r\n"
               "RCPT TO:<sam@example.test>\r\nDATA\r\n")
        self.assertEqual(r.codes(5), [250, 250, 250, 250, 354])
        r.send("Subject: v6\r\n\r\nover IPv6\r\n.\r\nQUIT\r\n")
        self.assertEqual(r.codes(2), [250, 221])
        msgs = h.wait_for(lambda: server.messages_for("sam"), 60, what="the IPv6 message")
        self.assertIn(b"([IPv6:::1])", msgs[0])
        # v4 on the same server: 127.0.0.1 is not trusted here.
        r = lib.Raw(server.port)
        r.expect(220)
        r.send("EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<x@elsewhere.test>\r\n")
        self.assertEqual(r.codes(3), [250, 250, 554])


if __name__ == "__main__":
    unittest.main(verbosity=2, warnings="ignore")
