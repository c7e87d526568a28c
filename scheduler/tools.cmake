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

# libFuzzer targets (cmake/fuzz.cmake): the queue-file parser that
# mailfarm-replay and adopt run on every file in the spool, and the spool
# journal's reader that the scheduler runs at every start.
mailfarm_fuzzer(scheduler_fuzz_queue_file
  SOURCES scheduler/fuzz_queue_file.cc scheduler/spool_file.cc scheduler/crc32c.cc
          farm/status.cc ${CMAKE_BINARY_DIR}/proto/spool.pb.cc ${CMAKE_BINARY_DIR}/proto/wire.pb.cc
  HEADERS scheduler/spool_file.h
  LIBS -lprotobuf -lpthread
  CORPUS scheduler/fuzz_corpus)
mailfarm_fuzzer(scheduler_fuzz_spool_journal
  SOURCES scheduler/fuzz_spool_journal.cc scheduler/spool_journal.cc scheduler/spool_env.cc
          scheduler/crc32c.cc farm/status.cc
  HEADERS scheduler/spool_journal.h scheduler/spool_env.h
  CORPUS scheduler/fuzz_corpus_journal)
