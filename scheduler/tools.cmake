# The scheduler's operator tools: mailfarmctl (scheduler/mailfarmctl.cc) and
# mailfarm-replay (scheduler/replay_main.cc). Included from the top-level
# CMakeLists after scheduler/, whose mailfarm_scheduler_core they link.
add_executable(mailfarmctl ${PROJECT_SOURCE_DIR}/scheduler/mailfarmctl.cc)
target_link_libraries(mailfarmctl PRIVATE mailfarm_farm)
mailfarm_warnings(mailfarmctl)
# `mailq` is mailfarmctl under another name (queue list).
add_custom_command(TARGET mailfarmctl POST_BUILD
  COMMAND ${CMAKE_COMMAND} -E create_symlink mailfarmctl ${CMAKE_BINARY_DIR}/bin/mailq)

add_executable(mailfarm-replay ${PROJECT_SOURCE_DIR}/scheduler/replay_main.cc)
target_link_libraries(mailfarm-replay PRIVATE mailfarm_scheduler_core)
mailfarm_warnings(mailfarm-replay)

# The Prometheus endpoint the scheduler serves (scheduler/metrics.cc).
add_library(mailfarm_metrics STATIC ${PROJECT_SOURCE_DIR}/scheduler/metrics.cc
            ${PROJECT_SOURCE_DIR}/scheduler/metrics_server.cc)
target_link_libraries(mailfarm_metrics PUBLIC mailfarm_farm)
mailfarm_warnings(mailfarm_metrics)
mailfarm_unit_test(scheduler_metrics_test ${PROJECT_SOURCE_DIR}/scheduler/metrics_test.cc
                   LIBS mailfarm_metrics)

# libFuzzer target for the queue-file parser (scheduler/fuzz_queue_file.cc),
# built with clang++ when it can build fuzzers; a short run is a ctest test.
find_program(MAILFARM_FUZZ_CLANGXX NAMES clang++ clang++-16 clang++-15 clang++-14)
set(_qf_can_fuzz FALSE)
if(MAILFARM_FUZZ_CLANGXX)
  # A clang without the libFuzzer runtime cannot build the target: probe first.
  set(_qf_probe ${CMAKE_BINARY_DIR}/scheduler/fuzz_probe.cc)
  file(WRITE ${_qf_probe} "#include <cstddef>\n#include <cstdint>\nextern \"C\" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n")
  execute_process(COMMAND ${MAILFARM_FUZZ_CLANGXX} -fsanitize=fuzzer ${_qf_probe}
                          -o ${CMAKE_BINARY_DIR}/scheduler/fuzz_probe
                  RESULT_VARIABLE _qf_probe_result OUTPUT_QUIET ERROR_QUIET)
  if(_qf_probe_result EQUAL 0)
    set(_qf_can_fuzz TRUE)
  endif()
endif()
if(_qf_can_fuzz)
  set(_qf_dir ${CMAKE_BINARY_DIR}/scheduler/fuzz)
  file(MAKE_DIRECTORY ${_qf_dir})
  set(_qf_bin ${_qf_dir}/fuzz_queue_file)
  set(_qf_sources
    ${PROJECT_SOURCE_DIR}/scheduler/fuzz_queue_file.cc
    ${PROJECT_SOURCE_DIR}/scheduler/spool_file.cc
    ${PROJECT_SOURCE_DIR}/scheduler/crc32c.cc
    ${PROJECT_SOURCE_DIR}/farm/status.cc
    ${CMAKE_BINARY_DIR}/proto/spool.pb.cc
    ${CMAKE_BINARY_DIR}/proto/wire.pb.cc)
  add_custom_command(OUTPUT ${_qf_bin}
    COMMAND ${MAILFARM_FUZZ_CLANGXX} -std=c++20 -g -O1 -fno-omit-frame-pointer
            -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
            -I${PROJECT_SOURCE_DIR} -I${CMAKE_BINARY_DIR}/proto ${_qf_sources}
            -lprotobuf -lpthread -o ${_qf_bin}
    DEPENDS ${_qf_sources} ${PROJECT_SOURCE_DIR}/scheduler/spool_file.h mailfarm_proto
    COMMENT "clang++ (fuzz) fuzz_queue_file")
  add_custom_target(scheduler_fuzzers ALL DEPENDS ${_qf_bin})
  # 30 s on every test run, from the seed corpus (real queue files). libFuzzer
  # writes the inputs it finds into its first corpus directory: that is one in
  # the build tree, so a test run leaves the source tree as it was. A longer
  # run is: build*/scheduler/fuzz/fuzz_queue_file -max_total_time=3600 DIR scheduler/fuzz_corpus
  set(_qf_found ${CMAKE_CURRENT_BINARY_DIR}/fuzz/corpus_found)
  file(MAKE_DIRECTORY ${_qf_found})
  add_test(NAME scheduler_fuzz_queue_file_short
           COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=0
                   ${_qf_bin} -max_total_time=30 -timeout=10 -rss_limit_mb=2048
                   ${_qf_found} ${PROJECT_SOURCE_DIR}/scheduler/fuzz_corpus)
  set_tests_properties(scheduler_fuzz_queue_file_short PROPERTIES TIMEOUT 300)
endif()
