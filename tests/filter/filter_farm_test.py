"""Integration tests of mailfarm-filter, the real farm binary, over its socket:
each rule action, the size limit, the external scanner (verdicts, a hanging
scanner -> tempfail with its process group killed, fail_open), DKIM signatures
checked by an independent verifier (Python's dkim module, public key from the
openssl CLI) over the added headers followed by the stored message, config
errors at start, and a SIGHUP reload of the rules."""

import base64
import os
import signal
import subprocess
import unittest

import dkim

import mailfarm_harness as h
import wire_pb2

V = wire_pb2.FilterVerdict
SELECTOR = "mf2026"

SCANNER = """#!/bin/sh
# A stand-in for spamc/clamdscan: reads the message, answers on stdout.
body=$(cat)
case "$body" in
  *EICAR-TEST*) echo "stdin: Eicar-Test-Signature FOUND"; exit 1 ;;
  *HANG-SCANNER*) sleep 120 & echo $! > "{root}/hang.pid"; wait ;;
  *CRASH-SCANNER*) kill -9 $$ ;;
  *) echo "clean; score=0.1"; exit 0 ;;
esac
"""

CONFIG = """
paths {{ run_dir: "{root}/run" spool_dir: "{root}/spool" log_dir: "" }}
filter {{ start_children: 2 min_spare: 1 max_spare: 4 }}
filter_rules {{
  max_message_bytes: 100000
  rule {{ name: "no-pills" where: HEADER pattern: "^Subject:.*v[i1]agra" action: REJECT
         text: "Spam is not welcome here" }}
  rule {{ name: "drop-test" where: BODY pattern: "^DISCARD-ME$" action: DISCARD }}
  rule {{ name: "hold-pgp" where: BODY pattern: "BEGIN PGP MESSAGE" action: HOLD
         text: "{hold_text}" }}
  rule {{ name: "vip" where: HEADER pattern: "^X-VIP: yes$" action: ACCEPT }}
  rule {{ name: "tag-list" where: HEADER pattern: "^List-Id:" action: ADD_HEADER
         text: "X-Mailing-List: yes" }}
  scanner {{ argv: "/bin/sh" argv: "{root}/scanner.sh" timeout_ms: {scanner_ms}
            fail_open: {fail_open} }}
  dkim {{ domain: "example.com" selector: "{selector}" private_key_file: "{root}/dkim.pem" }}
}}
"""


def make_key(root):
    key = os.path.join(root, "dkim.pem")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return base64.b64encode(der).decode()


class FilterFarm:
    def __init__(self, fail_open=False, scanner_ms=1500, hold_text="encrypted: needs review"):
        self.root = h.make_temp_dir("mf-filter-")
        self.public_key = make_key(self.root)
        with open(os.path.join(self.root, "scanner.sh"), "w") as f:
            f.write(SCANNER.format(root=self.root))
        self.fail_open, self.scanner_ms = fail_open, scanner_ms
        self.conf = os.path.join(self.root, "mailfarm.conf")
        self.write(hold_text)
        os.makedirs(os.path.join(self.root, "q"))
        self.board = os.path.join(self.root, "run", "filter.scoreboard")
        self.sock = os.path.join(self.root, "run", "filter.sock")
        self.proc = h.Process([h.binary("mailfarm-filter"), "--config", self.conf],
                              log_path=os.path.join(self.root, "filter.log"))
        h.wait_for(lambda: os.path.exists(self.board) or not self.proc.alive(), 30,
                   what="filter.scoreboard")
        assert self.proc.alive(), self.proc.log()
        self.n = 0

    def write(self, hold_text):
        with open(self.conf, "w") as f:
            f.write(CONFIG.format(root=self.root, selector=SELECTOR, hold_text=hold_text,
                                  scanner_ms=self.scanner_ms,
                                  fail_open="true" if self.fail_open else "false"))

    def connect(self):
        conn = h.FrameSocket.connect_unix(self.sock)
        frame = conn.recv(wire_pb2.ChildFrame)
        assert frame.WhichOneof("kind") == "hello" and frame.hello.farm == "filter", frame
        return conn, frame.hello

    def filter(self, conn, message, sender="alice@example.com"):
        """Stores `message` in a queue file behind an envelope and filters it."""
        self.n += 1
        qid = "F%d" % self.n
        prefix = b"ENVELOPE-BYTES-BEFORE-THE-MESSAGE\n" * 3
        path = os.path.join(self.root, "q", qid)
        with open(path, "wb") as f:
            f.write(prefix + message + b"TRAILING-BYTES")
        conn.send(wire_pb2.Job(qid=qid, stage=wire_pb2.STAGE_FILTER, sender=sender,
                               message_path=path, body_offset=len(prefix),
                               body_size=len(message)))
        frame = conn.recv(wire_pb2.ChildFrame)
        assert frame.WhichOneof("kind") == "result" and frame.result.qid == qid, frame
        with open(path, "rb") as f:
            assert f.read() == prefix + message + b"TRAILING-BYTES", "queue file was modified"
        return frame.result

    def dns(self, name, timeout=5):
        if name in (("%s._domainkey.example.com." % SELECTOR).encode(),
                    ("%s._domainkey.example.com" % SELECTOR).encode()):
            return ("v=DKIM1; k=rsa; p=%s" % self.public_key).encode()
        return None

    def stop(self):
        return self.proc.stop(), h.pids_matching(self.root)


def emitted(result, message):
    """What a transport writes: the added headers, then the stored message."""
    added = b"".join(("%s: %s\r\n" % (x.name, x.value)).encode() for x in result.verdict.add_headers)
    return added + message


def names(result):
    return [x.name for x in result.verdict.add_headers]


MESSAGE = (b"Received: from client.example.org by mx.example.com; Sun, 22 Nov 2026 08:00:00 +0000\r\n"
           b"From: Alice Example <alice@example.com>\r\n"
           b"To: bob@example.org\r\n"
           b"Subject: quarterly   report\r\n"
           b"\tcontinued on a folded line  \r\n"
           b"Date: Sun, 22 Nov 2026 08:00:00 +0000\r\n"
           b"Message-ID: <1@example.com>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n"
           b"\r\n"
           b"Hello Bob,  \r\n"
           b"\r\n"
           b"  indented\tand  spaced   text\r\n"
           b".leading dot line\r\n"
           b"\r\n"
           b"\r\n")


class FilterFarmTest(unittest.TestCase):
    def setUp(self):
        self.farm = FilterFarm()
        self.conn, _ = self.farm.connect()

    def tearDown(self):
        self.conn.close()
        code, left = self.farm.stop()
        self.assertEqual(left, [], "processes left behind")
        self.assertEqual(code, 0, self.farm.proc.log()[-4000:])

    def test_accept_is_scanned_and_dkim_signed(self):
        r = self.farm.filter(self.conn, MESSAGE)
        self.assertEqual(r.verdict.action, V.ACCEPT, r)
        self.assertEqual(r.outcome, wire_pb2.OUTCOME_OK)
        self.assertEqual(names(r), ["X-Scanner-Result", "DKIM-Signature"])
        self.assertEqual(r.verdict.add_headers[0].value, "clean; score=0.1")
        sig = r.verdict.add_headers[1].value
        self.assertIn("d=example.com; s=%s;" % SELECTOR, sig)
        self.assertIn("c=relaxed/relaxed", sig)
        self.assertTrue(dkim.verify(emitted(r, MESSAGE), dnsfunc=self.farm.dns))
        # The verifier can say no: a changed body or header fails.
        tampered = emitted(r, MESSAGE).replace(b"Hello Bob", b"Hello Eve")
        self.assertFalse(dkim.verify(tampered, dnsfunc=self.farm.dns))
        self.assertFalse(dkim.verify(emitted(r, MESSAGE).replace(b"quarterly", b"annual"),
                                     dnsfunc=self.farm.dns))

    def test_dkim_covers_added_headers_and_envelope_domain(self):
        # From: in another domain, envelope sender in example.com: signed for it.
        msg = (b"From: someone@elsewhere.org\r\nList-Id: <news.example.com>\r\n"
               b"Subject: hi\r\n\r\nbody without final newline")
        r = self.farm.filter(self.conn, msg, sender="bounces@example.com")
        self.assertEqual(names(r), ["X-Mailing-List", "X-Scanner-Result", "DKIM-Signature"])
        self.assertTrue(dkim.verify(emitted(r, msg), dnsfunc=self.farm.dns))
        # Neither domain has a key: no signature.
        r2 = self.farm.filter(self.conn, b"From: a@other.org\r\n\r\nx\r\n", sender="a@other.org")
        self.assertEqual(names(r2), ["X-Scanner-Result"])

    def test_reject_rule(self):
        r = self.farm.filter(self.conn, b"From: a@example.com\r\nSubject: cheap V1AGRA\r\n\r\nx\r\n")
        self.assertEqual((r.verdict.action, r.verdict.dsn, r.verdict.rule),
                         (V.REJECT, "5.7.1", "no-pills"))
        self.assertEqual(r.verdict.text, "Spam is not welcome here")
        self.assertEqual(r.outcome, wire_pb2.OUTCOME_PERMFAIL)

    def test_discard_rule(self):
        r = self.farm.filter(self.conn, b"From: a@example.com\r\n\r\nhello\r\nDISCARD-ME\r\n")
        self.assertEqual((r.verdict.action, r.verdict.rule), (V.DISCARD, "drop-test"))

    def test_hold_rule(self):
        r = self.farm.filter(self.conn, b"From: a@example.com\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n")
        self.assertEqual((r.verdict.action, r.verdict.rule), (V.HOLD, "hold-pgp"))
        self.assertEqual(r.verdict.text, "encrypted: needs review")

    def test_accept_rule_skips_the_scanner(self):
        r = self.farm.filter(self.conn, b"From: a@example.com\r\nX-VIP: yes\r\n\r\nEICAR-TEST\r\n")
        self.assertEqual((r.verdict.action, r.verdict.rule), (V.ACCEPT, "vip"))
        self.assertEqual(names(r), ["DKIM-Signature"])

    def test_scanner_reject(self):
        r = self.farm.filter(self.conn, b"From: a@example.com\r\n\r\nX5O EICAR-TEST file\r\n")
        self.assertEqual((r.verdict.action, r.verdict.dsn), (V.REJECT, "5.7.1"))
        self.assertEqual(r.verdict.text,
                         "rejected by content scanner: stdin: Eicar-Test-Signature FOUND")

    def test_hanging_scanner_tempfails_and_is_killed(self):
        r = self.farm.filter(self.conn, b"From: a@example.com\r\n\r\nHANG-SCANNER\r\n")
        self.assertEqual(r.verdict.action, V.TEMPFAIL)
        self.assertEqual(r.outcome, wire_pb2.OUTCOME_TEMPFAIL)
        self.assertEqual(r.verdict.text, "content scanner failed: timed out after 1500 ms")
        with open(os.path.join(self.farm.root, "hang.pid")) as f:
            pid = int(f.read())

        def gone():
            try:
                with open("/proc/%d/stat" % pid) as f:
                    return f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except OSError:
                return True
        h.wait_for(gone, 30, what="the scanner's sleeping child to be killed")
        # The child goes on serving.
        self.assertEqual(self.farm.filter(self.conn, MESSAGE).verdict.action, V.ACCEPT)

    def test_crashing_scanner_tempfails(self):
        r = self.farm.filter(self.conn, b"From: a@example.com\r\n\r\nCRASH-SCANNER\r\n")
        self.assertEqual(r.verdict.action, V.TEMPFAIL)
        self.assertEqual(r.verdict.text, "content scanner failed: killed by signal 9")

    def test_size_limit(self):
        big = b"From: a@example.com\r\n\r\n" + b"x" * 100 + b"\r\n" * 60000
        r = self.farm.filter(self.conn, big)
        self.assertEqual((r.verdict.action, r.verdict.dsn), (V.REJECT, "5.3.4"))

    def test_unreadable_message_tempfails(self):
        self.conn.send(wire_pb2.Job(qid="GONE", stage=wire_pb2.STAGE_FILTER,
                                    message_path=os.path.join(self.farm.root, "q", "missing"),
                                    body_size=10))
        r = self.conn.recv(wire_pb2.ChildFrame).result
        self.assertEqual(r.verdict.action, V.TEMPFAIL)
        self.assertIn("missing", r.verdict.text)

    def test_sighup_reloads_rules(self):
        _, hello = self.farm.connect()
        self.farm.write("new hold text")
        self.farm.proc.signal(signal.SIGHUP)
        h.wait_for(lambda: h.read_scoreboard(self.farm.board)["generation"] > hello.generation,
                   30, what="the new generation")

        def new_child():
            try:
                c, hel = self.farm.connect()
            except (EOFError, ConnectionResetError):
                return None
            if hel.generation > hello.generation:
                return c
            c.close()
            return None
        conn = h.wait_for(new_child, 30, what="a child of the new generation")
        r = self.farm.filter(conn, b"From: a@example.com\r\n\r\nBEGIN PGP MESSAGE\r\n")
        self.assertEqual(r.verdict.text, "new hold text")
        conn.close()


class FailOpenTest(unittest.TestCase):
    def test_hanging_scanner_fail_open_accepts_with_a_mark(self):
        farm = FilterFarm(fail_open=True, scanner_ms=500)
        try:
            conn, _ = farm.connect()
            msg = b"From: a@example.com\r\nSubject: x\r\n\r\nHANG-SCANNER\r\n"
            r = farm.filter(conn, msg)
            self.assertEqual(r.verdict.action, V.ACCEPT)
            self.assertEqual(names(r), ["X-Scanner-Result", "DKIM-Signature"])
            self.assertEqual(r.verdict.add_headers[0].value,
                             "unchecked (scanner failed: timed out after 500 ms)")
            self.assertTrue(dkim.verify(emitted(r, msg), dnsfunc=farm.dns))
            # fail_open does not turn a scanner's reject into an accept.
            self.assertEqual(farm.filter(conn, b"From: a@example.com\r\n\r\nEICAR-TEST\r\n")
                             .verdict.action, V.REJECT)
            conn.close()
        finally:
            code, left = farm.stop()
        self.assertEqual(left, [])


class FilterConfigErrorTest(unittest.TestCase):
    def run_filter(self, rules):
        root = h.make_temp_dir("mf-filter-bad-")
        path = os.path.join(root, "mailfarm.conf")
        with open(path, "w") as f:
            f.write('paths { run_dir: "%s/run" }\nfilter_rules { %s }\n' % (root, rules))
        return subprocess.run([h.binary("mailfarm-filter"), "--config", path],
                              capture_output=True, text=True, timeout=60)

    def test_bad_pattern_exits_78(self):
        p = self.run_filter('rule { name: "oops" pattern: "a(b" }')
        self.assertEqual(p.returncode, 78, p.stderr)
        self.assertIn("filter_rules.rule[0] (oops): bad pattern at offset 3", p.stderr)

    def test_bad_add_header_exits_78(self):
        p = self.run_filter('rule { pattern: "x" action: ADD_HEADER text: "no colon" }')
        self.assertEqual(p.returncode, 78, p.stderr)
        self.assertIn("expected \"Name: value\"", p.stderr)

    def test_missing_dkim_key_exits_78(self):
        p = self.run_filter('dkim { domain: "example.com" selector: "s" '
                            'private_key_file: "/nonexistent/key.pem" }')
        self.assertEqual(p.returncode, 78, p.stderr)
        self.assertIn("filter_rules.dkim[0]", p.stderr)
        self.assertIn("/nonexistent/key.pem", p.stderr)

    def test_help(self):
        p = subprocess.run([h.binary("mailfarm-filter"), "--help"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 0)
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "FILES"):
            self.assertIn(section, p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
