// spool_journal_test.cc: the journal's records survive a reopen; a checkpoint
// forgets them; a torn or corrupt tail, stale records of an older generation
// and a torn checkpoint end the scan; every write starts on a 4 KiB boundary.
#include "scheduler/spool_journal.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace mailfarm::scheduler {
namespace {

class SpoolJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/spool_journal_test.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    path_ = dir_ + "/journal";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Opens the journal, returns what it found, and (like the store) starts a
  // new generation unless told not to.
  std::unique_ptr<SpoolJournal> Open(std::vector<SpoolJournal::Entry>* found,
                                     bool checkpoint = true) {
    auto journal = SpoolJournal::Open(PosixSpoolEnv(), path_, capacity_, found);
    EXPECT_TRUE(journal.ok()) << journal.status().message();
    if (!journal.ok()) return nullptr;
    if (checkpoint) {
      EXPECT_TRUE((*journal)->Checkpoint(1, "").ok());
    }
    return std::move(*journal);
  }
  std::vector<SpoolJournal::Entry> Reopen() {
    std::vector<SpoolJournal::Entry> found;
    Open(&found, /*checkpoint=*/false);
    return found;
  }
  void Corrupt(uint64_t offset) {
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(offset));
    f.put('\xff');
  }

  std::string dir_, path_;
  uint64_t capacity_ = 4 << 20;
};

TEST_F(SpoolJournalTest, CommittedRecordsAreFoundInOrder) {
  std::vector<SpoolJournal::Entry> found;
  auto journal = Open(&found);
  EXPECT_TRUE(found.empty());
  journal->AddCreate("01a2341dd5520000", "HEAD", "body one");
  journal->AddCreate("01a2341dd5520001", "HEAD", std::string(9000, 'b'));
  journal->AddRemove("01a2341dd5520000");
  ASSERT_TRUE(journal->Commit().ok());
  EXPECT_EQ(journal->end() % 4096, 0u);
  journal->AddRemove("01a2341dd5520001");
  ASSERT_TRUE(journal->Write().ok());  // not synced, still read back
  journal.reset();

  auto entries = Reopen();
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[0].kind, SpoolJournal::Kind::kCreate);
  EXPECT_EQ(entries[0].qid, "01a2341dd5520000");
  EXPECT_EQ(entries[0].data, "HEADbody one");
  EXPECT_EQ(entries[1].data, "HEAD" + std::string(9000, 'b'));
  EXPECT_EQ(entries[2].kind, SpoolJournal::Kind::kRemove);
  EXPECT_EQ(entries[2].qid, "01a2341dd5520000");
  EXPECT_EQ(entries[3].qid, "01a2341dd5520001");
}

// ReadEntries finds, in the open journal, what an open would: written
// records, not pending ones, and the sequence of the checkpoint on disk.
TEST_F(SpoolJournalTest, ReadEntriesFindsWhatAnOpenWould) {
  std::vector<SpoolJournal::Entry> found;
  auto journal = Open(&found);
  journal->AddCreate("01a2341dd5520000", "HEAD", "body one");
  ASSERT_TRUE(journal->Commit().ok());
  journal->AddRemove("01a2341dd5520000");  // pending, not written
  uint64_t sequence = 0;
  auto entries = journal->ReadEntries(&sequence);
  ASSERT_TRUE(entries.ok()) << entries.status().message();
  EXPECT_EQ(sequence, 1u);
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].kind, SpoolJournal::Kind::kCreate);
  EXPECT_EQ((*entries)[0].data, "HEADbody one");
  ASSERT_TRUE(journal->Write().ok());
  entries = journal->ReadEntries(&sequence);
  ASSERT_TRUE(entries.ok());
  EXPECT_EQ(entries->size(), 2u);
  ASSERT_TRUE(journal->Checkpoint(2, "").ok());
  entries = journal->ReadEntries(&sequence);
  ASSERT_TRUE(entries.ok());
  EXPECT_TRUE(entries->empty());
  EXPECT_EQ(sequence, 2u);
}

// The checkpoint's sequence number and newest queue id are read back at
// open; a journal never checkpointed has neither.
TEST_F(SpoolJournalTest, CheckpointRecordsItsSequenceAndNewestId) {
  std::vector<SpoolJournal::Entry> found;
  auto fresh = SpoolJournal::Open(PosixSpoolEnv(), path_, capacity_, &found);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ((*fresh)->sequence(), 0u);
  EXPECT_EQ((*fresh)->newest_qid(), "");
  EXPECT_FALSE((*fresh)->Empty());  // no generation yet: takes nothing
  ASSERT_TRUE((*fresh)->Checkpoint(42, "01a2341dd5520007").ok());
  EXPECT_TRUE((*fresh)->Empty());
  (*fresh)->AddRemove("01a2341dd5520001");
  EXPECT_FALSE((*fresh)->Empty());
  ASSERT_TRUE((*fresh)->Commit().ok());
  fresh->reset();
  auto again = SpoolJournal::Open(PosixSpoolEnv(), path_, capacity_, &found);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->sequence(), 42u);
  EXPECT_EQ((*again)->newest_qid(), "01a2341dd5520007");
  ASSERT_EQ(found.size(), 1u);
}

TEST_F(SpoolJournalTest, CheckpointForgetsWhatCameBefore) {
  std::vector<SpoolJournal::Entry> found;
  auto journal = Open(&found);
  for (int i = 0; i < 50; ++i)
    journal->AddCreate("01a2341dd552" + std::to_string(1000 + i), "H",
                       std::string(5000, 'x'));
  ASSERT_TRUE(journal->Commit().ok());
  ASSERT_TRUE(journal->Checkpoint(1, "").ok());
  EXPECT_TRUE(Reopen().empty());
  // The older generation's records behind the new ones end the scan.
  journal->AddCreate("01a2341dd5529999", "H", "new");
  ASSERT_TRUE(journal->Commit().ok());
  auto entries = Reopen();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].qid, "01a2341dd5529999");
}

TEST_F(SpoolJournalTest, TornOrCorruptTailEndsTheScan) {
  std::vector<SpoolJournal::Entry> found;
  auto journal = Open(&found);
  journal->AddCreate("01a2341dd5520000", "H", "first");
  ASSERT_TRUE(journal->Commit().ok());
  uint64_t second_at = journal->end();
  journal->AddCreate("01a2341dd5520001", "H", std::string(6000, 's'));
  journal->AddCreate("01a2341dd5520002", "H", "third");
  ASSERT_TRUE(journal->Commit().ok());
  Corrupt(second_at + 100);  // inside the second record's data
  auto entries = Reopen();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].qid, "01a2341dd5520000");

  // A write cut short by the crash: the file ends inside a record.
  std::filesystem::resize_file(path_, second_at + 30);
  entries = Reopen();
  ASSERT_EQ(entries.size(), 1u);
}

TEST_F(SpoolJournalTest, TornCheckpointMeansNothingToRecover) {
  std::vector<SpoolJournal::Entry> found;
  auto journal = Open(&found);
  journal->AddCreate("01a2341dd5520000", "H", "x");
  ASSERT_TRUE(journal->Commit().ok());
  journal.reset();
  Corrupt(10);  // the checkpoint record at offset 0
  EXPECT_TRUE(Reopen().empty());
}

TEST_F(SpoolJournalTest, NothingIsWrittenBeforeTheFirstCheckpoint) {
  std::vector<SpoolJournal::Entry> found;
  auto journal = Open(&found, /*checkpoint=*/false);
  EXPECT_FALSE(journal->Fits(10, 1));
  ASSERT_TRUE(journal->Checkpoint(1, "").ok());
  EXPECT_TRUE(journal->Fits(10, 1));
}

TEST_F(SpoolJournalTest, FitsStopsBeforeTheCapacity) {
  capacity_ = 1 << 20;
  std::vector<SpoolJournal::Entry> found;
  auto journal = Open(&found);
  int committed = 0;
  while (journal->Fits(5000, 1)) {
    journal->AddCreate("01a2341dd5520000", "H", std::string(4999, 'x'));
    ASSERT_TRUE(journal->Commit().ok());
    ++committed;
  }
  EXPECT_LE(journal->end(), capacity_);
  // A batch that would not fit even an empty journal goes to syncfs at once.
  EXPECT_TRUE(journal->FitsEmpty(5000, 1));
  EXPECT_FALSE(journal->FitsEmpty(capacity_, 1));
  // Each commit took one 8 KiB-aligned slot (5 KB data padded).
  EXPECT_GE(committed, 100);
  EXPECT_EQ(Reopen().size(), static_cast<size_t>(committed));
}

// Commits overwrite zeros the file already holds (pure data for fdatasync):
// the file grows a MiB at a time, never past its capacity, and the zeros
// after the last record end the scan like the end of the file.
// The first checkpoint fills the file with zeros to its capacity: no commit
// extends it after that.
TEST_F(SpoolJournalTest, FileIsItsFullSizeFromTheFirstCheckpoint) {
  capacity_ = (2 << 20) + 65536;
  std::vector<SpoolJournal::Entry> found;
  auto journal = Open(&found);
  EXPECT_EQ(std::filesystem::file_size(path_), capacity_);
  journal->AddCreate("01a2341dd5520000", "H", "body");
  ASSERT_TRUE(journal->Commit().ok());
  EXPECT_EQ(journal->end(), 8192u);
  int committed = 1;
  while (journal->Fits(5000, 1)) {
    journal->AddCreate("01a2341dd5520001", "H", std::string(4999, 'x'));
    ASSERT_TRUE(journal->Commit().ok());
    ++committed;
    EXPECT_EQ(std::filesystem::file_size(path_), capacity_);
  }
  EXPECT_EQ(std::filesystem::file_size(path_), capacity_);
  EXPECT_EQ(Reopen().size(), static_cast<size_t>(committed));
  // After a checkpoint the file keeps its size; the scan stops at the zeros
  // (and at the older generation's records after them).
  journal = Open(&found);
  EXPECT_EQ(found.size(), static_cast<size_t>(committed));
  journal->AddCreate("01a2341dd5520002", "H", "again");
  ASSERT_TRUE(journal->Commit().ok());
  EXPECT_EQ(std::filesystem::file_size(path_), capacity_);
  std::vector<SpoolJournal::Entry> again = Reopen();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].qid, "01a2341dd5520002");
}

}  // namespace
}  // namespace mailfarm::scheduler
