"""Destination-aware scheduling in the whole system, with real SMTP clients and
an aiosmtpd sink: the per-destination concurrency limit holds at the sink and
grows from its slow start, jobs to one destination reuse a transport child's
open session (several messages per connection), a dead destination is
suspended (visible in mailfarmctl stats and /metrics) with its queued jobs
deferred without attempts and revived by `mailfarmctl flush --domain`, and a
backlog adopted after a restart is spread over several transport children."""

import asyncio
import json
import os
import smtplib
import subprocess
import sys
import threading
import unittest

import mailfarm_harness as h

sys.path.insert(0, os.path.join(h.SRC, "tests", "transport"))
from transport_testlib import SinkHandler  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402


class SlowSinkHandler(SinkHandler):
    """SinkHandler that holds each DATA for `delay` s and records how many
    transactions were open at once (MAIL FROM to the end of DATA)."""

    def __init__(self, delay):
        super().__init__()
        self.delay = delay
        self.open = 0
        self.max_open = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.lock:
            self.open += 1
            self.max_open = max(self.max_open, self.open)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RSET(self, server, session, envelope):
        return await super().handle_RSET(server, session, envelope)

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        try:
            return await super().handle_DATA(server, session, envelope)
        finally:
            with self.lock:
                self.open -= 1


class SlowSink:
    def __init__(self, delay=0.05, port=None):
        self.handler = SlowSinkHandler(delay)
        self.port = port or h.free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     server_hostname="sink.test")
        self.controller.start()

    def messages(self):
        with self.handler.lock:
            return list(self.handler.messages)

    def stop(self):
        self.controller.stop()


def config(root, smtp_port, metrics_port, routes, channel_keys, extra=""):
    """default_config with the smtp channel's destination keys and routes."""
    text = h.default_config(root, smtp_port, metrics_port, None, extra,
                            scheduler="min_backoff_s: 600 max_backoff_s: 900")
    text = text.replace('  route { domain: "*" channel: "discard" }',
                        routes + '  route { domain: "*" channel: "discard" }')
    text = text.replace(
        'channel { name: "smtp" type: SMTP farm { start_children: 1 min_spare: 1 max_spare: 8 }',
        'channel { name: "smtp" type: SMTP %s farm { start_children: 2 min_spare: 2 '
        'max_spare: 8 max_children: 16 }' % channel_keys)
    assert channel_keys in text
    return text


def system_with(routes, channel_keys, extra=""):
    root = h.make_temp_dir()
    smtp_port, metrics_port = h.free_port(), h.free_port()
    s = h.MailfarmSystem(config_text=config(root, smtp_port, metrics_port, routes,
                                            channel_keys, extra), root=root)
    s.smtp_port, s.metrics_port = smtp_port, metrics_port
    return s


def send_many(port, rcpts, sessions=4):
    """Sends one message per recipient over `sessions` parallel SMTP sessions."""
    errors = []

    def worker(part):
        try:
            c = smtplib.SMTP("127.0.0.1", port, timeout=60)
            for i, rcpt in part:
                c.sendmail("bench@example.org", [rcpt],
                           ("Subject: m%d\r\n\r\nmessage %d\r\n" % (i, i)).encode())
            c.quit()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    items = list(enumerate(rcpts))
    threads = [threading.Thread(target=worker, args=(items[k::sessions],))
               for k in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def stats(system):
    return json.loads(system.ctl("stats", "--json").stdout)["samples"]


def sample(samples, name, **labels):
    for s in samples:
        if s["name"] == name and all(s.get("labels", {}).get(k) == v for k, v in labels.items()):
            return s["value"]
    return None


class DestinationTest(unittest.TestCase):
    def test_concurrency_limit_slow_start_and_affinity(self):
        sink = SlowSink(delay=0.05)
        routes = '  route { domain: "relay.test" channel: "smtp" nexthop: "[127.0.0.1]:%d" }\n' % \
            sink.port
        system = system_with(routes, "destination_concurrency: 3 "
                                     "initial_destination_concurrency: 1 concurrency: 8")
        try:
            system.start()
            n = 80
            send_many(system.smtp_port, ["u%d@relay.test" % i for i in range(n)])
            h.wait_for(lambda: len(sink.messages()) >= n, 120, what="%d messages at the sink" % n)
            h.wait_for(lambda: not system.queue_files(), 30, what="an empty spool")
            # Never more than the destination's limit at once, and more than
            # the slow start's first window once it grew.
            self.assertLessEqual(sink.handler.max_open, 3)
            self.assertGreaterEqual(sink.handler.max_open, 2)
            self.assertEqual(len(sink.messages()), n)
            # Affinity: a destination's next job goes to the child already in
            # session there, so connections carry many messages each.
            peers = {}
            for m in sink.messages():
                peers[m["peer"]] = peers.get(m["peer"], 0) + 1
            per_connection = n / len(peers)
            sys.stderr.write("messages per connection: %.1f over %d connections\n" %
                             (per_connection, len(peers)))
            self.assertGreaterEqual(per_connection, 5.0, peers)
            samples = stats(system)
            hits = sample(samples, "mailfarm_farm_affinity_hits_total", farm="transport-smtp")
            self.assertIsNotNone(hits)
            self.assertGreater(hits, n / 2)
        finally:
            system.stop()
            sink.stop()

    def test_dead_destination_is_suspended_then_flushed(self):
        dead_port = h.free_port()  # nothing listens there yet
        routes = '  route { domain: "dead.test" channel: "smtp" nexthop: "[127.0.0.1]:%d" }\n' % \
            dead_port
        system = system_with(routes, "initial_destination_concurrency: 1 "
                                     "dead_destination_failures: 2 dead_destination_backoff_s: 900")
        sink = None
        try:
            system.start()
            send_many(system.smtp_port, ["u%d@dead.test" % i for i in range(6)], sessions=1)
            destination = "[127.0.0.1]:%d" % dead_port

            def suspended_and_deferred():
                rows = [json.loads(line) for line in
                        system.ctl("queue", "list", "--json").stdout.splitlines() if line.strip()]
                deferred = [r for r in rows if r.get("state") == "deferred"]
                return rows if len(rows) == 6 and len(deferred) == 6 else None
            rows = h.wait_for(suspended_and_deferred, 60, what="6 deferred jobs")
            attempts = sorted(int(r.get("attempts", 0)) for r in rows)
            # Two connection failures suspend the destination; the other jobs
            # wait with it without making an attempt of their own.
            self.assertEqual(attempts, [0, 0, 0, 0, 1, 1], rows)
            samples = stats(system)
            self.assertEqual(sample(samples, "mailfarm_destinations_suspended", channel="smtp"), 1)
            self.assertEqual(sample(samples, "mailfarm_destination_suspended", channel="smtp",
                                    destination=destination), 1)
            page = subprocess.run(["curl", "-sS", "-f", "http://127.0.0.1:%d/metrics" %
                                   system.metrics_port], capture_output=True, text=True,
                                  timeout=30).stdout
            self.assertIn('mailfarm_destinations_suspended{channel="smtp"} 1', page)
            self.assertIn("suspended for", system.log())

            # The destination comes back; the operator flushes the domain and
            # everything is delivered at once, without waiting 15 minutes.
            sink = SlowSink(delay=0, port=dead_port)
            system.ctl("flush", "--domain", "dead.test")
            h.wait_for(lambda: len(sink.messages()) == 6, 60, what="6 messages after the flush")
            h.wait_for(lambda: not system.queue_files(), 30, what="an empty spool")
            samples = stats(system)
            self.assertEqual(sample(samples, "mailfarm_destinations_suspended", channel="smtp"), 0)
        finally:
            system.stop()
            if sink:
                sink.stop()

    def test_backlog_after_restart_spreads_over_children(self):
        sink = SlowSink(delay=0.1)
        routes = '  route { domain: "relay.test" channel: "smtp" nexthop: "[127.0.0.1]:%d" }\n' % \
            sink.port
        keys = "destination_concurrency: 8 initial_destination_concurrency: 4 concurrency: 8"
        system = system_with(routes, keys, extra='supervisor { disable: "transport-smtp" }')
        try:
            system.start()
            n = 40
            send_many(system.smtp_port, ["u%d@relay.test" % i for i in range(n)])
            self.assertEqual(len(system.queue_files()), n)
            system.stop()
            # The same spool, the smtp farm back: replay adopts the backlog.
            with open(system.config_path) as f:
                text = f.read().replace('supervisor { disable: "transport-smtp" }', "")
            with open(system.config_path, "w") as f:
                f.write(text)
            system.start()
            h.wait_for(lambda: len(sink.messages()) >= n, 120, what="the backlog at the sink")
            board = h.read_scoreboard(os.path.join(system.run_dir, "transport-smtp.scoreboard"))
            workers = [s for s in board["slots"] if s["jobs_done"] > 0]
            sys.stderr.write("backlog of %d over %d children, at most %d at once\n" %
                             (n, len(workers), sink.handler.max_open))
            self.assertGreaterEqual(len(workers), 2, board)
            self.assertGreaterEqual(sink.handler.max_open, 2)
            self.assertLess(max(s["jobs_done"] for s in workers), n)
        finally:
            system.stop()
            sink.stop()


if __name__ == "__main__":
    unittest.main()
