#!/usr/bin/env python3
# systemd_test.py: the Debian package under a real systemd. Builds the .deb
# (scripts/package), runs lintian on it, boots a Debian container with systemd
# as PID 1, installs the package with apt, and checks the service as an
# administrator uses it: first start, delivery, reload, stop, SIGKILL, privileges.
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import nspawn

SKIP = 77  # SKIP_RETURN_CODE in tests/package/CMakeLists.txt
SRC = os.environ.get("MAILFARM_SRC",
                     os.path.dirname(os.path.dirname(os.path.dirname(
                         os.path.abspath(__file__)))))
USER = "alice"
STARTED = time.monotonic()


def log(text):
    print(f"[{time.monotonic() - STARTED:6.1f}s] {text}", flush=True)


def wait_until(what, predicate, timeout=120, interval=0.5):
    """Polls predicate() until true; a bound on waiting, not on speed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(interval)


def build_package():
    """dist/mailfarm_<version>_<arch>.deb from this checkout (or the .deb
    named by MAILFARM_TEST_DEB, already built)."""
    prebuilt = os.environ.get("MAILFARM_TEST_DEB")
    if prebuilt:
        return os.path.dirname(os.path.abspath(prebuilt)), os.path.basename(prebuilt)
    subprocess.run([os.path.join(SRC, "scripts/package")], check=True,
                   stdout=subprocess.DEVNULL)
    dist = os.path.join(SRC, "dist")
    debs = sorted(f for f in os.listdir(dist)
                  if re.fullmatch(r"mailfarm_[^_]+_[a-z0-9]+\.deb", f))
    assert debs, f"scripts/package left no mailfarm_*.deb in {dist}"
    return dist, debs[-1]


def check_lintian(deb_path):
    result = subprocess.run(["lintian", "--tag-display-limit", "0", deb_path],
                            capture_output=True, text=True)
    print(result.stdout + result.stderr)
    errors = [l for l in result.stdout.splitlines() if l.startswith("E:")]
    assert not errors, "lintian errors:\n" + "\n".join(errors)
    assert result.returncode in (0, 1, 2), f"lintian failed: {result.stderr}"


def runtime_dependencies(deb_path):
    """The package names in the .deb's Depends (first of each alternative)."""
    depends = subprocess.run(["dpkg-deb", "-f", deb_path, "Depends"],
                             check=True, capture_output=True,
                             text=True).stdout
    names = []
    for clause in depends.split(","):
        first = clause.split("|")[0].strip()
        if first:
            names.append(re.split(r"[\s(:]", first)[0])
    return names


class MailfarmContainer:
    """Helpers over a booted container with the package installed."""

    def __init__(self, container):
        self.c = container

    def sh(self, script, **kwargs):
        return self.c.run(script, **kwargs)

    def systemctl(self, *args, check=True):
        return self.sh("systemctl --no-pager " + " ".join(args), check=check)

    def prop(self, name):
        return self.sh(f"systemctl show -p {name} --value mailfarm").stdout.strip()

    def journal(self):
        return self.sh("journalctl --no-pager -u mailfarm | tail -n 60",
                       check=False).stdout

    def swaks(self, to, subject, check=True):
        return self.sh(
            f"swaks --silent 2 --server 127.0.0.1 --port 25 --from "
            f"tester@localhost --to {to} --header 'Subject: {subject}' "
            f"--body 'body of {subject}'", check=check)

    def mailbox_subjects(self):
        out = self.sh(f"cat /var/mail/{USER}/new/* 2>/dev/null | "
                      "grep -h '^Subject: ' || true").stdout
        return [line[len("Subject: "):] for line in out.splitlines()]

    def wait_delivered(self, subjects, timeout=180):
        wanted = set(subjects)
        wait_until(f"{len(wanted)} messages in /var/mail/{USER}/new",
                   lambda: wanted <= set(self.mailbox_subjects()), timeout)

    def queue(self):
        out = self.sh("mailfarmctl --json queue list").stdout
        return {json.loads(line)["qid"]: json.loads(line)
                for line in out.splitlines() if line.strip()}

    def service_processes(self):
        """(pid, Uid line, Gid line, CapEff, CapPrm) of every process in the unit."""
        cgroup = self.prop("ControlGroup")
        out = self.sh(
            f"for p in $(cat /sys/fs/cgroup{cgroup}/cgroup.procs); do "
            "  s=$(cat /proc/$p/status 2>/dev/null) || continue; "
            "  echo \"$p|$(echo \"$s\" | sed -n 's/^Name:\\s*//p')|"
            "$(echo \"$s\" | sed -n 's/^Uid:\\s*//p')|"
            "$(echo \"$s\" | sed -n 's/^Gid:\\s*//p')|"
            "$(echo \"$s\" | sed -n 's/^CapEff:\\s*//p')|"
            "$(echo \"$s\" | sed -n 's/^CapPrm:\\s*//p')\"; done").stdout
        return [line.split("|") for line in out.splitlines() if line]

    def active(self):
        return self.sh("systemctl is-active mailfarm",
                       check=False).stdout.strip() == "active"


def check_first_start(m, deb):
    # Installed as a user would; the postinst's own start is held back by a
    # policy-rc.d, so the start below is the service's very first one.
    m.sh("printf '#!/bin/sh\\nexit 101\\n' >/usr/sbin/policy-rc.d && "
         "chmod 755 /usr/sbin/policy-rc.d")
    m.sh(f"useradd --create-home --shell /bin/sh {USER}")
    m.sh(f"DEBIAN_FRONTEND=noninteractive apt-get install -y /mnt/dist/{deb}",
         timeout=600)
    log("apt-get install: ok")
    m.sh("rm /usr/sbin/policy-rc.d")
    assert m.sh("systemctl is-enabled mailfarm").stdout.strip() == "enabled"
    assert not m.active(), "the service ran before the first start"
    started = m.systemctl("start", "mailfarm", check=False)
    assert started.returncode == 0, (
        f"first systemctl start failed: {started.stderr}\n{m.journal()}")
    assert m.active(), m.journal()
    assert m.prop("NRestarts") == "0", m.journal()
    log("first start: ok")


def check_layout(m):
    for path in ["/usr/sbin/mailfarmd", "/usr/sbin/sendmail", "/usr/bin/mailq",
                 "/usr/lib/sendmail", "/etc/mailfarm/mailfarm.conf",
                 "/lib/systemd/system/mailfarm.service",
                 "/usr/share/doc/mailfarm/README.md"]:
        m.sh(f"test -e {path}")
    conffiles = m.sh("cat /var/lib/dpkg/info/mailfarm.conffiles").stdout
    assert "/etc/mailfarm/mailfarm.conf" in conffiles, conffiles
    stat = m.sh("stat -c '%U:%G %a' /var/spool/mailfarm /var/log/mailfarm "
                "/run/mailfarm").stdout.split("\n")
    # 0710 with the maildrop group once mailfarmd has set the maildrop up.
    assert stat[0] in ("mailfarm:mailfarm 700", "mailfarm:mailfarm-drop 710"), stat
    assert stat[1] == "mailfarm:mailfarm 750", stat
    assert stat[2].startswith("mailfarm:"), stat


def check_security_score(m):
    out = m.sh("systemd-analyze security --no-pager mailfarm.service").stdout
    match = re.search(r"Overall exposure level for mailfarm.service: ([0-9.]+)",
                      out)
    assert match, out
    log(f"systemd-analyze security: {match.group(1)}")
    assert float(match.group(1)) <= 3.0, out


def check_privileges(m):
    uid = m.sh("id -u mailfarm").stdout.strip()
    procs = wait_until("the farms' children",
                       lambda: (lambda p: p if len(p) >= 6 else None)(
                           m.service_processes()))
    for pid, name, uids, gids, cap_eff, cap_prm in procs:
        assert set(uids.split()) == {uid}, f"{pid} {name} runs as uids {uids}"
        assert int(cap_eff, 16) == 0, f"{pid} {name} has CapEff {cap_eff}"
        assert int(cap_prm, 16) == 0, f"{pid} {name} has CapPrm {cap_prm}"
    log(f"privileges: {len(procs)} processes, all uid {uid}, CapEff 0")


def check_delivery(m):
    m.swaks(f"{USER}@localhost", "first")
    m.wait_delivered(["first"])
    log("swaks to a local user: delivered")


def check_reload_under_load(m):
    subjects = [f"reload-{i}" for i in range(50)]
    # The 50 go one after another from a background loop; the reload lands
    # while they flow. Each swaks' exit status is kept: a refused one counts.
    m.sh("rm -f /root/reload.status; (for i in $(seq 0 49); do "
         f"swaks --silent 2 --server 127.0.0.1 --port 25 --from t@localhost "
         f"--to {USER}@localhost --header \"Subject: reload-$i\" "
         "--body x >/dev/null 2>&1; echo \"$i $?\" >>/root/reload.status; "
         "done) >/dev/null 2>&1 &")
    main_pid = m.prop("MainPID")
    wait_until("the first 5 of 50 accepted",
               lambda: len(m.sh("cat /root/reload.status 2>/dev/null || true")
                           .stdout.splitlines()) >= 5)
    m.systemctl("reload", "mailfarm")
    wait_until("all 50 sent", lambda: len(
        m.sh("cat /root/reload.status").stdout.splitlines()) == 50, 300)
    statuses = m.sh("cat /root/reload.status").stdout.split("\n")
    failed = [s for s in statuses if s and not s.endswith(" 0")]
    assert not failed, f"swaks failures across the reload: {failed}"
    m.wait_delivered(subjects)
    assert m.prop("MainPID") == main_pid, "reload restarted mailfarmd"
    log("reload under 50 messages: all 50 accepted and delivered")


def add_deferring_route(m):
    # A destination whose next hop refuses connections (nothing listens on
    # 127.0.0.1:9 in the container): its mail stays deferred in the queue.
    m.sh("sed -i 's|^routing {|routing {\\n  route { domain: \"deferred.test\" "
         "channel: \"smtp\" nexthop: \"[127.0.0.1]:9\" }|' "
         "/etc/mailfarm/mailfarm.conf")
    m.sh("mailfarmd --config /etc/mailfarm/mailfarm.conf --check-config")
    m.systemctl("restart", "mailfarm")


def deferred_jobs(m, count):
    for i in range(count):
        m.swaks(f"bob{i}@deferred.test", f"deferred-{i}")
    return wait_until(f"{count} deferred jobs", lambda: (
        lambda q: q if sum(1 for j in q.values()
                           if j.get("attempts", 0) >= 1) >= count else None)(
            m.queue()))


def check_stop_with_deferred(m):
    before = deferred_jobs(m, 3)
    m.systemctl("stop", "mailfarm")
    assert not m.active()
    m.systemctl("start", "mailfarm")
    after = wait_until("the queue after start", lambda: m.queue() or None)
    missing = set(before) - set(after)
    assert not missing, f"jobs lost across stop/start: {missing}"
    log(f"stop with {len(before)} deferred, start: all still queued")
    return set(before)


def check_kill(m, deferred):
    subjects = [f"kill-{i}" for i in range(10)]
    for subject in subjects:
        m.swaks(f"{USER}@localhost", subject)
    m.systemctl("kill", "-s", "KILL", "mailfarm")
    wait_until("the service down after SIGKILL", lambda: m.sh(
        "systemctl is-active mailfarm", check=False).stdout.strip()
        in ("failed", "inactive", "activating"))
    m.systemctl("start", "mailfarm")
    assert m.active(), m.journal()
    m.wait_delivered(subjects)
    queued = wait_until("the deferred jobs back in the queue",
                        lambda: deferred <= set(m.queue()) and m.queue())
    log(f"SIGKILL then start: 10 accepted delivered, {len(deferred)} deferred "
        f"still queued ({len(queued)} in queue)")


def check_plain_user_tools(m):
    # cron's way: no flags, a bare local recipient, run by a plain user.
    sent = m.sh(f"printf 'Subject: via-sendmail\\n\\nfrom cron\\n' | "
                f"sendmail {USER}", user=USER, check=False)
    assert sent.returncode == 0, (
        f"sendmail as {USER} exited {sent.returncode}: {sent.stderr}")
    m.wait_delivered(["via-sendmail"])
    # mailq for a plain user is not built yet: control.sock admits only the
    # service account, root and inject_group (issue 20 stays open for it).
    log("sendmail as a plain user: ok")


def check_purge(m):
    m.sh("DEBIAN_FRONTEND=noninteractive apt-get purge -y mailfarm")
    for path in ["/var/spool/mailfarm", "/var/log/mailfarm", "/etc/mailfarm",
                 "/run/mailfarm"]:
        m.sh(f"! test -e {path}")
    m.sh("! getent passwd mailfarm && ! getent group mailfarm")
    log("purge: account and directories removed")


def main():
    if os.geteuid() != 0:
        print("SKIP: needs root to boot a container (systemd-nspawn)")
        return SKIP
    reason = nspawn.skip_reason()
    if reason:
        print("SKIP: " + reason)
        return SKIP
    dist, deb = build_package()
    log(f"built {deb}")
    check_lintian(os.path.join(dist, deb))
    root = nspawn.rootfs(runtime_dependencies(os.path.join(dist, deb)), log)
    work = tempfile.mkdtemp(prefix="mf-nspawn-")
    container = nspawn.Container(root, f"mftest{os.getpid()}",
                                 [(dist, "/mnt/dist")],
                                 os.path.join(work, "console.log"))
    try:
        state = container.boot()
        log(f"container booted: {state}")
        m = MailfarmContainer(container)
        check_first_start(m, deb)
        check_layout(m)
        check_security_score(m)
        check_privileges(m)
        check_delivery(m)
        check_reload_under_load(m)
        add_deferring_route(m)
        deferred = check_stop_with_deferred(m)
        check_kill(m, deferred)
        check_plain_user_tools(m)
        check_purge(m)
    except BaseException:
        try:
            print(MailfarmContainer(container).journal())
        except Exception as e:  # the container may be gone already
            print(f"(no journal: {e})")
        raise
    finally:
        container.stop()
        subprocess.run(["rm", "-rf", work])
    log(f"systemd package test: passed in {time.monotonic() - STARTED:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
