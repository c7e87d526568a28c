"""The scheduler's Prometheus endpoint, scraped with curl like a monitoring
system would: every line valid text exposition format, the expected families
present, counters never going down between two scrapes, and delivered jobs'
files reused by the next messages (spool/spare/)."""

import os
import re
import smtplib
import subprocess
import unittest

import mailfarm_harness as h

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
SAMPLE = re.compile(r"^(%s)(\{(%s)(,%s)*\})? (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$" % (NAME, LABEL, LABEL))
HELP = re.compile(r"^# HELP (%s) .+$" % NAME)
TYPE = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % NAME)


def scrape(system):
    r = subprocess.run(["curl", "-sS", "-f", "http://127.0.0.1:%d/metrics" % system.metrics_port],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def parse(text):
    """{(name, labels): value} and {family: type}; asserts every line is valid."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP"):
            assert HELP.match(line), "bad HELP line: %r" % line
            continue
        if line.startswith("# TYPE"):
            m = TYPE.match(line)
            assert m, "bad TYPE line: %r" % line
            assert m.group(1) not in types, "family declared twice: %s" % m.group(1)
            types[m.group(1)] = m.group(2)
            continue
        m = SAMPLE.match(line)
        assert m, "bad sample line: %r" % line
        name = m.group(1)
        labels = m.group(2) or ""
        key = (name, labels)
        assert key not in samples, "duplicate sample %r" % (key,)
        samples[key] = float(m.group(5).replace("+Inf", "inf"))
    return samples, types


def family_of(name, types):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[:-len(suffix)]) == "histogram":
            return name[:-len(suffix)]
    return name


class MetricsTest(unittest.TestCase):
    def test_scrape_is_valid_and_counters_are_monotonic(self):
        with h.MailfarmSystem() as system:
            def deliver(n):
                c = smtplib.SMTP("127.0.0.1", system.smtp_port, timeout=30)
                for i in range(n):
                    c.sendmail("m@example.org", ["metrics@localhost"],
                               ("Subject: %d\r\n\r\nx\r\n" % i).encode())
                c.quit()
            deliver(3)
            h.wait_for(lambda: len(system.maildir_messages("metrics")) == 3, 30, what="delivery")
            first, types = parse(scrape(system))
            for (name, _), _value in first.items():
                self.assertIn(family_of(name, types), types, "sample without TYPE: " + name)
                self.assertTrue(name.startswith("mailfarm_"), name)
            names = {family_of(n, types) for n, _ in first}
            for expected in ("mailfarm_queue_jobs", "mailfarm_farm_children",
                             "mailfarm_farm_jobs_total"):
                self.assertIn(expected, names)
            self.assertTrue(any(types[n] == "histogram" for n in names), "no latency histogram")
            self.assertTrue(any("fsync" in n or "sync" in n for n in names), names)
            self.assertGreaterEqual(
                first.get(("mailfarm_deliveries_total", '{channel="local",status="sent"}'), 0), 3,
                "deliveries by channel and status")
            self.assertIn(("mailfarm_spool_bytes", ""), first)
            busy_farms = {lbl for (n, lbl) in first if n == "mailfarm_farm_children"}
            self.assertTrue(any('farm="smtpd"' in l for l in busy_farms), busy_farms)

            # Delivered jobs' files wait in spool/spare/ once removed (a later
            # message of the three may already have taken one); the next two
            # messages are written into spare files.
            h.wait_for(lambda: not system.queue_files(), 30, what="an empty queue")
            spare_dir = os.path.join(system.root, "spool", "spare")
            self.assertGreaterEqual(len(os.listdir(spare_dir)), 1, system.log()[-3000:])
            deliver(2)
            h.wait_for(lambda: len(system.maildir_messages("metrics")) == 5, 30, what="delivery")
            h.wait_for(lambda: not system.queue_files(), 30, what="an empty queue")
            second, types2 = parse(scrape(system))
            created = second[("mailfarm_spool_files_created_total", "")]
            reused = second[("mailfarm_spool_files_reused_total", "")]
            self.assertEqual(created, 5)
            # Small messages are made durable by the spool journal, not syncfs.
            self.assertGreaterEqual(second[("mailfarm_spool_journal_syncs_total", "")], 1)
            self.assertEqual(second[("mailfarm_spool_fs_syncs_total", "")], 0)
            self.assertGreaterEqual(reused, 2)
            # Every file ever allocated is a spare now: none leaked, none lost.
            self.assertEqual(len(os.listdir(spare_dir)), created - reused)
            for (name, labels), value in first.items():
                fam = family_of(name, types)
                if types.get(fam) == "counter" or (types.get(fam) == "histogram" and
                                                   not name.endswith("_sum")):
                    self.assertIn((name, labels), second, "counter vanished: %s%s" % (name, labels))
                    self.assertGreaterEqual(second[(name, labels)], value,
                                            "counter went down: %s%s" % (name, labels))
            grew = [k for k, v in second.items() if k in first and v > first[k]
                    and types2.get(family_of(k[0], types2)) == "counter"]
            self.assertTrue(grew, "no counter grew after two more deliveries")

    def test_wrong_path_is_404(self):
        with h.MailfarmSystem() as system:
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                "http://127.0.0.1:%d/nope" % system.metrics_port],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.stdout, "404")


if __name__ == "__main__":
    unittest.main(verbosity=2)
