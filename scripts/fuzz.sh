#!/usr/bin/env bash
# Builds the libFuzzer targets (`cmake --preset fuzz`: clang, ASan + UBSan, build-fuzz/bin/*_fuzzer)
# and runs every one of them.
#
#   scripts/fuzz.sh [SECONDS]      each target for SECONDS (default 60), up to nproc at once
#   KESTREL_FUZZ_RUNS=N scripts/fuzz.sh   each target for N executions instead (the recorded
#                                  long run: N = 1000000, see docs/RELIABILITY.md); with a
#                                  SECONDS argument too, whichever limit comes first
#   KESTREL_FUZZ_TARGETS="gguf_fuzzer"    only these targets
#
# Each target starts from its seeds (generated at build time from ../shared/models, plus the
# committed crashers in tests/fuzz/regressions/<target>/) and keeps its working corpus in
# build-fuzz/fuzz/corpus/<target>/ between runs. A crash, leak, timeout or sanitizer report fails
# the script; the input is saved in build-fuzz/fuzz/crashes/<target>/ and becomes a regression
# test once copied to tests/fuzz/regressions/<target>/ (its <target>_regression ctest replays it
# in every build). Output: one summary line per target (executions, exec/s, corpus size).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-60}"
seconds_given="${1:-}"
runs="${KESTREL_FUZZ_RUNS:-}"
build="$root/build-fuzz"
export KESTREL_MODELS_DIR="${KESTREL_MODELS_DIR:-$root/../shared/models}"

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake --preset fuzz -S "$root" "${launcher[@]}" >/dev/null
cmake --build --preset fuzz -j"$(nproc)" >/dev/null

targets=()
for t in ${KESTREL_FUZZ_TARGETS:-$(cd "$build/bin" && ls -- *_fuzzer)}; do targets+=("$t"); done
((${#targets[@]} > 0)) || { echo "fuzz.sh: no *_fuzzer in $build/bin" >&2; exit 1; }

run_one() {  # target -> log in $build/fuzz/<target>.log
  local t=$1 corpus="$build/fuzz/corpus/$1" crashes="$build/fuzz/crashes/$1/"
  mkdir -p "$corpus" "$crashes"
  local seeds=()
  while IFS= read -r d; do [[ -n "$d" && -d "$d" ]] && seeds+=("$d"); done <"$build/fuzz/$t.seeds"
  local limit=(-max_total_time="$seconds")
  if [[ -n "$runs" ]]; then
    limit=(-runs="$runs")
    [[ -n "$seconds_given" ]] && limit+=(-max_total_time="$seconds")
  fi
  # -timeout: an input that takes 10 s is a hang; -rss_limit_mb: a runaway allocation is a finding.
  "$build/bin/$t" "$corpus" "${seeds[@]}" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 \
    -max_len=131072 -print_final_stats=1 -artifact_prefix="$crashes" >"$build/fuzz/$t.log" 2>&1
}

status=0
pids=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  # At most nproc targets at once.
  while (($(jobs -rp | wc -l) >= $(nproc))); do sleep 1; done
done
for i in "${!targets[@]}"; do
  t=${targets[$i]}
  rc=0
  wait "${pids[$i]}" || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$build/fuzz/$t.log" | grep -o '[0-9]*$' || true)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$build/fuzz/$t.log" | grep -o '[0-9]*$' || true)
  corpus=$(find "$build/fuzz/corpus/$t" -type f | wc -l)
  if ((rc == 0)); then
    echo "$t: ok, ${execs:-?} executions, ${rate:-?} exec/s, corpus $corpus files, 0 crashes"
  else
    status=1
    echo "$t: FAILED (exit $rc) after ${execs:-?} executions; log $build/fuzz/$t.log; inputs in $build/fuzz/crashes/$t/" >&2
    grep -E "ERROR|SUMMARY|fuzz invariant|Test unit written" "$build/fuzz/$t.log" | head -n 8 >&2 || true
  fi
done
exit $status
