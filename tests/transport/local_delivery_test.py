"""mailfarm-transport local channel: Maildir and mbox delivery, read back from disk.

Maildir: files appear in new/ (tmp/ left empty) with Return-Path, Delivered-To,
Received and the added headers before the message, LF line ends; two
recipients get one file each. Failures: an unsafe local part ("../x") is
bounced 5.1.3; a mailbox whose parent is a regular file is bounced 5.2.0;
create_mailbox false and no mailbox: bounced 5.1.1. mbox: From_ line, From_
quoting in the body, two messages appended; a mailbox locked (fcntl) by
another process is deferred 4.2.0 naming the lock. Discard channel: every
recipient delivered. An alias "/path" target (the Job's nexthop) is delivered
as an mbox file. A missing queue file is deferred. An mbox with a second hard
link, or (as root) owned by another uid, is refused 5.2.0 and left unchanged.
"""

import fcntl
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mailfarm_harness as mh  # noqa: E402
import transport_testlib as tl  # noqa: E402


def farm_block(name, kind, extra=""):
    return ('channel { name: "%s" type: %s farm { start_children: 1 min_spare: 1 max_spare: 2 }'
            ' %s }' % (name, kind, extra))


def read_dir(path):
    if not os.path.isdir(path):
        return []
    out = []
    for name in sorted(os.listdir(path)):
        with open(os.path.join(path, name), "rb") as f:
            out.append((name, f.read()))
    return out


def main():
    check = tl.Check()
    root = mh.make_temp_dir("mf-tlocal-")
    mail = os.path.join(root, "mail")
    farms = []
    locker = None
    try:
        with open(os.path.join(root, "notadir"), "w") as f:
            f.write("a file where a directory should be\n")
        config = tl.farm_config(root, [
            farm_block("local", "LOCAL", 'local { mailbox: "%s/${user}/" }' % mail),
            farm_block("blocked", "LOCAL", 'local { mailbox: "%s/notadir/${user}/" }' % root),
            farm_block("nocreate", "LOCAL",
                       'local { mailbox: "%s/fixed/${user}/" create_mailbox: false }' % root),
            farm_block("mbox", "LOCAL",
                       'local { mailbox: "%s/mbox/${user}" lock_timeout_ms: 300 }' % root),
            farm_block("drop", "DISCARD"),
        ])

        def run(chan, body, recipients, **kw):
            farm = next((f for f in farms if f.channel == chan), None)
            if farm is None:
                farm = tl.TransportFarm(root, config, chan)
                farms.append(farm)
            conn = farm.connect()
            try:
                job = tl.make_job(root, body, recipients, channel=chan, **kw)
                return job, conn.run(job)
            finally:
                conn.close()

        body = b"Subject: local\r\n\r\n.dot line\r\nFrom the start\r\nno newline at end"
        job, r = run("local", body, ["alice@example.test", "bob@example.test"],
                     added_headers=[("X-Filter", "ok")])
        got = tl.outcomes(r)
        check.eq([g[:2] for g in got.values()], [("OUTCOME_OK", "2.0.0")] * 2, "maildir: ok")
        check.eq(r.recipients[0].relay, "local", "relay local")
        for user in ("alice", "bob"):
            files = read_dir(os.path.join(mail, user, "new"))
            check.eq(len(files), 1, "%s: one file in new/" % user)
            check.eq(read_dir(os.path.join(mail, user, "tmp")), [], "%s: tmp/ empty" % user)
            check.true(os.path.isdir(os.path.join(mail, user, "cur")), "%s: cur/ exists" % user)
            if files:
                content = files[0][1]
                want_head = (b"Return-Path: <sender@origin.test>\nDelivered-To: %s@example.test\n"
                             b"Received: from client.origin.test" % user.encode())
                check.true(content.startswith(want_head), "%s: trace headers %r"
                           % (user, content[:120]))
                check.true(b"\n\tfor <%s@example.test>;" % user.encode() in content,
                           "%s: Received names the recipient" % user)
                check.true(content.endswith(b"X-Filter: ok\nSubject: local\n\n.dot line\n"
                                            b"From the start\nno newline at end\n"),
                           "%s: message with LF line ends %r" % (user, content[-90:]))
                check.true(b"\r" not in content, "%s: no CR in the Maildir file" % user)
        log = "".join(f.log() for f in farms)
        check.true("to=<alice@example.test>, relay=local" in log and
                   "status=sent (delivered to maildir %s/alice/" % mail in log,
                   "maildir delivery line logged")

        # Unsafe local part.
        _, r = run("local", body, ["../escape@example.test"])
        got = tl.outcomes(r)[0]
        check.eq(got[:2], ("OUTCOME_PERMFAIL", "5.1.3"), "unsafe local part bounced")
        check.true(not os.path.exists(os.path.join(root, "escape")), "nothing outside mail/")

        # Parent is a regular file.
        _, r = run("blocked", body, ["carol@example.test"])
        got = tl.outcomes(r)[0]
        check.eq(got[:2], ("OUTCOME_PERMFAIL", "5.2.0"), "ENOTDIR bounced")
        check.true("notadir" in got[2] and "Not a directory" in got[2], "ENOTDIR text %r"
                   % (got[2],))

        # create_mailbox false.
        _, r = run("nocreate", body, ["dave@example.test"])
        got = tl.outcomes(r)[0]
        check.eq(got[:2], ("OUTCOME_PERMFAIL", "5.1.1"), "missing mailbox bounced")
        check.true("does not exist" in got[2], "missing mailbox text %r" % (got[2],))

        # mbox: two messages, From_ quoting.
        mbox = os.path.join(root, "mbox", "erin")
        for i in range(2):
            _, r = run("mbox", b"Subject: m%d\r\n\r\nFrom here\r\n>From there\r\nend\r\n" % i,
                       ["erin@example.test"], sender="" if i else "s@origin.test")
            check.eq(tl.outcomes(r)[0][:2], ("OUTCOME_OK", "2.0.0"), "mbox %d ok" % i)
        with open(mbox, "rb") as f:
            text = f.read()
        check.true(text.startswith(b"From s@origin.test "), "From_ line %r" % text[:40])
        check.eq(text.count(b"\nFrom "), 1, "exactly one From_ line after the first message")
        check.true(b"\nFrom MAILER-DAEMON " in text, "null sender From_ line")
        check.eq(text.count(b"\n>From here\n"), 2, "From_ quoted in the body")
        check.eq(text.count(b"\n>>From there\n"), 0, "no mboxrd double quoting (mboxo)")
        check.true(text.endswith(b"end\n\n"), "blank line after each message")

        # mbox locked by someone else.
        locker = open(mbox, "ab")
        fcntl.lockf(locker, fcntl.LOCK_EX)
        size = os.path.getsize(mbox)
        _, r = run("mbox", b"Subject: locked\r\n\r\nx\r\n", ["erin@example.test"])
        got = tl.outcomes(r)[0]
        check.eq(got[:2], ("OUTCOME_TEMPFAIL", "4.2.0"), "locked mbox deferred")
        check.true("locked" in got[2], "locked text %r" % (got[2],))
        check.eq(os.path.getsize(mbox), size, "locked mbox unchanged")
        fcntl.lockf(locker, fcntl.LOCK_UN)
        locker.close()
        locker = None

        # An mbox that is a second link to another file is refused, the file untouched.
        other = os.path.join(root, "other-file")
        with open(other, "w") as f:
            f.write("someone else's file\n")
        os.link(other, os.path.join(root, "mbox", "frank"))
        _, r = run("mbox", b"Subject: linked\r\n\r\nx\r\n", ["frank@example.test"])
        got = tl.outcomes(r)[0]
        check.eq(got[:2], ("OUTCOME_PERMFAIL", "5.2.0"), "hard-linked mbox refused")
        check.true("2 hard links" in got[2], "hard link text %r" % (got[2],))
        with open(other) as f:
            check.eq(f.read(), "someone else's file\n", "the linked file unchanged")
        # An mbox owned by another account (neither the recipient nor us).
        if os.geteuid() == 0:
            foreign = os.path.join(root, "mbox", "gina")
            open(foreign, "w").close()
            os.chown(foreign, 65534, 65534)
            _, r = run("mbox", b"Subject: foreign\r\n\r\nx\r\n", ["gina@example.test"])
            got = tl.outcomes(r)[0]
            check.eq(got[:2], ("OUTCOME_PERMFAIL", "5.2.0"), "foreign mbox refused")
            check.true("owned by uid 65534" in got[2], "foreign mbox text %r" % (got[2],))
            check.eq(os.path.getsize(foreign), 0, "the foreign mbox unchanged")
        else:
            print("not root: the mbox owner check needs a file of another uid; not exercised")

        # An alias "/path" target arrives as the nexthop: that file, for every recipient.
        target = os.path.join(root, "alias-file")
        _, r = run("local", b"Subject: alias\r\n\r\nto a file\r\n",
                   ["owner@example.test"], nexthop=target)
        check.eq(tl.outcomes(r)[0][:2], ("OUTCOME_OK", "2.0.0"), "alias file target: ok")
        with open(target, "rb") as f:
            text = f.read()
        check.true(text.startswith(b"From sender@origin.test ") and
                   b"Delivered-To: owner@example.test\n" in text and
                   text.endswith(b"to a file\n\n"), "alias file content %r" % text[:200])
        _, r = run("local", body, ["owner@example.test"], nexthop="relative/path")
        check.eq(tl.outcomes(r)[0][:2], ("OUTCOME_TEMPFAIL", "4.3.5"),
                 "relative alias file target deferred")

        # Discard.
        _, r = run("drop", body, ["x@a.test", "y@b.test"])
        check.eq([g[:2] for g in tl.outcomes(r).values()], [("OUTCOME_OK", "2.0.0")] * 2,
                 "discard: delivered")
        check.eq(r.outcome, 1, "discard: job-level OK")
        check.true("status=sent (discarded)" in farms[-1].log(), "discard logged")

        # A queue file that is gone.
        job = tl.make_job(root, body, ["alice@example.test"], channel="local")
        os.unlink(job.message_path)
        conn = farms[0].connect()
        r = conn.run(job)
        conn.close()
        got = tl.outcomes(r)[0]
        check.eq(got[0], "OUTCOME_TEMPFAIL", "missing queue file deferred")
        check.true("cannot open queue file" in got[2], "missing queue file text %r" % (got[2],))
    finally:
        if locker:
            locker.close()
        logs = "".join(f.log() for f in farms)
        for f in farms:
            f.stop()
    check.done(logs)


if __name__ == "__main__":
    main()
