"""End to end through the whole system (mailfarmd, smtpd, scheduler, router,
filter, local transport): every filter action seen from outside, and alias
expansion by the router. Mail goes in over SMTP (smtplib) and comes out in
Maildirs; the DKIM signature is verified by python3-dkim on the file the local
transport wrote, so it covers exactly what a transport emits."""

import base64
import os
import smtplib
import socket
import subprocess
import unittest

import dkim

import mailfarm_harness as h
import wire_pb2

SELECTOR = "e2e"

SCANNER = """#!/bin/sh
body=$(cat)
case "$body" in
  *EICAR-TEST*) echo "stdin: Eicar-Test-Signature FOUND"; exit 1 ;;
  *HANG-SCANNER*) sleep 120 ;;
  *) echo "clean"; exit 0 ;;
esac
"""

FILTER = """
filter_rules {{
  rule {{ name: "no-pills" where: HEADER pattern: "^Subject:.*viagra" action: REJECT
         text: "Spam is not welcome here" }}
  rule {{ name: "drop-test" where: BODY pattern: "^DISCARD-ME$" action: DISCARD }}
  rule {{ name: "hold-pgp" where: BODY pattern: "BEGIN PGP MESSAGE" action: HOLD text: "review" }}
  rule {{ name: "tag-list" where: HEADER pattern: "^List-Id:" action: ADD_HEADER
         text: "X-Mailing-List: yes" }}
  scanner {{ argv: "/bin/sh" argv: "{root}/scanner.sh" timeout_ms: 1000 }}
  dkim {{ domain: "example.test" selector: "{selector}" private_key_file: "{root}/dkim.pem" }}
}}
"""

ALIASES = "team: alice, bob\nlist: :include:{root}/list.inc\n"


class System:
    def __init__(self):
        self.root = h.make_temp_dir("mf-e2e-")
        os.chmod(self.root, 0o755)
        key = os.path.join(self.root, "dkim.pem")
        subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
        os.chmod(key, 0o644)  # mailfarmd started as root runs the farms as "mailfarm"
        der = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.public_key = base64.b64encode(der).decode()
        for name, text in (("scanner.sh", SCANNER), ("aliases", ALIASES),
                           ("list.inc", "carol\ndave\n")):
            with open(os.path.join(self.root, name), "w") as f:
                f.write(text.format(root=self.root))
        self.sys = h.MailfarmSystem(root=self.root, config_text="")
        config = h.default_config(self.root, self.sys.smtp_port, self.sys.metrics_port,
                                  extra=FILTER.format(root=self.root, selector=SELECTOR))
        config = config.replace("  local_users_any: true\n",
                                '  local_users_any: true\n  aliases_file: "%s/aliases"\n'
                                % self.root)
        assert "aliases_file" in config, config
        with open(self.sys.config_path, "w") as f:
            f.write(config)

    def send(self, sender, rcpts, message):
        with smtplib.SMTP("127.0.0.1", self.sys.smtp_port, timeout=60) as s:
            s.sendmail(sender, rcpts, message)

    def control(self, **verb):
        conn = h.FrameSocket.connect_unix(os.path.join(self.sys.run_dir, "control.sock"))
        req = wire_pb2.ControlRequest(**verb)
        conn.send(req)
        replies = []
        while True:
            r = conn.recv(wire_pb2.ControlReply)
            replies.append(r)
            if not r.more:
                break
        conn.close()
        return replies

    def queue(self):
        return [e for r in self.control(queue_list=wire_pb2.Selector(all=True)) for e in r.entries]

    def mail(self, user):
        return self.sys.maildir_messages(user)

    def dns(self, name, timeout=5):
        if name.rstrip(b".") == ("%s._domainkey.example.test" % SELECTOR).encode():
            return ("v=DKIM1; k=rsa; p=%s" % self.public_key).encode()
        return None


def message(subject, body, sender="sender@example.test", extra=b""):
    return (("From: Sender <%s>\r\nTo: someone\r\nSubject: %s\r\n"
             "Message-ID: <%s@example.test>\r\n" % (sender, subject, subject.replace(" ", "-")))
            .encode() + extra + b"\r\n" + body)


def crlf(data):
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def headers_of(data):
    head = crlf(data).split(b"\r\n\r\n", 1)[0]
    return [line.split(b":", 1)[0].decode() for line in head.split(b"\r\n")
            if line and line[:1] not in (b" ", b"\t")]


class FilterEndToEndTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = System()
        cls.s.sys.start()

    @classmethod
    def tearDownClass(cls):
        code, leftovers = cls.s.sys.stop()
        if leftovers:
            raise AssertionError("processes left behind: %s" % leftovers)

    def wait_mail(self, user, count=1):
        return h.wait_for(lambda: len(self.s.mail(user)) >= count and self.s.mail(user), 90,
                          what="%d message(s) for %s" % (count, user))

    def test_accept_delivered_with_scanner_header_and_valid_dkim(self):
        self.s.send("sender@example.test", ["acc@example.test"],
                    message("accept me", b"Hello,  world  \r\n\r\n\r\n",
                            extra=b"List-Id: <news.example.test>\r\n"))
        got = self.wait_mail("acc")[0]
        names = headers_of(got)
        for name in ("X-Mailing-List", "X-Scanner-Result", "DKIM-Signature"):
            self.assertIn(name, names)
        # The added headers come before the message's own From:.
        self.assertLess(names.index("DKIM-Signature"), names.index("From"))
        self.assertTrue(dkim.verify(crlf(got), dnsfunc=self.s.dns), got.decode())
        self.assertFalse(dkim.verify(crlf(got).replace(b"Hello", b"Jello"), dnsfunc=self.s.dns))

    def test_reject_bounces_to_the_sender(self):
        self.s.send("rej-sender@example.test", ["rej@example.test"],
                    message("buy viagra now", b"x\r\n", sender="rej-sender@example.test"))
        dsn = self.wait_mail("rej-sender")[0]
        self.assertIn(b"5.7.1", dsn)
        self.assertIn(b"Spam is not welcome here", dsn)
        self.assertEqual(self.s.mail("rej"), [])

    def test_scanner_reject_bounces(self):
        self.s.send("virus-sender@example.test", ["virus@example.test"],
                    message("hello", b"EICAR-TEST\r\n", sender="virus-sender@example.test"))
        dsn = self.wait_mail("virus-sender")[0]
        self.assertIn(b"Eicar-Test-Signature FOUND", dsn)
        self.assertEqual(self.s.mail("virus"), [])

    def test_discard_drops_silently(self):
        self.s.send("disc-sender@example.test", ["disc@example.test"],
                    message("drop", b"DISCARD-ME\r\n", sender="disc-sender@example.test"))
        # A marker sent after it by the same path arrives; the discarded one never does.
        self.s.send("disc-sender@example.test", ["disc@example.test"], message("marker", b"ok\r\n"))
        got = self.wait_mail("disc")
        h.wait_for(lambda: not [e for e in self.s.queue() if "disc@example.test" in e.recipients],
                   90, what="the discarded job to leave the queue")
        self.assertEqual(len(self.s.mail("disc")), 1)
        self.assertIn(b"Subject: marker", got[0])
        self.assertEqual(self.s.mail("disc-sender"), [])  # no bounce for a discard

    def test_hold_waits_for_release(self):
        self.s.send("hold-sender@example.test", ["held@example.test"],
                    message("secret", b"-----BEGIN PGP MESSAGE-----\r\n"))
        entry = h.wait_for(lambda: [e for e in self.s.queue()
                                    if e.state == "hold" and "held@example.test" in e.recipients],
                           90, what="the job on hold")[0]
        self.assertEqual(self.s.mail("held"), [])
        reply = self.s.control(release=wire_pb2.Selector(qids=[entry.qid]))[0]
        self.assertEqual(reply.affected, 1, reply)
        got = self.wait_mail("held")[0]
        self.assertIn(b"BEGIN PGP MESSAGE", got)
        # Released, it leaves with what the filter added when it held it.
        self.assertIn("DKIM-Signature", headers_of(got))
        self.assertTrue(dkim.verify(crlf(got), dnsfunc=self.s.dns), got.decode())

    def test_hanging_scanner_defers(self):
        self.s.send("hang-sender@example.test", ["hang@example.test"],
                    message("slow", b"HANG-SCANNER\r\n"))
        entry = h.wait_for(lambda: [e for e in self.s.queue()
                                    if "hang@example.test" in e.recipients
                                    and "content scanner failed" in e.last_error],
                           90, what="the job deferred by the filter")[0]
        self.assertIn("timed out after 1000 ms", entry.last_error)
        self.assertEqual(self.s.mail("hang"), [])
        self.assertEqual(self.s.mail("hang-sender"), [])  # deferred, not bounced

    def test_router_aliases_end_to_end(self):
        self.s.send("alias-sender@example.test", ["team@example.test", "LIST+x@example.test"],
                    message("to the team", b"hi team\r\n"))
        for user in ("alice", "bob", "carol", "dave"):
            got = self.wait_mail(user)
            self.assertIn(b"hi team", got[0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
