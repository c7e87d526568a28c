"""Opens N connections to a TCP port or a Unix socket and holds them for S
seconds, as a local user trying to take a daemon's descriptors would. Used by
fd_exhaustion_test.py (run as `nobody` there). Prints "holding K" once K
connections are open or pending, then "done" when it lets them go."""

import errno
import socket
import sys
import time


def open_one(target):
    if target.startswith("/"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    addr = target if target.startswith("/") else ("127.0.0.1", int(target))
    err = s.connect_ex(addr)
    if err not in (0, errno.EINPROGRESS):
        s.close()
        return None
    return s


def main():
    target, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    held = [s for s in (open_one(target) for _ in range(count)) if s is not None]
    print("holding %d" % len(held), flush=True)
    time.sleep(seconds)
    for s in held:
        s.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
