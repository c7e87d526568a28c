// spool_file.h: the queue-file format of spool/queue/<hash>/<qid> (see the top
// of proto/spool.proto): encoding for the scheduler's writers and a fully
// validating reader shared by the scheduler (adopt) and mailfarm-replay.
#ifndef MAILFARM_SCHEDULER_SPOOL_FILE_H_
#define MAILFARM_SCHEDULER_SPOOL_FILE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "farm/status.h"
#include "spool.pb.h"

namespace mailfarm::scheduler {

// Integers in the file are 32-bit little-endian.
inline constexpr char kQueueMagic[] = "MFQ1";
inline constexpr char kStateMagic[] = "MFS1";
// Far above any real envelope (1000 recipients of 256 bytes) or state record;
// a larger length is a corrupt header, not a big message.
inline constexpr uint32_t kMaxEnvelopeBytes = 16u << 20;
inline constexpr uint32_t kMaxStateBytes = 16u << 20;

// A queue file as read back.
struct QueueFile {
  spool::Envelope envelope;
  uint64_t body_offset =
      0;  // the body is [body_offset, body_offset + envelope.body_size)
  // Every intact state record merged in order: scalar fields from the last one,
  // recipient states accumulated (each record lists only the ones that
  // changed).
  spool::JobState state;
  int state_records = 0;
  // Every intact state record as written, oldest first (the job's history).
  std::vector<spool::JobState> records;
  // Length of the file up to the end of the last intact record. Bytes after it
  // are a torn append (a crash mid-write); writers truncate to this length
  // before appending again, so a torn record never sits between good ones.
  uint64_t valid_size = 0;
  uint64_t torn_bytes = 0;
};

// The header and envelope that start a queue file; the body follows.
// REQUIRES: envelope.body_size and body_crc32c describe the body to follow.
std::string EncodeQueueHeader(const spool::Envelope& envelope);

// One appended state record.
std::string EncodeStateRecord(const spool::JobState& state);

struct ReadOptions {
  bool verify_body = true;      // checksum the body (reads the whole file)
  bool check_file_name = true;  // the file's name must equal envelope.qid
};

// Reads and validates a queue file. Failures (all kInvalid unless the file
// cannot be opened or read, which keep their errno code):
//   bad magic, envelope length out of range, truncated header/envelope/body,
//   envelope checksum mismatch, unparsable envelope, qid not matching the file
//   name, body checksum mismatch, duplicate or missing recipient indexes.
// A torn trailing state record is not an error (see QueueFile::torn_bytes).
// Thread-safe; does not modify the file.
farm::StatusOr<QueueFile> ReadQueueFile(const std::string& path,
                                        const ReadOptions& options = {});

// The same checks on a file's bytes held in memory (`name` is used in messages
// and for the qid check when non-empty).
farm::StatusOr<QueueFile> ParseQueueFile(std::string_view data,
                                         std::string_view name,
                                         const ReadOptions& options = {});

// Merges a state record into an accumulated state as ReadQueueFile does.
void MergeJobState(const spool::JobState& record, spool::JobState* merged);

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_SPOOL_FILE_H_
