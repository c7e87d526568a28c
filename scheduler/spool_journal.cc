// spool_journal.cc: the journal's record format, its scan at open and its
// aligned, batched writes (see spool_journal.h).
#include "scheduler/spool_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "scheduler/crc32c.h"

namespace mailfarm::scheduler {

namespace {

constexpr uint32_t kMagic = 0x314a464d;  // "MFJ1", little-endian
constexpr size_t kHeaderBytes = 24;
// magic(4) crc(4) generation(8) kind(1) qid length(1) reserved(2) length(4)
constexpr size_t kCrcAt = 4, kGenerationAt = 8, kKindAt = 16, kQidLengthAt = 17,
                 kLengthAt = 20;
constexpr uint64_t kBlock = 4096;
// The file grows in steps of zeros this large: a commit that overwrites bytes
// the file already holds is pure data to fdatasync, while one that extends
// the file also changes its size and extent tree, which on ext4 and XFS
// forces a metadata (journal) commit with it. So one commit per MiB pays that,
// not every one. (Not fallocate: its unwritten extents are converted on the
// first write, a metadata change again.)
constexpr uint64_t kGrowStep = 1 << 20;

template <typename T>
T Load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
void Store(std::string* out, size_t at, T v) {
  std::memcpy(out->data() + at, &v, sizeof v);
}

// A generation nobody used before: a stale record left in the file by an
// earlier generation can then never pass for one of the current one.
uint64_t NewGeneration() {
  std::random_device random;
  uint64_t g = (uint64_t{random()} << 32) ^ random();
  return g == 0 ? 1 : g;
}

// The record at data[pos]: its size, or 0 when there is none (end of file,
// torn, corrupt or of another generation than *generation; 0 there takes
// any).
size_t ParseRecord(std::string_view data, size_t pos, uint64_t* generation,
                   SpoolJournal::Entry* entry) {
  if (data.size() - pos < kHeaderBytes) return 0;
  const char* p = data.data() + pos;
  if (Load<uint32_t>(p) != kMagic) return 0;
  uint64_t gen = Load<uint64_t>(p + kGenerationAt);
  if (*generation != 0 && gen != *generation) return 0;
  size_t qid_length = static_cast<uint8_t>(p[kQidLengthAt]);
  uint64_t length = Load<uint32_t>(p + kLengthAt);
  uint64_t size = kHeaderBytes + qid_length + length;
  if (size > data.size() - pos) return 0;
  if (Crc32c(data.substr(pos + kGenerationAt, size - kGenerationAt)) !=
      Load<uint32_t>(p + kCrcAt))
    return 0;
  *generation = gen;
  entry->kind = static_cast<SpoolJournal::Kind>(p[kKindAt]);
  entry->qid.assign(p + kHeaderBytes, qid_length);
  entry->data.assign(p + kHeaderBytes + qid_length, length);
  return size;
}

}  // namespace

// What a journal file holds: the checkpoint that began its generation (its
// sequence number and newest queue id) and the records written after it.
struct SpoolJournal::Contents {
  uint64_t sequence = 0;
  std::string newest_qid;
  std::vector<Entry> entries;
};

SpoolJournal::Contents SpoolJournal::Parse(std::string_view data) {
  Contents found;
  // The first record is the checkpoint that began the generation; none (a
  // new file, or a checkpoint torn after its syncfs had made every file
  // durable) means nothing to recover.
  uint64_t generation = 0;
  Entry entry;
  size_t pos = ParseRecord(data, 0, &generation, &entry);
  if (pos > 0 && entry.kind != Kind::kCheckpoint) pos = 0;
  if (pos > 0 && entry.data.size() >= sizeof found.sequence) {
    found.sequence = Load<uint64_t>(entry.data.data());
    found.newest_qid = entry.data.substr(sizeof found.sequence);
  }
  while (pos > 0) {
    size_t size = ParseRecord(data, pos, &generation, &entry);
    if (size == 0) break;
    if (entry.kind == Kind::kCreate || entry.kind == Kind::kRemove ||
        entry.kind == Kind::kCancel)
      found.entries.push_back(std::move(entry));
    pos += size;
  }
  return found;
}

farm::StatusOr<std::unique_ptr<SpoolJournal>> SpoolJournal::Open(
    SpoolEnv* env, const std::string& path, uint64_t capacity,
    std::vector<Entry>* entries) {
  farm::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return farm::Status::FromErrno("open " + path, errno);
  auto data = ReadWholeFile(fd.get(), path);
  if (!data.ok()) return data.status();
  Contents found = Parse(*data);
  *entries = std::move(found.entries);
  // No generation until the caller's Checkpoint: nothing can be written
  // before what was found has been dealt with.
  std::unique_ptr<SpoolJournal> journal(new SpoolJournal(
      env, path, std::move(fd), std::max<uint64_t>(capacity, kGrowStep)));
  journal->file_size_ = data->size();
  journal->sequence_ = found.sequence;
  journal->newest_qid_ = std::move(found.newest_qid);
  return journal;
}

farm::StatusOr<std::vector<SpoolJournal::Entry>> SpoolJournal::ReadEntries(
    uint64_t* sequence) {
  auto data = ReadWholeFile(fd_.get(), path_);
  if (!data.ok()) return data.status();
  Contents found = Parse(*data);
  *sequence = found.sequence;
  return std::move(found.entries);
}

SpoolJournal::SpoolJournal(SpoolEnv* env, std::string path, farm::UniqueFd fd,
                           uint64_t capacity)
    : env_(env),
      path_(std::move(path)),
      fd_(std::move(fd)),
      capacity_(capacity) {}

bool SpoolJournal::Fits(size_t file_bytes, size_t count) const {
  if (generation_ == 0) return false;  // no checkpoint yet (or a failed one)
  uint64_t need =
      pending_.size() + file_bytes + count * (kHeaderBytes + 16) + 2 * kBlock;
  return end_ + need <= capacity_;
}

bool SpoolJournal::Empty() const {
  return generation_ != 0 && end_ <= kBlock && pending_.empty();
}

bool SpoolJournal::FitsEmpty(size_t file_bytes, size_t count) const {
  // The checkpoint's block, then the creates.
  return kBlock + file_bytes + count * (kHeaderBytes + 16) + 2 * kBlock <=
         capacity_;
}

farm::Status SpoolJournal::Discard() {
  pending_.clear();
  generation_ = 0;
  end_ = 0;
  file_size_ = 0;
  MAILFARM_RETURN_IF_ERROR(env_->Truncate(fd_.get(), 0, path_));
  return env_->Sync(fd_.get(), path_);
}

void SpoolJournal::AddRecord(Kind kind, std::string_view qid,
                             std::string_view first, std::string_view second) {
  size_t start = pending_.size();
  pending_.resize(start + kHeaderBytes);
  pending_.append(qid);
  pending_.append(first);
  pending_.append(second);
  Store<uint32_t>(&pending_, start, kMagic);
  Store<uint64_t>(&pending_, start + kGenerationAt, generation_);
  pending_[start + kKindAt] = static_cast<char>(kind);
  pending_[start + kQidLengthAt] = static_cast<char>(qid.size());
  Store<uint16_t>(&pending_, start + kQidLengthAt + 1, 0);
  Store<uint32_t>(&pending_, start + kLengthAt,
                  static_cast<uint32_t>(first.size() + second.size()));
  Store<uint32_t>(
      &pending_, start + kCrcAt,
      Crc32c(std::string_view(pending_).substr(start + kGenerationAt)));
}

void SpoolJournal::AddCreate(std::string_view qid, std::string_view header,
                             std::string_view body) {
  AddRecord(Kind::kCreate, qid, header, body);
}

void SpoolJournal::AddRemove(std::string_view qid) {
  AddRecord(Kind::kRemove, qid, {}, {});
}

void SpoolJournal::AddCancel(std::string_view qid) {
  AddRecord(Kind::kCancel, qid, {}, {});
}

farm::Status SpoolJournal::WritePending(bool sync) {
  if (pending_.empty()) return farm::Status::Ok();
  // Pad to the next 4 KiB boundary, so that the next write starts on a fresh
  // sector.
  size_t gap = (kBlock - pending_.size() % kBlock) % kBlock;
  if (gap > 0 && gap < kHeaderBytes) gap += kBlock;
  if (gap > 0)
    AddRecord(Kind::kPad, {}, std::string(gap - kHeaderBytes, '\0'), {});
  size_t records = pending_.size();
  uint64_t write_end = end_ + records;
  if (write_end > file_size_) {
    // Zeros after the records end the scan at open like the end of file.
    uint64_t grown = (write_end + kGrowStep - 1) / kGrowStep * kGrowStep;
    pending_.resize(std::max(write_end, std::min(grown, capacity_)) - end_);
  }
  farm::Status status = env_->WriteAt(fd_.get(), pending_, end_, path_);
  if (status.ok() && sync) status = env_->DataSync(fd_.get(), path_);
  if (status.ok()) {
    file_size_ = std::max(file_size_, end_ + pending_.size());
    end_ += records;
  } else {
    // What was written may be on disk, and a later, shorter write would not
    // cover all of it: only a new generation makes sure it is never read.
    generation_ = 0;
  }
  pending_.clear();
  return status;
}

farm::Status SpoolJournal::Commit() { return WritePending(/*sync=*/true); }

farm::Status SpoolJournal::Write() { return WritePending(/*sync=*/false); }

// Fills the file with zeros up to its capacity, so that no later commit
// extends it (each extension costs a metadata commit, and on a journaled ext4
// one that waits for a checkpoint's syncfs running beside it: 250-300 ms
// without an acknowledgement, measured at 1 client). Best effort: on a disk
// too full for it the file keeps growing in steps as it fills.
void SpoolJournal::GrowToCapacity() {
  if (file_size_ >= capacity_) return;
  const std::string zeros(kGrowStep, '\0');
  uint64_t size = file_size_;
  while (size < capacity_) {
    std::string_view chunk(zeros.data(), std::min(kGrowStep, capacity_ - size));
    if (!env_->WriteAt(fd_.get(), chunk, size, path_).ok()) {
      (void)env_->Truncate(fd_.get(), file_size_, path_);
      return;
    }
    size += chunk.size();
  }
  file_size_ = size;  // made durable by the checkpoint's fdatasync
}

farm::Status SpoolJournal::Checkpoint(uint64_t sequence,
                                      std::string_view newest_qid) {
  GrowToCapacity();
  pending_.clear();
  end_ = 0;
  generation_ = NewGeneration();
  sequence_ = sequence;
  newest_qid_ = std::string(newest_qid);
  std::string data(sizeof sequence, '\0');
  Store<uint64_t>(&data, 0, sequence);
  data.append(newest_qid);
  AddRecord(Kind::kCheckpoint, {}, data, {});
  farm::Status status = WritePending(/*sync=*/true);
  if (!status.ok()) generation_ = 0;  // Fits refuses until one succeeds
  return status;
}

}  // namespace mailfarm::scheduler
