"""The crash suite: under a steady load of SMTP sessions through the real smtpd
into Maildirs, kill -9 at random moments, in turn, a transport child, a router
child, a farm manager, the scheduler, and mailfarmd with its whole tree (a power
cut, then mailfarmd is started again on the same spool). After each, every
message that received 250 must be delivered at least once: zero lost.
Duplicates (allowed: delivery is at-least-once) are counted and printed.

Seeds: MAILFARM_CRASH_SEEDS="1,2" (default). A failure prints the seed and the
scenario; rerun with MAILFARM_CRASH_SEEDS=<seed> to reproduce it.
"""

import os
import random
import re
import signal
import smtplib
import sys
import threading
import time
import unittest

import mailfarm_harness as h

SEEDS = [int(s) for s in os.environ.get("MAILFARM_CRASH_SEEDS", "1,2").split(",") if s]
CLIENTS = 4
USERS = ["alice", "bob"]


class Load:
    """SMTP clients sending numbered messages; remembers every one that got 250."""

    def __init__(self, system, tag):
        self.system = system
        self.tag = tag
        self.accepted = set()
        self.refused = 0
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.counter = 0
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(CLIENTS)]

    def next_id(self):
        with self.lock:
            self.counter += 1
            return "%s-%d" % (self.tag, self.counter)

    def run(self):
        while not self.stop_event.is_set():
            try:
                conn = smtplib.SMTP("127.0.0.1", self.system.smtp_port, timeout=30)
            except (OSError, smtplib.SMTPException):
                time.sleep(0.1)  # smtpd restarting: a real client retries too
                continue
            try:
                while not self.stop_event.is_set():
                    mid = self.next_id()
                    rcpt = "%s@localhost" % USERS[int(mid.rsplit("-", 1)[1]) % len(USERS)]
                    body = ("From: load@example.org\r\nTo: %s\r\nMessage-ID: <%s@crash.test>\r\n"
                            "Subject: %s\r\n\r\n%s\r\n" % (rcpt, mid, mid, "x" * 500))
                    try:
                        conn.sendmail("load@example.org", [rcpt], body.encode())
                    except smtplib.SMTPResponseException as e:
                        if e.smtp_code >= 500:
                            raise AssertionError("permanent refusal %s for %s" % (e, mid))
                        self.refused += 1  # 4xx: not accepted, the client would retry
                        continue
                    except smtplib.SMTPRecipientsRefused as e:
                        raise AssertionError("recipient refused: %s" % e)
                    with self.lock:
                        self.accepted.add(mid)
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)  # the session died with a killed process
            finally:
                try:
                    conn.close()
                except Exception:
                    pass

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(60)


def delivered_counts(system):
    counts = {}
    pattern = re.compile(rb"Message-ID: <([^@>]+)@crash\.test>")
    for user in USERS:
        for data in system.maildir_messages(user):
            m = pattern.search(data)
            if m:
                mid = m.group(1).decode()
                counts[mid] = counts.get(mid, 0) + 1
    return counts


def farm_pids(system, farm, states=("busy", "connected")):
    path = os.path.join(system.run_dir, farm + ".scoreboard")
    if not os.path.exists(path):
        return []
    return [s["pid"] for s in h.read_scoreboard(path)["slots"] if s["state"] in states
            and s["pid"] > 0]


def manager_pid(system, farm):
    return h.read_scoreboard(os.path.join(system.run_dir, farm + ".scoreboard"))["manager_pid"]


def scheduler_pid(system):
    for pid in h.pids_matching(system.root):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if b"mailfarm-scheduler" in f.read():
                    return pid
        except OSError:
            pass
    return None


def kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


class CrashTest(unittest.TestCase):
    def run_scenario(self, seed, name, crash):
        rng = random.Random("%d-%s" % (seed, name))
        system = h.MailfarmSystem()
        system.start()
        load = Load(system, "s%d%s" % (seed, name[:3]))
        try:
            load.start()
            h.wait_for(lambda: len(load.accepted) >= 20, 60, what="load to get going")
            time.sleep(rng.uniform(0.2, 1.5))  # a random moment
            what = crash(system, rng)
            time.sleep(rng.uniform(0.5, 1.5))
            load.stop()
            accepted = set(load.accepted)
            try:
                h.wait_for(lambda: accepted <= set(delivered_counts(system)), 120,
                           what="every accepted message to be delivered")
            except AssertionError:
                missing = sorted(accepted - set(delivered_counts(system)))
                raise AssertionError(
                    "seed %d scenario %s (%s): %d of %d accepted messages lost, e.g. %s\n%s" %
                    (seed, name, what, len(missing), len(accepted), missing[:5],
                     system.log()[-8000:]))
            counts = delivered_counts(system)
            dups = sum(c - 1 for c in counts.values() if c > 1)
            print("seed %d %-14s %-40s accepted %5d delivered %5d duplicates %d 4xx %d" %
                  (seed, name, what, len(accepted), len(counts), dups, load.refused))
            sys.stdout.flush()
        finally:
            load.stop()
            code, leftovers = system.stop()
            self.assertEqual(leftovers, [], "processes left behind after stop")

    def crash_transport_child(self, system, rng):
        pids = h.wait_for(lambda: farm_pids(system, "transport-local"), 30, what="a transport child")
        pid = rng.choice(pids)
        kill(pid)
        return "killed transport child %d" % pid

    def crash_router_child(self, system, rng):
        pids = h.wait_for(lambda: farm_pids(system, "router"), 30, what="a router child")
        pid = rng.choice(pids)
        kill(pid)
        return "killed router child %d" % pid

    def crash_farm_manager(self, system, rng):
        farm = rng.choice(["transport-local", "router", "smtpd"])
        pid = manager_pid(system, farm)
        kill(pid)
        return "killed %s manager %d" % (farm, pid)

    def crash_scheduler(self, system, rng):
        pid = h.wait_for(lambda: scheduler_pid(system), 30, what="the scheduler")
        kill(pid)
        return "killed scheduler %d" % pid

    def crash_power_cut(self, system, rng):
        pids = h.pids_matching(system.root)
        for pid in pids:
            kill(pid)
        h.wait_for(lambda: not h.pids_matching(system.root), 30, what="every process to die")
        system.daemon.stop()
        time.sleep(rng.uniform(0, 0.5))
        system.start()
        return "power cut (%d processes), restarted" % len(pids)

    def test_crash_suite(self):
        scenarios = [
            ("transport", self.crash_transport_child),
            ("router", self.crash_router_child),
            ("manager", self.crash_farm_manager),
            ("scheduler", self.crash_scheduler),
            ("power-cut", self.crash_power_cut),
        ]
        for seed in SEEDS:
            for name, crash in scenarios:
                with self.subTest(seed=seed, scenario=name):
                    self.run_scenario(seed, name, crash)


if __name__ == "__main__":
    unittest.main(verbosity=2)
