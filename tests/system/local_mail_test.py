"""Local mail is never lost: cron's mail reaches the administrator.

The host name and localhost are local domains without being listed
(routing.hostname_is_local), so `sendmail root` (root@<hostname>) and cron's
`sendmail -t` are delivered here; root, postmaster and MAILER-DAEMON reach the
administrator through the shipped aliases file (etc/aliases: root -> admin),
with no bounce. The system config's shape (no local_users list, every passwd
account a user, /etc/aliases without a root line) delivers root's mail to
root's own mailbox. The real sendmail binary is run, as cron would run it.
"""

import os
import socket
import subprocess
import unittest

import mailfarm_harness as h

SENDMAIL = h.binary("sendmail")


def sendmail(system, args, message):
    return subprocess.run([SENDMAIL, "-C", system.config_path] + args, input=message,
                          capture_output=True, timeout=120)


def mailboxes(system):
    mail = os.path.join(system.root, "mail")
    return sorted(os.listdir(mail)) if os.path.isdir(mail) else []


def rewrite_config(system, old, new):
    with open(system.config_path) as f:
        text = f.read()
    assert old in text, old
    with open(system.config_path, "w") as f:
        f.write(text.replace(old, new))


class LocalMailTest(unittest.TestCase):
    def test_root_postmaster_and_mailer_daemon_reach_the_admin(self):
        # Only example.test is listed: the host name must be local by default.
        aliases = os.path.join(h.SRC, "etc", "aliases")
        system = h.MailfarmSystem()
        rewrite_config(system, 'local_domains: "localhost"\n', 'aliases_file: "%s"\n' % aliases)
        with system:
            hostname = socket.gethostname()
            # cron: `sendmail -t` with "To: root" (cron sets -FCronDaemon -i -B8BITMIME -oem).
            cron = (b"From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@%s> true\n\n"
                    b"output of the job\n" % hostname.encode())
            r = sendmail(system, ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "-t"], cron)
            self.assertEqual(r.returncode, 0, r.stderr)
            r = sendmail(system, ["root"], b"Subject: to root\n\nbody\n")
            self.assertEqual(r.returncode, 0, r.stderr)
            r = sendmail(system, ["postmaster", "MAILER-DAEMON@localhost"],
                         b"Subject: to postmaster\n\nbody\n")
            self.assertEqual(r.returncode, 0, r.stderr)
            h.wait_for(lambda: len(system.maildir_messages("admin")) >= 4, 60,
                       what="4 messages in admin's mailbox")
            h.wait_for(lambda: not system.queue_files(), 60, what="an empty spool")
            got = system.maildir_messages("admin")
            self.assertEqual(len(got), 4, got)
            subjects = sorted(m.split(b"Subject: ", 1)[1].split(b"\n", 1)[0].rstrip(b"\r") for m in got)
            self.assertEqual(subjects, [b"Cron <root@%s> true" % hostname.encode(),
                                        b"to postmaster", b"to postmaster", b"to root"])
            # Delivered, not bounced: nobody else got mail, nothing was dropped.
            self.assertEqual(mailboxes(system), ["admin"])

    def test_system_shape_passwd_users_and_no_root_alias(self):
        # As etc/mailfarm.conf.system: no local_users, every passwd account has
        # a mailbox, the aliases end at root.
        aliases = os.path.join(h.make_temp_dir(), "aliases")
        with open(os.path.join(h.SRC, "etc", "aliases.system")) as src, open(aliases, "w") as f:
            f.write(src.read())
        os.chmod(os.path.dirname(aliases), 0o755)
        system = h.MailfarmSystem()
        rewrite_config(system, "local_users_any: true",
                       'local_users_from_passwd: true aliases_file: "%s"' % aliases)
        with system:
            r = sendmail(system, ["postmaster", "mailer-daemon@" + socket.gethostname()],
                         b"Subject: to postmaster\n\nbody\n")
            self.assertEqual(r.returncode, 0, r.stderr)
            r = sendmail(system, ["no-such-account-x"], b"Subject: unknown\n\nbody\n")
            self.assertEqual(r.returncode, 0, r.stderr)  # accepted, then 5.1.1
            h.wait_for(lambda: len(system.maildir_messages("root")) >= 2, 60,
                       what="2 messages in root's mailbox")
            # The unknown user's bounce goes to the sender (root@host): root's mailbox.
            h.wait_for(lambda: len(system.maildir_messages("root")) >= 3, 60,
                       what="the bounce for no-such-account-x in root's mailbox")
            bounce = [m for m in system.maildir_messages("root") if b"5.1.1" in m]
            self.assertEqual(len(bounce), 1)
            self.assertEqual(mailboxes(system), ["root"])


if __name__ == "__main__":
    h.unittest_main()
