"""A scheduler out of descriptors neither spins nor floods its log: with the
whole tree at RLIMIT_NOFILE 512, a local user holding 600 connections to the
metrics port for 20 s gets at most metrics.max_connections of them served (the
rest wait in the kernel's backlog) while mail still flows; and 600 held
connections to inject.sock (root may inject) that do exhaust the scheduler's
descriptors pause its accept loops, with one log line per pause, until they
are let go. Each time the log must grow by less than 2 MB (the unpaused loop
wrote 255 MB in 40 s)."""

import os
import smtplib
import subprocess
import sys
import unittest

import mailfarm_harness as h

HOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fd_holder.py")
HOLD_SECONDS = 20
LOG_BUDGET = 2 * 1024 * 1024


def as_unprivileged():
    """The holder's wrapper: `nobody` when root, else the current user."""
    if os.geteuid() == 0:
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    return []


class FdExhaustionTest(unittest.TestCase):
    def start(self, scheduler="min_backoff_s: 1 max_backoff_s: 2"):
        """The whole tree at 512 descriptors; stopped at the test's end."""
        system = h.MailfarmSystem(scheduler=scheduler)
        self.addCleanup(system.stop)
        system.start(argv_prefix=["prlimit", "--nofile=512:512"])
        return system

    def hold(self, target, count, wrapper):
        """Starts the holder; returns its Process once its connections are open."""
        log = os.path.join(h.make_temp_dir("mf-holder-"), "holder.log")
        holder = h.Process(["prlimit", "--nofile=4096:4096"] + wrapper +
                           [sys.executable, HOLDER, str(target), str(count),
                            str(HOLD_SECONDS)], log_path=log)
        h.wait_for(lambda: "holding" in holder.log() or not holder.alive(), 60,
                   what="the holder's connections")
        self.assertIn("holding", holder.log())
        return holder

    def send(self, system, rcpt, subject):
        c = smtplib.SMTP("127.0.0.1", system.smtp_port, timeout=60)
        c.sendmail("fd@example.org", [rcpt], ("Subject: %s\r\n\r\nx\r\n" % subject).encode())
        c.quit()

    def test_metrics_connections_held_by_a_local_user(self):
        system = self.start()
        log_before = len(system.log())
        holder = self.hold(system.metrics_port, 600, as_unprivileged())
        # Mail flows while the connections are held.
        self.send(system, "held@localhost", "during")
        h.wait_for(lambda: system.maildir_messages("held"), 60, what="delivery")
        self.assertTrue(holder.alive(), "the holder let go before the mail went through")
        holder.wait(HOLD_SECONDS + 60)
        grown = len(system.log()) - log_before
        self.assertLess(grown, LOG_BUDGET, system.log()[-3000:])
        self.assertNotIn("Too many open files", system.log()[log_before:],
                         "metrics.max_connections should keep the scheduler's fds")
        # Served again once they are gone.
        r = subprocess.run(["curl", "-sS", "-f", "-o", "/dev/null", "http://127.0.0.1:%d/metrics"
                            % system.metrics_port], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_inject_connections_exhausting_the_scheduler_pause_its_accepts(self):
        # The connections are admitted (root's, under a raised limit) and kept.
        system = self.start("min_backoff_s: 1 max_backoff_s: 2 max_inject_connections: 2000")
        log_before = len(system.log())
        holder = self.hold(os.path.join(system.run_dir, "inject.sock"), 600, [])
        holder.wait(HOLD_SECONDS + 60)
        text = system.log()[log_before:]
        self.assertLess(len(text), LOG_BUDGET, text[-3000:])
        self.assertIn("inject.sock: accept: Too many open files; not accepting for", text)
        # Once they are gone, mail flows again.
        self.send(system, "after@localhost", "after")
        h.wait_for(lambda: system.maildir_messages("after"), 60, what="delivery")


if __name__ == "__main__":
    unittest.main()
