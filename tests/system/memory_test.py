"""memory_test.py: unfinished messages do not fill the memory (issue 23).

Six SMTP clients each send 40 MB into DATA without the final dot and hold
their sessions open. smtpd's children stream each body to the scheduler in
64 KiB chunks and the scheduler writes it to spool/tmp/ as it arrives, so the
resident memory of the whole tree (mailfarmd and every process under it) grows
by less than 64 MB, where holding the bodies would take 240 MB. Then the
clients go away: their bytes are given back (the scheduler's
mailfarm_inject_inflight_bytes falls to 0) and mail still flows.

Under AddressSanitizer freed memory sits in a quarantine (256 MB a process by
default) before it is reused; the test makes it small, since it measures the
program's memory, not the sanitizer's.
"""
import os
import re
import socket
import smtplib
import subprocess
import threading
import time
import unittest

import mailfarm_harness as h

CLIENTS = 6
BODY_MB = 40
LIMIT_MB = 64

os.environ["ASAN_OPTIONS"] = ":".join(
    filter(None, [os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=4",
                  "thread_local_quarantine_size_kb=256"]))


def tree_pids(root):
    """root and every process descended from it."""
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parents[int(name)] = int(fields[1])
        except OSError:
            continue
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(p for p, ppid in parents.items() if ppid == pid and p not in found)
    return found


def tree_rss(root):
    """{pid: (name, VmRSS in kB)} of the tree."""
    out = {}
    for pid in tree_pids(root):
        try:
            with open("/proc/%d/status" % pid) as f:
                status = f.read()
        except OSError:
            continue
        m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        name = re.search(r"^Name:\s+(\S+)", status, re.M)
        out[pid] = (name.group(1) if name else "?", int(m.group(1)) if m else 0)
    return out


def tree_rss_kb(root):
    return sum(rss for _, rss in tree_rss(root).values())


def inflight_bytes(system):
    r = subprocess.run(["curl", "-sS", "-f", "http://127.0.0.1:%d/metrics" % system.metrics_port],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    m = re.search(r"^mailfarm_inject_inflight_bytes (\S+)$", r.stdout, re.M)
    assert m, "no mailfarm_inject_inflight_bytes in /metrics"
    return float(m.group(1))


def expect(sock, code):
    data = b""
    while not re.search(rb"(^|\r\n)\d{3} [^\r\n]*\r\n$", data):
        chunk = sock.recv(4096)
        assert chunk, "connection closed waiting for %d (got %r)" % (code, data)
        data += chunk
    assert data.split(b"\r\n")[-2].startswith(b"%d" % code), data
    return data


def open_data(port, n):
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    expect(s, 220)
    s.sendall(b"EHLO client%d.test\r\n" % n)
    expect(s, 250)
    s.sendall(b"MAIL FROM:<sender@example.test> SIZE=%d\r\n" % (BODY_MB << 20))
    expect(s, 250)
    s.sendall(b"RCPT TO:<user%d@example.test>\r\n" % n)
    expect(s, 250)
    s.sendall(b"DATA\r\n")
    expect(s, 354)
    return s


def send_body(sock, errors):
    line = b"x" * 998 + b"\r\n"
    block = b"Subject: big\r\n\r\n" + line * 1024  # about 1 MB
    try:
        for _ in range(BODY_MB):
            sock.sendall(block)
    except OSError as e:
        errors.append(e)


SMTPD_FARM = ("farm { start_children: 2 min_spare: 1 max_spare: 8 max_children: 32 }",
              "farm { start_children: %d min_spare: 1 max_spare: 32 max_children: 32 }"
              % (CLIENTS + 4))


class MemoryTest(unittest.TestCase):
    def test_unfinished_bodies_do_not_fill_the_memory(self):
        system = h.MailfarmSystem()
        with open(system.config_path) as f:
            config = f.read()
        assert SMTPD_FARM[0] in config
        with open(system.config_path, "w") as f:
            f.write(config.replace(*SMTPD_FARM))
        with system:
            # Enough smtpd children up front, each having served a session,
            # so that the figure is the bodies' memory, not new processes'.
            warm = [open_data(system.smtp_port, 100 + n) for n in range(CLIENTS + 2)]
            for s in warm:
                s.sendall(b"Subject: warm\r\n\r\nup\r\n.\r\n")
                expect(s, 250)
                s.sendall(b"QUIT\r\n")
                expect(s, 221)
                s.close()
            h.wait_for(lambda: all(system.maildir_messages("user%d" % (100 + n))
                                   for n in range(CLIENTS + 2)), 120,
                       what="the warm-up deliveries")
            root = system.daemon.pid
            # The farms have grown their pools for those deliveries: measure
            # once no process has come or gone for two seconds.
            seen = {"pids": set(), "since": 0.0}

            def settled():
                pids = tree_pids(root)
                if pids != seen["pids"]:
                    seen["pids"], seen["since"] = pids, time.monotonic()
                return time.monotonic() - seen["since"] >= 2.0
            h.wait_for(settled, 120, interval=0.2, what="the process tree to settle")
            before = tree_rss(root)
            baseline = sum(rss for _, rss in before.values())
            socks = [open_data(system.smtp_port, n) for n in range(CLIENTS)]
            errors = []
            senders = [threading.Thread(target=send_body, args=(s, errors)) for s in socks]
            peak = [baseline]
            done = threading.Event()

            def watch():
                while not done.wait(0.1):
                    peak[0] = max(peak[0], tree_rss_kb(root))
            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                for t in senders:
                    t.start()
                for t in senders:
                    t.join(600)
                self.assertEqual(errors, [])
                # Every body reached the scheduler (but what smtpd and the
                # channel still buffer: well under 1 MB a client).
                h.wait_for(lambda: inflight_bytes(system) >= CLIENTS * (BODY_MB - 1) * 2**20,
                           180, what="the bodies to reach the scheduler")
                peak[0] = max(peak[0], tree_rss_kb(root))
                for pid, (name, rss) in sorted(tree_rss(root).items()):
                    was = before.get(pid, (name, 0))[1]
                    print("  %7d %-16s %7.1f MB %+7.1f MB%s" % (
                        pid, name, rss / 1024.0, (rss - was) / 1024.0,
                        "" if pid in before else " (new)"))
            finally:
                done.set()
                watcher.join()
            growth_mb = (peak[0] - baseline) / 1024.0
            print("tree RSS %.1f MB before, peak %.1f MB with %d x %d MB in DATA: +%.1f MB" %
                  (baseline / 1024.0, peak[0] / 1024.0, CLIENTS, BODY_MB, growth_mb))
            self.assertLess(growth_mb, LIMIT_MB)

            for s in socks:
                s.close()
            h.wait_for(lambda: inflight_bytes(system) == 0, 120, what="the bytes given back")
            with smtplib.SMTP("127.0.0.1", system.smtp_port, timeout=60) as c:
                c.sendmail("sender@example.test", ["after@example.test"],
                           "Subject: after\r\n\r\nstill flowing\r\n")
            h.wait_for(lambda: system.maildir_messages("after"), 120, what="the delivery")


if __name__ == "__main__":
    unittest.main()
