#!/usr/bin/env bash
# Package test (ctest label `package`): installs a built Kestrel into a temporary prefix and uses
# it the way an application would, from outside the source tree.
#
#   package_test.sh KEY=VALUE...    (tests/package/CMakeLists.txt passes all of them)
#     build=      the Kestrel build tree to install
#     consumer=   tests/package/consumer (a stand-alone project: consumer.c, consumer.cc)
#     model=      stories260K.gguf
#     prompt= n_tokens= expected_hex=   the first golden case of stories260K.golden.json
#     cmake= cc= cxx= generator=        tools of the build being tested
#     bindir= libdir= includedir=       GNUInstallDirs of that build (relative)
#     major=      the library's major version (SONAME libkestrel.so.<major>)
#     minor=      its minor version (find_package(Kestrel <major>.<minor>) must work)
#     sanitize=   ON if the build is instrumented (the consumers must be too)
#
# Steps: 1. cmake --install into <tmp>/prefix; 2. check the layout (headers, SONAME, plugins,
# RPATHs, package files, relocatable paths); 3. the installed `kestrel devices` finds its plugins
# with no plugin path set, from an unrelated folder; 4. the consumer project configured with
# find_package(Kestrel) builds and its C and C++ programs generate the golden text; 5. the same
# two programs compiled by hand with `pkg-config --cflags --libs kestrel` do too.
# Everything runs in a temporary folder that is removed on exit; the working directory does not
# matter. Exit status 0 pass, 1 fail (a missing model too when KESTREL_REQUIRE_MODELS=1), 77
# skip (no model otherwise).
set -euo pipefail

for arg in "$@"; do
  case "$arg" in
    build=* | consumer=* | model=* | prompt=* | n_tokens=* | expected_hex=* | cmake=* | cc=* | \
      cxx=* | generator=* | bindir=* | libdir=* | includedir=* | major=* | minor=* | sanitize=*)
      declare "${arg%%=*}=${arg#*=}" ;;
    *) echo "package_test: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done
for v in build consumer model prompt n_tokens expected_hex cmake cc cxx bindir libdir includedir major; do
  if [[ -z "${!v:-}" ]]; then
    echo "package_test: missing argument $v=" >&2
    exit 2
  fi
done
generator=${generator:-}
sanitize=${sanitize:-OFF}

# Missing model: skipped (77), or a failure under KESTREL_REQUIRE_MODELS=1 (CI).
sh "$(dirname "$0")/../require_models.sh" "$model" || exit $?

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kestrel_package_test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
log="$tmp/log"
mkdir -p "$tmp/elsewhere"
# Nothing may help the installed library find its plugins: it must find them next to itself.
unset KESTREL_PLUGIN_PATH KESTREL_PLUGIN_DIR KESTREL_BUILD_DIR

step() { echo "== $*"; }
fail() {
  echo "FAIL: $*" >&2
  if [[ -s "$log" ]]; then
    echo "--- last output:" >&2
    tail -n 60 "$log" >&2
  fi
  exit 1
}
# Runs a command with its output in $log (shown on failure).
quietly() { "$@" >"$log" 2>&1; }

san_flags=()
if [[ "$sanitize" == "ON" ]]; then
  san_flags=(-fsanitize=address,undefined -fno-omit-frame-pointer)
fi

# The expected text, byte for byte (hex -> bytes without xxd or python).
printf '%b' "$(sed 's/../\\x&/g' <<<"$expected_hex")" >"$tmp/expected.txt"
[[ -s "$tmp/expected.txt" ]] || fail "empty expected text"

# ---- 1. Install -------------------------------------------------------------------------------
step "cmake --install $build --prefix $prefix"
quietly "$cmake" --install "$build" --prefix "$prefix" || fail "cmake --install failed"

# ---- 2. Layout --------------------------------------------------------------------------------
step "installed layout"
for h in kestrel.h version.h status.h runtime.h model.h session.h engine.h export.h plugin_api.h kestrel.hpp engine.hpp; do
  [[ -f "$prefix/$includedir/kestrel/$h" ]] || fail "missing header $includedir/kestrel/$h"
done
lib="$prefix/$libdir/libkestrel.so"
[[ -L "$lib" ]] || fail "missing development symlink $libdir/libkestrel.so"
[[ -e "$prefix/$libdir/libkestrel.so.$major" ]] || fail "missing $libdir/libkestrel.so.$major"
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ "$soname" == "libkestrel.so.$major" ]] || fail "SONAME is '$soname', want libkestrel.so.$major"
runpath=$(readelf -d "$lib" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\]/\2/p')
[[ -z "$runpath" ]] || fail "libkestrel has an RPATH/RUNPATH it does not need: $runpath"
plugin_dir="$prefix/$libdir/kestrel/plugins"
[[ -f "$plugin_dir/libkestrel_plugin_ref.so" ]] || fail "missing $libdir/kestrel/plugins/libkestrel_plugin_ref.so"
for p in "$plugin_dir"/*.so; do
  if readelf -d "$p" | grep -q 'NEEDED.*\[libkestrel\.so'; then
    fail "plugin $(basename "$p") links libkestrel (plugins use the host table only)"
  fi
done
cli="$prefix/$bindir/kestrel"
[[ -x "$cli" ]] || fail "missing $bindir/kestrel"
cli_runpath=$(readelf -d "$cli" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\]/\2/p')
[[ "$cli_runpath" == *'$ORIGIN'* ]] || fail "bin/kestrel RPATH is '$cli_runpath', want \$ORIGIN/..."
cmake_dir="$prefix/$libdir/cmake/Kestrel"
for f in KestrelConfig.cmake KestrelConfigVersion.cmake KestrelTargets.cmake; do
  [[ -f "$cmake_dir/$f" ]] || fail "missing $libdir/cmake/Kestrel/$f"
done
pc="$prefix/$libdir/pkgconfig/kestrel.pc"
[[ -f "$pc" ]] || fail "missing $libdir/pkgconfig/kestrel.pc"
grep -qx "prefix=$prefix" "$pc" || fail "kestrel.pc: prefix is not $prefix: $(grep '^prefix=' "$pc")"
# Relocatable package: no path of the build or source tree in the installed package files.
build_real=$(cd "$build" && pwd -P)
if grep -rlF -e "$build" -e "$build_real" "$cmake_dir" "$pc" >"$log" 2>&1; then
  fail "installed package files name the build tree"
fi

# ---- 3. Installed CLI, plugins found next to the library --------------------------------------
step "installed kestrel devices (from $tmp/elsewhere, no plugin path)"
(cd "$tmp/elsewhere" && quietly "$cli" devices) || fail "installed kestrel devices failed"
grep -q "^  ref .*loaded" "$log" || fail "installed kestrel devices: the ref plugin is not loaded"
# The path is as the loader saw it (e.g. <prefix>/bin/../lib/...): compare canonical paths.
ref_path=$(sed -n 's|^    path: \(.*/libkestrel_plugin_ref\.so\)$|\1|p' "$log" | head -n 1)
[[ -n "$ref_path" && "$(readlink -f "$ref_path")" == "$(readlink -f "$plugin_dir/libkestrel_plugin_ref.so")" ]] ||
  fail "installed kestrel devices: ref was loaded from '$ref_path', not from $plugin_dir"
(cd "$tmp/elsewhere" &&
  "$cli" generate -m "$model" -p "$prompt" -n "$n_tokens" --temp 0 --device ref --no-echo \
    >"$tmp/cli.txt" 2>"$log") || fail "installed kestrel generate failed"
grep -qF "$(head -n 1 "$tmp/expected.txt")" "$tmp/cli.txt" ||
  fail "installed kestrel generate: not the golden text: $(cat "$tmp/cli.txt")"

# Runs consumer $1 (C or C++ program) and compares its output with the golden text.
check_consumer() {
  local exe=$1 what=$2
  (cd "$tmp/elsewhere" && "$exe" "$model" "$prompt" "$n_tokens" ref >"$tmp/out.txt" 2>"$log") ||
    fail "$what: exit status $?"
  if ! cmp -s "$tmp/out.txt" "$tmp/expected.txt"; then
    echo "want: $(cat "$tmp/expected.txt")" >&2
    echo "got:  $(cat "$tmp/out.txt")" >&2
    fail "$what: output differs from the golden text"
  fi
  echo "   $what: golden text ok"
}

# ---- 4. find_package(Kestrel) -----------------------------------------------------------------
step "consumer project with find_package(Kestrel)"
gen_args=()
[[ -n "$generator" ]] && gen_args=(-G "$generator")
quietly "$cmake" -S "$consumer" -B "$tmp/consumer-build" "${gen_args[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_C_FLAGS="${san_flags[*]}" -DCMAKE_CXX_FLAGS="${san_flags[*]}" \
  -DCMAKE_EXE_LINKER_FLAGS="${san_flags[*]}" || fail "configuring the consumer failed"
grep -q "Kestrel .*: headers $prefix/$includedir" "$log" ||
  fail "find_package(Kestrel) did not find the installed package in $prefix"
quietly "$cmake" --build "$tmp/consumer-build" || fail "building the consumer failed"
check_consumer "$tmp/consumer-build/consumer_c" "find_package: C"
check_consumer "$tmp/consumer-build/consumer_cpp" "find_package: C++"

# A request for this very major.minor (e.g. 0.2: the \since of the newest API) is accepted.
[[ -n "${minor:-}" ]] || fail "missing argument minor="
mkdir -p "$tmp/minor"
printf 'cmake_minimum_required(VERSION 3.16)\nproject(m NONE)\nfind_package(Kestrel %s.%s REQUIRED)\n' \
  "$major" "$minor" >"$tmp/minor/CMakeLists.txt"
quietly "$cmake" -S "$tmp/minor" -B "$tmp/minor/build" -DCMAKE_PREFIX_PATH="$prefix" ||
  fail "find_package(Kestrel $major.$minor) failed"

# A request for another major version must be refused (SameMajorVersion).
mkdir -p "$tmp/major"
printf 'cmake_minimum_required(VERSION 3.16)\nproject(m NONE)\nfind_package(Kestrel %s.0 QUIET)\nif(Kestrel_FOUND)\n  message(FATAL_ERROR "accepted major %s")\nendif()\n' \
  "$((major + 1))" "$((major + 1))" >"$tmp/major/CMakeLists.txt"
quietly "$cmake" -S "$tmp/major" -B "$tmp/major/build" -DCMAKE_PREFIX_PATH="$prefix" ||
  fail "KestrelConfigVersion.cmake accepted major version $((major + 1))"

# ---- 5. pkg-config ----------------------------------------------------------------------------
step "consumer programs built with pkg-config"
export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"
pkg-config --exists kestrel || fail "pkg-config does not find kestrel.pc"
read -r -a pc_flags <<<"$(pkg-config --cflags --libs kestrel)"
pc_libdir=$(pkg-config --variable=libdir kestrel)
[[ "$pc_libdir" == "$prefix/$libdir" ]] || fail "pkg-config libdir is $pc_libdir, want $prefix/$libdir"
[[ "$(pkg-config --modversion kestrel)" == "$major".* ]] || fail "pkg-config version $(pkg-config --modversion kestrel)"
# Every shared library libkestrel.so needs besides the C/C++ runtime (Debian: Abseil's) is named
# in Libs.private, so `pkg-config --static` is complete.
static_libs=" $(pkg-config --static --libs kestrel) "
for needed in $(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[lib\(.*\)\.so.*\]/\1/p'); do
  case "$needed" in c | m | dl | rt | pthread | stdc++ | gcc_s) continue ;; esac
  [[ "$static_libs" == *" -l$needed "* ]] ||
    fail "libkestrel.so needs lib$needed, which kestrel.pc does not list (Libs.private): $static_libs"
done
quietly "$cc" -std=c11 -Wall -Wextra -pedantic -Werror "${san_flags[@]}" "$consumer/consumer.c" \
  "${pc_flags[@]}" "-Wl,-rpath,$pc_libdir" -o "$tmp/pc_consumer_c" ||
  fail "compiling consumer.c with pkg-config flags failed"
quietly "$cxx" -std=c++17 -Wall -Wextra -pedantic -Werror "${san_flags[@]}" "$consumer/consumer.cc" \
  "${pc_flags[@]}" "-Wl,-rpath,$pc_libdir" -o "$tmp/pc_consumer_cpp" ||
  fail "compiling consumer.cc with pkg-config flags failed"
check_consumer "$tmp/pc_consumer_c" "pkg-config: C"
check_consumer "$tmp/pc_consumer_cpp" "pkg-config: C++"

echo "package_test: ok"
