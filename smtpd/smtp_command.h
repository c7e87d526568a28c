// smtp_command.h: the SMTP command-line grammar of mailfarm-smtpd (RFC 5321
// section 4.1, with RFC 6531 SMTPUTF8 addresses): verbs, MAIL/RCPT paths and
// ESMTP parameters. Pure functions over one command line; the session and the
// fuzz target call them.
#ifndef MAILFARM_SMTPD_SMTP_COMMAND_H_
#define MAILFARM_SMTPD_SMTP_COMMAND_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace smtpd {

enum class Verb {
  kHelo,
  kEhlo,
  kMail,
  kRcpt,
  kData,
  kRset,
  kNoop,
  kQuit,
  kHelp,
  kVrfy,
  kStartTls,
  kAuth,
  kNotImplemented,  // a known SMTP verb we do not offer (EXPN, TURN, BDAT...)
  kUnknown,
};

struct Command {
  Verb verb = Verb::kUnknown;
  std::string_view args;  // text after the verb and one space; empty if none
};

// Splits a command line (without its CRLF) into verb and arguments.
// Verbs are case-insensitive. Views point into `line`.
Command ParseCommand(std::string_view line);

// The reverse-path or forward-path of MAIL FROM / RCPT TO plus its parameters.
struct PathArgs {
  std::string mailbox;  // "local@domain" without brackets; empty for <>
  std::vector<std::pair<std::string, std::string>>
      params;  // keyword upper-cased
};

enum class PathError {
  kNone,
  kSyntax,      // "FROM:"/"TO:" missing, no <...>, junk: reply 501 5.5.4
  kBadAddress,  // <...> present but not a valid mailbox: 501 5.1.7 / 5.1.3
  kBadParam,    // malformed parameter: 501 5.5.4
};

// Parses `args` of MAIL (keyword "FROM:") or RCPT ("TO:"). `allow_null`
// accepts "<>" (MAIL only). `utf8` permits non-ASCII (valid UTF-8) in the
// mailbox. RCPT TO:<Postmaster> without domain is accepted (RFC 5321 4.5.1).
// A source route "<@a,@b:user@c>" is accepted and dropped.
PathError ParsePathArgs(std::string_view args, std::string_view keyword,
                        bool allow_null, bool utf8, PathArgs* out);

// `text` with control characters replaced by spaces: text from elsewhere (the
// scheduler, the auth service, the client) must not break a reply or log line.
std::string Printable(std::string_view text);
// True when `text` has a byte >= 0x80 (needs SMTPUTF8).
bool HasNonAscii(std::string_view text);
// True when `text` is well-formed UTF-8 (no overlongs, no surrogates).
bool IsValidUtf8(std::string_view text);
// Checks a HELO/EHLO argument: a domain or an address literal, printable ASCII.
bool IsValidHeloArgument(std::string_view arg);
// The domain part of "local@domain", lower-cased, trailing dot removed; empty
// if none.
std::string DomainOf(std::string_view mailbox);
// The local part of "local@domain" (everything before the last '@').
std::string_view LocalPartOf(std::string_view mailbox);

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_SMTP_COMMAND_H_
