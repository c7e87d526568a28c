#!/usr/bin/python3
"""smtp_latency: the per-message clock of the end-to-end benchmark (bench/e2e/run).

smtp-source cannot say when each 250 arrived and smtp-sink cannot say when each
message arrived, so the latency run uses these two instead:
  sink   an SMTP sink that answers like smtp-sink (PIPELINING, no TLS) and
         records, per message, the CLOCK_MONOTONIC time of the final "." and the
         X-Bench-Id header; it also counts connections (connection reuse).
  client a load client that does what `smtp-source -s S -m N -d -l 5120` does
         (S sessions, connections reused, no pipelining, 5 KB payload) and
         records the CLOCK_MONOTONIC time of each 250 after the final ".";
         --rate paces it (an open-loop rate over all sessions).
CLOCK_MONOTONIC is system-wide on Linux, so the two processes' times compare.
Results go to a JSON file named by --out.
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import time


def _payload(size):
    line = b"La de da de da 1. La de da de da 2. La de da de da 3. La de da de da 4.\r\n"
    body = (line * (size // len(line) + 1))[:size]
    return body.rstrip(b"\r\n") + b"\r\n"


# --- sink -----------------------------------------------------------------------

class Sink:
    def __init__(self, expect, out):
        self.expect = expect
        self.out = out
        self.arrivals = {}     # bench id -> monotonic time of "."
        self.messages = 0      # every message, with or without an id
        self.connections = 0
        self.done = asyncio.Event()

    def write(self):
        tmp = self.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"messages": self.messages, "connections": self.connections,
                       "arrivals": self.arrivals}, f)
        os.rename(tmp, self.out)

    async def session(self, reader, writer):
        self.connections += 1
        writer.write(b"220 sink ESMTP\r\n")
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                verb = line[:4].upper()
                if verb in (b"EHLO", b"LHLO"):
                    writer.write(b"250-sink\r\n250-PIPELINING\r\n250-SIZE 102400000\r\n"
                                 b"250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n")
                elif verb == b"HELO":
                    writer.write(b"250 sink\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    data = await reader.readuntil(b"\r\n.\r\n")
                    now = time.monotonic()
                    self.messages += 1
                    i = data.find(b"\nX-Bench-Id: ")
                    if i >= 0:
                        j = data.index(b"\r", i)
                        self.arrivals[data[i + 13:j].decode()] = now
                    writer.write(b"250 2.0.0 Ok: queued as sink\r\n")
                    if self.expect and len(self.arrivals) >= self.expect:
                        self.done.set()
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    await writer.drain()
                    break
                else:  # MAIL, RCPT, RSET, NOOP...
                    writer.write(b"250 2.0.0 Ok\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def run_sink(args):
    sink = Sink(args.expect, args.out)
    server = await asyncio.start_server(sink.session, "127.0.0.1", args.port,
                                        limit=64 * 1024 * 1024, backlog=256)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await asyncio.wait([asyncio.create_task(stop.wait()), asyncio.create_task(sink.done.wait())],
                       return_when=asyncio.FIRST_COMPLETED)
    if sink.done.is_set():
        sink.write()  # every expected message is in: tell the orchestrator
        print("done", flush=True)
    await stop.wait()
    sink.write()  # final figures (connections may have grown since "done")
    server.close()


# --- client ---------------------------------------------------------------------

class ClientError(Exception):
    pass


async def expect(reader, code):
    while True:
        line = await reader.readline()
        if not line:
            raise ClientError("connection closed, wanted %s" % code)
        if line[:3] != code:
            raise ClientError("wanted %s, got %r" % (code, line))
        if line[3:4] != b"-":
            return


async def client_session(args, counter, acks, payload):
    reader, writer = await asyncio.open_connection(args.host, args.port, limit=1 << 20)
    await expect(reader, b"220")
    writer.write(b"EHLO bench.test\r\n")
    await expect(reader, b"250")
    while counter[0] < args.messages:
        n = counter[0]
        counter[0] += 1
        if args.rate:  # paced: message n is due at start + n / rate
            delay = counter[1] + n / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        token = "%s-%d" % (args.tag, n)
        writer.write(b"MAIL FROM:<%s>\r\n" % args.sender.encode())
        await expect(reader, b"250")
        writer.write(b"RCPT TO:<%s>\r\n" % args.recipient.encode())
        await expect(reader, b"250")
        writer.write(b"DATA\r\n")
        await expect(reader, b"354")
        header = ("From: <%s>\r\nTo: <%s>\r\nSubject: bench %s\r\nMessage-Id: <%s@bench.test>\r\n"
                  "X-Bench-Id: %s\r\n\r\n" % (args.sender, args.recipient, token, token, token))
        writer.write(header.encode() + payload + b".\r\n")
        await expect(reader, b"250")
        acks[token] = time.monotonic()
    writer.write(b"QUIT\r\n")
    try:
        await expect(reader, b"221")
    except ClientError:
        pass
    writer.close()


async def run_client(args):
    start = time.monotonic()
    counter = [0, start]  # next message number, start time
    acks = {}
    payload = _payload(args.size)
    results = await asyncio.gather(
        *[client_session(args, counter, acks, payload) for _ in range(args.sessions)],
        return_exceptions=True)
    end = time.monotonic()
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    with open(args.out, "w") as f:
        json.dump({"start": start, "end": end, "acks": acks, "errors": errors}, f)
    if errors:
        print("client errors: %s" % errors[:3], file=sys.stderr)
        return 1
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sink", help="record arrival times")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--expect", type=int, default=0, help="write --out once this many arrived")
    s.add_argument("--out", required=True)
    c = sub.add_parser("client", help="send messages, record 250 times")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--sessions", type=int, default=20)
    c.add_argument("--messages", type=int, required=True)
    c.add_argument("--size", type=int, default=5120)
    c.add_argument("--rate", type=float, default=0,
                   help="messages per second over all sessions (0: as fast as replies come)")
    c.add_argument("--sender", default="bench@bench.test")
    c.add_argument("--recipient", default="sink@relay.test")
    c.add_argument("--tag", default="m")
    c.add_argument("--out", required=True)
    args = p.parse_args()
    if args.cmd == "sink":
        asyncio.run(run_sink(args))
        return 0
    return asyncio.run(run_client(args))


if __name__ == "__main__":
    sys.exit(main())
