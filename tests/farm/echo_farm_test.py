"""Integration tests of the farm library through mailfarm-echo-farm, a real farm
built from it: concurrency, a killed child, recycling, graceful restart, stop,
crash-loop throttling and garbage frames."""

import os
import signal
import socket
import threading
import time
import unittest

import mailfarm_harness as h
import wire_pb2


class EchoFarm:
    def __init__(self, pool="", extra_args=()):
        self.root = h.make_temp_dir("mf-echo-")
        self.conf = os.path.join(self.root, "mf.conf")
        with open(self.conf, "w") as f:
            f.write('paths { run_dir: "%s/run" spool_dir: "%s/spool" }\n' % (self.root, self.root))
            f.write("router { %s }\n" % pool)
        self.proc = h.Process([h.binary("mailfarm-echo-farm"), "--config", self.conf] +
                              list(extra_args), log_path=os.path.join(self.root, "farm.log"))
        self.sock = os.path.join(self.root, "run", "echo.sock")
        self.board_path = os.path.join(self.root, "run", "echo.scoreboard")
        h.wait_for(lambda: os.path.exists(self.sock) and os.path.exists(self.board_path),
                   30, what="echo.sock")

    def board(self):
        return h.read_scoreboard(self.board_path)

    def connect(self):
        conn = h.FrameSocket.connect_unix(self.sock)
        hello = conn.recv(wire_pb2.ChildFrame)
        assert hello.WhichOneof("kind") == "hello", hello
        return conn, hello.hello

    def round_trip(self, conn, qid):
        conn.send(wire_pb2.Job(qid=qid))
        frame = conn.recv(wire_pb2.ChildFrame)
        assert frame.result.qid == qid, frame
        return frame.result

    def stop(self):
        return self.proc.stop()


class EchoFarmTest(unittest.TestCase):
    def tearDown(self):
        if getattr(self, "farm", None):
            self.farm.stop()
            self.assertEqual(h.pids_matching(self.farm.root), [],
                             "processes left behind:\n" + self.farm.proc.log())

    def test_200_concurrent_connections_are_all_served(self):
        self.farm = EchoFarm("start_children: 4 min_spare: 4 max_spare: 16 max_children: 32")
        results, errors = [], []
        max_seen = [0]

        def client(i):
            try:
                conn, _ = self.farm.connect()
                for k in range(3):
                    self.farm.round_trip(conn, "c%d-%d" % (i, k))
                conn.close()
                results.append(i)
            except Exception as e:  # reported below with its index
                errors.append((i, repr(e)))

        def watch():
            while len(results) + len(errors) < 200:
                live = [s for s in self.farm.board()["slots"] if s["state"] != "free"]
                max_seen[0] = max(max_seen[0], len(live))
                time.sleep(0.01)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
        watcher = threading.Thread(target=watch)
        watcher.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        watcher.join(10)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(results), list(range(200)))
        self.assertLessEqual(max_seen[0], 32, "more children than max_children")
        self.assertGreaterEqual(self.farm.board()["total_jobs"], 600)

    def test_killed_busy_child_is_replaced_and_pool_refilled(self):
        self.farm = EchoFarm("start_children: 2 min_spare: 2 max_spare: 4 max_children: 8")
        conn, hello = self.farm.connect()
        conn.send(wire_pb2.Job(qid="sleep:30000"))
        h.wait_for(lambda: any(s["pid"] == hello.pid and s["state"] == "busy"
                               for s in self.farm.board()["slots"]), 10, what="busy child")
        os.kill(hello.pid, signal.SIGKILL)
        with self.assertRaises((EOFError, ConnectionResetError)):
            conn.recv(wire_pb2.ChildFrame)
        h.wait_for(lambda: all(s["pid"] != hello.pid for s in self.farm.board()["slots"]),
                   10, what="the dead child's slot to be freed")
        h.wait_for(lambda: h.count_states(self.farm.board()).get("idle", 0) >= 2, 15,
                   what="pool back to min_spare")
        # The farm still serves.
        conn2, _ = self.farm.connect()
        self.assertEqual(self.farm.round_trip(conn2, "after").outcome, wire_pb2.OUTCOME_OK)
        self.assertIn("killed by signal 9", self.farm.proc.log())

    def test_child_recycled_after_max_jobs(self):
        self.farm = EchoFarm("start_children: 1 min_spare: 1 max_spare: 2 max_jobs: 3")
        conn, hello = self.farm.connect()
        for k in range(3):
            self.farm.round_trip(conn, "j%d" % k)
        # After its third job the child leaves and closes the connection.
        with self.assertRaises((EOFError, ConnectionResetError)):
            conn.recv(wire_pb2.ChildFrame)
        h.wait_for(lambda: all(s["pid"] != hello.pid for s in self.farm.board()["slots"]),
                   10, what="recycled child to leave the scoreboard")
        h.wait_for(lambda: self.farm.board()["total_children"] >= 2, 10,
                   what="a replacement child")
        self.assertEqual(self.farm.board()["total_jobs"], 3)
        conn2, hello2 = self.farm.connect()
        self.assertNotEqual(hello2.pid, hello.pid)
        self.farm.round_trip(conn2, "fresh")

    def test_sighup_under_load_drops_no_connection(self):
        self.farm = EchoFarm("start_children: 4 min_spare: 4 max_spare: 16 max_children: 48")
        stop = threading.Event()
        done, errors = [0], []

        def client(i):
            # A client that loses its connection when its child leaves between
            # jobs reconnects: that is what the scheduler does. A connect that
            # fails, or a job that gets no answer on a live connection, is an error.
            k = 0
            while not stop.is_set():
                try:
                    conn, _ = self.farm.connect()
                except Exception as e:
                    errors.append(("connect", i, repr(e)))
                    return
                try:
                    while not stop.is_set():
                        qid = "h%d-%d" % (i, k)
                        try:
                            conn.send(wire_pb2.Job(qid=qid))
                            frame = conn.recv(wire_pb2.ChildFrame)
                        except (EOFError, ConnectionResetError, BrokenPipeError):
                            break  # child left before reading this job: resend it
                        if frame.result.qid != qid:
                            errors.append(("mismatch", i, qid))
                            return
                        k += 1
                        done[0] += 1
                except Exception as e:
                    errors.append(("unexpected", i, repr(e)))
                    return
                finally:
                    conn.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        gen0 = self.farm.board()["generation"]
        for _ in range(3):
            self.farm.proc.signal(signal.SIGHUP)
            time.sleep(0.7)
        # New connections are accepted all along; keep the load a moment more.
        for _ in range(20):
            c, _ = self.farm.connect()
            self.farm.round_trip(c, "probe")
            c.close()
        stop.set()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])
        self.assertGreater(done[0], 100)
        board = self.farm.board()
        self.assertEqual(board["generation"], gen0 + 3)
        h.wait_for(lambda: all(s["generation"] == gen0 + 3 for s in self.farm.board()["slots"]),
                   15, what="old-generation children to leave")

    def test_sigterm_stops_every_process(self):
        self.farm = EchoFarm("start_children: 5 min_spare: 5 max_spare: 8")
        h.wait_for(lambda: h.count_states(self.farm.board()).get("idle", 0) >= 5, 15,
                   what="five idle children")
        pids = [s["pid"] for s in self.farm.board()["slots"]] + [self.farm.proc.pid]
        conn, _ = self.farm.connect()  # a child holding a connection must leave too
        self.farm.proc.signal(signal.SIGTERM)
        self.assertEqual(self.farm.proc.wait(30), 0)
        for pid in pids:
            h.wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
                       open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] == "Z",
                       10, what="pid %d to exit" % pid)
        self.assertEqual(h.pids_matching(self.farm.root), [])
        conn.close()
        self.farm.proc.stop()

    def test_crash_loop_is_throttled(self):
        self.farm = EchoFarm("start_children: 1 min_spare: 1 max_spare: 2 "
                             "crash_throttle_after: 3 crash_throttle_ms: 60000",
                             extra_args=["--crash_on_start"])
        h.wait_for(lambda: "throttling respawn" in self.farm.proc.log(), 20,
                   what="the throttle log line")
        forked = self.farm.board()["total_children"]
        time.sleep(3)  # a spinning manager would fork many more in this time
        self.assertEqual(self.farm.board()["total_children"], forked)
        self.assertEqual(self.farm.proc.log().count("throttling respawn"), 1)
        self.assertTrue(self.farm.proc.alive())

    def test_garbage_frame_closes_only_that_connection(self):
        self.farm = EchoFarm("start_children: 2 min_spare: 2 max_spare: 4")
        good, _ = self.farm.connect()
        bad, _ = self.farm.connect()
        bad.send_raw(b"\xff\xff\xff\xff\xff\xff\xff\xff")
        with self.assertRaises((EOFError, ConnectionResetError)):
            bad.recv(wire_pb2.ChildFrame)
        oversized, _ = self.farm.connect()
        oversized.send_raw(h._VarintBytes(64 << 20) + b"x" * 100)
        with self.assertRaises((EOFError, ConnectionResetError)):
            oversized.recv(wire_pb2.ChildFrame)
        self.farm.round_trip(good, "still-fine")
        log = self.farm.proc.log()
        self.assertIn("corrupt frame length prefix", log)
        self.assertIn("exceeds the limit", log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
