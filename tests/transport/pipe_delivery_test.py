"""mailfarm-transport pipe channel: the exit-code matrix and the command's input.

A Python script stands in for the command (argv, never a shell): it records
its argv and stdin, then exits as the recipient's local part asks: ok -> 0,
tempfail -> 75, fail -> 1 with a stderr line, sleep -> outlives the time limit
(with a grandchild in its process group, which must be killed too), signal ->
kills itself. A per-message argv (no ${recipient}) runs once for all
recipients. The Job's deadline shortens the time limit. An alias "|command" (the Job's nexthop) is split into words
without a shell and run per recipient. A command that does not exist is
deferred.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mailfarm_harness as mh  # noqa: E402
import transport_testlib as tl  # noqa: E402

COMMAND = r'''
import json, os, signal, subprocess, sys, time
out_dir, user = sys.argv[1], sys.argv[2]
data = sys.stdin.buffer.read()
n = len(os.listdir(out_dir))
with open(os.path.join(out_dir, "run%03d.json" % n), "w") as f:
    json.dump({"argv": sys.argv[1:], "stdin": data.decode("utf-8", "replace"),
               "env_sender": os.environ.get("SENDER"), "pgid": os.getpgid(0),
               "pid": os.getpid()}, f)
if user.startswith("tempfail"):
    sys.stderr.write("mailbox busy\n")
    sys.exit(75)
if user.startswith("fail"):
    sys.stderr.write("\nno such mailbox: %s\nsecond line\n" % user)
    sys.exit(1)
if user.startswith("sleep"):
    child = subprocess.Popen(["sleep", "300"])
    with open(os.path.join(out_dir, "grandchild"), "w") as f:
        f.write(str(child.pid))
    time.sleep(300)
if user.startswith("signal"):
    os.kill(os.getpid(), signal.SIGKILL)
sys.exit(0)
'''


def main():
    check = tl.Check()
    root = mh.make_temp_dir("mf-tpipe-")
    runs = os.path.join(root, "runs")
    os.makedirs(runs)
    script = os.path.join(root, "command.py")
    with open(script, "w") as f:
        f.write(COMMAND)
    farms = []
    try:
        config = tl.farm_config(root, [
            'channel { name: "pipe" type: PIPE farm { start_children: 1 min_spare: 1 '
            'max_spare: 2 } pipe { argv: "/usr/bin/python3" argv: "%s" argv: "%s" '
            'argv: "${user}" argv: "--from=${sender}" argv: "${recipient}" argv: "${domain}" '
            'argv: "${qid}" timeout_ms: 2000 } }' % (script, runs),
            'channel { name: "once" type: PIPE farm { start_children: 1 min_spare: 1 '
            'max_spare: 2 } pipe { argv: "/usr/bin/python3" argv: "%s" argv: "%s" '
            'argv: "all" argv: "${qid}" } }' % (script, runs),
            'channel { name: "missing" type: PIPE farm { start_children: 1 min_spare: 1 '
            'max_spare: 2 } pipe { argv: "/nonexistent/command" } }',
        ])
        pipe = tl.TransportFarm(root, config, "pipe")
        farms.append(pipe)
        body = b"Subject: pipe\r\n\r\n.dot\r\nlast line without newline"
        rcpts = ["ok@p.test", "tempfail@p.test", "fail@p.test", "sleep@p.test",
                 "signal@p.test"]
        conn = pipe.connect()
        job = tl.make_job(root, body, rcpts, channel="pipe", added_headers=[("X-F", "1")])
        r = conn.run(job)
        conn.close()
        got = tl.outcomes(r)
        check.eq(got[0][:2], ("OUTCOME_OK", "2.0.0"), "exit 0 delivered")
        check.eq(got[1][:2], ("OUTCOME_TEMPFAIL", "4.3.0"), "exit 75 deferred")
        check.true("exit status 75: mailbox busy" in got[1][2], "75 text %r" % (got[1][2],))
        check.eq(got[2][:2], ("OUTCOME_PERMFAIL", "5.3.0"), "exit 1 bounced")
        check.true(got[2][2].endswith("exit status 1: no such mailbox: fail"),
                   "first stderr line in the text: %r" % (got[2][2],))
        check.eq(got[3][:2], ("OUTCOME_TEMPFAIL", "4.3.0"), "time limit deferred")
        check.true("time limit of 2000 ms" in got[3][2], "time limit text %r" % (got[3][2],))
        check.eq(got[4][:2], ("OUTCOME_TEMPFAIL", "4.3.0"), "killed by a signal deferred")
        check.true("signal 9" in got[4][2], "signal text %r" % (got[4][2],))
        check.eq(r.recipients[0].relay, "pipe", "relay pipe")

        records = []
        for name in sorted(os.listdir(runs)):
            if name.endswith(".json"):
                with open(os.path.join(runs, name)) as f:
                    records.append(json.load(f))
        check.eq(len(records), 5, "one run per recipient")
        if records:
            first = records[0]
            check.eq(first["argv"], [runs, "ok", "--from=sender@origin.test", "ok@p.test",
                                     "p.test", job.qid], "argv expanded, no shell")
            stdin = first["stdin"]
            check.true(stdin.startswith("Return-Path: <sender@origin.test>\n"
                                        "Delivered-To: ok@p.test\nReceived: "),
                       "trace headers on stdin %r" % stdin[:100])
            check.true(stdin.endswith("X-F: 1\nSubject: pipe\n\n.dot\nlast line without newline\n"),
                       "message on stdin with LF ends %r" % stdin[-80:])
            check.eq(first["env_sender"], "sender@origin.test", "SENDER in the environment")
            check.eq(first["pgid"], first["pid"], "the command leads its own process group")
        grandchild_file = os.path.join(runs, "grandchild")
        if os.path.exists(grandchild_file):
            with open(grandchild_file) as f:
                grandchild = int(f.read())
            mh.wait_for(lambda: not pid_alive(grandchild), 30,
                        what="the timed-out command's grandchild to be killed")
        else:
            check.true(False, "the sleeping command did not start its grandchild")

        # The job's deadline cuts the time limit (2000 ms configured).
        import re
        import time
        conn = pipe.connect()
        job = tl.make_job(root, body, ["sleep2@p.test"], channel="pipe")
        job.deadline_unix_ms = int(time.time() * 1000) + 1200
        r = conn.run(job)
        conn.close()
        got = tl.outcomes(r)[0]
        limit = re.search(r"time limit of (\d+) ms", got[2])
        check.true(got[0] == "OUTCOME_TEMPFAIL" and limit and int(limit.group(1)) <= 1200,
                   "deadline cuts the time limit: %r" % (got,))

        # Once per message.
        for name in os.listdir(runs):
            os.unlink(os.path.join(runs, name))
        once = tl.TransportFarm(root, config, "once")
        farms.append(once)
        conn = once.connect()
        r = conn.run(tl.make_job(root, body, ["a@p.test", "b@p.test"], channel="once"))
        conn.close()
        check.eq([g[0] for g in tl.outcomes(r).values()], ["OUTCOME_OK"] * 2, "once: ok")
        check.eq(len([n for n in os.listdir(runs) if n.endswith(".json")]), 1,
                 "once: one run for two recipients")

        # An alias "|command" arrives as the nexthop: split without a shell, run per
        # recipient, in place of pipe.argv.
        for name in os.listdir(runs):
            os.unlink(os.path.join(runs, name))
        conn = once.connect()
        r = conn.run(tl.make_job(root, body, ["owner1@p.test", "owner2@p.test"], channel="once",
                                 nexthop="/usr/bin/python3 %s %s 'ok two' $HOME;echo"
                                 % (script, runs)))
        conn.close()
        check.eq([g[0] for g in tl.outcomes(r).values()], ["OUTCOME_OK"] * 2, "alias: ok")
        records = []
        for name in sorted(os.listdir(runs)):
            with open(os.path.join(runs, name)) as f:
                records.append(json.load(f))
        check.eq(len(records), 2, "alias command: once per recipient")
        if records:
            check.eq(records[0]["argv"], [runs, "ok two", "$HOME;echo"],
                     "alias command split into words, no shell")
            check.true("Delivered-To: owner1@p.test\n" in records[0]["stdin"],
                       "alias command: Delivered-To the owner")
        conn = once.connect()
        r = conn.run(tl.make_job(root, body, ["o@p.test"], channel="once",
                                 nexthop="/usr/bin/python3 'unterminated"))
        conn.close()
        got = tl.outcomes(r)[0]
        check.eq(got[:2], ("OUTCOME_TEMPFAIL", "4.3.5"), "bad alias command deferred")
        check.true("unterminated" in got[2], "bad alias command text %r" % (got[2],))

        missing = tl.TransportFarm(root, config, "missing")
        farms.append(missing)
        conn = missing.connect()
        r = conn.run(tl.make_job(root, body, ["a@p.test"], channel="missing"))
        conn.close()
        got = tl.outcomes(r)[0]
        check.eq(got[:2], ("OUTCOME_TEMPFAIL", "4.3.0"), "missing command deferred")
        check.true("/nonexistent/command" in got[2], "missing command text %r" % (got[2],))
        check.true(pipe.proc.alive(), "the farm survived")
    finally:
        logs = "".join(f.log() for f in farms)
        for f in farms:
            f.stop()
    check.done(logs)


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


if __name__ == "__main__":
    main()
