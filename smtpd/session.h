// session.h: one SMTP server session of mailfarm-smtpd (RFC 5321 with
// PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, STARTTLS), run
// blocking on a Transport and handing messages to a MessageSink. The farm
// child (smtpd_handler.cc) runs one per accepted connection; unit tests and the
// fuzz target run it on in-memory streams. No protobuf, no sockets here.
#ifndef MAILFARM_SMTPD_SESSION_H_
#define MAILFARM_SMTPD_SESSION_H_

#include <cstdint>
#include <ctime>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "farm/status.h"
#include "smtpd/cidr.h"
#include "smtpd/client_limits.h"
#include "smtpd/data_reader.h"
#include "smtpd/message_sink.h"
#include "smtpd/sasl_server.h"
#include "smtpd/smtp_command.h"
#include "smtpd/transport.h"

namespace smtpd {

// Limits and policy of a session; built once per child from the config.
struct SessionOptions {
  std::string hostname = "localhost";
  std::string banner = "ESMTP mailfarm";
  uint64_t max_message_bytes = 52428800;
  uint32_t max_recipients = 1000;
  uint32_t max_errors = 10;
  int command_timeout_ms = 300000;
  int data_timeout_ms = 600000;
  // Relay control: recipients in these domains (lower-case) are accepted from
  // anyone; any recipient from a trusted network.
  std::vector<std::string> local_domains;
  std::vector<std::string> relay_domains;
  CidrList trusted_networks;
  // PROXY protocol: when set, the connection must start with a PROXY header,
  // and only peers in proxy_networks may send one.
  bool proxy_protocol = false;
  CidrList proxy_networks;
  // Submission listeners (session_submission.cc). implicit_tls: the TLS
  // handshake comes before the banner (port 465). require_tls: AUTH and MAIL
  // only after STARTTLS (port 587). offer_auth: AUTH through the SaslServer
  // set with set_sasl(). require_auth: MAIL only after AUTH.
  bool implicit_tls = false;
  bool require_tls = false;
  bool offer_auth = false;
  bool require_auth = false;
  // With client limits set (session_limits.cc): a session's whole lifetime,
  // and the idle timeout between commands while the farm is under stress.
  int max_session_ms = 3600000;
  int stress_command_timeout_ms = 10000;
  // For tests: the clock used in Received headers.
  std::function<time_t()> now = [] { return ::time(nullptr); };
};

struct PeerAddress {
  std::string address;  // text form
  int port = 0;
};

// Runs one session. Not thread-safe; the Transport and sink must outlive it.
class Session {
 public:
  // RFC 5321 limits: command line 512 octets, text line 1000, CRLF included.
  static constexpr size_t kMaxCommandLine = 512;
  static constexpr size_t kMaxTextLine = 1000;

  Session(const SessionOptions& options, Transport* transport,
          MessageSink* sink, PeerAddress peer);

  // Serves the connection until QUIT, EOF, a timeout, too many errors or a
  // fatal I/O error. Never throws; the caller closes the connection.
  void Run();

  // What happened, for logs and tests.
  int messages_accepted() const { return messages_accepted_; }
  const std::string& end_reason() const { return end_reason_; }
  const PeerAddress& client() const { return client_; }

  // Called with false before the session blocks waiting for the client and
  // with true when input arrives, so the farm's stuck-child clock runs only
  // while the child works (the farm child marks itself connected/busy).
  void set_activity_hook(std::function<void(bool busy)> hook) {
    activity_ = std::move(hook);
  }

  // The SMTP AUTH back end for listeners with offer_auth; must outlive the
  // session. Without one AUTH is not offered.
  void set_sasl(SaslServer* sasl) { sasl_ = sasl; }
  // The per-client limits (anvil); must outlive the session. Without them
  // nothing is limited per client and no stress timeout applies.
  void set_client_limits(ClientLimits* limits) { limits_ = limits; }
  // The user the client authenticated as; empty when it did not.
  const std::string& auth_user() const { return auth_user_; }

  // Builds the Received: header line(s) for a message (exposed for tests).
  std::string ReceivedHeader() const;

 private:
  enum class LineStatus { kLine, kTooLong, kTimeout, kClosed, kError };

  bool ReadProxyHeader();
  LineStatus ReadCommandLine(std::string* line,
                             size_t max_len = kMaxCommandLine);
  farm::Status Fill(int timeout_ms);
  void Consume(size_t n);
  size_t Buffered() const { return in_end_ - in_begin_; }

  // Each returns false when the session must end.
  bool HandleCommand(std::string_view line);
  bool Helo(std::string_view args, bool extended);
  bool Mail(std::string_view args);
  bool Rcpt(std::string_view args);
  bool Data(std::string_view args);
  bool StartTls(std::string_view args);

  // Per-client limits (session_limits.cc). Each replies and returns false
  // when over a limit.
  bool AdmitClient();
  bool CountMessage();
  bool CountRecipient();
  void LogLimit(const LimitExceeded& over);
  // Replies "450 4.7.1 Error: <what><address>" when `over` says so.
  bool RefuseOverRate(const LimitExceeded& over, std::string_view what);
  // Waits for more command input: the command timeout, shortened while the
  // farm is under stress, and never past the session's deadline.
  farm::Status WaitForCommand();

  // Submission (session_submission.cc).
  bool StartImplicitTls();
  // Replies 530 and returns false when the listener's policy refuses `what`
  // (MAIL or AUTH) before STARTTLS or, for MAIL, before AUTH.
  bool SubmissionPolicyAllows(bool is_mail);
  // The EHLO keyword "AUTH PLAIN LOGIN", or empty when AUTH is not offered.
  std::string AuthKeyword();
  bool Auth(std::string_view args);
  // Runs the exchange from the back end's first answer; false when the
  // session must end.
  bool AuthExchange(const std::string& mechanism,
                    farm::StatusOr<SaslStep> step);
  // Reads the message into the sink until <CRLF>.<CRLF>; false when the
  // session ended (timeout, EOF). *sink_status keeps the first sink error.
  bool ReceiveBody(DataReader* reader, farm::Status* sink_status);
  void RefuseMessage(uint32_t flags, const farm::Status& sink_status);
  void ReplyVerdict(const farm::StatusOr<SinkReply>& reply, uint64_t size);

  bool RelayAllowed(const std::string& mailbox) const;
  std::string Protocol() const;
  void ResetTransaction();

  // Replies are queued and written in one write when the session is about to
  // block on input (PIPELINING, RFC 2920) or is about to close.
  void Reply(std::string_view line);
  void ReplyError(std::string_view line);  // counts towards max_errors
  bool Flush();
  void End(std::string reason);

  const SessionOptions& options_;
  Transport* transport_;
  MessageSink* sink_;
  PeerAddress peer_;    // the TCP peer (a load balancer when PROXY is used)
  PeerAddress client_;  // the real client

  std::function<void(bool)> activity_;
  std::vector<char> in_;
  size_t in_begin_ = 0;
  size_t in_end_ = 0;
  std::string out_;
  bool io_failed_ = false;

  std::string helo_;
  bool esmtp_ = false;
  bool tls_active_ = false;
  bool client_trusted_ = false;
  uint32_t errors_ = 0;
  SaslServer* sasl_ = nullptr;
  ClientLimits* limits_ = nullptr;
  int64_t started_ms_ = 0;   // steady clock, for max_session_ms
  std::string auth_user_;    // set by a successful AUTH
  std::string auth_method_;  // its mechanism
  int messages_accepted_ = 0;
  std::string end_reason_;

  // The transaction (MAIL .. DATA).
  bool mail_given_ = false;
  Envelope envelope_;
};

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_SESSION_H_
