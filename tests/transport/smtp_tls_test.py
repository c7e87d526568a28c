"""mailfarm-transport smtp channel with STARTTLS against aiosmtpd.

A CA and server certificates are made with the openssl CLI; the sink records
the SNI name it was sent. Policies:
encrypt (TLS used, no verification), verify with the CA file and the right
name (delivered over TLS), verify against a certificate for another name
(deferred, 4.7.5, naming the mismatch), encrypt against a server without
STARTTLS (deferred, 4.7.4), may against a server without STARTTLS (delivered
in clear), may against a TLS server (TLS used), and none (never TLS).
"""

import os
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mailfarm_harness as mh  # noqa: E402
import transport_testlib as tl  # noqa: E402


SNI_SEEN = []


def server_context(key, cert):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.sni_callback = lambda sslobj, name, context: SNI_SEEN.append(name)
    return ctx


def channel(name, level, ca=None):
    tls = "level: %s" % level
    if ca:
        tls += ' ca_file: "%s"' % ca
    return ('channel { name: "%s" type: SMTP farm { start_children: 1 min_spare: 1 max_spare: 2 }'
            ' smtp { tls { %s } } }' % (name, tls))


def main():
    check = tl.Check()
    root = mh.make_temp_dir("mf-ttls-")
    ca = tl.make_ca(root)
    good = tl.make_server_cert(root, ca, "localhost", "DNS:localhost,IP:127.0.0.1")
    wrong = tl.make_server_cert(root, ca, "wrong.example", "DNS:wrong.example")
    good_sink = tl.Sink(tls_context=server_context(*good))
    wrong_sink = tl.Sink(tls_context=server_context(*wrong))
    plain_sink = tl.Sink()
    farms = []
    try:
        config = tl.farm_config(root, [
            channel("enc", "ENCRYPT"),
            channel("ver", "VERIFY", ca[1]),
            channel("may", "MAY"),
            channel("none", "NONE"),
        ])

        def deliver(chan, sink, host="127.0.0.1", rcpt="user@dest.test"):
            farm = next((f for f in farms if f.channel == chan), None)
            if farm is None:
                farm = tl.TransportFarm(root, config, chan)
                farms.append(farm)
            conn = farm.connect()
            try:
                job = tl.make_job(root, b"Subject: tls\r\n\r\nover %s\r\n" % chan.encode(),
                                  [rcpt], channel=chan, nexthop="[%s]:%d" % (host, sink.port))
                return conn.run(job)
            finally:
                conn.close()

        def last_tls(sink):
            msgs = sink.messages
            return msgs[-1]["tls"] if msgs else None

        r = deliver("enc", good_sink)
        check.eq(tl.outcomes(r)[0][0], "OUTCOME_OK", "encrypt: delivered")
        check.eq(last_tls(good_sink), True, "encrypt: message came over TLS")

        r = deliver("ver", good_sink, host="localhost")
        check.eq(tl.outcomes(r)[0][0], "OUTCOME_OK",
                 "verify, right name: delivered %r" % (tl.outcomes(r),))
        check.eq(len(good_sink.messages), 2, "verify: second message at the good sink")
        check.eq(last_tls(good_sink), True, "verify: message came over TLS")

        check.eq(SNI_SEEN[-1:], ["localhost"], "SNI names the host")

        r = deliver("ver", good_sink, host="127.0.0.1")
        check.eq(SNI_SEEN[-1:], [None], "no SNI for an address literal")
        check.eq(tl.outcomes(r)[0][0], "OUTCOME_OK", "verify by IP address SAN: delivered")

        r = deliver("ver", wrong_sink, host="localhost")
        got = tl.outcomes(r)[0]
        check.eq(got[:2], ("OUTCOME_TEMPFAIL", "4.7.5"), "verify, wrong name: deferred")
        check.true("hostname mismatch" in got[2].lower(), "mismatch reason: %r" % (got[2],))
        check.eq(r.connection_failure, True, "verify, wrong name: connection_failure")
        check.eq(len(wrong_sink.messages), 0, "verify, wrong name: nothing delivered")

        r = deliver("enc", plain_sink)
        got = tl.outcomes(r)[0]
        check.eq(got[:2], ("OUTCOME_TEMPFAIL", "4.7.4"), "encrypt, no STARTTLS: deferred")
        check.true("TLS is required, but was not offered" in got[2], "reason %r" % (got[2],))
        check.eq(len(plain_sink.messages), 0, "encrypt, no STARTTLS: nothing delivered")

        r = deliver("may", plain_sink)
        check.eq(tl.outcomes(r)[0][0], "OUTCOME_OK", "may, no STARTTLS: delivered")
        check.eq(last_tls(plain_sink), False, "may, no STARTTLS: in clear")

        r = deliver("may", good_sink)
        check.eq(tl.outcomes(r)[0][0], "OUTCOME_OK", "may, STARTTLS offered: delivered")
        check.eq(last_tls(good_sink), True, "may: TLS used when offered")

        r = deliver("none", good_sink)
        check.eq(tl.outcomes(r)[0][0], "OUTCOME_OK", "none: delivered")
        check.eq(last_tls(good_sink), False, "none: no TLS even when offered")

        log = "".join(f.log() for f in farms)
        check.true("Verified TLS connection established to localhost[" in log,
                   "verified TLS logged")
    finally:
        logs = "".join(f.log() for f in farms)
        for f in farms:
            f.stop()
        for s in (good_sink, wrong_sink, plain_sink):
            s.stop()
    check.done(logs)


if __name__ == "__main__":
    main()
