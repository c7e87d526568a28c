// scanner_test.cc: the external scanner hook with real processes: exit-code
// mapping, first line of output, a scanner that hangs (its whole process group
// killed), dies, cannot be run, or ignores its input.
#include "filter/scanner.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <thread>

namespace filter {
namespace {

using Verdict = ScanResult::Verdict;

Scanner Sh(const std::string& script, uint32_t timeout_ms = 20000) {
  mailfarm::config::ScannerConfig config;
  config.add_argv("/bin/sh");
  config.add_argv("-c");
  config.add_argv(script);
  config.set_timeout_ms(timeout_ms);
  return Scanner(config);
}

std::chrono::steady_clock::time_point Far() {
  return std::chrono::steady_clock::now() + std::chrono::hours(1);
}

TEST(ScannerTest, ReadsTheWholeMessageAndAccepts) {
  std::string message(3 << 20, 'x');  // larger than any pipe buffer
  ScanResult r = Sh("wc -c").Scan(message, Far());
  EXPECT_EQ(r.verdict, Verdict::kAccept);
  EXPECT_FALSE(r.failed);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.first_line, std::to_string(message.size()));
}

TEST(ScannerTest, ExitOneRejectsWithFirstLine) {
  auto start = std::chrono::steady_clock::now();
  ScanResult r = Sh("cat >/dev/null; echo 'stdin: Eicar-Signature FOUND'; echo "
                    "more; exit 1")
                     .Scan("Subject: x\r\n\r\nbody\r\n", Far());
  EXPECT_EQ(r.verdict, Verdict::kReject);
  EXPECT_FALSE(r.failed);
  EXPECT_EQ(r.first_line, "stdin: Eicar-Signature FOUND");
  // Returns when the scanner exits, not at its 20 s timeout (a bug once).
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
}

TEST(ScannerTest, OtherExitCodesFail) {
  ScanResult r =
      Sh("echo 'ERROR: cannot connect to clamd'; exit 2").Scan("m", Far());
  EXPECT_EQ(r.verdict, Verdict::kTempFail);
  EXPECT_TRUE(r.failed);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.reason, "exit 2");
}

TEST(ScannerTest, ConfiguredExitCodes) {
  Scanner s = Sh("exit $(cat)");  // exits with the code it is sent
  mailfarm::config::ScannerConfig config = s.config();
  config.add_reject_exit_codes(5);
  config.add_accept_exit_codes(1);
  Scanner custom(config);
  EXPECT_EQ(custom.Scan("5", Far()).verdict, Verdict::kReject);
  EXPECT_EQ(custom.Scan("1", Far()).verdict, Verdict::kAccept);
  EXPECT_EQ(custom.Scan("0", Far()).verdict, Verdict::kAccept);
  EXPECT_EQ(custom.Scan("3", Far()).verdict, Verdict::kTempFail);
}

TEST(ScannerTest, HangingScannerAndItsChildrenAreKilled) {
  char dir[] = "/tmp/scanner_test_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string pidfile = std::string(dir) + "/pid";
  // The shell starts a grandchild that also hangs; both must go.
  Scanner s = Sh("sleep 60 & echo $! > " + pidfile + "; wait", 500);
  auto start = std::chrono::steady_clock::now();
  ScanResult r = s.Scan("message", Far());
  EXPECT_EQ(r.verdict, Verdict::kTempFail);
  EXPECT_TRUE(r.failed);
  EXPECT_EQ(r.reason, "timed out after 500 ms");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
  std::ifstream in(pidfile);
  pid_t grandchild = 0;
  in >> grandchild;
  ASSERT_GT(grandchild, 0);
  // Gone, or a zombie waiting for its new parent to reap it: poll, no
  // sleep-as-assert.
  bool dead = false;
  for (int i = 0; i < 1000 && !dead; ++i) {
    std::ifstream stat("/proc/" + std::to_string(grandchild) + "/stat");
    std::string pid, comm, state;
    dead = !(stat >> pid >> comm >> state) || state == "Z";
    if (!dead) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(dead) << "grandchild " << grandchild << " still running";
  std::remove(pidfile.c_str());
  rmdir(dir);
}

TEST(ScannerTest, MessageDeadlineAlsoStopsIt) {
  Scanner s = Sh("sleep 60", 60000);
  ScanResult r = s.Scan(
      "m", std::chrono::steady_clock::now() + std::chrono::milliseconds(300));
  EXPECT_TRUE(r.failed);
  EXPECT_EQ(r.reason, "message time limit reached");
}

TEST(ScannerTest, DeathBySignalFails) {
  ScanResult r = Sh("kill -9 $$").Scan("m", Far());
  EXPECT_TRUE(r.failed);
  EXPECT_EQ(r.verdict, Verdict::kTempFail);
  EXPECT_EQ(r.reason, "killed by signal 9");
}

TEST(ScannerTest, MissingCommandFails) {
  mailfarm::config::ScannerConfig config;
  config.add_argv("/nonexistent/scanner");
  ScanResult r = Scanner(config).Scan("m", Far());
  EXPECT_TRUE(r.failed);
  EXPECT_NE(r.reason.find("cannot run /nonexistent/scanner"), std::string::npos)
      << r.reason;
}

TEST(ScannerTest, ScannerThatIgnoresInput) {
  std::string message(2 << 20, 'y');
  ScanResult r =
      Sh("echo OK").Scan(message, Far());  // never reads: EPIPE, not SIGPIPE
  EXPECT_EQ(r.verdict, Verdict::kAccept);
  EXPECT_EQ(r.first_line, "OK");
}

TEST(ScannerTest, NoShellInterpretation) {
  // argv is passed as is: the ';' reaches echo as an argument.
  mailfarm::config::ScannerConfig config;
  config.add_argv("echo");
  config.add_argv("a;");
  config.add_argv("exit 1");
  ScanResult r = Scanner(config).Scan("m", Far());
  EXPECT_EQ(r.verdict, Verdict::kAccept);
  EXPECT_EQ(r.first_line, "a; exit 1");
}

}  // namespace
}  // namespace filter
