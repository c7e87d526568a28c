#!/usr/bin/python3
"""sync_probe.py: what one durable commit of a spool batch costs on this disk.

Usage: sync_probe.py BATCH REPS [DIR]   (DIR: default /var/tmp; its file system)

Each commit creates BATCH 5 KB files in tmp/, writes them and renames them
into one of 16 directories, as the scheduler's group commit does, then makes
them durable in one of four ways, alternated REPS times: one syncfs; an
fdatasync per file plus an fsync per directory (POSIX's rule for new names);
an fdatasync per file alone (not enough by POSIX, shown for the flush cost);
the files' bytes appended to a journal file at a 4 KiB boundary and one
fdatasync of it (the scheduler's spool journal). Prints the median and p90
of each. Removes what it wrote.
"""
import ctypes
import os
import shutil
import statistics
import sys
import tempfile
import time

libc = ctypes.CDLL("libc.so.6", use_errno=True)
base = tempfile.mkdtemp(prefix="sync-probe.", dir=sys.argv[3] if len(sys.argv) > 3 else "/var/tmp")
os.makedirs(base + "/tmp", exist_ok=True)
for h in "0123456789abcdef": os.makedirs(base + "/q/" + h, exist_ok=True)
dfd = {h: os.open(base + "/q/" + h, os.O_RDONLY | os.O_DIRECTORY) for h in "0123456789abcdef"}
rootfd = os.open(base, os.O_RDONLY)
journal = os.open(base + "/journal", os.O_RDWR | os.O_CREAT, 0o600)
journal_end = 0
data = b"x" * 5120
n = 0
def batch(k, mode):
    global n, journal_end
    fds = []
    dirs = set()
    t = time.monotonic()
    for i in range(k):
        n += 1
        name = "%016x" % n; h = name[-1]
        p = base + "/tmp/" + name
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.rename(p, base + "/q/" + h + "/" + name)
        fds.append((fd, h)); dirs.add(h)
    if mode == "syncfs":
        libc.syncfs(rootfd)
    elif mode == "fdatasync":
        for fd, h in fds: os.fdatasync(fd)
        for h in dirs: os.fsync(dfd[h])
    elif mode == "fdatasync-nodir":
        for fd, h in fds: os.fdatasync(fd)
    elif mode == "journal":
        record = data * k
        record += b"\0" * (-len(record) % 4096)
        os.pwrite(journal, record, journal_end)
        journal_end += len(record)
        os.fdatasync(journal)
    el = time.monotonic() - t
    for fd, h in fds: os.close(fd)
    return el
res = {}
for rep in range(int(sys.argv[2])):
    for mode in ["syncfs", "fdatasync", "fdatasync-nodir", "journal"]:
        res.setdefault(mode, []).append(batch(int(sys.argv[1]), mode))
for m, v in res.items():
    print("batch %s %-16s median %.2f ms  p90 %.2f ms" % (sys.argv[1], m, statistics.median(v)*1000, sorted(v)[int(len(v)*.9)]*1000))
shutil.rmtree(base)
