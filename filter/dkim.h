// dkim.h: DKIM signing (RFC 6376, rsa-sha256, relaxed/relaxed) with OpenSSL.
// FilterHandler signs each accepted message whose sender domain has a key;
// the signature is returned as a header value and travels as an added header,
// so the queued body file is never rewritten.
#ifndef MAILFARM_FILTER_DKIM_H_
#define MAILFARM_FILTER_DKIM_H_

#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config.pb.h"
#include "farm/status.h"
#include "filter/message.h"
#include "wire.pb.h"

namespace filter {

// RFC 6376 3.4.4: relaxed body canonicalisation (blank runs -> one SP,
// trailing blanks and trailing empty lines removed, CRLF line ends; an empty
// body stays empty). Accepts bare LF line ends as CRLF.
std::string RelaxedBody(std::string_view body);

// RFC 6376 3.4.2: relaxed header canonicalisation of one field, with its CRLF:
// lower-case name, unfolded value, blank runs -> one SP, no blanks at the ends.
std::string RelaxedHeader(std::string_view name, std::string_view raw_value);

// The default h= list when DkimKey.sign_headers is empty.
const std::vector<std::string>& DefaultSignedHeaders();

// One signing key. Immutable after Load; Sign is safe from several threads.
class DkimSigner {
 public:
  // Reads the PEM private key (RSA only, at least 1024 bits). Errors name the
  // file and the DkimKey's domain.
  static farm::StatusOr<DkimSigner> Load(const mailfarm::config::DkimKey& key);

  const std::string& domain() const { return domain_; }

  // The DKIM-Signature value for `message` as transports will emit it: the
  // `added` headers first, then the message's own header section and its body
  // as stored. Signs the last instance of each configured header name,
  // bottom-up (RFC 6376 5.4.2), skipping names the message lacks.
  farm::StatusOr<std::string> Sign(const std::vector<mailfarm::Header>& added,
                                   const Message& message,
                                   int64_t unix_time) const;

 private:
  struct KeyFree {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
  };
  std::string domain_;
  std::string selector_;
  std::vector<std::string> sign_headers_;  // lower-case
  std::shared_ptr<EVP_PKEY> key_;
};

}  // namespace filter

#endif  // MAILFARM_FILTER_DKIM_H_
