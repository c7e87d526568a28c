# mailfarmctl, the operator's tool (scheduler/mailfarmctl.cc). Included from the
# top-level CMakeLists so it builds beside the scheduler's own targets.
add_executable(mailfarmctl ${PROJECT_SOURCE_DIR}/scheduler/mailfarmctl.cc)
target_link_libraries(mailfarmctl PRIVATE mailfarm_farm)
mailfarm_warnings(mailfarmctl)
# `mailq` is mailfarmctl under another name (queue list).
add_custom_command(TARGET mailfarmctl POST_BUILD
  COMMAND ${CMAKE_COMMAND} -E create_symlink mailfarmctl ${CMAKE_BINARY_DIR}/bin/mailq)
