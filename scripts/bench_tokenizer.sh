#!/usr/bin/env bash
# Tokenization speed of the three test vocabs on 1 MiB of English text, one thread, and the same
# text through llama.cpp's llama-tokenize when one is available (record: docs/perf/tokenizer.md).
#
#   scripts/bench_tokenizer.sh [BUILD_DIR] [ROUNDS]
#
# The text: the Debian license texts (/usr/share/common-licenses, name order) repeated and cut to
# 1048576 bytes. Kestrel: build/bin/kestrel_tokenizer_bench (median of 9 timed Encode calls per
# round, by wall time and by the thread's CPU time). llama.cpp ($LLAMA_TOKENIZE, default /opt/llamacpp/build-native/bin/llama-tokenize): it
# has no timer of its own, so its figure is the process wall time on the text minus the wall time
# on a one-word prompt (vocab load, start-up), which still includes reading the file and printing
# the ids. The two alternate, ROUNDS times (default 3); the medians over rounds are printed.
# Vocabs: KESTREL_MODEL_CACHE (SmolLM2 BPE, Gemma 3 SPM) and ../shared/models (Llama-2 SPM).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
rounds="${2:-3}"
bench="$build/bin/kestrel_tokenizer_bench"
llama="${LLAMA_TOKENIZE:-/opt/llamacpp/build-native/bin/llama-tokenize}"
cache="${KESTREL_MODEL_CACHE:-$HOME/.cache/kestrel/models}"
models=("$cache/SmolLM2-135M-Instruct.Q4_1.gguf" "$cache/gemma-3-270m-q4_k_m.gguf"
        "$root/../shared/models/llama-2-tiny-random.gguf")
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
text="$tmp/text.txt"
while [[ ! -s $text || $(stat -c %s "$text") -lt 1048576 ]]; do
  LC_ALL=C find /usr/share/common-licenses -maxdepth 1 -type f | LC_ALL=C sort | xargs cat >>"$text"
done
head -c 1048576 "$text" >"$tmp/t" && mv "$tmp/t" "$text"
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
for m in "${models[@]}"; do
  [[ -f $m ]] || { echo "skipped (missing): $m"; continue; }
  ours=() ours_cpu=() theirs=()
  for ((r = 0; r < rounds; ++r)); do
    json="$("$bench" --text "$text" --reps 9 "$m")"
    ours+=("$(sed -n 's/.*"mb_per_s": \([0-9.]*\).*/\1/p' <<<"$json")")
    ours_cpu+=("$(sed -n 's/.*"mb_per_s_cpu": \([0-9.]*\).*/\1/p' <<<"$json")")
    if [[ -x $llama ]]; then
      t0=$(now); "$llama" -m "$m" -f "$text" --ids --log-disable >/dev/null 2>&1; t1=$(now)
      "$llama" -m "$m" -p "hello" --ids --log-disable >/dev/null 2>&1; t2=$(now)
      theirs+=("$(awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {d = (b - a) - (c - b); if (d <= 0) d = 1e-9; printf "%.2f", 1.048576 / d}')")
    fi
  done
  line="$(basename "$m"): kestrel $(printf '%s\n' "${ours[@]}" | median) MB/s wall (rounds: ${ours[*]}),"
  line+=" $(printf '%s\n' "${ours_cpu[@]}" | median) MB/s of thread CPU time (rounds: ${ours_cpu[*]})"
  if ((${#theirs[@]})); then
    line+="; llama-tokenize $(printf '%s\n' "${theirs[@]}" | median) MB/s (rounds: ${theirs[*]})"
  fi
  echo "$line"
done
"$bench" --text "$text" --reps 9 "${models[@]}" 2>/dev/null || true
