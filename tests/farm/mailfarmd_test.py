"""mailfarmd, the supervisor: config errors, restarts with backoff, orderly stop,
the pid-file lock, and sd_notify readiness. Components here are echo farms
(supervisor.program) so the test needs only the farm library's binaries."""

import os
import shutil
import signal
import socket
import subprocess
import time
import unittest

import mailfarm_harness as h


def supervised_config(root, programs=2, extra_programs=""):
    progs = extra_programs + "".join(
        'program {{ name: "echo{i}" argv: "{bin}" argv: "--config" argv: "{root}/echo{i}.conf" }}\n'
        .format(i=i, bin=h.binary("mailfarm-echo-farm"), root=root) for i in range(programs))
    for i in range(programs):
        # Started as root, mailfarmd runs the programs as the mailfarm user:
        # their run dirs must be theirs.
        run = os.path.join(root, "run%d" % i)
        os.makedirs(run, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(run, "mailfarm", "mailfarm")
        with open(os.path.join(root, "echo%d.conf" % i), "w") as f:
            f.write('paths { run_dir: "%s/run%d" }\n'
                    'router { start_children: 2 min_spare: 1 max_spare: 3 }\n' % (root, i))
    return ('identity {{ user: "mailfarm" group: "mailfarm" }}\n'
            'paths {{ run_dir: "{root}/run" spool_dir: "{root}/spool" }}\n'
            'supervisor {{ disable: "router" disable: "filter" disable: "scheduler" '
            'restart_backoff_min_ms: 200 restart_backoff_max_ms: 800\n{progs}}}\n'
            .format(root=root, progs=progs))


class MailfarmdTest(unittest.TestCase):
    def setUp(self):
        self.root = h.make_temp_dir("mf-sup-")
        os.chmod(self.root, 0o755)
        self.conf = os.path.join(self.root, "mailfarm.conf")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            p.stop()
        self.assertEqual(h.pids_matching(self.root), [], "processes left behind")

    def start(self, env=None):
        p = h.Process([h.binary("mailfarmd"), "--config", self.conf, "--foreground"],
                      log_path=os.path.join(self.root, "mailfarmd-%d.log" % len(self.procs)),
                      env=env)
        self.procs.append(p)
        return p

    def echo_manager_pid(self, i):
        board = os.path.join(self.root, "run%d" % i, "echo.scoreboard")
        if not os.path.exists(board):
            return None
        pid = h.read_scoreboard(board)["manager_pid"]
        return pid if os.path.exists("/proc/%d" % pid) else None

    def test_config_error_names_line_and_column_and_exits_78(self):
        with open(self.conf, "w") as f:
            f.write('paths {\n  run_dir: "x"\n  bogus_key: 3\n}\n')
        r = subprocess.run([h.binary("mailfarmd"), "--config", self.conf, "--check-config"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn(self.conf + ":3:", r.stderr)
        self.assertIn("bogus_key", r.stderr)
        # The same without --check-config: refused before anything starts.
        r = subprocess.run([h.binary("mailfarmd"), "--config", self.conf, "--foreground"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 78)

    def test_check_config_accepts_a_good_config_and_refuses_missing_programs(self):
        with open(self.conf, "w") as f:
            f.write(supervised_config(self.root))
        r = subprocess.run([h.binary("mailfarmd"), "--config", self.conf, "--check-config"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configuration OK", r.stdout)
        with open(self.conf, "w") as f:
            f.write(supervised_config(
                self.root, extra_programs='program { name: "ghost" argv: "/nonexistent/ghostd" }\n'))
        r = subprocess.run([h.binary("mailfarmd"), "--config", self.conf, "--check-config"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 69)
        self.assertIn("/nonexistent/ghostd is missing", r.stderr)

    def test_killed_component_is_restarted_and_sigterm_stops_the_tree(self):
        with open(self.conf, "w") as f:
            f.write(supervised_config(self.root))
        d = self.start()
        first = h.wait_for(lambda: self.echo_manager_pid(0), 30, what="echo0 manager")
        h.wait_for(lambda: self.echo_manager_pid(1), 30, what="echo1 manager")
        os.kill(first, signal.SIGKILL)
        second = h.wait_for(lambda: (self.echo_manager_pid(0) or first) != first and
                            self.echo_manager_pid(0), 30, what="echo0 restarted")
        self.assertNotEqual(first, second)
        self.assertIn("restarting in 200 ms", d.log())
        # Kill it again at once: the backoff doubles.
        os.kill(second, signal.SIGKILL)
        h.wait_for(lambda: "restarting in 400 ms" in d.log(), 30, what="doubled backoff")
        h.wait_for(lambda: self.echo_manager_pid(0) not in (None, second), 30,
                   what="echo0 restarted again")
        # mailfarmd, 2 managers and their children: the restarted manager
        # forks its children a moment after it appears, so wait for them.
        h.wait_for(lambda: len(h.pids_matching(self.root)) >= 1 + 2 * 3, 30,
                   what="the restarted farm's children")
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait(60), 0, d.log())
        h.wait_for(lambda: h.pids_matching(self.root) == [], 20, what="the whole tree to exit")
        self.assertIn("stopped echo0", d.log())

    def test_second_instance_on_the_same_run_dir_refuses(self):
        with open(self.conf, "w") as f:
            f.write(supervised_config(self.root, programs=1))
        d = self.start()
        h.wait_for(lambda: self.echo_manager_pid(0), 30, what="first instance up")
        r = subprocess.run([h.binary("mailfarmd"), "--config", self.conf, "--foreground"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 69)
        self.assertIn("already running (pid %d)" % d.pid, r.stderr)
        self.assertTrue(d.alive())

    def test_sd_notify_ready_and_stopping(self):
        with open(self.conf, "w") as f:
            f.write(supervised_config(self.root, programs=1))
        path = os.path.join(self.root, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        os.chmod(path, 0o777)  # like /run/systemd/notify: mailfarmd sends after dropping root
        sock.settimeout(30)
        d = self.start(env={"NOTIFY_SOCKET": path})
        self.assertIn(b"READY=1", sock.recv(4096))
        d.signal(signal.SIGHUP)
        self.assertIn(b"RELOADING=1", sock.recv(4096))
        self.assertIn(b"READY=1", sock.recv(4096))
        d.signal(signal.SIGTERM)
        self.assertIn(b"STOPPING=1", sock.recv(4096))
        self.assertEqual(d.wait(60), 0)
        sock.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
