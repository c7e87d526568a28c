"""mailfarm-smtpd as a command: --help, and each configuration error it refuses
with a precise message and exit 78 (open relay, bad networks, PROXY without
load balancers, unloadable certificate), a busy port (71), an unknown flag (64)."""

import os
import signal
import socket
import subprocess
import unittest

import mailfarm_harness as h
import smtpd_testlib as lib


def run_smtpd(config_text, *args):
    root = h.make_temp_dir("mf-smtpd-cli-")
    path = os.path.join(root, "mailfarm.conf")
    with open(path, "w") as f:
        f.write('paths { run_dir: "%s/run" spool_dir: "%s/spool" }\n' % (root, root))
        f.write('channel { name: "local" type: LOCAL }\n')
        f.write(config_text)
    os.makedirs(os.path.join(root, "run"), exist_ok=True)
    return subprocess.run([h.binary("mailfarm-smtpd"), "--config", path] + list(args),
                          capture_output=True, text=True, timeout=60)


class CliTest(unittest.TestCase):
    def test_help(self):
        out = subprocess.run([h.binary("mailfarm-smtpd"), "--help"], capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(out.returncode, 0)
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "FILES"):
            self.assertIn(section, out.stdout + out.stderr)

    def test_unknown_flag(self):
        out = subprocess.run([h.binary("mailfarm-smtpd"), "--no-such-flag"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 64)

    def check_refused(self, smtpd_text, needle):
        port = h.free_port()
        out = run_smtpd('smtpd { listen { address: "127.0.0.1" port: %d } %s }\n'
                        % (port, smtpd_text))
        self.assertEqual(out.returncode, 78, out.stderr)
        self.assertIn(needle, out.stderr)

    def test_open_relay_refused(self):
        self.check_refused('trusted_networks: "0.0.0.0/0"', "open relay")
        self.check_refused('trusted_networks: "::/0"', "open relay")

    def test_bad_networks_refused(self):
        self.check_refused('trusted_networks: "10.0.0.0/40"', "10.0.0.0/40")
        self.check_refused('proxy_networks: "lb.example.com"', "lb.example.com")

    def test_proxy_listener_needs_proxy_networks(self):
        port = h.free_port()
        self.check_refused('listen { address: "127.0.0.1" port: %d proxy_protocol: true }' % port,
                           "proxy_networks")

    def test_tls_files(self):
        self.check_refused('tls_cert_file: "/nonexistent/cert.pem"', "tls_key_file")
        self.check_refused('tls_cert_file: "/nonexistent/cert.pem" '
                           'tls_key_file: "/nonexistent/key.pem"', "/nonexistent/cert.pem")
        certdir = h.make_temp_dir("mf-certs-")
        ca, cert, key = lib.make_certs(certdir)
        # A key that does not belong to the certificate.
        self.check_refused('tls_cert_file: "%s" tls_key_file: "%s/ca.key"' % (cert, certdir),
                           "mismatch")

    def test_busy_port(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            out = run_smtpd('smtpd { listen { address: "127.0.0.1" port: %d } }\n' % port)
        self.assertEqual(out.returncode, 71, out.stderr)
        self.assertIn("127.0.0.1:%d" % port, out.stderr)


class ReloadTest(unittest.TestCase):
    def test_sighup_applies_new_settings_to_new_sessions(self):
        server = lib.Smtpd(extra="max_message_bytes: 1000")
        self.addCleanup(server.stop)

        def size_advertised():
            r = lib.Raw(server.port)
            r.expect(220)
            r.send("EHLO c.test\r\n")
            lines = r.expect(250)
            r.close()
            return [l for l in lines if "SIZE" in l][0]

        self.assertEqual(size_advertised(), "250-SIZE 1000")
        with open(server.config_path) as f:
            text = f.read()
        with open(server.config_path, "w") as f:
            f.write(text.replace("max_message_bytes: 1000", "max_message_bytes: 2000"))
        server.proc.signal(signal.SIGHUP)
        h.wait_for(lambda: size_advertised() == "250-SIZE 2000", 60, what="the reloaded SIZE")
        # A broken config on reload keeps the old settings and the server running.
        with open(server.config_path, "w") as f:
            f.write(text.replace("max_message_bytes: 1000", 'trusted_networks: "::/0"'))
        server.proc.signal(signal.SIGHUP)
        h.wait_for(lambda: "keeping the old config" in server.log(), 60, what="the refusal")
        self.assertEqual(size_advertised(), "250-SIZE 2000")


if __name__ == "__main__":
    unittest.main(verbosity=2, warnings="ignore")
