#!/bin/sh
# End-to-end test of `kestrel bench`: a short model bench of stories260K, a short --engine bench
# and a small --membw run, all with --json; the last stdout line must be a JSON object whose
# fields exist and are sane.
#
#   bench_test.sh PATH/TO/kestrel PATH/TO/stories260K.gguf
#
# Needs python3 to read the JSON (exits 77 = skipped without it). Plugins are found through
# KESTREL_PLUGIN_PATH, which ctest sets. Speed itself is never asserted.
set -u
kestrel=$1
model=$2
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() { echo "FAIL: $*" >&2; failed=1; }

"$kestrel" bench -m "$model" -p 8 -n 4 --reps 2 --json >"$tmp/out" 2>"$tmp/err" ||
  fail "bench exited $?: $(cat "$tmp/err")"
python3 - "$tmp/out" <<'PY' || fail "bench --json: $(cat "$tmp/out")"
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
for key in ("prefill_tokens_per_s", "decode_tokens_per_s", "load_ms", "peak_rss_bytes"):
    assert isinstance(d[key], (int, float)) and d[key] > 0, (key, d.get(key))
assert d["threads"] == 0 and isinstance(d["device"], str) and d["device"], d
assert d["model"].endswith("stories260K.gguf"), d["model"]
assert d["n_prompt"] == 8 and d["n_decode"] == 4 and d["reps"] == 2 and d["warmup"] == 1, d
for key in ("prefill_tokens_per_s_all", "decode_tokens_per_s_all"):
    assert len(d[key]) == 2 and all(v > 0 for v in d[key]), (key, d[key])
    assert min(d[key]) <= d[key.replace("_all", "")] <= max(d[key]), key
assert d["weight_bytes"] > 0 and d["vocab_size"] == 512, d
PY
# Two warm-up lines would be wrong: one warm-up, two reps on stderr.
[ "$(grep -c 'bench warm-up' "$tmp/err")" -eq 1 ] || fail "expected 1 warm-up line: $(cat "$tmp/err")"
[ "$(grep -c 'bench rep' "$tmp/err")" -eq 2 ] || fail "expected 2 rep lines: $(cat "$tmp/err")"

"$kestrel" bench -m "$model" -p 4 -n 2 --reps 1 --warmup 0 -t 1 --device ref >"$tmp/out" 2>"$tmp/err" ||
  fail "bench (table) exited $?: $(cat "$tmp/err")"
grep -q '^prefill ' "$tmp/out" && grep -q '^decode ' "$tmp/out" || fail "no table: $(cat "$tmp/out")"

# --verify-cost: a 5-token step against a 1-token step after a 6-token context, 3 alternated pairs.
"$kestrel" bench -m "$model" --verify-cost 5 -p 6 --reps 3 --warmup 1 --json >"$tmp/out" 2>"$tmp/err" ||
  fail "bench --verify-cost exited $?: $(cat "$tmp/err")"
python3 - "$tmp/out" <<'PY' || fail "bench --verify-cost --json: $(cat "$tmp/out")"
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert d["mode"] == "verify_cost" and d["verify_tokens"] == 5 and d["context_tokens"] == 6, d
assert d["reps"] == 3 and d["plain_step_ms"] > 0 and d["verify_step_ms"] > 0, d
assert d["verify_cost_ratio_min"] <= d["verify_cost_ratio"] <= d["verify_cost_ratio_max"], d
assert d["verify_cost_ratio_min"] > 0, d
PY
[ "$(grep -c 'verify-cost rep' "$tmp/err")" -eq 3 ] || fail "expected 3 rep lines: $(cat "$tmp/err")"

# --engine: two concurrencies and the shared-prefix workload (32 requests x 32-token prefix).
"$kestrel" bench -m "$model" --engine --concurrency 1,4 -n 8 --reps 1 --prefix-tokens 32 --json \
    >"$tmp/out" 2>"$tmp/err" || fail "bench --engine exited $?: $(cat "$tmp/err")"
python3 - "$tmp/out" <<'PY' || fail "bench --engine --json: $(cat "$tmp/out")"
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert d["mode"] == "engine" and d["ok"] is True, d
assert d["model"].endswith("stories260K.gguf") and d["device"], d
assert d["n"] == 8 and d["reps"] == 1 and d["threads"] == 0, d
assert d["kv_block_size"] >= 1, d                     # the library's default
assert d["session_baseline"]["tokens_per_s"] > 0, d["session_baseline"]
assert [e["concurrency"] for e in d["engine"]] == [1, 4], d["engine"]
for e in d["engine"]:
    c = e["concurrency"]
    assert e["ok"] is True and e["tokens_per_s"] > 0 and e["speedup_vs_session"] > 0, e
    assert e["generated_tokens"] == 8 * c, e          # stories260K: no EOS within 8 tokens
    assert 0 < e["kv_blocks_used"] <= e["kv_blocks_total"], e
    assert 0 < e["kv_utilisation"] <= 1, e
    assert abs(e["kv_utilisation"] - e["kv_blocks_used"] / e["kv_blocks_total"]) < 1e-9, e
    assert 0 <= e["kv_waste_fraction"] < 1 and e["preemptions"] >= 0, e
    # stories260K has no sliding-window layers: no window pools.
    assert e["kv_window_blocks_used"] == e["kv_window_blocks_total"] == e["kv_window_bytes"] == 0, e
s = d["shared_prefix"]
assert s["requests"] == 32 and s["prefix_tokens"] == 32, s
assert s["prompt_tokens"] > 32 * 32, s
assert s["prefill_tokens_without_cache"] == s["prompt_tokens"], s
assert 0 < s["prefill_tokens_computed"] < s["prefill_tokens_without_cache"], s
assert s["prefill_tokens_computed"] + s["prefill_tokens_reused"] == s["prompt_tokens"], s
assert s["tokens_per_s"] > 0 and s["tokens_per_s_without_cache"] > 0, s
PY
[ "$(grep -c 'bench engine rep' "$tmp/err")" -eq 4 ] || fail "expected 4 engine rep lines: $(cat "$tmp/err")"

# --prefix-tokens 0 skips the shared-prefix workload; -t, --device and --kv-block-size are accepted
# (blocks of 1 token: no slot is ever left unfilled).
"$kestrel" bench -m "$model" --engine --concurrency 2 -n 4 --reps 1 --prefix-tokens 0 -t 1 \
    --device ref --kv-block-size 1 --json >"$tmp/out" 2>"$tmp/err" || fail "bench --engine (no prefix) exited $?: $(cat "$tmp/err")"
python3 - "$tmp/out" <<'PY' || fail "bench --engine --prefix-tokens 0: $(cat "$tmp/out")"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
d = json.loads(lines[-1])
assert "shared_prefix" not in d and d["threads"] == 1 and d["device"] == "ref", d
assert len(d["engine"]) == 1 and d["engine"][0]["tokens_per_s"] > 0, d
assert d["kv_block_size"] == 1 and d["engine"][0]["kv_waste_fraction"] == 0, d
assert any(l.startswith("concurrency   2:") for l in lines), lines
PY

# A prefix that does not fit the model's context (128 tokens) is a usage error naming the flag.
"$kestrel" bench -m "$model" --engine --concurrency 1 -n 4 --reps 1 --prefix-tokens 512 \
    >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" -eq 2 ] && grep -q "for --prefix-tokens" "$tmp/err" ||
  fail "bench --engine --prefix-tokens 512: exit $rc: $(cat "$tmp/err")"

"$kestrel" bench --membw --size-mb 64 --json >"$tmp/out" 2>"$tmp/err" ||
  fail "bench --membw exited $?: $(cat "$tmp/err")"
python3 - "$tmp/out" <<'PY' || fail "bench --membw --json: $(cat "$tmp/out")"
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
kernels = ("scalar", "vec64", "vec64x4", "prefetch", "nt")
for key in ("read_gb_per_s", "threads", "buffer_bytes", "peak_rss_bytes") + tuple(
        "read_gb_per_s_" + k for k in kernels):
    assert isinstance(d[key], (int, float)) and d[key] > 0, (key, d.get(key))
assert d["buffer_bytes"] == 64 << 20, d["buffer_bytes"]
assert d["read_gb_per_s"] == max(d["read_gb_per_s_" + k] for k in kernels), d
assert d["read_gb_per_s"] == d["read_gb_per_s_" + d["best_kernel"]], d
assert isinstance(d["huge_pages"], bool), d
assert len(d["read_gb_per_s_vec64_all"]) == d["reps"] == 5, d
PY

# Usage errors exit 2.
"$kestrel" bench >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" -eq 2 ] && grep -q "needs -m/--model" "$tmp/err" || fail "bench without -m: exit $rc: $(cat "$tmp/err")"
"$kestrel" bench --membw -m "$model" >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" -eq 2 ] || fail "bench --membw -m: exit $rc"
"$kestrel" bench -m "$model" --engine --concurrency 1,x >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" -eq 2 ] && grep -q "for --concurrency" "$tmp/err" || fail "bench --concurrency 1,x: exit $rc: $(cat "$tmp/err")"
"$kestrel" bench -m "$model" --engine -p 8 >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" -eq 2 ] && grep -q "'-p' does not apply to 'bench --engine'" "$tmp/err" || fail "bench --engine -p: exit $rc"

if [ "$failed" -ne 0 ]; then exit 1; fi
echo "bench_test: ok"
