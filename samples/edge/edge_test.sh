#!/usr/bin/env bash
# Edge test: cross-compiles this source tree for aarch64 (Debian's g++-aarch64-linux-gnu and an
# arm64 Abseil from Debian multiarch) and runs it under user-mode QEMU with the cross sysroot.
#   golden (default): the C sample and `kestrel generate`; the generated token ids of stories260K
#     must equal the shared golden ids exactly (first golden case, greedy, 48 tokens).
#   cpu-conformance: the cpu plugin's conformance suite (plugins/cpu/cpu_conformance_test.cc,
#     every op against ref), kernels_kquants_test and cpu_features_test at the aarch64 levels
#     neon and dotprod, on
#     QEMU's `max` CPU (which has dotprod); then, on a Cortex-A57 (no dotprod), the run-time
#     detection: level dotprod must be reported unavailable and neon must run.
# Both modes share one cross tree (configured with the tests on, GoogleTest cross-built from
# Debian's /usr/src/googletest into CROSS_BUILD_DIR-gtest); ctest never runs them at once.
#
#   edge_test.sh SOURCE_DIR CROSS_BUILD_DIR MODELS_DIR [golden|cpu-conformance]
#
# Exit 0: pass; 1: fail; 77: skipped (a tool is missing, or KESTREL_EDGE_TESTS=0 in the
# environment). Environment: KESTREL_EDGE_JOBS (build jobs, default 2), KESTREL_CROSS_SYSROOT
# (default /usr/aarch64-linux-gnu), KESTREL_EDGE_TESTS (0/OFF/NO/FALSE skips).
set -uo pipefail

src=$1
bdir=$2
models=$3
mode=${4:-golden}
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
[[ -f /usr/src/googletest/CMakeLists.txt ]] || skip "no GoogleTest sources in /usr/src/googletest (apt-get install libgtest-dev)"
[[ -f $model && -f $golden ]] || fail "test model missing: $model / $golden"
[[ $mode == golden || $mode == cpu-conformance ]] || fail "unknown mode '$mode' (golden | cpu-conformance)"

# 1. GoogleTest for aarch64 (once per cross tree), then configure and build the minimal target set
# of the mode.
start=$(date +%s)
gtest_dir=$bdir-gtest
if [[ ! -f $gtest_dir/install/lib/cmake/GTest/GTestConfig.cmake ]]; then
  echo "cross-building GoogleTest for aarch64 into $gtest_dir"
  { cmake -S /usr/src/googletest -B "$gtest_dir/build" -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
      -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$gtest_dir/install" &&
    cmake --build "$gtest_dir/build" -j"$jobs" && cmake --install "$gtest_dir/build"; } \
    >"$gtest_dir.log" 2>&1 || { cat "$gtest_dir.log"; fail "GoogleTest cross build failed"; }
fi
cmake -S "$src" -B "$bdir" -DCMAKE_TOOLCHAIN_FILE="$toolchain" -DCMAKE_BUILD_TYPE=Release \
  -DKESTREL_BUILD_TESTS=ON -DGTest_DIR="$gtest_dir/install/lib/cmake/GTest" \
  -DKESTREL_WITH_CUDA=OFF -DKESTREL_WITH_OPENCL=OFF \
  -DKESTREL_WITH_ONEDNN=OFF -DKESTREL_MODELS_DIR="$models" >"$bdir.configure.log" 2>&1 ||
  { cat "$bdir.configure.log"; fail "cross configure failed"; }
has_cpu=0
if grep -q '/kestrel_plugin_cpu.dir$' "$bdir/CMakeFiles/TargetDirectories.txt" 2>/dev/null; then
  has_cpu=1
fi
if [[ $mode == cpu-conformance ]]; then
  ((has_cpu)) || fail "this tree has no cpu plugin"
  targets=(kestrel_plugin_ref kestrel_plugin_cpu cpu_conformance_test kernels_kquants_test
           cpu_features_test)
else
  targets=(kestrel kestrel_plugin_ref kestrel_sample_c kestrel_cli)
  # The fast CPU plugin joins when this tree has one (it becomes the default device).
  ((has_cpu)) && targets+=(kestrel_plugin_cpu)
fi
echo "cross-building for aarch64: ${targets[*]} (-j$jobs)"
cmake --build "$bdir" -j"$jobs" --target "${targets[@]}" || fail "cross build failed"
echo "cross build took $(( $(date +%s) - start )) s"

# 2. Run under QEMU. The C library, libstdc++ and the dynamic loader all come from the cross
# sysroot (LD_LIBRARY_PATH inside the guest): with Debian multiarch, an arm64 libc may also sit
# in /lib/aarch64-linux-gnu, and mixing it with the sysroot's loader hangs in pthread_create.
qemu=(qemu-aarch64 -L "$sysroot" -E "LD_LIBRARY_PATH=$sysroot/lib"
      -E "KESTREL_PLUGIN_PATH=$bdir/lib/kestrel/plugins")

if [[ $mode == cpu-conformance ]]; then
  plugins=$bdir/lib/kestrel/plugins
  conf=("$bdir/tests/cpu_conformance_test")
  file_info=$(file -L "${conf[0]}" 2>/dev/null || true)
  [[ -z $file_info || $file_info == *aarch64* ]] || fail "cpu_conformance_test is not an aarch64 binary: $file_info"
  run_start=$(date +%s)
  # Every op at both aarch64 levels with 8-bit activations (their Matmul cases also pass the
  # quantized weights as plain buffers, the exact path), and the exact-mode cases that run the
  # packed weights' dequantization + f32 GEMM; exact-mode Matmul, PagedAttention and Moe run no
  # other kernels and take most of the time under QEMU. A skipped level here means the detection
  # failed on a CPU that has it: that is a failure too.
  filter=
  for level in neon dotprod; do
    filter+="*/CpuConformance.*/${level}_q8act:"
    for t in MatmulBias Logits LogitsAndEmbeddingKq EmbeddingGather; do
      filter+="*/CpuConformance.$t/${level}_exact:"
    done
  done
  out=$("${qemu[@]}" -cpu max -E "KESTREL_PLUGIN_DIR=$plugins" "${conf[@]}" \
        "--gtest_filter=${filter%:}" 2>&1)
  rc=$?
  echo "$out" | grep -E '^\[ *(RUN|OK|FAILED|SKIPPED|PASSED) *\]|seed|Failure|error' | grep -v '^\[ RUN' | tail -n 80
  ((rc == 0)) || fail "cpu conformance (neon, dotprod) failed under qemu"
  grep -q '^\[  SKIPPED \]' <<<"$out" && fail "a neon/dotprod conformance case was skipped on qemu's max CPU (has dotprod)"
  grep -q '^\[  PASSED  \] [1-9]' <<<"$out" || fail "no neon/dotprod conformance case ran"
  for unit in kernels_kquants_test cpu_features_test; do
    "${qemu[@]}" -cpu max "$bdir/tests/$unit" | tail -n 3 || fail "$unit failed under qemu"
  done
  # Run-time detection on a CPU without dotprod (HWCAP_ASIMDDP clear): dotprod is unavailable
  # (the case is skipped), neon runs.
  out=$("${qemu[@]}" -cpu cortex-a57 -E "KESTREL_PLUGIN_DIR=$plugins" "${conf[@]}" \
        '--gtest_filter=*/CpuConformance.Logits/neon_q8act:*/CpuConformance.Logits/dotprod_q8act' 2>&1) ||
    { echo "$out"; fail "conformance on cortex-a57 failed"; }
  grep -q "ISA level 'dotprod' is not available here" <<<"$out" ||
    { echo "$out"; fail "dotprod was not reported unavailable on a cortex-a57"; }
  grep -q '^\[       OK \] .*neon_q8act' <<<"$out" || { echo "$out"; fail "neon did not run on a cortex-a57"; }
  echo "aarch64 cpu conformance (neon, dotprod) passed under qemu in $(( $(date +%s) - run_start )) s"
  exit 0
fi

file_info=$(file -L "$bdir/bin/kestrel" 2>/dev/null || true)
[[ -z $file_info || $file_info == *aarch64* ]] || fail "bin/kestrel is not an aarch64 binary: $file_info"

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
