"""Submission with SMTP AUTH against a real Dovecot auth service (Debian's
dovecot-core, started privately with a passwd-file): port 587 (STARTTLS
before AUTH and MAIL), port 465 (implicit TLS, smtplib.SMTP_SSL), good and bad
passwords through PLAIN and LOGIN, relay only after AUTH, the authenticated
user in the Received header and the mail log, and the plain port without
AUTH. smtpd runs as its own farm in front of a scripted inject.sock."""

import smtplib
import ssl
import unittest

import mailfarm_harness as h
import smtpd_testlib as lib


class SubmissionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = h.make_temp_dir("mf-sub-")
        ca, cert, key = lib.make_certs(cls.tmp)
        cls.tls = ssl.create_default_context(cafile=ca)
        cls.tls.check_hostname = False  # smtplib names the host 127.0.0.1; the chain is checked
        cls.dovecot = lib.Dovecot(cls.tmp, {"alice": "s3cret pass", "bob": "hunter2"})
        cls.sub_port, cls.subs_port = h.free_port(), h.free_port()
        listeners = ('listen { address: "127.0.0.1" port: %d mode: SUBMISSION }\n'
                     '  listen { address: "127.0.0.1" port: %d mode: SUBMISSIONS }'
                     % (cls.sub_port, cls.subs_port))
        extra = ('tls_cert_file: "%s" tls_key_file: "%s" sasl_path: "%s"'
                 % (cert, key, cls.dovecot.socket))
        try:
            # 127.0.0.1 is not trusted here: relaying needs AUTH. The
            # scheduler is smtpd_testlib's inject.sock server: this test is
            # about smtpd and Dovecot.
            cls.server = lib.Smtpd(extra=extra, listen_extra=listeners,
                                   trusted=("192.0.2.0/24",), root=cls.tmp)
        except BaseException:
            cls.dovecot.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.dovecot.stop()

    def submission(self):
        s = smtplib.SMTP("127.0.0.1", self.sub_port, timeout=60)
        self.addCleanup(s.close)
        s.ehlo("client.test")
        return s

    def secured_submission(self):
        s = self.submission()
        s.starttls(context=self.tls)
        s.ehlo("client.test")
        return s

    def mail_log(self):
        return self.server.log()

    def test_587_refuses_auth_and_mail_before_starttls(self):
        s = self.submission()
        self.assertTrue(s.has_extn("starttls"))
        self.assertFalse(s.has_extn("auth"))  # never offered in clear
        for command in ("AUTH PLAIN AGFsaWNlAHMzY3JldCBwYXNz", "MAIL FROM:<alice@example.test>"):
            code, text = s.docmd(command)
            self.assertEqual((code, text), (530, b"5.7.0 Must issue a STARTTLS command first"),
                             command)

    def test_587_good_password_relays_with_received_and_log(self):
        s = self.secured_submission()
        self.assertEqual(s.esmtp_features["auth"].split(), ["PLAIN", "LOGIN"])
        code, text = s.docmd("MAIL FROM:<alice@example.test>")
        self.assertEqual((code, text), (530, b"5.7.0 Authentication required"))
        code, text = s.login("alice", "s3cret pass")  # PLAIN
        self.assertEqual((code, text), (235, b"2.7.0 Authentication successful"))
        refused = s.sendmail("alice@example.test", ["alice@example.test", "far@elsewhere.test"],
                             b"Subject: submitted\r\n\r\nfrom alice's mail client\r\n")
        self.assertEqual(refused, {})  # the relayed recipient was accepted too
        msgs = h.wait_for(lambda: self.server.messages_for("alice"), 60, what="the message")
        self.assertRegex(msgs[0], rb"Received: from client\.test \(\[127\.0\.0\.1\]\)\r?\n"
                                  rb"\t\(Authenticated sender: alice\)\r?\n"
                                  rb"\tby mx\.test \(mailfarm\) with ESMTPSA")
        h.wait_for(lambda: "sasl_method=PLAIN, sasl_username=alice" in self.mail_log(), 30,
                   what="client= line with the SASL user in the log")

    def test_bad_password_is_535_and_nothing_relays(self):
        s = self.secured_submission()
        with self.assertRaises(smtplib.SMTPAuthenticationError) as caught:
            s.login("alice", "wrong")
        self.assertEqual(caught.exception.smtp_code, 535)
        self.assertTrue(caught.exception.smtp_error.startswith(b"5.7.8 "))
        with self.assertRaises(smtplib.SMTPAuthenticationError) as caught:
            s.auth("LOGIN", lambda challenge=None: {None: "bob", b"Username:": "bob"}.get(
                challenge, "not-hunter2"), initial_response_ok=False)
        self.assertEqual(caught.exception.smtp_code, 535)
        code, _ = s.docmd("MAIL FROM:<alice@example.test>")
        self.assertEqual(code, 530)
        self.assertIn("SASL PLAIN authentication failed", self.mail_log())

    def test_465_implicit_tls_with_login(self):
        with smtplib.SMTP_SSL("127.0.0.1", self.subs_port, timeout=60, context=self.tls) as s:
            s.ehlo("client.test")
            self.assertFalse(s.has_extn("starttls"))
            self.assertIn("LOGIN", s.esmtp_features["auth"].split())
            s.user, s.password = "bob", "hunter2"
            code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
            self.assertEqual(code, 235)
            s.sendmail("bob@example.test", ["bob@example.test"],
                       b"Subject: over 465\r\n\r\nimplicit TLS\r\n")
        msgs = h.wait_for(lambda: self.server.messages_for("bob"), 60, what="bob's message")
        self.assertIn(b"(Authenticated sender: bob)", msgs[0])
        self.assertIn(b"with ESMTPSA", msgs[0])

    def test_plain_port_offers_no_auth_and_refuses_relay(self):
        with smtplib.SMTP("127.0.0.1", self.server.port, timeout=60) as s:
            s.ehlo("client.test")
            self.assertFalse(s.has_extn("auth"))
            code, _ = s.docmd("AUTH PLAIN AGFsaWNlAHMzY3JldCBwYXNz")
            self.assertEqual(code, 503)
            s.mail("alice@example.test")
            code, text = s.rcpt("far@elsewhere.test")
            self.assertEqual(code, 554)
            self.assertIn(b"Relay access denied", text)


if __name__ == "__main__":
    unittest.main(verbosity=2, warnings="ignore")
