// spool_file.cc: encoding and validation of queue files. The reader trusts
// nothing: every length is bounded by the file size before it is used, every
// protobuf is checksummed before it is parsed.
#include "scheduler/spool_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include "farm/unique_fd.h"
#include "scheduler/crc32c.h"

namespace mailfarm::scheduler {

namespace {

constexpr size_t kMagicSize = 4;
constexpr size_t kFrameOverhead = kMagicSize + 4 + 4;  // magic, length, crc

void PutU32(uint32_t v, std::string* out) {
  char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8),
               static_cast<char>(v >> 16), static_cast<char>(v >> 24)};
  out->append(b, 4);
}

uint32_t GetU32(std::string_view b) {
  auto u = [&](int i) {
    return static_cast<uint32_t>(static_cast<unsigned char>(b[i]));
  };
  return u(0) | (u(1) << 8) | (u(2) << 16) | (u(3) << 24);
}

std::string Frame(const char* magic,
                  const google::protobuf::MessageLite& message) {
  std::string payload = message.SerializeAsString();
  std::string out(magic, kMagicSize);
  PutU32(static_cast<uint32_t>(payload.size()), &out);
  out += payload;
  PutU32(Crc32c(payload), &out);
  return out;
}

// Random access to the bytes being validated: a file (pread) or a buffer.
using ReadAt =
    std::function<farm::Status(uint64_t offset, size_t size, std::string* out)>;

farm::Status Corrupt(std::string_view name, const std::string& what) {
  return farm::Status::Invalid(std::string(name) +
                               ": corrupt queue file: " + what);
}

farm::Status CheckRecipients(std::string_view name,
                             const spool::Envelope& envelope) {
  if (envelope.recipients().empty())
    return Corrupt(name, "envelope has no recipients");
  std::set<uint32_t> seen;
  for (const auto& r : envelope.recipients()) {
    if (!seen.insert(r.index()).second) {
      return Corrupt(name,
                     "duplicate recipient index " + std::to_string(r.index()));
    }
    if (r.address().empty()) return Corrupt(name, "empty recipient address");
  }
  return farm::Status::Ok();
}

farm::Status VerifyBody(std::string_view name, const ReadAt& read_at,
                        uint64_t offset, const spool::Envelope& envelope) {
  constexpr size_t kChunk = 1 << 20;
  uint32_t crc = 0;
  std::string chunk;
  for (uint64_t done = 0; done < envelope.body_size();) {
    size_t want = static_cast<size_t>(
        std::min<uint64_t>(kChunk, envelope.body_size() - done));
    MAILFARM_RETURN_IF_ERROR(read_at(offset + done, want, &chunk));
    crc = Crc32cExtend(crc, chunk.data(), chunk.size());
    done += want;
  }
  if (crc != envelope.body_crc32c())
    return Corrupt(name, "body checksum mismatch");
  return farm::Status::Ok();
}

// Parses the state records in [offset, file_size); stops at the first one that
// is incomplete or does not check out (a torn append).
farm::Status ReadStateRecords(const ReadAt& read_at, uint64_t offset,
                              uint64_t file_size, QueueFile* file) {
  std::string tail;
  if (file_size > offset) {
    MAILFARM_RETURN_IF_ERROR(
        read_at(offset, static_cast<size_t>(file_size - offset), &tail));
  }
  size_t pos = 0;
  while (tail.size() - pos >= kFrameOverhead) {
    std::string_view rest = std::string_view(tail).substr(pos);
    if (rest.substr(0, kMagicSize) != std::string_view(kStateMagic, kMagicSize))
      break;
    uint32_t length = GetU32(rest.substr(kMagicSize, 4));
    if (length > kMaxStateBytes || rest.size() < kFrameOverhead + length) break;
    std::string_view payload = rest.substr(8, length);
    if (GetU32(rest.substr(8 + length, 4)) != Crc32c(payload)) break;
    spool::JobState record;
    if (!record.ParseFromArray(payload.data(),
                               static_cast<int>(payload.size())))
      break;
    MergeJobState(record, &file->state);
    ++file->state_records;
    file->records.push_back(std::move(record));
    pos += kFrameOverhead + length;
  }
  file->valid_size = offset + pos;
  file->torn_bytes = tail.size() - pos;
  return farm::Status::Ok();
}

farm::StatusOr<QueueFile> Parse(const ReadAt& read_at, uint64_t file_size,
                                std::string_view name,
                                const ReadOptions& options) {
  if (file_size < 8)
    return Corrupt(
        name, "truncated header (" + std::to_string(file_size) + " bytes)");
  std::string head;
  MAILFARM_RETURN_IF_ERROR(read_at(0, 8, &head));
  if (head.compare(0, kMagicSize, kQueueMagic, kMagicSize) != 0)
    return Corrupt(name, "bad magic");
  uint32_t length = GetU32(std::string_view(head).substr(4));
  if (length > kMaxEnvelopeBytes) {
    return Corrupt(
        name, "envelope length " + std::to_string(length) + " out of range");
  }
  if (file_size < 8 + uint64_t{length} + 4)
    return Corrupt(name, "truncated envelope");
  std::string envelope_bytes;
  MAILFARM_RETURN_IF_ERROR(read_at(8, length + 4, &envelope_bytes));
  std::string_view payload = std::string_view(envelope_bytes).substr(0, length);
  if (GetU32(std::string_view(envelope_bytes).substr(length)) !=
      Crc32c(payload)) {
    return Corrupt(name, "envelope checksum mismatch");
  }
  QueueFile file;
  if (!file.envelope.ParseFromArray(payload.data(),
                                    static_cast<int>(payload.size()))) {
    return Corrupt(name, "unparsable envelope");
  }
  if (file.envelope.qid().empty()) return Corrupt(name, "envelope has no qid");
  if (options.check_file_name && !name.empty()) {
    std::string_view base = name.substr(
        name.rfind('/') == std::string_view::npos ? 0 : name.rfind('/') + 1);
    if (base != file.envelope.qid()) {
      return Corrupt(name, "envelope qid " + file.envelope.qid() +
                               " does not match the file name");
    }
  }
  MAILFARM_RETURN_IF_ERROR(CheckRecipients(name, file.envelope));
  file.body_offset = 8 + uint64_t{length} + 4;
  if (file_size - file.body_offset < file.envelope.body_size()) {
    return Corrupt(name,
                   "truncated body (" +
                       std::to_string(file_size - file.body_offset) + " of " +
                       std::to_string(file.envelope.body_size()) + " bytes)");
  }
  if (options.verify_body) {
    MAILFARM_RETURN_IF_ERROR(
        VerifyBody(name, read_at, file.body_offset, file.envelope));
  }
  MAILFARM_RETURN_IF_ERROR(ReadStateRecords(
      read_at, file.body_offset + file.envelope.body_size(), file_size, &file));
  return file;
}

}  // namespace

std::string EncodeQueueHeader(const spool::Envelope& envelope) {
  return Frame(kQueueMagic, envelope);
}

std::string EncodeStateRecord(const spool::JobState& state) {
  return Frame(kStateMagic, state);
}

void MergeJobState(const spool::JobState& record, spool::JobState* merged) {
  // Recipient states accumulate by index; everything else is the latest value.
  std::map<uint32_t, spool::RecipientState> recipients;
  for (const auto& r : merged->recipients()) recipients[r.index()] = r;
  for (const auto& r : record.recipients()) recipients[r.index()] = r;
  *merged = record;
  merged->clear_recipients();
  for (auto& [index, r] : recipients) *merged->add_recipients() = std::move(r);
}

farm::StatusOr<QueueFile> ParseQueueFile(std::string_view data,
                                         std::string_view name,
                                         const ReadOptions& options) {
  ReadAt read_at = [data](uint64_t offset, size_t size, std::string* out) {
    out->assign(data.substr(static_cast<size_t>(offset), size));
    return farm::Status::Ok();
  };
  return Parse(read_at, data.size(), name, options);
}

farm::StatusOr<QueueFile> ReadQueueFile(const std::string& path,
                                        const ReadOptions& options) {
  farm::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return farm::Status::FromErrno("open " + path, errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0)
    return farm::Status::FromErrno("fstat " + path, errno);
  ReadAt read_at = [&](uint64_t offset, size_t size, std::string* out) {
    out->resize(size);
    size_t done = 0;
    while (done < size) {
      ssize_t n = ::pread(fd.get(), out->data() + done, size - done,
                          static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return farm::Status::FromErrno("read " + path, errno);
      if (n == 0) return Corrupt(path, "file shrank while being read");
      done += static_cast<size_t>(n);
    }
    return farm::Status::Ok();
  };
  return Parse(read_at, static_cast<uint64_t>(st.st_size), path, options);
}

}  // namespace mailfarm::scheduler
