// dsn.cc: RFC 3464 multipart/report; report-type=delivery-status.
#include "scheduler/dsn.h"

#include <ctime>
#include <sstream>

namespace mailfarm::scheduler {

namespace {

// Header and DSN field values must not carry line breaks from remote text.
std::string OneLine(std::string_view text) {
  std::string out;
  for (char c : text) out += (c == '\r' || c == '\n' || c == '\t') ? ' ' : c;
  return out;
}

std::string Host(const std::string& relay) {
  // "mx.example.org[192.0.2.1]:25" -> "mx.example.org"
  std::string host = relay.substr(0, relay.find('['));
  return host == "local" || host == "pipe" || host == "none" ? "" : host;
}

}  // namespace

std::string Rfc5322Date(int64_t unix_ms) {
  time_t t = static_cast<time_t>(unix_ms / 1000);
  tm utc;
  gmtime_r(&t, &utc);
  char buf[64];
  strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &utc);
  return buf;
}

std::string HeaderBlock(std::string_view message, size_t limit) {
  size_t end = message.find("\r\n\r\n");
  size_t cut = end == std::string_view::npos ? message.size() : end + 2;
  if (cut > limit) {
    size_t line_end = message.rfind("\r\n", limit);
    cut = line_end == std::string_view::npos ? 0 : line_end + 2;
  }
  return std::string(message.substr(0, cut));
}

std::string BuildDsn(const DsnInput& in) {
  std::string boundary =
      in.qid + "." + std::to_string(in.now_unix_ms) + "/" + in.reporting_mta;
  std::ostringstream m;
  m << "From: " << in.from << " (Mail Delivery System)\r\n"
    << "To: <" << in.sender << ">\r\n"
    << "Subject: Undelivered Mail Returned to Sender\r\n"
    << "Date: " << Rfc5322Date(in.now_unix_ms) << "\r\n"
    << "Message-ID: <" << in.qid << "." << in.now_unix_ms << ".dsn@"
    << in.reporting_mta << ">\r\n"
    << "Auto-Submitted: auto-replied\r\n"
    << "MIME-Version: 1.0\r\n"
    << "Content-Type: multipart/report; report-type=delivery-status;\r\n"
    << "\tboundary=\"" << boundary << "\"\r\n"
    << "\r\n"
    << "This is a MIME-encapsulated message.\r\n"
    << "\r\n"
    << "--" << boundary << "\r\n"
    << "Content-Description: Notification\r\n"
    << "Content-Type: text/plain; charset=utf-8\r\n"
    << "\r\n"
    << "This is the mail system at host " << in.reporting_mta << ".\r\n"
    << "\r\n"
    << (in.expired ? "Your message could not be delivered before its time in "
                     "the queue ran out.\r\n"
                   : "Your message could not be delivered to one or more "
                     "recipients.\r\n")
    << "It is attached below. For further assistance, please contact <"
    << in.postmaster << ">.\r\n\r\n";
  for (const auto& r : in.recipients) {
    m << "<" << r.final << ">: " << OneLine(r.text) << "\r\n";
  }
  m << "\r\n"
    << "--" << boundary << "\r\n"
    << "Content-Description: Delivery report\r\n"
    << "Content-Type: message/delivery-status\r\n"
    << "\r\n"
    << "Reporting-MTA: dns; " << in.reporting_mta << "\r\n"
    << "X-Mailfarm-Queue-ID: " << in.qid << "\r\n"
    << "Arrival-Date: " << Rfc5322Date(in.arrival_unix_ms) << "\r\n";
  for (const auto& r : in.recipients) {
    m << "\r\n"
      << "Final-Recipient: rfc822; " << r.final << "\r\n";
    if (!r.original.empty() && r.original != r.final) {
      m << "Original-Recipient: rfc822; " << r.original << "\r\n";
    }
    m << "Action: failed\r\n"
      << "Status: " << (r.status.empty() ? "5.0.0" : r.status) << "\r\n";
    if (!Host(r.relay).empty())
      m << "Remote-MTA: dns; " << Host(r.relay) << "\r\n";
    m << "Diagnostic-Code: " << (Host(r.relay).empty() ? "x-unix" : "smtp")
      << "; " << OneLine(r.text) << "\r\n";
  }
  m << "\r\n"
    << "--" << boundary << "\r\n"
    << "Content-Description: Undelivered Message Headers\r\n"
    << "Content-Type: text/rfc822-headers\r\n"
    << "\r\n"
    << in.original_headers;
  if (!in.original_headers.empty() && in.original_headers.back() != '\n')
    m << "\r\n";
  m << "\r\n"
    << "--" << boundary << "--\r\n";
  return m.str();
}

}  // namespace mailfarm::scheduler
