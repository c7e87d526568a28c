// fuzz_session.cc: libFuzzer target driving a whole SMTP Session (command
// parser, state machine, DATA reader, PROXY parser) over an in-memory stream.
// The first input byte picks options: bit 0 offers STARTTLS, bit 1 expects a
// PROXY header, bits 2-7 cut the stream into reads of that many bytes (0: one
// read). Built with clang only (smtpd/CMakeLists.txt).
#include <glog/logging.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "smtpd/memory_transport.h"
#include "smtpd/session.h"

namespace {

smtpd::SessionOptions MakeOptions(bool proxy) {
  smtpd::SessionOptions o;
  o.hostname = "mx.fuzz";
  o.local_domains = {"local.fuzz"};
  o.relay_domains = {"relay.fuzz"};
  o.trusted_networks = *smtpd::CidrList::Parse({"10.0.0.0/8", "2001:db8::/32"});
  o.proxy_networks = *smtpd::CidrList::Parse({"192.0.2.0/24"});
  o.proxy_protocol = proxy;
  o.max_message_bytes = 4096;
  o.max_recipients = 5;
  o.max_errors = 50;
  o.now = [] { return time_t{1700000000}; };
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  FLAGS_minloglevel = 3;  // the session logs rejected input; keep the run quiet
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const smtpd::SessionOptions kPlain = MakeOptions(false);
  static const smtpd::SessionOptions kProxy = MakeOptions(true);
  uint8_t mode = data[0];
  std::string stream(reinterpret_cast<const char*>(data + 1), size - 1);
  size_t step = mode >> 2;
  smtpd::MemoryTransport transport;
  transport.tls_available = (mode & 1) != 0;
  for (size_t pos = 0; pos < stream.size();) {
    size_t n = step == 0 ? stream.size() : std::min(step, stream.size() - pos);
    transport.input.push_back(stream.substr(pos, n));
    pos += n;
  }
  transport.tls_input = transport.input;  // what "arrives" inside TLS
  smtpd::MemorySink sink;
  smtpd::Session session((mode & 2) ? kProxy : kPlain, &transport, &sink,
                         smtpd::PeerAddress{"192.0.2.1", 1234});
  session.Run();
  // Nothing queued may contain a bare LF: the smuggling guard.
  for (const auto& m : sink.accepted) {
    for (size_t i = 0; i < m.data.size(); ++i) {
      if (m.data[i] == '\n' && (i == 0 || m.data[i - 1] != '\r'))
        __builtin_trap();
      if (m.data[i] == '\0') __builtin_trap();
    }
  }
  return 0;
}
