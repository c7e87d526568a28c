#!/bin/sh
# fuzz_run.sh: builds smtpd's libFuzzer targets (clang) and runs each for a
# while on a scratch copy of the seed corpus. ctest's smtpd_fuzz_short uses it
# with 20 s per target; for a long run: fuzz_run.sh BUILD_DIR 3600.
# Usage: fuzz_run.sh BUILD_DIR [SECONDS_PER_TARGET]
set -eu
build=$1
seconds=${2:-20}
src=$(cd "$(dirname "$0")" && pwd)
cmake --build "$build" --target smtpd_fuzzers
work=$(mktemp -d /tmp/mf-fuzz-XXXXXX)
trap 'rm -rf "$work"' EXIT
status=0
for target in session data_reader command; do
  mkdir -p "$work/$target"
  echo "== fuzz_$target for ${seconds}s"
  # New inputs go to the scratch dir (first corpus dir); the seeds stay untouched.
  if ! "$build/smtpd/fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/" \
      "$work/$target" "$src/fuzz_corpus/$target" 2>"$work/$target.log"; then
    tail -n 60 "$work/$target.log"
    for crash in "$work"/crash-* "$work"/timeout-* "$work"/oom-*; do
      [ -e "$crash" ] && echo "reproducer: $crash" && od -c "$crash" | head -20
    done
    status=1
  else
    grep -E "stat::number_of_executed_units|Done" "$work/$target.log" | head -2
  fi
done
exit $status
