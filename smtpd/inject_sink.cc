// inject_sink.cc: smtpd -> scheduler message streaming over inject.sock.
#include "smtpd/inject_sink.h"

#include <glog/logging.h>

namespace smtpd {

farm::Status InjectSink::Connect() {
  auto client = farm::InjectClient::Connect(socket_path_, max_frame_bytes_);
  if (!client.ok()) return client.status();
  client_ = std::move(*client);
  return farm::Status::Ok();
}

farm::Status InjectSink::Begin(const Envelope& envelope) {
  mailfarm::InjectRequest request;
  request.set_sender(envelope.sender);
  for (const std::string& r : envelope.recipients) request.add_recipients(r);
  request.set_size(envelope.announced_size);
  request.set_smtputf8(envelope.smtputf8);
  request.set_eight_bit(envelope.eight_bit);
  mailfarm::ClientInfo* client = request.mutable_client();
  client->set_helo(envelope.client.helo);
  client->set_address(envelope.client.address);
  client->set_port(envelope.client.port);
  client->set_protocol(envelope.client.protocol);
  client->set_tls(envelope.client.tls);
  client->set_sasl_method(envelope.client.sasl_method);
  client->set_sasl_username(envelope.client.sasl_username);

  bool reused = client_ != nullptr;
  if (!reused) MAILFARM_RETURN_IF_ERROR(Connect());
  farm::Status s = client_->Begin(request);
  if (!s.ok() && reused) {
    VLOG(1) << "kept inject connection is gone (" << s.message()
            << "), reconnecting";
    client_.reset();
    MAILFARM_RETURN_IF_ERROR(Connect());
    s = client_->Begin(request);
  }
  if (!s.ok()) {
    client_.reset();
    return s;
  }
  in_message_ = true;
  return farm::Status::Ok();
}

farm::Status InjectSink::Write(std::string_view data) {
  if (!in_message_ || client_ == nullptr)
    return farm::Status::Error("no message in progress");
  farm::Status s = client_->Write(data);
  if (!s.ok()) {
    client_.reset();
    in_message_ = false;
  }
  return s;
}

farm::StatusOr<SinkReply> InjectSink::Finish() {
  if (!in_message_ || client_ == nullptr)
    return farm::Status::Error("no message in progress");
  in_message_ = false;
  auto reply = client_->Finish(finish_timeout_ms_);
  if (!reply.ok()) {
    client_.reset();  // the stream is in an unknown state
    return reply.status();
  }
  SinkReply out;
  switch (reply->status()) {
    case mailfarm::InjectReply::ACCEPTED:
      out.kind = SinkReply::Kind::kAccepted;
      break;
    case mailfarm::InjectReply::REJECT:
      out.kind = SinkReply::Kind::kReject;
      break;
    default:
      out.kind = SinkReply::Kind::kTempFail;
      break;
  }
  if (out.kind == SinkReply::Kind::kAccepted && reply->qid().empty()) {
    client_.reset();
    return farm::Status::Error("scheduler accepted without a queue id");
  }
  out.qid = reply->qid();
  out.dsn = reply->dsn();
  out.text = reply->text();
  return out;
}

void InjectSink::Abort() {
  if (!in_message_) return;
  in_message_ = false;
  client_.reset();
}

}  // namespace smtpd
