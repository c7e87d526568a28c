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
add_library(mailfarm_metrics STATIC ${PROJECT_SOURCE_DIR}/scheduler/metrics.cc)
target_link_libraries(mailfarm_metrics PUBLIC mailfarm_farm)
mailfarm_warnings(mailfarm_metrics)
mailfarm_unit_test(scheduler_metrics_test ${PROJECT_SOURCE_DIR}/scheduler/metrics_test.cc
                   LIBS mailfarm_metrics)
