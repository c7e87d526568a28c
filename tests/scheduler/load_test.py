"""load_test.py: 2,000 messages from 8 concurrent inject clients are all
delivered exactly once (by qid), every acknowledged qid shows up, and the
spool ends empty with no job left in any state."""
import threading

import sched_harness as h

CLIENTS = 8
PER_CLIENT = 250


def test(mf):
    mf.start_scheduler()
    mf.start_farms()
    acked = [[] for _ in range(CLIENTS)]
    errors = []

    def client(n):
        try:
            c = h.InjectConn(mf.inject_sock)
            body = h.message_body("load %d" % n, size=5000)
            for i in range(PER_CLIENT):
                r = c.send_message("load%d@example.com" % n, ["rcpt%d-%d@example.org" % (n, i)], body)
                if r.status != r.ACCEPTED:
                    errors.append(str(r))
                    return
                acked[n].append(r.qid)
            c.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    all_acked = [q for a in acked for q in a]
    assert len(all_acked) == CLIENTS * PER_CLIENT
    assert len(set(all_acked)) == len(all_acked), "duplicate qids"
    h.wait_until(lambda: len(mf.deliveries()) >= len(all_acked), 240, "all deliveries")
    h.wait_until(lambda: not mf.queue_files(), 60, "empty spool")
    d = mf.deliveries()
    assert len(d) == len(all_acked), (len(d), len(all_acked))
    assert sorted(x[0] for x in d) == sorted(all_acked)
    # The queue agrees: no job in any state.
    assert not [e for rep in mf.control(queue_list={"all": True}) for e in rep.entries]
    stats = {s.name: s.value for s in mf.control(stats=True)[0].stats.samples if not s.labels}
    assert stats["mailfarm_scheduler_injected_total"] == len(all_acked), stats
    assert stats["mailfarm_scheduler_removed_total"] == len(all_acked), stats
    print("group commit: %d files in %d batches (largest %d), %d data syncs, %d dir syncs" % (
        stats["mailfarm_spool_files_created_total"], stats["mailfarm_spool_commit_batches_total"],
        stats["mailfarm_spool_max_batch"], stats["mailfarm_spool_data_syncs_total"],
        stats["mailfarm_spool_dir_syncs_total"]))
    assert not mf.tmp_files()


h.run(test, "load", filter_enabled=True)
