# kestrel_add_test(NAME <name> SOURCES <files...> [LIBS <libs...>] [LABELS <labels...>])
# Builds one GoogleTest executable and registers it with ctest. The tests find the shared
# models through the KESTREL_MODELS_DIR environment variable and the plugins through
# KESTREL_PLUGIN_DIR, both set here so ctest needs no flags.
function(kestrel_add_test)
  cmake_parse_arguments(T "" "NAME" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main Threads::Threads)
  set_target_properties(${T_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  set(labels unit)
  if(T_LABELS)
    set(labels ${T_LABELS})
  endif()
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${labels}"
    ENVIRONMENT "KESTREL_MODELS_DIR=${KESTREL_MODELS_DIR};KESTREL_PLUGIN_DIR=${KESTREL_PLUGIN_OUTPUT_DIR};KESTREL_PLUGIN_PATH=${KESTREL_PLUGIN_OUTPUT_DIR};KESTREL_BUILD_DIR=${CMAKE_BINARY_DIR}")
endfunction()

# kestrel_add_plugin(<target> SOURCES <files...> [LIBS <libs...>])
# A plugin is a MODULE library named libkestrel_plugin_<name>.so that exports only
# kestrel_plugin_get_api (see hal/include/kestrel/plugin_api.h).
function(kestrel_add_plugin target)
  cmake_parse_arguments(P "" "" "SOURCES;LIBS" ${ARGN})
  add_library(${target} MODULE ${P_SOURCES})
  target_link_libraries(${target} PRIVATE kestrel_plugin_headers ${P_LIBS})
  set_target_properties(${target} PROPERTIES PREFIX "lib" LIBRARY_OUTPUT_DIRECTORY ${KESTREL_PLUGIN_OUTPUT_DIR})
  target_link_options(${target} PRIVATE "-Wl,--version-script=${CMAKE_SOURCE_DIR}/hal/plugin.map" "-Wl,--no-undefined")
  install(TARGETS ${target} LIBRARY DESTINATION ${KESTREL_PLUGIN_INSTALL_SUBDIR})
endfunction()
