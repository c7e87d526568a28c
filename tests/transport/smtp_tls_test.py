"""mailfarm-transport smtp channel with STARTTLS against aiosmtpd.

A CA and server certificates are made with the openssl CLI; the sink records
the SNI name it was sent. Policies:
encrypt (TLS used, no verification), verify with the CA file and the right
name (delivered over TLS), verify against a certificate for another name
(deferred, 4.7.5, naming the mismatch), encrypt against a server without
STARTTLS (deferred, 4.7.4), may against a server without STARTTLS (delivered
in clear), may against a TLS server (TLS used), and none (never TLS). A
server that speaks only TLS 1.1 is refused (deferred) even when OpenSSL's
configuration (OPENSSL_CONF, security level 0) would allow it.
"""

import os
import smtplib
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


LEGACY_OPENSSL_CONF = """openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1
CipherString = DEFAULT@SECLEVEL=0
"""


def legacy_server_context(key, cert):
    """A server that speaks TLS 1.1 and nothing newer."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_ciphers("DEFAULT@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


def tls11_works(port):
    """Whether a client allowed TLS 1.1 gets through STARTTLS at the legacy
    sink: that server must be a real TLS 1.1 peer for the floor to be tested."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.set_ciphers("DEFAULT@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
            c.starttls(context=ctx)
            return c.sock.version() == "TLSv1.1"
    except (ssl.SSLError, OSError, smtplib.SMTPException):
        return False


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
    sinks = []
    farms = []
    try:
        config = tl.farm_config(root, [
            channel("enc", "ENCRYPT"),
            channel("ver", "VERIFY", ca[1]),
            channel("may", "MAY"),
            channel("none", "NONE"),
            channel("legacy", "ENCRYPT"),
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

        # TLS 1.2 is the floor even where OpenSSL's configuration allows less
        # (an admin lowering the security level for some legacy peer).
        legacy_conf = os.path.join(root, "openssl-legacy.cnf")
        with open(legacy_conf, "w") as f:
            f.write(LEGACY_OPENSSL_CONF)
        legacy_sink = tl.Sink(tls_context=legacy_server_context(*good))
        sinks.append(legacy_sink)
        if not tls11_works(legacy_sink.port):
            print("this OpenSSL cannot speak TLS 1.1 even at security level 0: "
                  "the TLS 1.2 floor is not exercised")
        else:
            legacy = tl.TransportFarm(root, config, "legacy",
                                      env={"OPENSSL_CONF": legacy_conf})
            farms.append(legacy)
            conn = legacy.connect()
            try:
                job = tl.make_job(root, b"Subject: tls\r\n\r\nlegacy\r\n", ["user@dest.test"],
                                  channel="legacy",
                                  nexthop="[127.0.0.1]:%d" % legacy_sink.port)
                r = conn.run(job)
            finally:
                conn.close()
            got = tl.outcomes(r)[0]
            check.eq(got[0], "OUTCOME_TEMPFAIL", "TLS 1.1 only server: deferred %r" % (got,))
            check.eq(len(legacy_sink.messages), 0, "TLS 1.1 only server: nothing delivered")
    finally:
        logs = "".join(f.log() for f in farms)
        for f in farms:
            f.stop()
        for s in [good_sink, wrong_sink, plain_sink] + sinks:
            s.stop()
    check.done(logs)


if __name__ == "__main__":
    main()
