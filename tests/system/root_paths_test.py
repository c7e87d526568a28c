"""What mailfarmd does as root before it drops privileges cannot be turned by
the service account against a root file: a pid-file symlink it planted is not
followed, a pid file configured in its directory is refused, and a directory
it could replace with a link is neither chowned nor chmodded.
Needs root; otherwise it prints why and exits 77 (ctest reports it skipped)."""

import os
import pwd
import signal
import stat
import subprocess
import sys
import unittest

import mailfarm_harness as h

AS_MAILFARM = ["setpriv", "--reuid=mailfarm", "--regid=mailfarm", "--init-groups"]


def snapshot(path):
    st = os.lstat(path)
    data = b""
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            data = f.read()
    return (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_mtime_ns, data)


def edit_config(system, old, new):
    with open(system.config_path) as f:
        text = f.read()
    assert old in text, old
    with open(system.config_path, "w") as f:
        f.write(text.replace(old, new, 1))


def run_mailfarmd(system):
    """Starts mailfarmd, expecting it to refuse; stops it (and its tree) when
    it runs instead. Returns (exit code or None when it had to be stopped, log)."""
    proc = h.Process([h.binary("mailfarmd"), "--config", system.config_path, "--foreground"],
                     log_path=os.path.join(system.root, "refused.log"))
    code = proc.wait(30)
    proc.stop()
    for pid in h.pids_matching(system.root):
        os.kill(pid, signal.SIGKILL)
    return code, proc.log()


class RootPathsTest(unittest.TestCase):
    def setUp(self):
        self.mailfarm = pwd.getpwnam("mailfarm")

    def victim_file(self, root):
        path = os.path.join(root, "root-secret")
        with open(path, "w") as f:
            f.write("root's own file\n")
        os.chmod(path, 0o600)
        return path

    def as_mailfarm(self, *argv):
        return subprocess.run(AS_MAILFARM + list(argv), capture_output=True, text=True,
                              timeout=30)

    def plant_pid_link(self):
        """A system whose run dir is the service account's (as a first start
        leaves it), holding its link run/mailfarmd.pid -> a root file.
        Returns (system, victim, victim's snapshot, the link's path)."""
        system = h.MailfarmSystem()
        victim = self.victim_file(system.root)
        os.mkdir(system.run_dir, 0o750)
        os.chown(system.run_dir, self.mailfarm.pw_uid, self.mailfarm.pw_gid)
        planted = os.path.join(system.run_dir, "mailfarmd.pid")
        r = self.as_mailfarm("ln", "-s", victim, planted)
        self.assertEqual(r.returncode, 0, r.stderr)
        return system, victim, snapshot(victim), planted

    def test_planted_pid_file_link_in_run_dir_is_not_followed(self):
        system, victim, before, _ = self.plant_pid_link()
        with system:
            self.assertEqual(snapshot(victim), before, "root followed the planted link")
            pid_file = os.path.join(system.root, "run.pid")
            with open(pid_file) as f:
                self.assertEqual(f.read().strip(), str(system.daemon.pid))
            st = os.stat(pid_file)
            self.assertEqual((st.st_uid, st.st_nlink), (0, 1))
            # Where the pid file now lives the service account cannot plant anything.
            r = self.as_mailfarm("ln", "-s", victim, os.path.join(system.root, "x.pid"))
            self.assertNotEqual(r.returncode, 0)
            system.ctl("stop")
            self.assertEqual(system.daemon.wait(60), 0)
        self.assertEqual(snapshot(victim), before)
        with open(pid_file) as f:
            self.assertEqual(f.read(), "", "a stopped mailfarmd leaves its pid file empty")

    def test_pid_file_in_a_directory_the_service_account_writes_is_refused(self):
        system, victim, before, planted = self.plant_pid_link()
        edit_config(system, "paths { ", 'paths { pid_file: "%s" ' % planted)
        code, log = run_mailfarmd(system)
        self.assertEqual(snapshot(victim), before, "root followed the planted link")
        self.assertEqual(code, 71, log)
        self.assertIn("may be written by an account other than root", log)
        self.assertIn("paths.pid_file", log)
        self.assertEqual(h.pids_matching(system.root), [])

    def test_spool_dir_replaced_by_a_link_is_not_chowned(self):
        # spool_dir inside a directory the service account owns: it can put a
        # link to a root directory there before the next start.
        root = h.make_temp_dir()
        os.chmod(root, 0o755)
        shared = os.path.join(root, "shared")
        os.mkdir(shared, 0o755)
        os.chown(shared, self.mailfarm.pw_uid, self.mailfarm.pw_gid)
        secret = os.path.join(root, "secret")
        os.mkdir(secret, 0o700)
        before = snapshot(secret)
        spool = os.path.join(shared, "spool")
        self.assertEqual(self.as_mailfarm("ln", "-s", secret, spool).returncode, 0)
        system = h.MailfarmSystem(root=root)
        edit_config(system, 'spool_dir: "%s/spool"' % root, 'spool_dir: "%s"' % spool)
        code, log = run_mailfarmd(system)
        self.assertEqual(snapshot(secret), before, "root chowned or chmodded through the link")
        self.assertEqual(code, 71, log)
        self.assertIn("is writable by mailfarm", log)
        self.assertEqual(h.pids_matching(root), [])


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("SKIP: needs root: mailfarmd's root-only paths are tested when scripts/test "
              "runs as root")
        sys.exit(77)
    unittest.main()
