// accept_throttle_test.cc: the pause after accept() ran out of descriptors
// doubles up to its cap and starts short again after a success.
#include "farm/accept_throttle.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace farm {
namespace {

TEST(AcceptThrottleTest, OnlyResourceErrorsPause) {
  EXPECT_TRUE(AcceptThrottle::OutOfResources(EMFILE));
  EXPECT_TRUE(AcceptThrottle::OutOfResources(ENFILE));
  EXPECT_TRUE(AcceptThrottle::OutOfResources(ENOBUFS));
  EXPECT_TRUE(AcceptThrottle::OutOfResources(ENOMEM));
  EXPECT_FALSE(AcceptThrottle::OutOfResources(EAGAIN));
  EXPECT_FALSE(AcceptThrottle::OutOfResources(ECONNABORTED));
}

TEST(AcceptThrottleTest, PauseDoublesToItsCapAndResetsAfterASuccess) {
  AcceptThrottle throttle("test.sock");
  EXPECT_EQ(throttle.Failed(EMFILE), 100);
  EXPECT_EQ(throttle.Failed(EMFILE), 200);
  EXPECT_EQ(throttle.Failed(EMFILE), 400);
  EXPECT_EQ(throttle.Failed(EMFILE), 800);
  EXPECT_EQ(throttle.Failed(EMFILE), 1600);
  EXPECT_EQ(throttle.Failed(EMFILE), AcceptThrottle::kMaxPauseMs);
  EXPECT_EQ(throttle.Failed(ENFILE), AcceptThrottle::kMaxPauseMs);
  EXPECT_EQ(throttle.pauses(), 7);
  throttle.Succeeded();
  EXPECT_EQ(throttle.Failed(EMFILE), AcceptThrottle::kMinPauseMs);
}

}  // namespace
}  // namespace farm
