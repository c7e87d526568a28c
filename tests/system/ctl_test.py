"""mailfarmctl against a running system with a seeded queue: jobs waiting for a
farm that is not running, deferred jobs (a sink answering 451), held jobs.
Every verb, its --json output parsed by a real JSON parser, and its exit codes."""

import json
import os
import smtplib
import subprocess
import sys
import unittest

import mailfarm_harness as h

sys.path.insert(0, os.path.join(h.SRC, "tests", "transport"))
from transport_testlib import Sink  # noqa: E402

# Local delivery is switched off so that jobs for local users stay queued.
HOLD_LOCAL = 'supervisor { disable: "transport-local" }'


def send(system, sender, rcpts, subject):
    c = smtplib.SMTP("127.0.0.1", system.smtp_port, timeout=30)
    try:
        c.sendmail(sender, rcpts, ("Subject: %s\r\n\r\n%s\r\n" % (subject, subject)).encode())
    finally:
        c.quit()


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class CtlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sink = Sink()
        cls.system = h.MailfarmSystem(sink_port=cls.sink.port, extra=HOLD_LOCAL,
                                      scheduler="min_backoff_s: 600 max_backoff_s: 900")
        cls.system.start()
        for i in range(3):
            send(cls.system, "alice@example.org", ["u%d@localhost" % i], "local-%d" % i)
        for i in range(2):
            send(cls.system, "bob@example.org", ["tempfail%d@relay.test" % i], "relay-%d" % i)

        def seeded():
            rows = json_lines(cls.system.ctl("queue", "list", "--json").stdout)
            deferred = [r for r in rows if r.get("state") == "deferred"]
            return rows if len(rows) == 5 and len(deferred) == 2 else None
        cls.rows = h.wait_for(seeded, 60, what="a seeded queue (3 waiting, 2 deferred)")

    @classmethod
    def tearDownClass(cls):
        cls.system.stop()
        cls.sink.stop()

    def ctl(self, *args, check=True):
        return self.system.ctl(*args, check=check)

    def list_json(self, *filters):
        return json_lines(self.ctl("queue", "list", "--json", *filters).stdout)

    def qids_to(self, domain):
        return sorted(r["qid"] for r in self.list_json("--domain", domain))

    def test_queue_list_text_and_json(self):
        text = self.ctl("queue", "list").stdout
        self.assertIn("-Queue ID-", text)
        self.assertIn("Requests.", text)
        for row in self.list_json():
            self.assertIn(row["qid"], text)
            self.assertIn("recipients", row)
            self.assertIn("sender", row)
        deferred = self.list_json("--state", "deferred")
        self.assertEqual(len(deferred), 2)
        for row in deferred:
            self.assertGreater(int(row["next_attempt_unix_ms"]), 0)
            self.assertIn("451", row.get("last_error", ""))
        self.assertEqual(len(self.list_json("--sender", "bob@example.org")), 2)
        self.assertEqual(len(self.list_json("--sender", "alice@example.org")), 3)
        # Other tests add jobs to local users: every match, and only matches.
        local = self.list_json("--domain", "localhost")
        self.assertGreaterEqual(len(local), 3)
        for row in local:
            self.assertTrue(any(r.endswith("@localhost") for r in row["recipients"]), row)
        self.assertTrue(all(r["sender"] != "bob@example.org" for r in local))

    def test_mailq_alias(self):
        r = subprocess.run([os.path.join(h.BIN, "mailq"), "--config", self.system.config_path],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("-Queue ID-", r.stdout)

    def test_queue_show(self):
        qid = self.list_json("--state", "deferred")[0]["qid"]
        text = self.ctl("queue", "show", qid).stdout
        self.assertIn("queue id:     " + qid, text)
        self.assertIn("sender:       <bob@example.org>", text)
        detail = json.loads(self.ctl("queue", "show", qid, "--json").stdout)
        self.assertEqual(detail["entry"]["qid"], qid)
        self.assertTrue(any("451" in a.get("text", "") for a in detail.get("history", [])),
                        detail)
        r = self.ctl("queue", "show", "0000000000000000", check=False)
        self.assertEqual(r.returncode, 1)

    def test_hold_release(self):
        qid = self.qids_to("localhost")[0]
        r = self.ctl("hold", qid)
        self.assertIn("hold: 1 job", r.stdout)
        self.assertEqual([row["qid"] for row in self.list_json("--state", "hold")], [qid])
        self.assertIn(qid + "!", self.ctl("queue", "list").stdout)
        self.ctl("release", qid)
        self.assertEqual(self.list_json("--state", "hold"), [])

    def test_flush_retries_a_deferred_job_now(self):
        row = self.list_json("--state", "deferred")[0]
        before = int(row.get("attempts", 0))
        self.ctl("flush", row["qid"])

        def retried():
            rows = [r for r in self.list_json() if r["qid"] == row["qid"]]
            return rows and int(rows[0].get("attempts", 0)) > before and \
                rows[0]["state"] == "deferred"
        h.wait_for(retried, 30, what="a flushed job to be retried (and deferred again)")

    def test_delete_and_bulk_needs_yes(self):
        send(self.system, "carol@example.org", ["del1@localhost"], "to-delete")
        qid = h.wait_for(lambda: [r["qid"] for r in self.list_json("--sender", "carol@example.org")],
                         30, what="the job to delete")[0]
        r = self.ctl("delete", "--all", check=False)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--yes", r.stderr)
        self.ctl("delete", qid)
        self.assertEqual(self.list_json("--sender", "carol@example.org"), [])
        r = self.ctl("delete", qid, check=False)
        self.assertEqual(r.returncode, 1)

    def test_bounce_sends_a_dsn(self):
        send(self.system, "dave@localhost", ["tempgone@relay.test"], "to-bounce")
        # The sink defers tempgone; dave@localhost is local, so the DSN to him
        # waits in the queue too (no local farm).
        qid = h.wait_for(lambda: [r["qid"] for r in self.list_json("--sender", "dave@localhost")],
                         30, what="the job to bounce")[0]
        self.ctl("bounce", qid)

        def dsn_queued():
            return [r for r in self.list_json("--domain", "localhost")
                    if "dave@localhost" in r["recipients"] and r["sender"] == ""]
        h.wait_for(dsn_queued, 30, what="a DSN to dave (null sender)")
        self.assertEqual([r for r in self.list_json() if r["qid"] == qid], [])

    def test_stats_and_farms(self):
        self.assertIn("mailfarm_queue_jobs", self.ctl("stats").stdout)
        samples = json.loads(self.ctl("stats", "--json").stdout)["samples"]
        self.assertTrue(any(s["name"] == "mailfarm_queue_jobs" for s in samples))
        rates = {(s["labels"]["event"], s["labels"]["window"]): s["value"] for s in samples
                 if s["name"] == "mailfarm_rate_per_minute"}
        self.assertEqual(len(rates), 12, rates)  # 4 events x 1m/5m/15m
        self.assertGreater(rates[("injected", "15m")], 0)
        farms = json_lines(self.ctl("farms", "--json").stdout)
        names = {f["farm"] for f in farms}
        self.assertTrue({"router", "smtpd", "transport-smtp"} <= names, names)
        for f in farms:
            self.assertTrue(f["manager_alive"] or f["farm"] == "transport-local", f)
        self.assertIn("smtpd: manager", self.ctl("farms").stdout)

    def test_usage_errors(self):
        self.assertEqual(self.ctl("frobnicate", check=False).returncode, 2)
        self.assertEqual(self.ctl("queue", check=False).returncode, 2)
        self.assertEqual(self.ctl("hold", check=False).returncode, 2)


class CtlUnavailableTest(unittest.TestCase):
    def test_scheduler_down_is_69(self):
        system = h.MailfarmSystem()
        r = system.ctl("queue", "list", check=False)
        self.assertEqual(r.returncode, 69)
        self.assertIn("not reachable", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
