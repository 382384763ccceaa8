#!/usr/bin/env bash
# Edge test: cross-compiles this source tree for aarch64 (Debian's g++-aarch64-linux-gnu and an
# arm64 Abseil from Debian multiarch), runs the C sample and `kestrel generate` under user-mode
# QEMU with the cross sysroot, and checks that the generated token ids of stories260K equal the
# shared golden ids exactly (first golden case, greedy, 48 tokens).
#
#   edge_test.sh SOURCE_DIR CROSS_BUILD_DIR MODELS_DIR
#
# Exit 0: pass; 1: fail; 77: skipped (a tool is missing, or KESTREL_EDGE_TESTS=0 in the
# environment). Environment: KESTREL_EDGE_JOBS (build jobs, default 2), KESTREL_CROSS_SYSROOT
# (default /usr/aarch64-linux-gnu), KESTREL_EDGE_TESTS (0/OFF/NO/FALSE skips).
set -uo pipefail

src=$1
bdir=$2
models=$3
jobs=${KESTREL_EDGE_JOBS:-2}
sysroot=${KESTREL_CROSS_SYSROOT:-/usr/aarch64-linux-gnu}
toolchain=$src/cmake/toolchains/aarch64-linux-gnu.cmake
model=$models/stories260K.gguf
golden=$models/stories260K.golden.json

skip() { echo "edge test skipped: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

case "${KESTREL_EDGE_TESTS:-1}" in
  0|OFF|off|NO|no|FALSE|false) skip "KESTREL_EDGE_TESTS=${KESTREL_EDGE_TESTS} in the environment" ;;
esac
install_hint="install: apt-get install g++-aarch64-linux-gnu libc6-dev-arm64-cross \
libstdc++-12-dev-arm64-cross qemu-user; dpkg --add-architecture arm64 && apt-get update && \
apt-get install libabsl-dev:arm64 libpcre2-dev:arm64"
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || skip "aarch64-linux-gnu-g++ not found ($install_hint)"
command -v qemu-aarch64 >/dev/null 2>&1 || skip "qemu-aarch64 not found ($install_hint)"
[[ -e $sysroot/lib/ld-linux-aarch64.so.1 ]] || skip "no aarch64 C library in $sysroot ($install_hint)"
absl_config=$(ls /usr/lib/aarch64-linux-gnu/cmake/absl/abslConfig.cmake 2>/dev/null)
[[ -n $absl_config ]] || skip "no arm64 Abseil (/usr/lib/aarch64-linux-gnu/cmake/absl) ($install_hint)"
[[ -e /usr/lib/aarch64-linux-gnu/libpcre2-8.so ]] || skip "no arm64 PCRE2 (/usr/lib/aarch64-linux-gnu/libpcre2-8.so) ($install_hint)"
[[ -f $model && -f $golden ]] || fail "test model missing: $model / $golden"

# 1. Configure and build the minimal target set (library, plugins, the two programs).
start=$(date +%s)
cmake -S "$src" -B "$bdir" -DCMAKE_TOOLCHAIN_FILE="$toolchain" -DCMAKE_BUILD_TYPE=Release \
  -DKESTREL_BUILD_TESTS=OFF -DKESTREL_WITH_CUDA=OFF -DKESTREL_WITH_OPENCL=OFF \
  -DKESTREL_WITH_ONEDNN=OFF -DKESTREL_MODELS_DIR="$models" >"$bdir.configure.log" 2>&1 ||
  { cat "$bdir.configure.log"; fail "cross configure failed"; }
targets=(kestrel kestrel_plugin_ref kestrel_sample_c kestrel_cli)
# The fast CPU plugin joins when this tree has one (it becomes the default device).
if grep -q '/kestrel_plugin_cpu.dir$' "$bdir/CMakeFiles/TargetDirectories.txt" 2>/dev/null; then
  targets+=(kestrel_plugin_cpu)
fi
echo "cross-building for aarch64: ${targets[*]} (-j$jobs)"
cmake --build "$bdir" -j"$jobs" --target "${targets[@]}" || fail "cross build failed"
echo "cross build took $(( $(date +%s) - start )) s"

file_info=$(file -L "$bdir/bin/kestrel" 2>/dev/null || true)
[[ -z $file_info || $file_info == *aarch64* ]] || fail "bin/kestrel is not an aarch64 binary: $file_info"

# 2. Run under QEMU. The C library, libstdc++ and the dynamic loader all come from the cross
# sysroot (LD_LIBRARY_PATH inside the guest): with Debian multiarch, an arm64 libc may also sit
# in /lib/aarch64-linux-gnu, and mixing it with the sysroot's loader hangs in pthread_create.
qemu=(qemu-aarch64 -L "$sysroot" -E "LD_LIBRARY_PATH=$sysroot/lib"
      -E "KESTREL_PLUGIN_PATH=$bdir/lib/kestrel/plugins")

"${qemu[@]}" "$bdir/bin/kestrel" devices || fail "kestrel devices failed under qemu"

"${qemu[@]}" "$bdir/bin/kestrel_sample_c" "$model" "Once upon a time" ||
  fail "kestrel_sample_c failed under qemu"

# Golden ids of the first case ("Once upon a time"): the JSON file flattened, then the arrays.
flat=$(tr -d ' \n\r\t' <"$golden")
want_prompt=$(grep -o '"prompt":"[^"]*"' <<<"$flat" | head -1)
want_ids=$(grep -o '"generated_ids":\[[0-9,]*\]' <<<"$flat" | head -1 | sed 's/.*\[\(.*\)\]/\1/')
[[ $want_prompt == '"prompt":"Onceuponatime"' && -n $want_ids ]] ||
  fail "unexpected golden file layout: $want_prompt"

check_device() {  # check_device LABEL [kestrel generate flags...]
  local label=$1 out got
  shift
  out=$("${qemu[@]}" "$bdir/bin/kestrel" generate -m "$model" -p "Once upon a time" -n 48 \
        --temp 0 --json "$@" 2>&1) || { echo "$out"; fail "kestrel generate ($label) failed under qemu"; }
  got=$(tail -n 1 <<<"$out" | grep -o '"token_ids":\[[0-9,]*\]' | sed 's/.*\[\(.*\)\]/\1/')
  if [[ $got != "$want_ids" ]]; then
    echo "want: $want_ids" >&2
    echo "got:  $got" >&2
    fail "aarch64 ($label) token ids differ from the golden ids"
  fi
  echo "aarch64 ($label): 48 token ids equal the golden ids"
}
check_device "default device"
check_device "ref" --device ref
if [[ " ${targets[*]} " == *" kestrel_plugin_cpu "* ]]; then
  check_device "cpu" --device cpu
fi
echo "edge test passed"
