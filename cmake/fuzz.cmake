# fuzz.cmake: libFuzzer targets over the parsers that read untrusted bytes,
# built with clang++ beside the normal build (which uses g++), each from its
# own source files, with ASan and UBSan. mailfarm_fuzzer() adds one target
# (built with ALL, into build/fuzz/) and a ctest test <name>_short that runs
# it for 20 s from its seed corpus, kept small and minimized in the source
# tree; what a run finds goes to build/fuzz/<name>.found, so a test run leaves
# the sources as they were. A longer run, and folding its findings back in:
#   build/fuzz/NAME -max_total_time=3600 build/fuzz/NAME.found SEEDS
#   build/fuzz/NAME -merge=1 SEEDS build/fuzz/NAME.found
# Included from the top-level CMakeLists. smtpd/ keeps its own rules (its
# protocol core builds without protobuf and its script runs three targets).
find_program(MAILFARM_FUZZ_CLANGXX NAMES clang++ clang++-16 clang++-15 clang++-14)
set(MAILFARM_CAN_FUZZ FALSE)
if(MAILFARM_FUZZ_CLANGXX)
  # A clang without the libFuzzer runtime cannot build the targets: probe.
  set(_fuzz_probe ${CMAKE_BINARY_DIR}/fuzz/probe.cc)
  file(WRITE ${_fuzz_probe} "#include <cstddef>\n#include <cstdint>\nextern \"C\" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n")
  execute_process(COMMAND ${MAILFARM_FUZZ_CLANGXX} -fsanitize=fuzzer ${_fuzz_probe}
                          -o ${CMAKE_BINARY_DIR}/fuzz/probe
                  RESULT_VARIABLE _fuzz_probe_result OUTPUT_QUIET ERROR_QUIET)
  if(_fuzz_probe_result EQUAL 0)
    set(MAILFARM_CAN_FUZZ TRUE)
  endif()
endif()
if(NOT MAILFARM_CAN_FUZZ)
  message(STATUS "no clang++ with libFuzzer: no fuzz targets")
endif()

# mailfarm_fuzzer(NAME SOURCES file... [HEADERS file...] [LIBS -lx...]
#                 CORPUS dir): the target's sources are compiled together
# (paths relative to the source tree, or absolute); HEADERS rebuild it when
# they change; the generated protobuf headers are on the include path.
function(mailfarm_fuzzer name)
  if(NOT MAILFARM_CAN_FUZZ)
    return()
  endif()
  cmake_parse_arguments(ARG "" "CORPUS" "SOURCES;HEADERS;LIBS" ${ARGN})
  set(bin ${CMAKE_BINARY_DIR}/fuzz/${name})
  set(sources)
  foreach(src IN LISTS ARG_SOURCES)
    if(IS_ABSOLUTE ${src})
      list(APPEND sources ${src})
    else()
      list(APPEND sources ${PROJECT_SOURCE_DIR}/${src})
    endif()
  endforeach()
  set(headers)
  foreach(h IN LISTS ARG_HEADERS)
    list(APPEND headers ${PROJECT_SOURCE_DIR}/${h})
  endforeach()
  add_custom_command(OUTPUT ${bin}
    COMMAND ${MAILFARM_FUZZ_CLANGXX} -std=c++20 -g -O1 -fno-omit-frame-pointer
            -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
            -I${PROJECT_SOURCE_DIR} -I${CMAKE_BINARY_DIR}/proto ${sources}
            ${ARG_LIBS} -o ${bin}
    DEPENDS ${sources} ${headers} mailfarm_proto
    COMMENT "clang++ (fuzz) ${name}")
  add_custom_target(${name} ALL DEPENDS ${bin})
  set(found ${CMAKE_BINARY_DIR}/fuzz/${name}.found)
  file(MAKE_DIRECTORY ${found})
  add_test(NAME ${name}_short
           COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=0
                   ${bin} -max_total_time=20 -timeout=10 -rss_limit_mb=2048
                   ${found} ${PROJECT_SOURCE_DIR}/${ARG_CORPUS})
  set_tests_properties(${name}_short PROPERTIES TIMEOUT 300)
endfunction()
