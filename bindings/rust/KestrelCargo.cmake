# Shared by bindings/rust and samples/rust: finds cargo and describes the environment every cargo
# call of the build and of ctest gets. Defines:
#   KESTREL_CARGO            cargo (or NOTFOUND: the Rust tests then report "skipped")
#   KESTREL_RUST_SKIP_REASON non-empty when the Rust tests cannot run in this build
#   KESTREL_RUST_TARGET_DIR  CARGO_TARGET_DIR inside the CMake build
#   KESTREL_CARGO_ENV        NAME=VALUE list for ENVIRONMENT / cmake -E env
#   KESTREL_CARGO_PATH_DIR   folder of cargo, prepended to PATH (rustup proxies live there)


# The machine image installs rustup's proxies in ~/.cargo/bin, which a non-login shell's PATH
# may lack.
find_program(KESTREL_CARGO cargo
  HINTS "$ENV{CARGO_HOME}/bin" "$ENV{HOME}/.cargo/bin"
  DOC "cargo, to build and test the Rust bindings (bindings/rust) and sample (samples/rust)")
set(KESTREL_RUST_SKIP_REASON "")
set(KESTREL_CARGO_PATH_DIR "")
if(NOT KESTREL_CARGO)
  set(KESTREL_RUST_SKIP_REASON "cargo not found: Rust bindings not tested")
else()
  get_filename_component(KESTREL_CARGO_PATH_DIR "${KESTREL_CARGO}" DIRECTORY)
  find_program(KESTREL_RUSTFMT rustfmt HINTS "${KESTREL_CARGO_PATH_DIR}" DOC "rustfmt (bindgen formats with it)")
  if(KESTREL_SANITIZE)
    # libkestrel.so built with ASan must be preloaded into a non-ASan Rust program; the Release
    # pass covers the bindings.
    set(KESTREL_RUST_SKIP_REASON "sanitizer build: Rust bindings are tested in the Release build")
  endif()
endif()

set(KESTREL_RUST_TARGET_DIR "${CMAKE_BINARY_DIR}/rust-target")
set(KESTREL_CARGO_ENV
  "CARGO_TARGET_DIR=${KESTREL_RUST_TARGET_DIR}"
  "KESTREL_LIB_DIR=$<TARGET_FILE_DIR:kestrel>"
  "KESTREL_MODELS_DIR=${KESTREL_MODELS_DIR}"
  "KESTREL_PLUGIN_PATH=${KESTREL_PLUGIN_OUTPUT_DIR}"
  "CARGO_TERM_COLOR=never")
if(KESTREL_RUSTFMT)
  list(APPEND KESTREL_CARGO_ENV "RUSTFMT=${KESTREL_RUSTFMT}")
endif()

# kestrel_rust_test(NAME <name> LABELS <labels...> COMMAND <args...>)
# Registers a ctest that runs a command in the cargo environment, or a skipped placeholder
# (exit 77 with the reason) when the Rust tests cannot run here.
function(kestrel_rust_test)
  cmake_parse_arguments(R "" "NAME" "LABELS;COMMAND" ${ARGN})
  if(KESTREL_RUST_SKIP_REASON)
    add_test(NAME ${R_NAME} COMMAND sh -c "echo '${KESTREL_RUST_SKIP_REASON}'; exit 77")
    set_tests_properties(${R_NAME} PROPERTIES LABELS "${R_LABELS}" SKIP_RETURN_CODE 77)
    return()
  endif()
  add_test(NAME ${R_NAME} COMMAND ${R_COMMAND})
  set_tests_properties(${R_NAME} PROPERTIES LABELS "${R_LABELS}" SKIP_RETURN_CODE 77
    ENVIRONMENT "${KESTREL_CARGO_ENV}"
    ENVIRONMENT_MODIFICATION "PATH=path_list_prepend:${KESTREL_CARGO_PATH_DIR}"
    # Every cargo call shares the target folder; cargo would serialize on its lock anyway.
    RESOURCE_LOCK kestrel_rust_target)
endfunction()
