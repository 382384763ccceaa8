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
# kestrel_plugin_get_api (see hal/include/kestrel/plugin_api.h). It links the plugin SDK and
# nothing else of Kestrel: its include path is the SDK's (plugin_api.h, kestrel/plugin_sdk/*.h)
# plus its own folder, never the source root, so it cannot include runtime/ or hal/src/.
function(kestrel_add_plugin target)
  cmake_parse_arguments(P "" "" "SOURCES;LIBS" ${ARGN})
  add_library(${target} MODULE ${P_SOURCES})
  target_link_libraries(${target} PRIVATE kestrel_plugin_sdk ${P_LIBS})
  set_target_properties(${target} PROPERTIES PREFIX "lib" LIBRARY_OUTPUT_DIRECTORY ${KESTREL_PLUGIN_OUTPUT_DIR})
  target_link_options(${target} PRIVATE "-Wl,--version-script=${CMAKE_SOURCE_DIR}/hal/plugin.map" "-Wl,--no-undefined")
  install(TARGETS ${target} LIBRARY DESTINATION ${KESTREL_PLUGIN_INSTALL_SUBDIR})
endfunction()

# kestrel_add_device_plugin_tests(PLUGIN <plugin> NAME <name> [ENV <VAR=value...>])
# The tests every device plugin (plugins/<plugin>, target kestrel_plugin_<plugin>) registers, with
# the shared harness of tests/device_conformance; <name> is how skip messages call the device
# ("OpenCL", "CUDA"), and without a device each test is reported skipped, not passed:
#   <plugin>_conformance_test  (labels <plugin>)         <plugin>_conformance_test.cc beside the
#       plugin: every claimed op against the reference plugin through the HAL; GTEST_SKIPs with
#       "no <name> device: <reason>".
#   <plugin>_model_test        (labels <plugin>;golden)  tests/device_conformance/
#       device_model_test.cc: stories260K token-exact on the device, no op falling back to ref.
#   golden_<plugin>            (labels <plugin>;golden)  the shared golden suite
#       (tests/golden_test.cc) on --device <plugin>, through run_if_device.sh (77 = skipped).
#   <plugin>_cli_test          (labels <plugin>;cli)     `kestrel generate --device <plugin>
#       --json` reports the device and llama.cpp's tokens (device_cli_test.sh; 77 = skipped).
# ENV: extra environment of all four (the plugin/model folders are always set). The whole
# environment is left in KESTREL_DEVICE_TEST_ENV for the plugin's other tests.
function(kestrel_add_device_plugin_tests)
  cmake_parse_arguments(D "" "PLUGIN;NAME" "ENV" ${ARGN})
  set(dir ${CMAKE_SOURCE_DIR}/tests/device_conformance)
  set(env
    "KESTREL_MODELS_DIR=${KESTREL_MODELS_DIR}"
    "KESTREL_PLUGIN_DIR=${KESTREL_PLUGIN_OUTPUT_DIR}"
    "KESTREL_PLUGIN_PATH=${KESTREL_PLUGIN_OUTPUT_DIR}"
    "KESTREL_BUILD_DIR=${CMAKE_BINARY_DIR}"
    ${D_ENV})
  set(plugin_targets kestrel_plugin_${D_PLUGIN} kestrel_plugin_ref)

  kestrel_add_test(NAME ${D_PLUGIN}_conformance_test SOURCES ${D_PLUGIN}_conformance_test.cc
    LIBS kestrel_device_conformance LABELS ${D_PLUGIN})
  set_tests_properties(${D_PLUGIN}_conformance_test PROPERTIES ENVIRONMENT "${env}"
    SKIP_REGULAR_EXPRESSION "no ${D_NAME} device: ")
  add_dependencies(${D_PLUGIN}_conformance_test ${plugin_targets})

  kestrel_add_test(NAME ${D_PLUGIN}_model_test SOURCES ${dir}/device_model_test.cc
    LIBS kestrel_runtime_core nlohmann_json::nlohmann_json LABELS ${D_PLUGIN} golden)
  target_include_directories(${D_PLUGIN}_model_test PRIVATE
    ${CMAKE_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/api/include)
  set_tests_properties(${D_PLUGIN}_model_test PROPERTIES
    ENVIRONMENT "KESTREL_TEST_DEVICE=${D_PLUGIN};KESTREL_TEST_DEVICE_NAME=${D_NAME};${env}"
    SKIP_REGULAR_EXPRESSION "no ${D_NAME} device: ")
  add_dependencies(${D_PLUGIN}_model_test ${plugin_targets})

  add_test(NAME golden_${D_PLUGIN}
    COMMAND sh ${dir}/run_if_device.sh ${D_PLUGIN} ${D_NAME} $<TARGET_FILE:kestrel_cli>
            $<TARGET_FILE:golden_test>)
  set_tests_properties(golden_${D_PLUGIN} PROPERTIES LABELS "${D_PLUGIN};golden"
    SKIP_RETURN_CODE 77 ENVIRONMENT "KESTREL_TEST_DEVICE=${D_PLUGIN};${env}")

  add_test(NAME ${D_PLUGIN}_cli_test
    COMMAND sh ${dir}/device_cli_test.sh ${D_PLUGIN} ${D_NAME} $<TARGET_FILE:kestrel_cli>
            ${KESTREL_MODELS_DIR}/stories260K.gguf)
  set_tests_properties(${D_PLUGIN}_cli_test PROPERTIES LABELS "${D_PLUGIN};cli"
    SKIP_RETURN_CODE 77 ENVIRONMENT "${env}")
  set(KESTREL_DEVICE_TEST_ENV "${env}" PARENT_SCOPE)
endfunction()

# KESTREL_TEST_PYTHON: the python of the tests that need PyPI packages (the openai client for
# tests/serve, pytest for bindings/python): scripts/setup_python.sh's virtual environment when it
# exists (scripts/test.sh passes it), else any python3 (those tests then report "skipped" with the
# command that installs the packages).
if(NOT KESTREL_TEST_PYTHON)
  set(_kestrel_venv_python "$ENV{HOME}/.cache/kestrel/pyenv/bin/python")
  if(DEFINED ENV{KESTREL_PYTHON_ENV})
    set(_kestrel_venv_python "$ENV{KESTREL_PYTHON_ENV}/bin/python")
  endif()
  if(EXISTS "${_kestrel_venv_python}")
    set(_kestrel_test_python "${_kestrel_venv_python}")
  else()
    find_program(_kestrel_test_python NAMES python3)
  endif()
  set(KESTREL_TEST_PYTHON "${_kestrel_test_python}" CACHE FILEPATH
    "Python with openai and pytest for the serve and Python-binding tests (scripts/setup_python.sh)")
endif()
