"""Integration tests of mailfarm-router, the real farm binary, over its socket:
the routing matrix and alias expansion as the scheduler sees them (Job in,
Result out), config errors at start, and SIGHUP reloads of the tables while
jobs are in flight (between jobs and during a job blocked in the router)."""

import os
import signal
import stat
import subprocess
import threading
import time
import unittest

import mailfarm_harness as h
import wire_pb2

ALIASES = """# router test aliases
postmaster: root
staff: alice, Bob, carol@local.test
team: staff, dave@remote.org,
  alice
loop1: loop2
loop2: loop1
pipe: "|/usr/bin/procmail -d pipe"
file: /var/mail/archive
list: :include:{root}/list.inc
slow: :include:{root}/slow.fifo
ghost: nobody-here
"""

CONFIG = """
paths {{ run_dir: "{root}/run" spool_dir: "{root}/spool" log_dir: "" }}
router {{ start_children: 2 min_spare: 1 max_spare: 4 }}
routing {{
  local_domains: "example.com"
  local_domains: "local.test"
  local_users: "alice"
  local_users: "bob"
  local_users: "carol"
  local_users: "root"
  aliases_file: "{root}/aliases"
  route {{ domain: "remote.org" channel: "smtp" nexthop: "[127.0.0.1]:2600" }}
  route {{ domain: ".remote.org" channel: "{sub_channel}" }}
  route {{ domain: "*" channel: "smtp" }}
}}
channel {{ name: "local" type: LOCAL }}
channel {{ name: "smtp" type: SMTP }}
channel {{ name: "pipe" type: PIPE }}
channel {{ name: "discard" type: DISCARD }}
"""


class RouterFarm:
    def __init__(self, sub_channel="smtp", aliases=ALIASES):
        self.root = h.make_temp_dir("mf-router-")
        self.conf = os.path.join(self.root, "mailfarm.conf")
        self.write(sub_channel, aliases)
        with open(os.path.join(self.root, "list.inc"), "w") as f:
            f.write("# members\nalice, eve@remote.org\n\"|/bin/cat\"\n")
        os.mkfifo(os.path.join(self.root, "slow.fifo"))
        self.sock = os.path.join(self.root, "run", "router.sock")
        self.proc = h.Process([h.binary("mailfarm-router"), "--config", self.conf],
                              log_path=os.path.join(self.root, "router.log"))
        # The scoreboard appears after the socket listens (the socket file
        # itself exists between bind() and listen()).
        self.board = os.path.join(self.root, "run", "router.scoreboard")
        h.wait_for(lambda: os.path.exists(self.board) or not self.proc.alive(), 30,
                   what="router.scoreboard")
        assert self.proc.alive(), self.proc.log()

    def write(self, sub_channel, aliases=ALIASES):
        with open(os.path.join(self.root, "aliases"), "w") as f:
            f.write(aliases.format(root=self.root))
        with open(self.conf, "w") as f:
            f.write(CONFIG.format(root=self.root, sub_channel=sub_channel))

    def connect(self):
        conn = h.FrameSocket.connect_unix(self.sock)
        frame = conn.recv(wire_pb2.ChildFrame)
        assert frame.WhichOneof("kind") == "hello", frame
        assert frame.hello.farm == "router", frame
        return conn, frame.hello

    @staticmethod
    def job(qid, *addresses):
        job = wire_pb2.Job(qid=qid, stage=wire_pb2.STAGE_ROUTE, sender="s@remote.org")
        for i, a in enumerate(addresses):
            job.recipients.add(index=i * 10, address=a, original=a)
        return job

    def route(self, conn, qid, *addresses):
        conn.send(self.job(qid, *addresses))
        frame = conn.recv(wire_pb2.ChildFrame)
        assert frame.WhichOneof("kind") == "result", frame
        assert frame.result.qid == qid, frame
        return frame.result

    def stop(self):
        code = self.proc.stop()
        left = h.pids_matching(self.root)
        return code, left


def routes(r):
    return [(x.address, x.channel, x.nexthop) for x in r.routes]


OK, TEMP, PERM = wire_pb2.OUTCOME_OK, wire_pb2.OUTCOME_TEMPFAIL, wire_pb2.OUTCOME_PERMFAIL


class RouterFarmTest(unittest.TestCase):
    def setUp(self):
        self.farm = RouterFarm()

    def tearDown(self):
        code, left = self.farm.stop()
        self.assertEqual(left, [], "processes left behind")
        self.assertEqual(code, 0, self.farm.proc.log()[-4000:])

    def test_routing_matrix_over_the_wire(self):
        conn, hello = self.farm.connect()
        self.assertGreater(hello.pid, 0)
        cases = [
            ("user@remote.org", OK, [("user@remote.org", "smtp", "[127.0.0.1]:2600")]),
            ("User@A.Remote.Org", OK, [("User@a.remote.org", "smtp", "")]),
            ("x@elsewhere.net", OK, [("x@elsewhere.net", "smtp", "")]),
            ("alice@example.com", OK, [("alice@example.com", "local", "")]),
            ("ALICE+news@Example.com", OK, [("alice@example.com", "local", "")]),
            ("nobody@example.com", PERM, []),
            ("bad address@example.com", PERM, []),
        ]
        result = self.farm.route(conn, "Q1", *[c[0] for c in cases])
        self.assertEqual(result.outcome, OK)
        self.assertEqual(len(result.recipients), len(cases))
        for i, (address, outcome, want) in enumerate(cases):
            r = result.recipients[i]
            self.assertEqual(r.index, i * 10, address)
            self.assertEqual(r.outcome, outcome, "%s: %s" % (address, r.text))
            self.assertEqual(routes(r), want, address)
        self.assertEqual(result.recipients[5].dsn, "5.1.1")
        self.assertIn("nobody@example.com", result.recipients[5].text)
        self.assertEqual(result.recipients[6].dsn, "5.1.3")
        conn.close()

    def test_aliases_over_the_wire(self):
        conn, _ = self.farm.connect()
        result = self.farm.route(conn, "Q2", "team@example.com", "postmaster@local.test",
                                 "loop1@example.com", "pipe@example.com", "file@example.com",
                                 "list@example.com", "ghost@example.com", "Staff+x@example.com")
        r = result.recipients
        self.assertEqual(routes(r[0]), [("alice@example.com", "local", ""),
                                        ("bob@example.com", "local", ""),
                                        ("carol@local.test", "local", ""),
                                        ("dave@remote.org", "smtp", "[127.0.0.1]:2600")])
        self.assertEqual(routes(r[1]), [("root@local.test", "local", "")])
        self.assertEqual((r[2].outcome, r[2].dsn), (PERM, "5.4.6"))
        self.assertIn("loop1 -> loop2 -> loop1", r[2].text)
        self.assertEqual(routes(r[3]), [("pipe@example.com", "pipe", "/usr/bin/procmail -d pipe")])
        self.assertEqual(routes(r[4]), [("file@example.com", "local", "/var/mail/archive")])
        # The include's "|/bin/cat" is refused (include_allows_pipes_and_files
        # is false by default); the other members are routed.
        self.assertEqual(routes(r[5]), [("alice@example.com", "local", ""),
                                        ("eve@remote.org", "smtp", "[127.0.0.1]:2600")])
        self.assertIn("|/bin/cat from an :include: file is not allowed", r[5].text)
        self.assertEqual((r[6].outcome, r[6].dsn), (PERM, "5.1.1"))
        self.assertEqual(len(routes(r[7])), 3)
        conn.close()

    def test_wrong_stage_is_a_tempfail_and_the_child_keeps_serving(self):
        conn, _ = self.farm.connect()
        conn.send(wire_pb2.Job(qid="W", stage=wire_pb2.STAGE_FILTER))
        frame = conn.recv(wire_pb2.ChildFrame)
        self.assertEqual(frame.result.outcome, TEMP)
        self.assertEqual(routes(self.farm.route(conn, "Q3", "alice@example.com").recipients[0]),
                         [("alice@example.com", "local", "")])
        conn.close()

    def test_garbage_frame_closes_only_that_connection(self):
        good, _ = self.farm.connect()
        bad, _ = self.farm.connect()
        bad.send_raw(b"\x05\xff\xff\xff\xff\xff")  # a frame that is no Job
        with self.assertRaises((EOFError, ConnectionResetError)):
            bad.recv(wire_pb2.ChildFrame)
        bad.close()
        self.assertEqual(routes(self.farm.route(good, "G", "alice@example.com").recipients[0]),
                         [("alice@example.com", "local", "")])
        good.close()

    def test_sighup_between_jobs_reloads_routes_and_aliases(self):
        conn, hello = self.farm.connect()
        before = self.farm.route(conn, "A1", "x@sub.remote.org", "alice@example.com")
        self.assertEqual(routes(before.recipients[0]), [("x@sub.remote.org", "smtp", "")])
        self.farm.write("discard", ALIASES.replace("ghost: nobody-here", "alice: \\bob"))
        self.farm.proc.signal(signal.SIGHUP)
        # The old child answers what it is sent or closes cleanly; never a lost job.
        closed = False
        deadline = time.monotonic() + 30
        i = 0
        while not closed and time.monotonic() < deadline:
            i += 1
            try:
                r = self.farm.route(conn, "A%d" % (i + 1), "x@sub.remote.org")
                self.assertEqual(routes(r.recipients[0]), [("x@sub.remote.org", "smtp", "")])
            except (EOFError, ConnectionResetError, BrokenPipeError):
                closed = True  # a reset: it left with our unread job in its buffer
        self.assertTrue(closed, "the old child should leave after the reload")

        def new_generation():
            try:
                c, hel = self.farm.connect()
            except EOFError:  # an old child closing before its Hello
                return None
            if hel.generation > hello.generation:
                return c
            c.close()
            return None
        conn2 = h.wait_for(new_generation, 30, what="a child of the new generation")
        after = self.farm.route(conn2, "B1", "x@sub.remote.org", "alice@example.com")
        self.assertEqual(routes(after.recipients[0]), [("x@sub.remote.org", "discard", "")])
        self.assertEqual(routes(after.recipients[1]), [("bob@example.com", "local", "")])
        conn2.close()

    def test_sighup_during_a_slow_job_loses_nothing(self):
        conn, hello = self.farm.connect()
        # slow: :include: of a FIFO: the child blocks in open() until we write it.
        conn.send(self.farm.job("SLOW", "slow@example.com", "alice@example.com"))
        h.wait_for(lambda: any(x["state"] == "busy" and x["pid"] == hello.pid
                               for x in h.read_scoreboard(self.farm.board)["slots"]),
                   30, what="the child to be busy on the slow job")
        self.farm.write("discard")
        self.farm.proc.signal(signal.SIGHUP)
        h.wait_for(lambda: h.read_scoreboard(os.path.join(self.farm.root, "run",
                                                          "router.scoreboard"))["generation"]
                   > hello.generation, 30, what="the new generation")
        with open(os.path.join(self.farm.root, "slow.fifo"), "w") as fifo:
            fifo.write("carol\n")
        frame = conn.recv(wire_pb2.ChildFrame)
        self.assertEqual(frame.result.qid, "SLOW")
        self.assertEqual(routes(frame.result.recipients[0]), [("carol@example.com", "local", "")])
        self.assertEqual(routes(frame.result.recipients[1]), [("alice@example.com", "local", "")])
        with self.assertRaises(EOFError):  # then the old child leaves, cleanly
            conn.recv(wire_pb2.ChildFrame)
        conn2, hello2 = self.farm.connect()
        self.assertGreater(hello2.generation, hello.generation)
        self.assertEqual(routes(self.farm.route(conn2, "N", "y@sub.remote.org").recipients[0]),
                         [("y@sub.remote.org", "discard", "")])
        conn2.close()

    def test_sighup_under_load_every_job_answered(self):
        stop = threading.Event()
        errors, done = [], [0]
        lock = threading.Lock()

        def client(n):
            k = 0
            conn = None
            while not stop.is_set():
                qid = "L%d-%d" % (n, k)
                try:
                    if conn is None:
                        conn, _ = self.farm.connect()
                    r = self.farm.route(conn, qid, "alice@example.com", "x@remote.org")
                    if r.recipients[0].outcome != OK or r.recipients[1].outcome != OK:
                        errors.append((qid, str(r)))
                    with lock:
                        done[0] += 1
                    k += 1
                except (EOFError, ConnectionResetError, BrokenPipeError):
                    # The old child left without reading the job (a close with
                    # unread data is a reset on a Unix socket): send it again.
                    conn = None
                except Exception as e:  # a hang or anything else is a lost job
                    errors.append((qid, repr(e)))
                    return
        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        board_path = os.path.join(self.farm.root, "run", "router.scoreboard")
        gen0 = h.read_scoreboard(board_path)["generation"]
        for i in range(3):
            h.wait_for(lambda: done[0] >= 50 * (i + 1), 60, what="jobs flowing")
            self.farm.proc.signal(signal.SIGHUP)
            h.wait_for(lambda: h.read_scoreboard(board_path)["generation"] == gen0 + i + 1, 30,
                       what="generation %d" % (gen0 + i + 1))
        target = done[0] + 50
        h.wait_for(lambda: done[0] >= target or errors, 60, what="jobs after the reloads")
        stop.set()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertFalse(any(t.is_alive() for t in threads))


class RouterConfigErrorTest(unittest.TestCase):
    def run_router(self, config, aliases=None):
        root = h.make_temp_dir("mf-router-bad-")
        path = os.path.join(root, "mailfarm.conf")
        if aliases is not None:
            with open(os.path.join(root, "aliases"), "w") as f:
                f.write(aliases)
        with open(path, "w") as f:
            f.write(config.format(root=root))
        p = subprocess.run([h.binary("mailfarm-router"), "--config", path], capture_output=True,
                           text=True, timeout=60)
        return p.returncode, p.stderr, root

    BASE = ('paths {{ run_dir: "{root}/run" }}\n'
            'channel {{ name: "local" type: LOCAL }}\n')

    def test_bad_aliases_file_exits_78_with_line(self):
        code, err, root = self.run_router(
            self.BASE + 'routing {{ local_domains: "example.com" aliases_file: "{root}/aliases" }}',
            aliases="ok: alice\nbroken line\n")
        self.assertEqual(code, 78, err)
        self.assertIn("%s/aliases:2: expected" % root, err)

    def test_alias_needing_a_missing_channel_exits_78(self):
        code, err, _ = self.run_router(
            self.BASE + 'routing {{ local_domains: "example.com" aliases_file: "{root}/aliases" }}',
            aliases='prog: "|/usr/bin/logger"\n')
        self.assertEqual(code, 78, err)
        self.assertIn('alias "prog" has target "/usr/bin/logger", which needs channel "pipe"', err)

    def test_missing_aliases_file_exits_78(self):
        code, err, root = self.run_router(
            self.BASE + 'routing {{ aliases_file: "{root}/nope" }}')
        self.assertEqual(code, 78, err)
        self.assertIn("%s/nope" % root, err)

    def test_bad_nexthop_exits_78(self):
        code, err, _ = self.run_router(
            self.BASE + 'routing {{ route {{ domain: "a.org" channel: "local" nexthop: "[x" }} }}')
        self.assertEqual(code, 78, err)
        self.assertIn("routing.route[0]", err)

    def test_help(self):
        p = subprocess.run([h.binary("mailfarm-router"), "--help"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 0)
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "FILES"):
            self.assertIn(section, p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
