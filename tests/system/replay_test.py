"""mailfarm-replay against real spools: corrupt, truncated, zero-length, foreign,
body-less and misnamed (a stale reused file) files are quarantined with a log
line each while every valid job is delivered; acknowledged files a crash lost
or damaged are restored from the spool journal; --check only reports; a second
run adopts nothing twice; a deferred job keeps its next attempt time and a
delivered recipient is not delivered again after a restart."""

import json
import os
import smtplib
import struct
import subprocess
import sys
import time
import unittest

import mailfarm_harness as h

sys.path.insert(0, os.path.join(h.SRC, "tests", "transport"))
from transport_testlib import Sink  # noqa: E402  (aiosmtpd sink, 451 for temp*)

HOLD_LOCAL = 'supervisor { disable: "transport-local" }'


def send(system, rcpts, subject, sender="sender@example.org"):
    conn = smtplib.SMTP("127.0.0.1", system.smtp_port, timeout=30)
    try:
        body = "From: %s\r\nSubject: %s\r\nMessage-ID: <%s@replay.test>\r\n\r\nbody of %s\r\n" % (
            sender, subject, subject, subject)
        conn.sendmail(sender, rcpts, body.encode())
    finally:
        conn.quit()


def queued_then_stopped(n, rcpt, subject):
    """A system without the local farm that took `n` messages for `rcpt`
    (subjects SUBJECT-0...), stopped once all of them are queued."""
    system = h.MailfarmSystem(extra=HOLD_LOCAL)
    try:
        system.start()
        for i in range(n):
            send(system, [rcpt], "%s-%d" % (subject, i))
        h.wait_for(lambda: len(system.queue_files()) == n, 30, what="%d queued jobs" % n)
    finally:
        system.stop()
    return system


def replay(system, *args):
    return subprocess.run([h.binary("mailfarm-replay"), "--config", system.config_path] +
                          list(args), capture_output=True, text=True, timeout=120)


class ReplayTest(unittest.TestCase):
    def test_corrupt_files_quarantined_valid_jobs_delivered(self):
        # Phase 1: five messages that cannot be delivered yet (no local farm).
        first = queued_then_stopped(5, "alice@localhost", "valid")
        root = first.root
        valid = first.queue_files()
        self.assertEqual(len(valid), 5)
        with open(valid[0], "rb") as f:
            good = f.read()
        qdir = os.path.dirname(valid[0])
        (env_len,) = struct.unpack_from("<I", good, 4)
        header_end = 8 + env_len + 4
        bad = {
            "0fffffffffff0001": good[:len(good) // 2],                  # truncated
            "0fffffffffff0002": b"",                                     # zero-length
            "0fffffffffff0003": bytes(range(256)) * 3,                   # garbage
            "0fffffffffff0004": good[:12] + bytes([good[12] ^ 0xFF]) + good[13:],  # checksum
            "0fffffffffff0005": good[:header_end + 1],                   # body missing
            "notaqueuefile.txt": b"hello",                               # foreign
            # A reused spare file that a crash left holding an earlier job's
            # bytes under a new name: whole and checksummed, but not this job.
            "0fffffffffff0006": good,
        }
        for name, data in bad.items():
            with open(os.path.join(qdir, name), "wb") as f:
                f.write(data)
        with open(os.path.join(root, "spool", "tmp", "leftover.tmp"), "wb") as f:
            f.write(b"an injection that was never acknowledged")

        # --check reads and reports, moves nothing.
        r = replay(first, "--check")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("valid 5, corrupt 7", r.stdout)
        for name in bad:
            self.assertTrue(os.path.exists(os.path.join(qdir, name)), name)

        # Phase 2: the same spool with the local farm: replay runs by itself.
        second = h.MailfarmSystem(root=root)
        with second:
            h.wait_for(lambda: len(second.maildir_messages("alice")) == 5, 60,
                       what="the five valid jobs delivered")
            corrupt_dir = os.path.join(root, "spool", "corrupt")
            h.wait_for(lambda: os.path.isdir(corrupt_dir) and len(os.listdir(corrupt_dir)) == 7,
                       30, what="seven quarantined files")
            log = second.log()
            for name in bad:
                self.assertIn("quarantined %s/%s" % (qdir, name), log)
            self.assertIn("0fffffffffff0006: corrupt queue file: envelope qid %s does not match "
                          "the file name "
                          "(probably a reused spool file" % os.path.basename(valid[0]), log)
            self.assertFalse(os.path.exists(os.path.join(root, "spool", "tmp", "leftover.tmp")))
            h.wait_for(lambda: second.queue_files() == [], 30, what="an empty queue")
            # A second run adopts nothing twice and finds nothing to move.
            r = replay(second)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("adopted 0", r.stdout)
            self.assertIn("quarantined 0", r.stdout)
            self.assertEqual(len(second.maildir_messages("alice")), 5)
            self.assertTrue(second.daemon.alive())

    def test_acknowledged_files_a_crash_lost_are_restored_from_the_journal(self):
        # Three messages got their 250 and wait (no local farm). Then what a
        # power cut can leave of files whose bytes were only in the spool
        # journal: one gone, one torn, one holding another job's bytes.
        first = queued_then_stopped(3, "dave@localhost", "journaled")
        root = first.root
        files = sorted(first.queue_files())
        with open(files[0], "rb") as f:
            other_job = f.read()
        os.remove(files[0])
        with open(files[1], "r+b") as f:
            f.truncate(os.path.getsize(files[1]) // 2)
        with open(files[2], "wb") as f:
            f.write(other_job)

        second = h.MailfarmSystem(root=root)
        with second:
            h.wait_for(lambda: len(second.maildir_messages("dave")) == 3, 60,
                       what="all three messages delivered")
            log = second.log()
            for path in files:
                self.assertIn("%s: restored from the spool journal" % os.path.basename(path), log)
            subjects = sorted(m.split(b"Subject: ")[1].split(b"\n")[0].strip().decode()
                              for m in second.maildir_messages("dave"))
            self.assertEqual(subjects, ["journaled-0", "journaled-1", "journaled-2"])
            self.assertEqual(os.listdir(os.path.join(root, "spool", "corrupt")), [])

    def test_running_twice_while_jobs_wait_adopts_nothing_twice(self):
        system = h.MailfarmSystem(extra=HOLD_LOCAL)
        with system:
            for i in range(3):
                send(system, ["bob@localhost"], "twice-%d" % i)
            h.wait_for(lambda: len(system.queue_files()) == 3, 30, what="three queued jobs")
            r = replay(system)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("adopted 0, already known 3", r.stdout)

    def test_deferred_keeps_next_attempt_and_delivered_is_not_redelivered(self):
        sink = Sink()
        root = h.make_temp_dir()
        sched = "min_backoff_s: 600 max_backoff_s: 1200"
        try:
            first = h.MailfarmSystem(root=root, sink_port=sink.port, scheduler=sched)
            with first:
                send(first, ["carol@localhost", "tempuser@relay.test"], "split")
                h.wait_for(lambda: len(first.maildir_messages("carol")) == 1, 30,
                           what="carol's copy")

                def deferred_entry():
                    r = first.ctl("queue", "list", "--json")
                    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
                    rows = [e for e in rows if e.get("state") == "deferred"]
                    return rows[0] if rows else None
                entry = h.wait_for(deferred_entry, 30, what="the deferred job")
                self.assertIn("tempuser@relay.test", entry["recipients"])
                next_attempt = int(entry["next_attempt_unix_ms"])
                self.assertGreater(next_attempt, time.time() * 1000 + 500 * 1000)
            second = h.MailfarmSystem(root=root, sink_port=sink.port, scheduler=sched)
            with second:
                def adopted():
                    r = second.ctl("queue", "list", "--json", check=False)
                    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
                    return rows if rows else None
                rows = h.wait_for(adopted, 30, what="the job adopted after the restart")
                self.assertEqual(len(rows), 1)
                self.assertEqual(rows[0]["qid"], entry["qid"])
                self.assertEqual(rows[0]["state"], "deferred")
                self.assertEqual(int(rows[0]["next_attempt_unix_ms"]), next_attempt)
                self.assertNotIn("carol@localhost", rows[0]["recipients"])
                time.sleep(1)
                self.assertEqual(len(second.maildir_messages("carol")), 1, "carol got it twice")
        finally:
            sink.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
