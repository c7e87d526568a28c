// delivery.cc: message reading, trace headers and the delivery report shared
// by the transports (see delivery.h).
#include "transport/delivery.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "farm/clock.h"

namespace transport {

namespace {

constexpr size_t kChunkBytes = 256 * 1024;
constexpr size_t kMaxText = 1000;

// Header-safe text: CR, LF and other controls but TAB become spaces.
std::string HeaderSafe(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) c = ' ';
  }
  return out;
}

std::string ReceivedHeader(const mailfarm::Job& job,
                           const std::string& hostname,
                           const mailfarm::JobRecipient* recipient) {
  const mailfarm::ClientInfo& client = job.client();
  std::string h = "Received:";
  if (client.protocol() == "local" ||
      (client.address().empty() && client.helo().empty())) {
    h += " by " + hostname + " (mailfarm, from userid " +
         std::to_string(client.uid()) + ")\r\n\tid " + job.qid();
  } else {
    std::string name =
        client.hostname().empty() ? "unknown" : client.hostname();
    h += " from " + HeaderSafe(client.helo().empty() ? name : client.helo()) +
         " (" + HeaderSafe(name) + " [" + HeaderSafe(client.address()) + "])";
    if (!client.tls().empty())
      h += "\r\n\t(using " + HeaderSafe(client.tls()) + ")";
    h += "\r\n\tby " + hostname + " (mailfarm) with " +
         HeaderSafe(client.protocol().empty() ? "ESMTP" : client.protocol()) +
         " id " + job.qid();
  }
  if (recipient != nullptr) {
    h += "\r\n\tfor <" + HeaderSafe(recipient->address()) + ">";
  } else if (job.recipients_size() == 1) {
    h += "\r\n\tfor <" + HeaderSafe(job.recipients(0).address()) + ">";
  }
  int64_t when = job.arrival_unix_ms() != 0 ? job.arrival_unix_ms()
                                            : farm::RealClock()->NowUnixMs();
  h += "; " + RfcDate(when) + "\r\n";
  return h;
}

std::string Seconds(int64_t ms) {
  if (ms < 0) ms = 0;
  char buf[32];
  snprintf(buf, sizeof(buf), "%.2g", ms / 1000.0);
  if (ms >= 10000)
    snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(ms / 1000));
  return buf;
}

}  // namespace

farm::StatusOr<MessageReader> MessageReader::Open(const mailfarm::Job& job) {
  const std::string& path = job.message_path();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return farm::Status::TempFail("cannot open queue file " + path + ": " +
                                  strerror(err));
  }
  farm::UniqueFd owned(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    return farm::Status::TempFail("cannot stat queue file " + path + ": " +
                                  strerror(err));
  }
  uint64_t end = job.body_offset() + job.body_size();
  if (end < job.body_offset() || static_cast<uint64_t>(st.st_size) < end) {
    return farm::Status::TempFail(
        "queue file " + path + " is shorter (" + std::to_string(st.st_size) +
        " bytes) than the message range ending at " + std::to_string(end));
  }
  return MessageReader(std::move(owned), path, job.body_offset(),
                       job.body_size());
}

farm::Status MessageReader::ForEachChunk(
    const std::function<farm::Status(std::string_view)>& fn) const {
  std::vector<char> buffer(std::min<uint64_t>(kChunkBytes, size_ + 1));
  uint64_t done = 0;
  while (done < size_) {
    size_t want =
        static_cast<size_t>(std::min<uint64_t>(buffer.size(), size_ - done));
    ssize_t n = ::pread(fd_.get(), buffer.data(), want,
                        static_cast<off_t>(offset_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      return farm::Status::TempFail("read error on queue file " + path_ + ": " +
                                    strerror(err));
    }
    if (n == 0) {
      return farm::Status::TempFail("queue file " + path_ +
                                    " shrank while being read");
    }
    MAILFARM_RETURN_IF_ERROR(fn(std::string_view(buffer.data(), n)));
    done += static_cast<uint64_t>(n);
  }
  return farm::Status::Ok();
}

std::string RfcDate(int64_t unix_ms) {
  time_t t = static_cast<time_t>(unix_ms / 1000);
  struct tm tm;
  localtime_r(&t, &tm);
  char buf[64];
  strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S %z", &tm);
  return buf;
}

std::string MessagePrefix(const mailfarm::Job& job, const std::string& hostname,
                          TraceKind kind,
                          const mailfarm::JobRecipient* recipient) {
  std::string prefix;
  if (kind == TraceKind::kLocal) {
    prefix += "Return-Path: <" + HeaderSafe(job.sender()) + ">\r\n";
    if (recipient != nullptr) {
      prefix += "Delivered-To: " + HeaderSafe(recipient->address()) + "\r\n";
    }
  }
  prefix += ReceivedHeader(job, hostname, recipient);
  for (const mailfarm::Header& header : job.added_headers()) {
    prefix +=
        HeaderSafe(header.name()) + ": " + HeaderSafe(header.value()) + "\r\n";
  }
  return prefix;
}

const char* StatusWord(mailfarm::Outcome outcome) {
  switch (outcome) {
    case mailfarm::OUTCOME_OK:
      return "sent";
    case mailfarm::OUTCOME_PERMFAIL:
      return "bounced";
    default:
      return "deferred";
  }
}

DeliveryReport::DeliveryReport(const mailfarm::Job& job,
                               mailfarm::Result* result)
    : job_(job),
      result_(result),
      start_unix_ms_(farm::RealClock()->NowUnixMs()) {}

void DeliveryReport::Add(const mailfarm::JobRecipient& recipient,
                         mailfarm::Outcome outcome, const std::string& dsn,
                         const std::string& text, const std::string& relay) {
  mailfarm::RecipientResult* r = result_->add_recipients();
  r->set_index(recipient.index());
  r->set_outcome(outcome);
  r->set_dsn(dsn);
  // A remote server's reply can be long; keep Result frames small whatever
  // the number of recipients (a DSN needs the gist, not every line).
  r->set_text(text.size() > kMaxText ? text.substr(0, kMaxText) + "..." : text);
  r->set_relay(relay);
  int64_t now = farm::RealClock()->NowUnixMs();
  int64_t arrival =
      job_.arrival_unix_ms() != 0 ? job_.arrival_unix_ms() : start_unix_ms_;
  std::string line = job_.qid() + ": to=<" + recipient.address() + ">";
  if (!recipient.original().empty() &&
      recipient.original() != recipient.address()) {
    line += ", orig_to=<" + recipient.original() + ">";
  }
  line += ", relay=" + relay + ", delay=" + Seconds(now - arrival) +
          ", delays=" + Seconds(start_unix_ms_ - arrival) + "/0/" +
          Seconds(setup_ms_) + "/" + Seconds(transmit_ms_) + ", dsn=" + dsn +
          ", status=" + StatusWord(outcome) + " (" + text + ")";
  line = HeaderSafe(line);  // an address or reply with CR/LF cannot fake a line
  if (outcome == mailfarm::OUTCOME_OK) {
    LOG(INFO) << line;
  } else {
    LOG(WARNING) << line;
  }
}

void DeliveryReport::AddAll(mailfarm::Outcome outcome, const std::string& dsn,
                            const std::string& text, const std::string& relay) {
  for (const mailfarm::JobRecipient& recipient : job_.recipients()) {
    Add(recipient, outcome, dsn, text, relay);
  }
}

void DeliveryReport::Finish(mailfarm::Result* result) {
  if (result->recipients_size() == 0) return;
  const mailfarm::RecipientResult& first = result->recipients(0);
  for (const mailfarm::RecipientResult& r : result->recipients()) {
    if (r.outcome() != first.outcome()) return;
  }
  result->set_outcome(first.outcome());
  result->set_dsn(first.dsn());
  result->set_text(first.text());
}

}  // namespace transport
