#!/usr/bin/env bash
# Vendor-kit package test (ctest label `package`): installs a built Kestrel into a temporary
# prefix and does what a plugin vendor does with it, from outside the source tree:
#   1. the installed kit: plugin SDK headers and library, the CMake component and pkg-config
#      file, kestrel-conformance;
#   2. samples/vendor_plugin configured with find_package(Kestrel COMPONENTS plugin_sdk) and built;
#   3. the installed kestrel-conformance on it, all tiers: exit 0 (every check as expected), the
#      JSON and Markdown reports written, the oracle found next to the installed library;
#   4. the same plugin compiled by hand with `pkg-config --cflags --libs kestrel-plugin-sdk`
#      passes the abi tier;
#   5. the installed `kestrel generate --device acme` runs stories260K with the sample plugin
#      (ref as fallback) and prints llama.cpp's text.
#
#   vendor_plugin_test.sh build= sample= models= cmake= cxx= generator= bindir= libdir=
#                         includedir= sanitize= prompt= n_tokens= expected_hex=
# Exit status 0 pass, 1 fail, 77 skip (no model). Runs in a temporary folder removed on exit.
set -euo pipefail

for arg in "$@"; do
  case "$arg" in
    build=* | sample=* | models=* | cmake=* | cxx=* | generator=* | bindir=* | libdir=* | \
      includedir=* | sanitize=* | prompt=* | n_tokens=* | expected_hex=*)
      declare "${arg%%=*}=${arg#*=}" ;;
    *) echo "vendor_plugin_test: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done
generator=${generator:-}
sanitize=${sanitize:-OFF}
if [[ ! -f "$models/stories260K.gguf" ]]; then
  echo "SKIP: model not found: $models/stories260K.gguf" >&2
  exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kestrel_vendor_test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
log="$tmp/log"
unset KESTREL_PLUGIN_PATH KESTREL_PLUGIN_DIR KESTREL_BUILD_DIR
export KESTREL_MODELS_DIR="$models"

step() { echo "== $*"; }
fail() {
  echo "FAIL: $*" >&2
  [[ -s "$log" ]] && { echo "--- last output:" >&2; tail -n 60 "$log" >&2; }
  exit 1
}
quietly() { "$@" >"$log" 2>&1; }
san_flags=""
[[ "$sanitize" == "ON" ]] && san_flags="-fsanitize=address,undefined -fno-omit-frame-pointer"

step "cmake --install $build --prefix $prefix"
quietly "$cmake" --install "$build" --prefix "$prefix" || fail "cmake --install failed"

step "installed vendor kit"
for h in plugin_api.h plugin_sdk/status.h plugin_sdk/op_contract.h plugin_sdk/host_plugin.h \
         plugin_sdk/device_table.h plugin_sdk/accuracy.h plugin_sdk/dtype.h plugin_sdk/half.h; do
  [[ -f "$prefix/$includedir/kestrel/$h" ]] || fail "missing header $includedir/kestrel/$h"
done
[[ -f "$prefix/$libdir/libkestrel_plugin_sdk.a" ]] || fail "missing $libdir/libkestrel_plugin_sdk.a"
[[ -f "$prefix/$libdir/cmake/Kestrel/KestrelPluginSdkTargets.cmake" ]] ||
  fail "missing the CMake component file KestrelPluginSdkTargets.cmake"
[[ -f "$prefix/$libdir/pkgconfig/kestrel-plugin-sdk.pc" ]] || fail "missing kestrel-plugin-sdk.pc"
kit="$prefix/$bindir/kestrel-conformance"
[[ -x "$kit" ]] || fail "missing $bindir/kestrel-conformance"
# The SDK headers must not reach into the source tree's internals.
if grep -rn '#include "\(runtime\|hal/src\|plugins\)/' "$prefix/$includedir/kestrel" >"$log"; then
  fail "an installed header includes a source-tree path"
fi

step "samples/vendor_plugin with find_package(Kestrel COMPONENTS plugin_sdk)"
gen_args=()
[[ -n "$generator" ]] && gen_args=(-G "$generator")
quietly "$cmake" -S "$sample" -B "$tmp/acme" "${gen_args[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_CXX_FLAGS="$san_flags" \
  -DCMAKE_MODULE_LINKER_FLAGS="$san_flags" || fail "configuring the sample failed"
quietly "$cmake" --build "$tmp/acme" || fail "building the sample failed"
plugin="$tmp/acme/libkestrel_plugin_acme.so"
[[ -f "$plugin" ]] || fail "the sample did not produce $plugin"

step "installed kestrel-conformance on the sample plugin (all tiers)"
(cd "$tmp" && quietly "$kit" --plugin "$plugin" --report "$tmp/acme.json" --markdown "$tmp/acme.md") ||
  fail "kestrel-conformance did not pass the sample plugin"
cat "$log"
grep -q '"as_expected": true' "$tmp/acme.json" || fail "the report does not say as_expected"
grep -q 'PASS (everything as expected)' "$tmp/acme.md" || fail "the Markdown report does not say PASS"
grep -q '"name": "acme"' "$tmp/acme.json" || fail "the report does not name the plugin"

step "the sample built by hand with pkg-config"
export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"
read -r -a pc_flags <<<"$(pkg-config --cflags --libs kestrel-plugin-sdk)"
mkdir -p "$tmp/pc"
# shellcheck disable=SC2086
quietly "$cxx" -std=c++17 -fPIC -shared -fvisibility=hidden $san_flags "$sample/acme_plugin.cc" \
  "$sample/acme_kernels.cc" "${pc_flags[@]}" "-Wl,--version-script=$sample/plugin.map" \
  -o "$tmp/pc/libkestrel_plugin_acme.so" || fail "compiling the sample with pkg-config flags failed"
quietly "$kit" --plugin "$tmp/pc/libkestrel_plugin_acme.so" --tiers abi --report "$tmp/pc.json" ||
  fail "the pkg-config build of the sample does not pass the abi tier"

step "installed kestrel generate --device acme"
expected=$(printf '%b' "$(sed 's/../\\x&/g' <<<"$expected_hex")")
(cd "$tmp" && KESTREL_PLUGIN_PATH="$tmp/acme:$prefix/$libdir/kestrel/plugins" \
  "$prefix/$bindir/kestrel" generate -m "$models/stories260K.gguf" -p "$prompt" -n "$n_tokens" \
  --temp 0 --device acme --no-echo >"$tmp/out.txt" 2>"$log") || fail "kestrel generate --device acme failed"
[[ "$(cat "$tmp/out.txt")" == "$expected"* ]] || fail "generate --device acme: not the golden text: $(cat "$tmp/out.txt")"

echo "vendor_plugin_test: ok"
