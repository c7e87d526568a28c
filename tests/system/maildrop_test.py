"""The maildrop: sendmail never loses a local user's message (Postfix's
postdrop/pickup promise), and a plain local user can submit.

Runs the real sendmail as a plain user (nobody, through setpriv) against a
system started as root with identity.maildrop_group, with a copy of
mailfarm-postdrop setgid to mailfarm-drop (as the package installs it):
  - scheduler down (mailfarmd stopped): sendmail exits 0, the message waits
    in spool/maildrop/ where its sender cannot read it back; the next start
    delivers it exactly once and empties the maildrop;
  - scheduler up, user outside the inject group: sendmail goes through the
    maildrop and the inotify pickup delivers it;
  - a corrupt file, a record with a bad recipient, a FIFO and a symlink in
    the maildrop are quarantined to spool/corrupt/ with a log line, the
    scheduler keeps running and delivers the next message;
  - a user whose inject group is only a supplementary group is accepted on
    inject.sock (SO_PEERGROUPS), with no maildrop to fall back on.
Needs root (setuid to nobody, setgid helper) and the mailfarm-drop group
(scripts/bootstrap creates it); otherwise it prints why and exits 77.
"""

import grp
import os
import shutil
import subprocess
import sys
import unittest

import mailfarm_harness as h

NOBODY = 65534


def skip_reason():
    if os.geteuid() != 0:
        return "needs root to run sendmail as another user and a setgid helper"
    try:
        grp.getgrnam("mailfarm-drop")
    except KeyError:
        return "the mailfarm-drop group is missing (scripts/bootstrap creates it)"
    if not shutil.which("setpriv"):
        return "setpriv (util-linux) is missing"
    return None


def make_bin_dir(root):
    """The build's binaries by symlink, mailfarm-postdrop as an installed copy:
    setgid mailfarm-drop, mode 2755."""
    bin_dir = os.path.join(root, "bin")
    os.mkdir(bin_dir)
    os.chmod(bin_dir, 0o755)
    for name in os.listdir(h.BIN):
        if name != "mailfarm-postdrop":
            os.symlink(os.path.join(h.BIN, name), os.path.join(bin_dir, name))
    helper = os.path.join(bin_dir, "mailfarm-postdrop")
    shutil.copy(os.path.join(h.BIN, "mailfarm-postdrop"), helper)
    os.chown(helper, 0, grp.getgrnam("mailfarm-drop").gr_gid)
    os.chmod(helper, 0o2755)
    return bin_dir


def as_user(argv, stdin=b"", groups=None):
    """Runs argv as nobody (no supplementary groups unless `groups`)."""
    prefix = ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY]
    prefix += ["--groups=" + ",".join(str(g) for g in groups)] if groups else ["--clear-groups"]
    return subprocess.run(prefix + argv, input=stdin, capture_output=True, timeout=120)


class MaildropTest(unittest.TestCase):
    def system(self, identity=""):
        """A system whose bin_dir has the setgid helper; `identity`: more keys
        for the identity block."""
        root = h.make_temp_dir()
        bin_dir = make_bin_dir(root)
        system = h.MailfarmSystem(root=root)
        with open(system.config_path) as f:
            text = f.read()
        text = text.replace("paths { ", 'paths { bin_dir: "%s" ' % bin_dir, 1)
        text = text.replace('identity { user: "mailfarm" group: "mailfarm" }',
                            'identity { user: "mailfarm" group: "mailfarm" %s }' % identity, 1)
        with open(system.config_path, "w") as f:
            f.write(text)
        os.chmod(system.config_path, 0o644)
        self.sendmail = [os.path.join(bin_dir, "sendmail"), "-C", system.config_path]
        return system

    def maildrop(self, system):
        return sorted(os.listdir(os.path.join(system.spool_dir, "maildrop")))

    def send_as_nobody(self, rcpt, subject, groups=None):
        r = as_user(self.sendmail + [rcpt], b"Subject: %s\n\nbody\n" % subject.encode(),
                    groups=groups)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return r

    def test_scheduler_down_then_delivered_exactly_once(self):
        system = self.system('maildrop_group: "mailfarm-drop"')
        system.start()
        try:
            spool = os.stat(system.spool_dir)
            self.assertEqual(oct(spool.st_mode & 0o7777), oct(0o710))
            drop = os.stat(os.path.join(system.spool_dir, "maildrop"))
            self.assertEqual(oct(drop.st_mode & 0o7777), oct(0o1730))
            self.assertEqual(drop.st_gid, grp.getgrnam("mailfarm-drop").gr_gid)
            system.stop()
            self.assertFalse(os.path.exists(os.path.join(system.run_dir, "inject.sock")))
            self.send_as_nobody("dave@localhost", "while down")
            files = self.maildrop(system)
            self.assertEqual(len(files), 1, files)
            st = os.stat(os.path.join(system.spool_dir, "maildrop", files[0]))
            self.assertEqual(st.st_uid, NOBODY)
            # The sender cannot read, list or remove it once it is there.
            peek = as_user(["cat", os.path.join(system.spool_dir, "maildrop", files[0])])
            self.assertNotEqual(peek.returncode, 0)
            peek = as_user(["ls", os.path.join(system.spool_dir, "maildrop")])
            self.assertNotEqual(peek.returncode, 0)
            system.start()
            h.wait_for(lambda: system.maildir_messages("dave"), 60, what="the maildrop message")
            h.wait_for(lambda: not system.queue_files() and not self.maildrop(system), 60,
                       what="an empty queue and maildrop")
            got = system.maildir_messages("dave")
            self.assertEqual(len(got), 1)
            self.assertIn(b"Subject: while down", got[0])
            self.assertIn(b"nobody@", got[0])
            self.assertIn("uid=%d" % NOBODY, system.log())
        finally:
            system.stop()

    def test_plain_user_submits_while_running_and_corrupt_files_are_quarantined(self):
        system = self.system('maildrop_group: "mailfarm-drop"')
        with system:
            # nobody cannot reach inject.sock (run_dir 0750): the maildrop and
            # the inotify pickup carry the message.
            self.send_as_nobody("erin@localhost", "running")
            h.wait_for(lambda: system.maildir_messages("erin"), 60, what="erin's message")
            drop = os.path.join(system.spool_dir, "maildrop")
            with open(os.path.join(drop, "garbage"), "wb") as f:
                f.write(b"MFD1\x05not a protobuf at all")
            # A well-formed record that fails the injection checks.
            import wire_pb2
            request = wire_pb2.InjectRequest(sender="a@localhost", recipients=["bad address"])
            body = b"Subject: x\r\n\r\nx\r\n"
            request.size = len(body)
            header = request.SerializeToString()
            with open(os.path.join(drop, "badrcpt"), "wb") as f:
                f.write(b"MFD1" + bytes([len(header)]) + header + body)
            os.mkfifo(os.path.join(drop, "fifo"))
            os.symlink("/etc/shadow", os.path.join(drop, "link"))
            corrupt = os.path.join(system.spool_dir, "corrupt")
            want = {"maildrop.garbage", "maildrop.badrcpt", "maildrop.fifo", "maildrop.link"}
            h.wait_for(lambda: want <= set(os.listdir(corrupt)), 90, what="4 quarantined files")
            self.assertEqual(self.maildrop(system), [])
            log = system.log()
            for name in ("garbage", "badrcpt", "fifo", "link"):
                self.assertIn("quarantined %s to corrupt/maildrop.%s" % (name, name), log)
            self.assertIn("bad recipient", log)
            # Still serving.
            self.send_as_nobody("erin@localhost", "after the corrupt ones")
            h.wait_for(lambda: len(system.maildir_messages("erin")) == 2, 60,
                       what="erin's second message")
            self.assertEqual(len(system.maildir_messages("erin")), 2)
            # The helper refuses what is not a record, before writing anything.
            r = as_user([os.path.join(os.path.dirname(self.sendmail[0]), "mailfarm-postdrop"),
                         "--config", system.config_path], b"hello")
            self.assertEqual(r.returncode, 65, r.stderr)

    def test_supplementary_inject_group_is_accepted(self):
        mail_gid = grp.getgrnam("mail").gr_gid
        system = self.system('inject_group: "mail"')
        with system:
            # No maildrop group: a refusal on inject.sock could not fall back.
            self.send_as_nobody("fred@localhost", "supplementary", groups=[mail_gid])
            h.wait_for(lambda: system.maildir_messages("fred"), 60, what="fred's message")
            self.assertNotIn("(maildrop ", system.log())


if __name__ == "__main__":
    reason = skip_reason()
    if reason:
        print("SKIP: " + reason, file=sys.stderr)
        sys.exit(h.SKIP_CODE)
    h.unittest_main()
