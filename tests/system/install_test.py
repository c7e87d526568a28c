"""`cmake --install` puts the configuration where every binary looks for it.

Installs the build into a staging directory (DESTDIR, the default prefix
/usr/local) and checks that the config lands at /etc/mailfarm/mailfarm.conf
(the binaries' compiled-in default), not under the prefix. Then, as root, it
lays the staged /etc over the real one in a private mount namespace
(overlayfs) and runs the installed `sendmail` and `mailq` with no flags: they
must read the installed system config, so their errors name its run_dir
(/run/mailfarm), not "cannot read config" (exit 78). Without root or overlayfs
that second part is skipped with the reason printed.
"""

import os
import shutil
import subprocess
import sys
import unittest

import mailfarm_harness as h

BUILD = os.path.dirname(h.BIN)
CONFIG = "/etc/mailfarm/mailfarm.conf"


def overlay_works(upper_etc):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c",
                            "mount -t overlay overlay -o lowerdir=%s:/etc /etc" % upper_etc],
                           capture_output=True)
    return probe.returncode == 0


class InstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stage = h.make_temp_dir("mf-install-")
        os.chmod(cls.stage, 0o755)
        env = dict(os.environ, DESTDIR=cls.stage)
        r = subprocess.run(["cmake", "--install", BUILD, "--prefix", "/usr/local"], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr

    def staged(self, path):
        return os.path.join(self.stage, path.lstrip("/"))

    def test_config_is_installed_at_the_default_path(self):
        self.assertTrue(os.path.isfile(self.staged(CONFIG)), os.listdir(self.stage))
        self.assertTrue(os.path.isfile(self.staged("/etc/mailfarm/mailfarm.conf.sample")))
        self.assertTrue(os.path.isfile(self.staged("/etc/mailfarm/aliases.sample")))
        self.assertFalse(os.path.exists(self.staged("/usr/local/etc/mailfarm")))
        # A staged install leaves /etc/aliases to the package.
        self.assertFalse(os.path.exists(self.staged("/etc/aliases")))
        with open(self.staged(CONFIG)) as f:
            self.assertIn('run_dir: "/run/mailfarm"', f.read())
        for name in ("sendmail", "mailq", "mailfarmd", "mailfarm-inject"):
            self.assertTrue(os.path.exists(self.staged("/usr/local/sbin/" + name)), name)
        # The units name the same file.
        with open(self.staged("/usr/local/lib/systemd/system/mailfarm.service")) as f:
            self.assertIn("--config " + CONFIG, f.read())

    def run_installed(self, command, stdin=b""):
        """Runs an installed binary with the staged /etc laid over the real one."""
        script = ("mount -t overlay overlay -o lowerdir=%s:/etc /etc && exec %s"
                  % (self.staged("/etc"), command))
        return subprocess.run(["unshare", "-m", "sh", "-c", script], input=stdin,
                              capture_output=True, timeout=60)

    def test_bare_sendmail_and_mailq_read_the_installed_config(self):
        if not overlay_works(self.staged("/etc")):
            print("SKIP part: needs root and overlayfs in a mount namespace to lay the "
                  "staged /etc over /etc", file=sys.stderr)
            self.skipTest("needs root and overlayfs in a private mount namespace")
        if os.path.exists("/run/mailfarm/inject.sock"):
            self.skipTest("a mailfarm runs on this machine (/run/mailfarm): not disturbed")
        sendmail = self.staged("/usr/local/sbin/sendmail")
        r = self.run_installed(sendmail + " root", b"Subject: t\n\nx\n")
        err = r.stderr.decode()
        self.assertNotEqual(r.returncode, 78, err)
        self.assertNotIn("cannot read config", err)
        self.assertIn("/run/mailfarm", err)
        r = self.run_installed(self.staged("/usr/local/sbin/mailq"))
        err = r.stderr.decode()
        self.assertNotEqual(r.returncode, 78, err)
        self.assertIn("/run/mailfarm/control.sock", err)


if __name__ == "__main__":
    h.unittest_main()
