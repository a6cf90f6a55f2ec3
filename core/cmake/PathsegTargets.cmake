# pathseg_add_plugin(NAME SOURCES src... [LIBS lib...])
#   Builds plugins/NAME as a MODULE named pathseg-NAME.so into the build tree's
#   plugin directory (so tests run without installing) and installs it into
#   the versioned plugin directory.
function(pathseg_add_plugin name)
  cmake_parse_arguments(P "" "" "SOURCES;LIBS" ${ARGN})
  set(target "pathseg-${name}")
  add_library(${target} MODULE ${P_SOURCES})
  target_link_libraries(${target} PRIVATE pathseg ${P_LIBS})
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    LIBRARY_OUTPUT_DIRECTORY "${PATHSEG_BUILD_PLUGIN_DIR}")
  target_link_options(${target} PRIVATE -Wl,--no-undefined)
  install(TARGETS ${target} LIBRARY DESTINATION ${PATHSEG_PLUGINSDIR_REL})
endfunction()

# pathseg_add_test(NAME SOURCES src... [LIBS lib...] [ARGS arg...] [LABELS l...])
#   A test binary linked with libpathseg, run by ctest with the build tree's
#   plugins and the project's test data visible.
function(pathseg_add_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;ARGS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE pathseg ${T_LIBS} m)
  target_include_directories(${name} PRIVATE "${CMAKE_SOURCE_DIR}/tests/common")
  add_test(NAME ${name} COMMAND ${name} ${T_ARGS})
  pathseg_test_env(${name})
  if(T_TIMEOUT)
    set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT})
  endif()
  if(T_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}")
  endif()
endfunction()

# The environment every test runs in.
function(pathseg_test_env test)
  set_tests_properties(${test} PROPERTIES ENVIRONMENT
    "PATHSEG_PLUGIN_PATH=${PATHSEG_BUILD_PLUGIN_DIR};PATHSEG_SOURCE_DIR=${CMAKE_SOURCE_DIR};PATHSEG_TEST_DATA=${CMAKE_SOURCE_DIR}/tests/data;PATHSEG_FIXTURES=${CMAKE_SOURCE_DIR}/tests/fixtures;PATHSEG_BUILD_DIR=${CMAKE_BINARY_DIR};PATHSEG_CUDA_EMULATOR=${CMAKE_BINARY_DIR}/libpathseg-cudaemu.so;OMP_NUM_THREADS=2;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endfunction()
