// fuzz_command.cc: libFuzzer target for the command-line grammar (verbs,
// MAIL/RCPT paths and parameters, HELO argument, UTF-8 check), the PROXY
// header parser and CIDR parsing. Built with clang only.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "smtpd/cidr.h"
#include "smtpd/proxy_protocol.h"
#include "smtpd/smtp_command.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  smtpd::Command cmd = smtpd::ParseCommand(in);
  for (bool utf8 : {false, true}) {
    smtpd::PathArgs path;
    if (smtpd::ParsePathArgs(cmd.args, "FROM:", true, utf8, &path) ==
        smtpd::PathError::kNone) {
      if (!utf8 && smtpd::HasNonAscii(path.mailbox)) __builtin_trap();
      if (utf8 && !smtpd::IsValidUtf8(path.mailbox)) __builtin_trap();
      (void)smtpd::DomainOf(path.mailbox);
      (void)smtpd::LocalPartOf(path.mailbox);
    }
    (void)smtpd::ParsePathArgs(cmd.args, "TO:", false, utf8, &path);
  }
  (void)smtpd::IsValidHeloArgument(cmd.args);
  smtpd::ProxyHeader header;
  size_t consumed = 0;
  if (smtpd::ParseProxyHeader(in.data(), in.size(), &header, &consumed).ok()) {
    if (consumed == 0 || consumed > in.size()) __builtin_trap();
    if (header.has_address && !smtpd::IpAddress::Parse(header.source_address))
      __builtin_trap();
  }
  auto cidr = smtpd::Cidr::Parse(in);
  if (cidr.ok() && !cidr->Contains(cidr->network)) __builtin_trap();
  return 0;
}
