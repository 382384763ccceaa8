# kestrel_add_test(NAME <name> SOURCES <files...> [LIBS <libs...>] [LABELS <labels...>] [NO_CTEST])
# Builds one GoogleTest executable and registers it with ctest. The tests find the shared
# models through the KESTREL_MODELS_DIR environment variable and the plugins through
# KESTREL_PLUGIN_DIR, both set here so ctest needs no flags. NO_CTEST: build only (the caller
# registers it, e.g. once per parameter with --gtest_filter, with kestrel_test_environment).
function(kestrel_add_test)
  cmake_parse_arguments(T "NO_CTEST" "NAME" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main Threads::Threads)
  set_target_properties(${T_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  if(T_NO_CTEST)
    return()
  endif()
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
  target_link_options(${target} PRIVATE "-Wl,--version-script=${CMAKE_SOURCE_DIR}/hal/plugin.map" ${KESTREL_NO_UNDEFINED})
  install(TARGETS ${target} LIBRARY DESTINATION ${KESTREL_PLUGIN_INSTALL_SUBDIR})
endfunction()

# kestrel_add_device_model_test(PLUGIN <plugin> NAME <name> [MOE] [ENV <VAR=value...>])
# Registers <plugin>_model_test (labels <plugin>;golden): tests/device_conformance/
# device_model_test.cc through the runtime on the plugin's device with ref as the fallback:
# stories260K and tiny-moe-f32 token-exact, every op on the device (MOE too with the MOE flag,
# which says the plugin claims KESTREL_OP_MOE; without it exactly the MOE ops run on ref).
function(kestrel_add_device_model_test)
  cmake_parse_arguments(D "MOE" "PLUGIN;NAME" "ENV" ${ARGN})
  set(dir ${CMAKE_SOURCE_DIR}/tests/device_conformance)
  kestrel_add_test(NAME ${D_PLUGIN}_model_test SOURCES ${dir}/device_model_test.cc
    LIBS kestrel_runtime_core nlohmann_json::nlohmann_json LABELS ${D_PLUGIN} golden)
  target_include_directories(${D_PLUGIN}_model_test PRIVATE
    ${CMAKE_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/api/include)
  set(moe 0)
  if(D_MOE)
    set(moe 1)
  endif()
  set_tests_properties(${D_PLUGIN}_model_test PROPERTIES
    ENVIRONMENT "KESTREL_TEST_DEVICE=${D_PLUGIN};KESTREL_TEST_DEVICE_NAME=${D_NAME};KESTREL_TEST_DEVICE_MOE=${moe};KESTREL_MODELS_DIR=${KESTREL_MODELS_DIR};KESTREL_PLUGIN_DIR=${KESTREL_PLUGIN_OUTPUT_DIR};KESTREL_PLUGIN_PATH=${KESTREL_PLUGIN_OUTPUT_DIR};${D_ENV}"
    SKIP_REGULAR_EXPRESSION "no ${D_NAME} device: ")
  add_dependencies(${D_PLUGIN}_model_test kestrel_plugin_${D_PLUGIN} kestrel_plugin_ref)
endfunction()

# kestrel_add_device_plugin_tests(PLUGIN <plugin> NAME <name> [ENV <VAR=value...>])
# The tests every device plugin (plugins/<plugin>, target kestrel_plugin_<plugin>) registers, with
# the shared harness of tests/device_conformance; <name> is how skip messages call the device
# ("OpenCL", "CUDA"), and without a device each test is reported skipped, not passed:
#   <plugin>_conformance_test  (labels <plugin>)         <plugin>_conformance_test.cc beside the
#       plugin: every claimed op against the reference plugin through the HAL; GTEST_SKIPs with
#       "no <name> device: <reason>".
#   <plugin>_model_test        (labels <plugin>;golden)  kestrel_add_device_model_test above.
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

  kestrel_add_device_model_test(PLUGIN ${D_PLUGIN} NAME ${D_NAME} ENV ${env})

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

# kestrel_add_fuzzer(NAME <name>_fuzzer SOURCES <files...> [LIBS <libs...>] [SEEDS <dirs...>]
#                    [DEPENDS <targets...>] [DEFINITIONS <defs...>])
# One fuzz target: a file defining LLVMFuzzerTestOneInput (and optionally LLVMFuzzerInitialize)
# over one interface. Adding a target is this one call, beside the code it fuzzes or in
# tests/fuzz/ (list it in docs/RELIABILITY.md, "Fuzz targets"):
#   fuzz preset (KESTREL_FUZZ=ON, clang): the libFuzzer executable build-fuzz/bin/<name>, built by
#     the `kestrel_fuzzers` target; scripts/fuzz.sh runs it over its seeds (the SEEDS folders and
#     tests/fuzz/regressions/<name>/, listed in build-fuzz/fuzz/<name>.seeds) and a working corpus
#     in build-fuzz/fuzz/corpus/<name>/.
#   other builds with tests: <name>_replay (the same source with tests/fuzz/fuzz_replay_main.cc)
#     and the ctest <name>_regression (labels fuzz;unit), which replays the seeds and every saved
#     crash in tests/fuzz/regressions/<name>/ (Release, ASan + UBSan, TSan alike).
# DEPENDS: targets that generate the SEEDS folders (or that the target loads, e.g. a plugin).
# DEFINITIONS: compile definitions of both forms (e.g. a plugin's $<TARGET_FILE:...>).
function(kestrel_add_fuzzer)
  cmake_parse_arguments(F "" "NAME" "SOURCES;LIBS;SEEDS;DEPENDS;DEFINITIONS" ${ARGN})
  set(corpus ${F_SEEDS})
  set(regressions ${CMAKE_SOURCE_DIR}/tests/fuzz/regressions/${F_NAME})
  if(EXISTS ${regressions})
    list(APPEND corpus ${regressions})
  endif()
  if(KESTREL_FUZZ)
    add_executable(${F_NAME} ${F_SOURCES})
    target_link_libraries(${F_NAME} PRIVATE ${F_LIBS})
    target_link_options(${F_NAME} PRIVATE -fsanitize=fuzzer)
    target_compile_definitions(${F_NAME} PRIVATE KESTREL_FUZZ_MODELS_DIR="${KESTREL_MODELS_DIR}"
      ${F_DEFINITIONS})
    target_include_directories(${F_NAME} PRIVATE ${CMAKE_SOURCE_DIR})
    set_target_properties(${F_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
    add_dependencies(kestrel_fuzzers ${F_NAME})
    if(F_DEPENDS)
      add_dependencies(${F_NAME} ${F_DEPENDS})
    endif()
    list(JOIN corpus "\n" lines)
    file(WRITE ${CMAKE_BINARY_DIR}/fuzz/${F_NAME}.seeds "${lines}\n")
  elseif(KESTREL_BUILD_TESTS)
    add_executable(${F_NAME}_replay ${F_SOURCES} ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_replay_main.cc)
    target_link_libraries(${F_NAME}_replay PRIVATE ${F_LIBS})
    target_compile_definitions(${F_NAME}_replay PRIVATE
      KESTREL_FUZZ_MODELS_DIR="${KESTREL_MODELS_DIR}" ${F_DEFINITIONS})
    target_include_directories(${F_NAME}_replay PRIVATE ${CMAKE_SOURCE_DIR})
    set_target_properties(${F_NAME}_replay PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
    if(F_DEPENDS)
      add_dependencies(${F_NAME}_replay ${F_DEPENDS})
    endif()
    add_test(NAME ${F_NAME}_regression COMMAND ${F_NAME}_replay ${corpus})
    set_tests_properties(${F_NAME}_regression PROPERTIES LABELS "fuzz;unit"
      ENVIRONMENT "KESTREL_MODELS_DIR=${KESTREL_MODELS_DIR}")
  endif()
endfunction()
