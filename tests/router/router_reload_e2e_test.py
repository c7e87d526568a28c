"""End to end through mailfarmd: the aliases file is changed and mailfarmd is
sent SIGHUP (which reloads every farm, the router included) three times while
SMTP clients keep sending. Every accepted message must be delivered exactly
once, to the alias target that was current when it was routed, and none lost.
Also: an unknown local user bounces with 5.1.1."""

import os
import signal
import smtplib
import threading
import unittest

import mailfarm_harness as h

TARGETS = ["t0", "t1", "t2", "t3"]  # the alias "moving" points at t<generation>


class RouterReloadEndToEndTest(unittest.TestCase):
    def setUp(self):
        self.root = h.make_temp_dir("mf-rr-")
        os.chmod(self.root, 0o755)
        self.aliases = os.path.join(self.root, "aliases")
        self.set_alias(0)
        self.sys = h.MailfarmSystem(root=self.root, config_text="")
        config = h.default_config(self.root, self.sys.smtp_port, self.sys.metrics_port)
        config = config.replace(
            "  local_users_any: true\n",
            '  local_users: "t0" local_users: "t1" local_users: "t2" local_users: "t3"\n'
            '  local_users: "sender"\n  aliases_file: "%s"\n' % self.aliases)
        self.assertIn("aliases_file", config)
        with open(self.sys.config_path, "w") as f:
            f.write(config)
        self.sys.start()

    def tearDown(self):
        code, leftovers = self.sys.stop()
        self.assertEqual(leftovers, [])

    def set_alias(self, n):
        tmp = self.aliases + ".tmp"
        with open(tmp, "w") as f:
            f.write("# generation %d\nmoving: %s\npostmaster: t0\n" % (n, TARGETS[n]))
        os.chmod(tmp, 0o644)
        os.rename(tmp, self.aliases)  # atomic: a child never reads half a file

    def test_sighup_while_sending_loses_nothing(self):
        sent, errors = [], []
        stop = threading.Event()

        def client(n):
            i = 0
            while not stop.is_set() and i < 200:
                subject = "c%d-m%d" % (n, i)
                msg = ("From: sender@example.test\r\nTo: moving@example.test\r\n"
                       "Subject: %s\r\n\r\nbody %s\r\n" % (subject, subject))
                try:
                    with smtplib.SMTP("127.0.0.1", self.sys.smtp_port, timeout=60) as s:
                        s.sendmail("sender@example.test", ["moving@example.test"], msg)
                    sent.append(subject)
                except Exception as e:  # a refused message is not lost, but is a failure here
                    errors.append((subject, repr(e)))
                    return
                i += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        try:
            for gen in range(1, 4):
                h.wait_for(lambda: len(sent) >= 15 * gen or errors, 120, what="mail flowing")
                self.set_alias(gen)
                self.sys.daemon.signal(signal.SIGHUP)
        finally:
            h.wait_for(lambda: len(sent) >= 60 or errors, 120, what="more mail")
            stop.set()
            for t in threads:
                t.join(120)
        self.assertEqual(errors, [])

        def delivered():
            got = {}
            for user in TARGETS:
                for m in self.sys.maildir_messages(user):
                    subject = m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].split(b"\n")[0]
                    got.setdefault(subject.decode(), []).append(user)
            return got
        h.wait_for(lambda: len(delivered()) >= len(sent), 180,
                   what="%d messages delivered" % len(sent))
        got = delivered()
        self.assertEqual(sorted(got), sorted(sent))
        duplicates = {k: v for k, v in got.items() if len(v) != 1}
        self.assertEqual(duplicates, {})
        # The reloads took effect: the last target got mail, and so did the first.
        users = {v[0] for v in got.values()}
        self.assertIn("t0", users)
        self.assertIn("t3", users)
        self.assertEqual(self.sys.maildir_messages("sender"), [])  # no bounce

    def test_unknown_local_user_bounces_5_1_1(self):
        msg = "From: sender@example.test\r\nSubject: hello\r\n\r\nhi\r\n"
        with smtplib.SMTP("127.0.0.1", self.sys.smtp_port, timeout=60) as s:
            s.sendmail("sender@example.test", ["nosuchuser@example.test"], msg)
        dsn = h.wait_for(lambda: self.sys.maildir_messages("sender"), 90, what="the DSN")[0]
        self.assertIn(b"5.1.1", dsn)
        self.assertIn(b"nosuchuser@example.test", dsn)


if __name__ == "__main__":
    unittest.main(verbosity=2)
