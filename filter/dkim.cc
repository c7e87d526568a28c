// dkim.cc: RFC 6376 canonicalisation and rsa-sha256 signing (see dkim.h).
#include "filter/dkim.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cctype>

#include "farm/ascii.h"

namespace filter {
namespace {

// Appends `line` with blank runs reduced to one SP and trailing blanks removed.
void AppendRelaxedLine(std::string_view line, std::string* out) {
  bool pending_blank = false;
  for (char c : line) {
    if (IsBlank(c)) {
      pending_blank = true;
      continue;
    }
    if (pending_blank) out->push_back(' ');
    pending_blank = false;
    out->push_back(c);
  }
}

std::string OpenSslError() {
  unsigned long err = ERR_get_error();
  if (err == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(err, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

std::string Base64(const unsigned char* data, size_t size) {
  std::string out(4 * ((size + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data,
                          static_cast<int>(size));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string Sha256Base64(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr);
  return Base64(digest, size);
}

}  // namespace

std::string RelaxedBody(std::string_view body) {
  std::string out;
  out.reserve(body.size());
  std::string line_out;
  size_t empty_lines = 0;  // held back until a non-empty line follows
  while (!body.empty()) {
    size_t nl = body.find('\n');
    std::string_view line = body.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    line_out.clear();
    AppendRelaxedLine(line, &line_out);
    if (line_out.empty()) {
      ++empty_lines;
    } else {
      for (; empty_lines > 0; --empty_lines) out += "\r\n";
      out += line_out;
      out += "\r\n";
    }
    if (nl == std::string_view::npos) break;
    body.remove_prefix(nl + 1);
  }
  return out;
}

std::string RelaxedHeader(std::string_view name, std::string_view raw_value) {
  std::string out = farm::AsciiLower(name);
  while (!out.empty() && IsBlank(out.back())) out.pop_back();
  out.push_back(':');
  std::string unfolded;
  unfolded.reserve(raw_value.size());
  for (char c : raw_value) {
    if (c != '\r' && c != '\n') unfolded.push_back(c);
  }
  std::string_view v = unfolded;
  while (!v.empty() && IsBlank(v.front())) v.remove_prefix(1);
  AppendRelaxedLine(v, &out);
  out += "\r\n";
  return out;
}

const std::vector<std::string>& DefaultSignedHeaders() {
  static const std::vector<std::string> kHeaders = {"from",
                                                    "sender",
                                                    "reply-to",
                                                    "subject",
                                                    "date",
                                                    "message-id",
                                                    "to",
                                                    "cc",
                                                    "mime-version",
                                                    "content-type",
                                                    "content-transfer-encoding",
                                                    "in-reply-to",
                                                    "references",
                                                    "list-id",
                                                    "list-unsubscribe"};
  return kHeaders;
}

farm::StatusOr<DkimSigner> DkimSigner::Load(
    const mailfarm::config::DkimKey& key) {
  const std::string where = "dkim key for \"" + key.domain() + "\": ";
  if (key.domain().empty()) return farm::Status::Invalid(where + "no domain");
  if (key.selector().empty())
    return farm::Status::Invalid(where + "no selector");
  if (key.private_key_file().empty())
    return farm::Status::Invalid(where + "no private_key_file");
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_file(key.private_key_file().c_str(), "r"), &BIO_free);
  if (!bio) {
    return farm::Status::Invalid(where + "cannot open " +
                                 key.private_key_file() + ": " +
                                 OpenSslError());
  }
  EVP_PKEY* pkey =
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (pkey == nullptr) {
    return farm::Status::Invalid(where + key.private_key_file() +
                                 ": not a PEM private key: " + OpenSslError());
  }
  DkimSigner signer;
  signer.key_.reset(pkey, KeyFree());
  if (EVP_PKEY_base_id(pkey) != EVP_PKEY_RSA) {
    return farm::Status::Invalid(where + key.private_key_file() +
                                 ": not an RSA key");
  }
  if (EVP_PKEY_bits(pkey) < 1024) {
    return farm::Status::Invalid(where + key.private_key_file() +
                                 ": RSA key shorter than 1024 bits");
  }
  signer.domain_ = farm::AsciiLower(key.domain());
  signer.selector_ = key.selector();
  for (const auto& h : key.sign_headers())
    signer.sign_headers_.push_back(farm::AsciiLower(h));
  if (signer.sign_headers_.empty())
    signer.sign_headers_ = DefaultSignedHeaders();
  if (std::find(signer.sign_headers_.begin(), signer.sign_headers_.end(),
                "from") == signer.sign_headers_.end()) {
    signer.sign_headers_.insert(signer.sign_headers_.begin(),
                                "from");  // RFC 6376 5.4
  }
  return signer;
}

farm::StatusOr<std::string> DkimSigner::Sign(
    const std::vector<mailfarm::Header>& added, const Message& message,
    int64_t unix_time) const {
  // The header section exactly as a transport emits it: added headers first.
  struct Field {
    std::string lname;
    std::string name;
    std::string raw_value;
    bool used = false;
  };
  std::vector<Field> fields;
  for (const auto& h : added)
    fields.push_back({farm::AsciiLower(h.name()), h.name(), " " + h.value()});
  for (const auto& h : message.headers)
    fields.push_back({farm::AsciiLower(h.name), h.name, h.raw_value});

  std::string hashed;  // the header hash input (RFC 6376 3.7)
  std::string h_tag;
  bool signed_from = false;
  for (const std::string& want : sign_headers_) {
    for (auto it = fields.rbegin(); it != fields.rend(); ++it) {
      if (it->used || it->lname != want) continue;
      it->used = true;
      hashed += RelaxedHeader(it->name, it->raw_value);
      if (!h_tag.empty()) h_tag += ':';
      h_tag += want;
      signed_from = signed_from || want == "from";
      break;
    }
  }
  if (!signed_from) {
    return farm::Status::Invalid("message has no From: header to sign");
  }
  std::string value =
      "v=1; a=rsa-sha256; c=relaxed/relaxed; d=" + domain_ +
      "; s=" + selector_ + "; t=" + std::to_string(unix_time) + "; h=" + h_tag +
      "; bh=" + Sha256Base64(RelaxedBody(message.body())) + "; b=";
  hashed += RelaxedHeader("DKIM-Signature", value);
  hashed.resize(hashed.size() -
                2);  // the signature field is hashed without its CRLF

  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                              &EVP_MD_CTX_free);
  size_t sig_size = 0;
  if (!ctx ||
      EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr,
                         key_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &sig_size,
                     reinterpret_cast<const unsigned char*>(hashed.data()),
                     hashed.size()) != 1) {
    return farm::Status::Error("DKIM signing failed: " + OpenSslError());
  }
  std::vector<unsigned char> sig(sig_size);
  if (EVP_DigestSign(ctx.get(), sig.data(), &sig_size,
                     reinterpret_cast<const unsigned char*>(hashed.data()),
                     hashed.size()) != 1) {
    return farm::Status::Error("DKIM signing failed: " + OpenSslError());
  }
  return value + Base64(sig.data(), sig_size);
}

}  // namespace filter
