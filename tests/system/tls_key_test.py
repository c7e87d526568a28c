"""STARTTLS with a key only root can read.

mailfarmd, started as root with identity.user, reads smtpd's TLS key before
it drops privileges and hands it to mailfarm-smtpd (a sealed memfd), so the
key file may stay 0600 root (or 0640 root:ssl-cert, Debian's snakeoil) while
smtpd runs as the service user. Checked with a real client (smtplib): EHLO
offers STARTTLS, the handshake works, the server certificate is the one
configured, and mail sent inside TLS is delivered. Needs root (and openssl);
otherwise it prints why and exits 77.
"""

import os
import pwd
import smtplib
import ssl
import subprocess
import sys
import unittest

import mailfarm_harness as h


def make_pair(directory):
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=tls-key-test.localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=120)
    os.chmod(cert, 0o644)
    os.chown(key, 0, 0)
    os.chmod(key, 0o600)
    return cert, key


class TlsKeyTest(unittest.TestCase):
    def test_root_only_key_gives_working_starttls(self):
        root = h.make_temp_dir()
        os.chmod(root, 0o755)
        cert, key = make_pair(root)
        system = h.MailfarmSystem(root=root, extra="")
        with open(system.config_path) as f:
            text = f.read()
        text = text.replace('  trusted_networks: "127.0.0.1/32"\n',
                            '  trusted_networks: "127.0.0.1/32"\n  tls_cert_file: "%s"\n'
                            '  tls_key_file: "%s"\n' % (cert, key), 1)
        with open(system.config_path, "w") as f:
            f.write(text)
        # The service user really cannot read the key.
        mailfarm = pwd.getpwnam("mailfarm")
        probe = subprocess.run(["setpriv", "--reuid=%d" % mailfarm.pw_uid,
                                "--regid=%d" % mailfarm.pw_gid, "--clear-groups", "cat", key],
                               capture_output=True)
        self.assertNotEqual(probe.returncode, 0)
        with system:
            c = smtplib.SMTP("127.0.0.1", system.smtp_port, timeout=30)
            code, _ = c.ehlo("client.test")
            self.assertEqual(code, 250)
            self.assertTrue(c.has_extn("starttls"), c.esmtp_features)
            context = ssl.create_default_context(cafile=cert)
            context.check_hostname = False
            code, _ = c.starttls(context=context)
            self.assertEqual(code, 220)
            peer = c.sock.getpeercert()
            self.assertIn((("commonName", "tls-key-test.localhost"),), peer["subject"])
            c.ehlo("client.test")
            c.sendmail("a@example.org", ["tina@localhost"], b"Subject: over tls\r\n\r\nx\r\n")
            c.quit()
            h.wait_for(lambda: system.maildir_messages("tina"), 60, what="the message sent over TLS")
            self.assertIn(b"Subject: over tls", system.maildir_messages("tina")[0])
            # smtpd itself runs as the service user.
            smtpd = [pid for pid in h.pids_matching(system.root)
                     if b"mailfarm-smtpd" in open("/proc/%d/cmdline" % pid, "rb").read()]
            self.assertTrue(smtpd)
            for pid in smtpd:
                self.assertEqual(os.stat("/proc/%d" % pid).st_uid, mailfarm.pw_uid)


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("SKIP: needs root: the key must be readable by root only while smtpd runs as "
              "identity.user", file=sys.stderr)
        sys.exit(h.SKIP_CODE)
    h.unittest_main()
