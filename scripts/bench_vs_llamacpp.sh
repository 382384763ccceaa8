#!/usr/bin/env bash
# Kestrel against llama.cpp on one model, measured in the same run: ROUNDS rounds, each running
# `kestrel bench` then `llama-bench` (alternating, so a change in the machine's load hits both),
# plus `kestrel bench --membw` per round for the decode roofline. Prints every raw JSON line and
# then a summary: the medians over rounds of each tool's prefill and decode tokens/s, their
# ratios, and decode as a fraction of the roofline (membw / weight bytes read per token).
#
#   scripts/bench_vs_llamacpp.sh MODEL [ROUNDS]
#   KESTREL=build/bin/kestrel LLAMA_BENCH=/path/llama-bench THREADS=2 PROMPT=128 GEN=64
#
# llama.cpp is not part of this project: point LLAMA_BENCH at an existing build
# (default /opt/llamacpp/build-native/bin/llama-bench).
set -euo pipefail
model="${1:?usage: bench_vs_llamacpp.sh MODEL [ROUNDS]}"
rounds="${2:-5}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kestrel="${KESTREL:-$root/build/bin/kestrel}"
llama="${LLAMA_BENCH:-/opt/llamacpp/build-native/bin/llama-bench}"
threads="${THREADS:-2}"
prompt="${PROMPT:-128}"
gen="${GEN:-64}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

for ((r = 1; r <= rounds; r++)); do
  echo "round $r/$rounds: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  "$kestrel" bench --membw -t "$threads" --json 2>/dev/null | tail -1 | sed 's/^/membw /' >>"$out"
  "$kestrel" bench -m "$model" -t "$threads" -p "$prompt" -n "$gen" --reps 3 --json 2>/dev/null |
    tail -1 | sed 's/^/kestrel /' >>"$out"
  "$llama" -m "$model" -t "$threads" -p "$prompt" -n "$gen" -r 3 -o json 2>/dev/null |
    python3 -c 'import json,sys; print("llamacpp " + json.dumps(json.load(sys.stdin)))' >>"$out"
done
cat "$out"
python3 - "$out" <<'EOF'
import json, statistics, sys
membw, kp, kd, lp, ld, wbytes = [], [], [], [], [], None
for line in open(sys.argv[1]):
    tag, _, js = line.partition(" ")
    d = json.loads(js)
    if tag == "membw":
        membw.append(d["read_gb_per_s"])
    elif tag == "kestrel":
        kp.append(d["prefill_tokens_per_s"]); kd.append(d["decode_tokens_per_s"])
        # bytes read per decoded token: every weight but the embedding table (one row of it)
        wbytes = d["weight_bytes"] - d["weight_bytes"] * d["vocab_size"] * d["n_embd"] / d["n_params"]
    else:
        for t in d:
            (lp if t["n_prompt"] > 0 else ld).append(t["avg_ts"])
med = statistics.median
print(f"rounds {len(kp)}; medians (per-round values in brackets)")
print(f"membw GB/s        {med(membw):8.2f}  {[round(x, 2) for x in membw]}")
print(f"kestrel prefill   {med(kp):8.2f}  {[round(x, 2) for x in kp]}")
print(f"llama.cpp prefill {med(lp):8.2f}  {[round(x, 2) for x in lp]}")
print(f"kestrel decode    {med(kd):8.2f}  {[round(x, 2) for x in kd]}")
print(f"llama.cpp decode  {med(ld):8.2f}  {[round(x, 2) for x in ld]}")
print(f"ratio prefill {med(kp) / med(lp):.2f}x  decode {med(kd) / med(ld):.2f}x "
      f"(per round: prefill {[round(a / b, 2) for a, b in zip(kp, lp)]}, "
      f"decode {[round(a / b, 2) for a, b in zip(kd, ld)]})")
roof = med(membw) * 1e9 / wbytes
print(f"roofline {roof:.2f} tok/s ({wbytes / 1e6:.1f} MB/token); kestrel decode {med(kd) / roof:.0%} "
      f"of it (per round: {[f'{a * wbytes / (m * 1e9):.0%}' for a, m in zip(kd, membw)]})")
EOF
