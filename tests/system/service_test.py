"""Running as a system service, started as root: ownership and modes on disk,
every process's uid/gid, a port below 1024 bound and privileges dropped,
inject and control refused for a uid outside the allowed set, and root without
identity.user refused. Skipped, with the reason printed, when not run as root."""

import os
import pwd
import grp
import smtplib
import socket
import stat
import subprocess
import unittest

import mailfarm_harness as h

IS_ROOT = os.geteuid() == 0


def proc_ids(pid):
    """(real, effective, saved uids), (gids) of a process from /proc."""
    uids = gids = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                uids = tuple(int(x) for x in line.split()[1:4])
            if line.startswith("Gid:"):
                gids = tuple(int(x) for x in line.split()[1:4])
    return uids, gids


def free_low_port():
    for port in range(700, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise AssertionError("no free port below 1024")


@unittest.skipUnless(IS_ROOT, "needs root: privilege separation is tested only when "
                     "scripts/test runs as root")
class ServiceTest(unittest.TestCase):
    def setUp(self):
        self.user = pwd.getpwnam("mailfarm")
        self.group = grp.getgrnam("mailfarm")

    def test_ownership_modes_and_every_process_unprivileged(self):
        with h.MailfarmSystem() as system:
            st = os.stat(system.run_dir)
            self.assertEqual((st.st_uid, st.st_gid), (self.user.pw_uid, self.group.gr_gid))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o750)
            st = os.stat(system.spool_dir)
            self.assertEqual((st.st_uid, st.st_gid), (self.user.pw_uid, self.group.gr_gid))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o700)
            # Mail still flows as the unprivileged user.
            c = smtplib.SMTP("127.0.0.1", system.smtp_port, timeout=30)
            c.sendmail("a@example.org", ["dave@localhost"], b"Subject: t\r\n\r\nx\r\n")
            c.quit()
            h.wait_for(lambda: system.maildir_messages("dave"), 30, what="delivery")
            pids = h.pids_matching(system.root)
            names = set()
            for pid in pids:
                uids, gids = proc_ids(pid)
                with open("/proc/%d/comm" % pid) as f:
                    names.add(f.read().strip())
                self.assertEqual(uids, (self.user.pw_uid,) * 3, "pid %d" % pid)
                self.assertEqual(gids, (self.group.gr_gid,) * 3, "pid %d" % pid)
            for expected in ("mailfarmd", "mailfarm-schedu", "mailfarm-smtpd",
                             "mailfarm-router", "mailfarm-transp"):
                self.assertIn(expected, names)
            st = os.stat(os.path.join(system.root, "mail", "dave"))
            self.assertEqual(st.st_uid, self.user.pw_uid)

    def test_port_below_1024_is_bound_and_privileges_dropped(self):
        root = h.make_temp_dir()
        port = free_low_port()
        system = h.MailfarmSystem(root=root)
        with open(system.config_path) as f:
            text = f.read()
        text = text.replace("port: %d }" % system.smtp_port, "port: %d }" % port, 1)
        with open(system.config_path, "w") as f:
            f.write(text)
        system.smtp_port = port
        with system:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                self.assertTrue(s.recv(512).startswith(b"220"))
            for pid in h.pids_matching(root):
                self.assertEqual(proc_ids(pid)[0][1], self.user.pw_uid)
            self.assertIn("running as mailfarm", system.log())

    def test_inject_and_control_refused_for_other_uids(self):
        system = h.MailfarmSystem()
        with system:
            as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
            r = subprocess.run(as_nobody + [h.binary("mailfarm-inject"), "--config",
                                            system.config_path, "-f", "a@example.org",
                                            "erin@localhost"],
                               input=b"Subject: x\n\nbody\n", capture_output=True, timeout=60)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(b"ermission denied", r.stderr)
            r = subprocess.run(as_nobody + [h.binary("mailfarmctl"), "--config",
                                            system.config_path, "queue", "list"],
                               capture_output=True, timeout=60)
            self.assertEqual(r.returncode, 69, r.stderr)
            self.assertIn(b"ermission denied", r.stderr)
            # Root may: the same commands work.
            r = subprocess.run([h.binary("mailfarm-inject"), "--config", system.config_path,
                                "-f", "a@example.org", "erin@localhost"],
                               input=b"Subject: x\n\nbody\n", capture_output=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            system.ctl("queue", "list")

    def test_root_without_identity_user_refuses(self):
        system = h.MailfarmSystem()
        with open(system.config_path) as f:
            text = f.read().replace('identity { user: "mailfarm" group: "mailfarm" }', "")
        with open(system.config_path, "w") as f:
            f.write(text)
        r = subprocess.run([h.binary("mailfarmd"), "--config", system.config_path,
                            "--foreground"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 78)
        self.assertIn("identity.user is not set", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(system.run_dir, "inject.sock")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
