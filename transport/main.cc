// main.cc: mailfarm-transport, the farm manager of one delivery channel
// (--channel NAME). Its children run the channel's transport module: smtp,
// local (Maildir/mbox), pipe or discard. Started by mailfarmd once per channel.
#include <gflags/gflags.h>

#include <memory>

#include "farm/config.h"
#include "farm/job_server.h"
#include "transport/discard_transport.h"
#include "transport/local_transport.h"
#include "transport/pipe_transport.h"
#include "transport/smtp_transport.h"

DEFINE_string(channel, "", "the channel (ChannelConfig.name) this farm serves");

namespace {

constexpr char kHelp[] = R"(NAME
    mailfarm-transport - delivery farm of one mailfarm channel

SYNOPSIS
    mailfarm-transport --channel NAME [--config PATH]

DESCRIPTION
    Binds run_dir/transport-NAME.sock and keeps a preforked pool of children
    (the channel's farm settings). The scheduler connects to a child, which
    says Hello, then receives Job frames and answers one Result each. A child
    reads the message read-only from the queue file, writes the filter's
    added headers and a trace header before it, delivers it by the channel's
    type and logs one line per recipient:
      QID: to=<rcpt>, relay=..., delay=S, delays=a/b/c/d, dsn=X.Y.Z,
      status=sent|deferred|bounced (text)

    smtp     RFC 5321 client: MX lookup (preference order, random among equal
             preferences, A/AAAA fallback, null MX bounces), "[host]:port"
             nexthops skip MX; PIPELINING, SIZE, 8BITMIME, SMTPUTF8;
             STARTTLS per smtp.tls.level none|may|encrypt|verify; per-
             recipient outcomes; the session stays open for the next job to
             the same destination (Result.open_session) until
             smtp.idle_timeout_ms or smtp.max_messages_per_connection.
    local    Maildir delivery (tmp/ then new/, fsynced) at local.mailbox
             (${user} ${domain} ${recipient}); no trailing "/" means an mbox
             file with fcntl locking and From_ quoting.
    pipe     runs pipe.argv (${sender} ${recipient} ${user} ${domain}
             ${qid}) without a shell, message on stdin; exit 0 delivered,
             75 deferred, other bounced with stderr's first line;
             pipe.timeout_ms kills its process group.
    discard  reports every recipient delivered and drops the message.

OPTIONS
    --channel NAME   the channel to serve (required)
    --config PATH    configuration file (default /etc/mailfarm/mailfarm.conf)
    --help           this text

EXIT STATUS
    0 after an orderly stop (SIGTERM); 78 for a configuration error (no or
    unknown --channel); 71 when the socket cannot be bound.

FILES
    run_dir/transport-NAME.sock    the farm's socket (scheduler side)
    run_dir/transport-NAME.scoreboard
)";

farm::StatusOr<farm::FarmIdentity> Identify(const farm::Config& config) {
  if (FLAGS_channel.empty()) {
    return farm::Status::Invalid("--channel NAME is required");
  }
  const auto* channel = farm::FindChannel(config, FLAGS_channel);
  if (channel == nullptr) {
    return farm::Status::Invalid("no channel named \"" + FLAGS_channel + "\"");
  }
  farm::FarmIdentity identity{farm::TransportFarmName(channel->name()),
                              channel->farm()};
  // A child is killed as stuck only well after the scheduler's own deadline
  // for the delivery (which also bounds every SMTP timeout), unless the
  // operator set job_timeout_ms explicitly.
  if (!channel->farm().has_job_timeout_ms()) {
    identity.pool.set_job_timeout_ms(channel->delivery_timeout_ms() + 60000);
  }
  return identity;
}

std::unique_ptr<farm::JobHandler> MakeHandler(const farm::Config& config) {
  const auto* channel = farm::FindChannel(config, FLAGS_channel);
  if (channel == nullptr) return nullptr;  // removed by a reload
  std::string hostname = farm::Hostname(config);
  switch (channel->type()) {
    case mailfarm::config::ChannelConfig::SMTP:
      return std::make_unique<transport::SmtpTransport>(*channel, hostname);
    case mailfarm::config::ChannelConfig::LOCAL:
      return std::make_unique<transport::LocalTransport>(*channel, hostname);
    case mailfarm::config::ChannelConfig::PIPE:
      return std::make_unique<transport::PipeTransport>(*channel, hostname);
    case mailfarm::config::ChannelConfig::DISCARD:
      return std::make_unique<transport::DiscardTransport>();
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  return farm::JobFarmMain(argc, argv, {kHelp, Identify, MakeHandler});
}
