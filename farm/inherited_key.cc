// inherited_key.cc: the memfd that carries smtpd's TLS key past mailfarmd's
// privilege drop (mailfarmd loads it, smtpd takes it).
#include "farm/inherited_key.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "farm/sockets.h"

namespace farm {

namespace {
constexpr size_t kMaxKeyBytes = 1 << 20;
}  // namespace

StatusOr<UniqueFd> LoadKeyIntoMemfd(const std::string& path) {
  UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!file) return Status::FromErrno("tls_key_file " + path, errno);
  struct stat st {};
  if (::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<size_t>(st.st_size) > kMaxKeyBytes) {
    return Status::Invalid("tls_key_file " + path +
                           " is not a regular file of at most 1 MiB");
  }
  auto key = ReadKeyFd(file.get());
  if (!key.ok()) return Status::Invalid(path + ": " + key.status().message());
  UniqueFd memfd(
      ::memfd_create("mailfarm-tls-key", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!memfd) return Status::FromErrno("memfd_create", errno);
  MAILFARM_RETURN_IF_ERROR(WriteFull(memfd.get(), key->data(), key->size()));
  if (::fcntl(memfd.get(), F_ADD_SEALS,
              F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
    return Status::FromErrno("sealing the key's memfd", errno);
  }
  return memfd;
}

UniqueFd TakeInheritedKey() {
  const char* value = std::getenv(kTlsKeyFdEnv);
  if (value == nullptr) return UniqueFd();
  int fd = std::atoi(value);
  ::unsetenv(kTlsKeyFdEnv);
  if (fd < 3 || ::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return UniqueFd();
  return UniqueFd(fd);
}

StatusOr<std::string> ReadKeyFd(int fd) {
  std::string out;
  char buf[16384];
  for (off_t offset = 0;;) {
    ssize_t n = ::pread(fd, buf, sizeof(buf), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("reading the key", errno);
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
    offset += n;
    if (out.size() > kMaxKeyBytes) return Status::Invalid("key over 1 MiB");
  }
}

}  // namespace farm
