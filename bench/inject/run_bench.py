#!/usr/bin/python3
"""run_bench.py: bench/inject, durable injections per second and the
scheduler's memory per deferred job.

Usage: run_bench.py --bin BUILD/bin [--dir DIR] [--seconds 5] [--deferred 100000]
                    [--standard-ext4 MB]

1. The disk's raw rates of write(5 KB) + fdatasync on one file in DIR (the
   filesystem the spool lives on), appending and overwriting, measured first
   in the same run; ratios are against the higher (overwrite) one.
2. mailfarm-scheduler alone (no farms: accepted jobs wait in memory), fed by
   mailfarm-bench-inject with 1, 8 and 32 concurrent inject.sock clients
   sending 5 KB messages; each ack means the file and its directory entry
   were on stable storage. Printed with the ratio to the raw fdatasync rate.
3. With stand-in router/transport farms whose transport tempfails every
   message and a long backoff, N messages are injected and end up deferred;
   the scheduler's RSS before and after gives bytes per deferred job.
"""
import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(_SRC, "tests", "scheduler"))
sys.path.insert(0, os.path.join(_SRC, "tests", "lib"))  # mailfarm_harness, used by sched_harness


def rss_kb(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


@contextlib.contextmanager
def standard_ext4(parent, size_mb):
    """A freshly made ext4 with mkfs.ext4's defaults (a journal among them) on
    a loop device with direct I/O over an image in parent, written with zeros
    first so that the image's blocks exist: what a spool usually sits on,
    whatever the host's own file system is. Yields its mount point. Root
    only."""
    image = os.path.join(parent, "mf-bench-ext4.img")
    mnt = tempfile.mkdtemp(prefix="mf-ext4.", dir="/tmp")
    loop = None
    try:
        subprocess.run(["dd", "if=/dev/zero", "of=" + image, "bs=1M", "count=%d" % size_mb,
                        "conv=fsync", "status=none"], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True)
        loop = subprocess.run(["losetup", "--direct-io=on", "-f", "--show", image], check=True,
                              capture_output=True, text=True).stdout.strip()
        subprocess.run(["mount", loop, mnt], check=True)
        print("standard ext4: %s (%d MB image in %s, loop device %s, direct I/O)" %
              (mnt, size_mb, parent, loop))
        yield mnt
    finally:
        subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL)
        if loop:
            subprocess.run(["losetup", "-d", loop], stderr=subprocess.DEVNULL)
        if os.path.exists(image):
            os.unlink(image)
        os.rmdir(mnt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--dir", default=None, help="where the spool goes (its filesystem is measured)")
    ap.add_argument("--standard-ext4", type=int, default=0, metavar="MB",
                    help="run on a new ext4 (mkfs defaults, with a journal) of MB megabytes on a "
                    "loop device whose image goes in --dir (root only)")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--deferred", type=int, default=100000)
    ap.add_argument("--io_threads", type=int, default=2, help="scheduler.io_threads")
    ap.add_argument("--journal_mb", type=int, default=32, help="scheduler.spool_journal_mb")
    args = ap.parse_args()
    if args.standard_ext4 > 0:
        with standard_ext4(args.dir or "/var/tmp", args.standard_ext4) as mnt:
            args.dir = mnt
            run(args)
    else:
        run(args)


def device_counters(path):
    """(sectors written, write requests, flushes) of the block device holding
    `path`, from /sys/dev/block/MAJ:MIN/stat; None where it has none."""
    dev = os.stat(path).st_dev
    try:
        with open("/sys/dev/block/%d:%d/stat" % (os.major(dev), os.minor(dev))) as f:
            v = [int(x) for x in f.read().split()]
    except OSError:
        return None
    return (v[6], v[4], v[15] if len(v) > 15 else 0)


def run(args):
    os.environ["MAILFARM_BIN"] = os.path.abspath(args.bin)
    os.environ.setdefault("PYTHONPATH", "")
    import sched_harness as h  # noqa: E402 (needs MAILFARM_BIN first)
    h.BIN = os.path.abspath(args.bin)
    if args.dir:
        tempfile.tempdir = args.dir  # the fdatasync probe's directory
    load = os.path.join(h.BIN, "mailfarm-bench-inject")

    # Two raw rates: appending 5 KB + fdatasync (a size and extent change each
    # time, as a file written per message has), and overwriting 5 KB of an
    # already written file + fdatasync (the device's cache flush alone, as
    # the spool journal does). The ratio is taken against the higher one.
    probe = tempfile.mkdtemp(prefix="mf-fsync.")
    rates = {}
    for mode in ("append", "overwrite"):
        out = subprocess.run([load, "--fsync_dir", probe, "--seconds", str(args.seconds / 2),
                              "--fsync_overwrite=%s" % ("true" if mode == "overwrite" else "false")],
                             capture_output=True, text=True, check=True).stdout
        rates[mode] = float(out.split()[1])
    os.rmdir(probe)
    fsync_rate = max(rates.values())
    print("raw fdatasync/s: append 5 KB %.1f, overwrite 5 KB %.1f; ratios below are against %.1f"
          "  (filesystem of %s)" % (rates["append"], rates["overwrite"], fsync_rate,
                                    tempfile.gettempdir()))

    mf = h.Mailfarm("bench", scheduler_extra="max_inject_connections: 512 io_threads: %d "
                    "spool_journal_mb: %d" % (args.io_threads, args.journal_mb),
                    parent=tempfile.gettempdir())
    # The injections must hit the file system whose fdatasync rate was measured.
    if os.stat(mf.dir).st_dev != os.stat(tempfile.gettempdir()).st_dev:
        sys.exit("run_bench.py: the spool %s is not on the file system of %s" %
                 (mf.spool, tempfile.gettempdir()))
    print("spool: %s" % mf.spool)
    try:
        mf.start_scheduler()
        for n in [int(x) for x in args.clients.split(",")]:
            before = device_counters(mf.dir)
            r = subprocess.run([load, "--socket", mf.inject_sock, "--clients", str(n),
                                "--seconds", str(args.seconds), "--size", "5120"],
                               capture_output=True, text=True)
            fields = r.stdout.split()
            rate = float(fields[fields.index("injections_per_s") + 1])
            print("clients %2d: %8.1f durable injections/s  = %.2fx the raw fdatasync rate "
                  "(%.2fx the append rate)  (%s)" %
                  (n, rate, rate / fsync_rate, rate / rates["append"], r.stdout.strip()))
            after = device_counters(mf.dir)
            acked = int(fields[fields.index("acked") + 1])
            if before and after and acked > 0:
                # During the run only: what the last checkpoint leaves dirty
                # is written after it.
                print("    device, per injection: %.1f KB written in %.2f write requests, "
                      "%.3f cache flushes" % ((after[0] - before[0]) * 512 / 1024.0 / acked,
                                              (after[1] - before[1]) / acked,
                                              (after[2] - before[2]) / acked))
        stats = {s.name: s.value for s in mf.control(stats=True)[0].stats.samples if not s.labels}
        print("group commit: %d files, %d batches, largest batch %d, %d fdatasyncs, %d dir fsyncs, "
              "%d journal commits, %d checkpoints (%d beside the commits, %d waited for)" % (
            stats["mailfarm_spool_files_created_total"], stats["mailfarm_spool_commit_batches_total"],
            stats["mailfarm_spool_max_batch"], stats["mailfarm_spool_data_syncs_total"],
            stats["mailfarm_spool_dir_syncs_total"], stats.get("mailfarm_spool_journal_syncs_total", 0),
            stats.get("mailfarm_spool_journal_checkpoints_total", 0),
            stats.get("mailfarm_spool_journal_side_checkpoints_total", 0),
            stats.get("mailfarm_spool_journal_checkpoint_waits_total", 0)))
    finally:
        mf.stop()
        subprocess.run(["rm", "-rf", mf.dir])

    if args.deferred <= 0:
        return
    mf = h.Mailfarm("bench-rss", filter_enabled=False, backoff=(36000, 72000),
                    scheduler_extra="max_inject_connections: 512", parent=tempfile.gettempdir())
    try:
        mf.start_scheduler()
        mf.start_farms()
        r = mf.inject("warm@example.com", ["tempfail@example.org"], h.message_body("warm-up"))
        assert r.status == r.ACCEPTED

        def deferred():
            for s in mf.control(stats=True)[0].stats.samples:
                if s.name == "mailfarm_queue_jobs" and s.labels.get("state") == "deferred":
                    return int(s.value)
            return 0
        h.wait_until(lambda: deferred() == 1, 60, "warm-up job deferred")
        base = rss_kb(mf.scheduler.pid)
        t0 = time.monotonic()
        subprocess.run([load, "--socket", mf.inject_sock, "--clients", "16", "--count",
                        str(args.deferred), "--size", "1000", "--recipient", "tempfail@example.org"],
                       check=True, capture_output=True)
        h.wait_until(lambda: deferred() == args.deferred + 1, 1800, "all jobs deferred")
        took = time.monotonic() - t0
        rss = rss_kb(mf.scheduler.pid)
        hwm = rss_kb(mf.scheduler.pid, "VmHWM")
        print("deferred jobs: %d (injected, routed, tempfailed and deferred in %.1f s)" %
              (args.deferred, took))
        print("scheduler RSS: base %d KB, with the deferred jobs %d KB (peak %d KB): "
              "%.0f bytes per deferred job (peak-based %.0f)" %
              (base, rss, hwm, (rss - base) * 1024.0 / args.deferred,
               (hwm - base) * 1024.0 / args.deferred))
    finally:
        mf.stop()
        subprocess.run(["rm", "-rf", mf.dir])


if __name__ == "__main__":
    main()
