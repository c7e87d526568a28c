"""mailfarm-transport command line: --help text, and configuration errors
(no --channel, an unknown channel, a broken config file) exit 78 with a
precise message."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mailfarm_harness as mh  # noqa: E402
import transport_testlib as tl  # noqa: E402


def run(args):
    p = subprocess.run([mh.binary("mailfarm-transport")] + args, capture_output=True,
                       timeout=60)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def main():
    check = tl.Check()
    root = mh.make_temp_dir("mf-tcli-")
    conf = os.path.join(root, "ok.conf")
    with open(conf, "w") as f:
        f.write(tl.farm_config(root, ['channel { name: "out" type: DISCARD }']))
    bad = os.path.join(root, "bad.conf")
    with open(bad, "w") as f:
        f.write('channel { name: "out" type: NOSUCHTYPE }\n')

    code, text = run(["--help"])
    check.eq(code, 0, "--help exit code")
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "FILES"):
        check.true(section in text, "--help has " + section)

    code, text = run(["--config", conf])
    check.eq(code, 78, "no --channel exit code")
    check.true("--channel NAME is required" in text, "no --channel message: %r" % text)

    code, text = run(["--config", conf, "--channel", "nope"])
    check.eq(code, 78, "unknown channel exit code")
    check.true('no channel named "nope"' in text, "unknown channel message: %r" % text)

    code, text = run(["--config", bad, "--channel", "out"])
    check.eq(code, 78, "broken config exit code")
    check.true("bad.conf:1:" in text, "broken config names line: %r" % text)
    check.true(not os.path.exists(os.path.join(root, "run", "transport-out.sock")),
               "no socket left behind")
    check.done()


if __name__ == "__main__":
    main()
