"""disk_full_test.py: a full disk (an LD_PRELOAD shim failing spool writes
with ENOSPC while a flag file exists) gives TEMPFAIL replies and
mailfarm-inject exit 75, leaves no partial job in queue/ or tmp/, and the
scheduler accepts mail again as soon as space returns."""
import os
import subprocess

import sched_harness as h

SHIM = os.path.join(os.path.dirname(h.BIN), "lib", "libmailfarm_enospc_shim.so")


def test(mf):
    assert os.path.exists(SHIM), SHIM
    mf.start_scheduler()
    r = mf.inject("a@example.com", ["b@example.org"], h.message_body("before"))
    assert r.status == r.ACCEPTED, r
    before = set(mf.queue_files())
    open(mf.flag, "w").close()  # the disk is now full
    for size in (100, 200000):
        r = mf.inject("a@example.com", ["b@example.org"], h.message_body("full", size=size))
        assert r.status == r.TEMPFAIL, r
        assert r.dsn == "4.3.1" and "insufficient system storage" in r.text, r
    cli = subprocess.run([os.path.join(h.BIN, "mailfarm-inject"), "--config", mf.config,
                          "-f", "a@example.com", "b@example.org"],
                         input=b"Subject: cli\n\nbody\n", capture_output=True, timeout=60)
    assert cli.returncode == 75, cli
    assert b"insufficient system storage" in cli.stderr, cli.stderr
    assert set(mf.queue_files()) == before, "a partial job was left in queue/"
    assert not mf.tmp_files(), mf.tmp_files()
    assert mf.scheduler.poll() is None, "the scheduler died"
    os.unlink(mf.flag)  # space returns
    r = mf.inject("a@example.com", ["b@example.org"], h.message_body("after"))
    assert r.status == r.ACCEPTED, r
    assert len(mf.queue_files()) == len(before) + 1


flag_dir = h.mailfarm_harness.make_temp_dir("mf-enospc.")
flag = os.path.join(flag_dir, "disk-full")
env = {"LD_PRELOAD": SHIM, "MAILFARM_ENOSPC_FLAG": flag,
       "ASAN_OPTIONS": "verify_asan_link_order=0:" + os.environ.get("ASAN_OPTIONS", "")}


def main(mf):
    mf.flag = flag
    test(mf)


h.run(main, "disk_full", env=env)
