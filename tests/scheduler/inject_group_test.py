"""inject_group_test.py: identity.inject_group admits a uid that has the group
only as a supplementary group (as `adduser alice mailinject` gives it), seen
through SO_PEERGROUPS; the same uid without the group is refused.
Needs root to inject as another uid: otherwise it prints why and exits 77."""
import grp
import os
import sys

import sched_harness as h

GROUP = "mail"  # a Debian base-system group nobody is a member of


def as_nobody(mf, groups):
    def drop():
        os.setgroups(groups)
        os.setgid(65534)
        os.setuid(65534)
    return h.inject_as(mf.inject_sock, drop)


def test(mf):
    gid = grp.getgrnam(GROUP).gr_gid
    with open(mf.config, "a") as f:
        f.write('\nidentity { inject_group: "%s" }\n' % GROUP)
    mf.start_scheduler()
    for d in (mf.dir, mf.run):
        os.chmod(d, 0o755)
    os.chmod(mf.inject_sock, 0o666)
    p = as_nobody(mf, [])
    assert p.returncode == 0 and p.stdout.startswith("3 5.7.1 permission denied: uid 65534"), p
    p = as_nobody(mf, [gid])
    assert p.returncode == 0 and p.stdout.startswith("1 2.0.0 queued as "), p


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("SKIP: needs root to inject as another uid (65534)")
        sys.exit(77)
    h.run(test, "inject-group")
