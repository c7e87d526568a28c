// sendmail_args.h: the sendmail command line and message handling of
// mailfarm-inject (argv parsing, -t header recipients, line endings, the
// headers a submitted message must carry). Pure functions, unit-tested.
#ifndef MAILFARM_SCHEDULER_SENDMAIL_ARGS_H_
#define MAILFARM_SCHEDULER_SENDMAIL_ARGS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace mailfarm::scheduler {

struct SendmailOptions {
  std::string config_path;    // --config / -C; empty = the default
  std::string sender;         // -f / -r; empty = not given
  bool sender_given = false;  // -f "" (the null sender) counts as given
  std::string full_name;      // -F
  bool recipients_from_headers = false;  // -t
  bool ignore_dots = false;  // -i / -oi: a lone "." does not end the input
  bool help = false;
  std::vector<std::string> recipients;
};

// Parses argv (argv[0] excluded). Options the real sendmail has but that mean
// nothing here (-odb, -oem, -v, -B, -N ...) are accepted and ignored. Returns
// "" or a usage error.
std::string ParseSendmailArgs(const std::vector<std::string>& args,
                              SendmailOptions* out);

// Reads the message text as sendmail does: LF or CRLF lines become CRLF; unless
// ignore_dots, a line holding only "." ends the message.
std::string NormalizeMessage(const std::string& input, bool ignore_dots);

// Addresses in the To, Cc and Bcc headers of `message` (for -t); comments,
// display names and groups are stripped; "a@b, Name <c@d>" gives both.
std::vector<std::string> HeaderRecipients(const std::string& message);

// Makes the header block complete: removes Bcc (always, like sendmail -t
// does), adds From, Date and Message-ID when missing, and a Received line.
std::string CompleteHeaders(const std::string& message,
                            const std::string& sender,
                            const std::string& full_name,
                            const std::string& hostname,
                            const std::string& user, int64_t now_unix_ms);

// Adds "@hostname" to an address without a domain.
std::string Qualify(const std::string& address, const std::string& hostname);

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_SENDMAIL_ARGS_H_
