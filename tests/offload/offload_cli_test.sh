#!/bin/sh
# `kestrel plan` on tiny-moe-f32 (all F32: 465152 bytes of dense weights, 4 layers x 4 experts of
# 98304 bytes each, KV 1024 bytes per token) with fixed inputs: the JSON is checked field by field
# against numbers worked out by hand; an impossible budget exits 1 with RESOURCE_EXHAUSTED and
# the numbers; `generate --mem` runs with the experts in the file and prints the same text as
# without a budget. Usage: offload_cli_test.sh KESTREL_BINARY MODELS_DIR
set -u
kestrel=$1
model=$2/tiny-moe-f32.gguf
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# 465152 dense + 65536 KV (64 tokens) + 5 x 98304 (4 slots + staging) = 1022208
"$kestrel" plan -m "$model" --device ref --mem host=1022208 --ctx 64 --json >"$tmp/plan" 2>"$tmp/err" \
  || fail "plan: $(cat "$tmp/err")"
python3 - "$tmp/plan" "$model" <<'PY' || fail "plan --json: $(cat "$tmp/plan")"
import json, sys
got = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
want = {"model": sys.argv[2], "device": "ref", "device_budget_bytes": 1022208,
        "host_budget_bytes": 1022208, "resident_tensors": 31, "resident_bytes": 465152,
        "experts_offloaded": True, "offloaded_tensors": 12, "expert_bytes": 1572864,
        "expert_slot_bytes": 98304, "experts_total": 16, "expert_slots": 4,
        "expert_cache_bytes": 491520, "kv_tokens": 64, "kv_bytes": 65536, "streamed_layers": 0,
        "streamed_bytes": 0, "stream_ring_bytes": 0, "stream_prefetch_distance": 0,
        "stream_staging_bytes": 0,
        "host_resident_tensors": 0, "host_resident_bytes": 0,
        "host_swap_bytes": 0, "device_total_bytes": 1022208}
if got != want:
    for k in sorted(set(got) | set(want)):
        if got.get(k) != want.get(k):
            print("field", k, "got", got.get(k), "want", want.get(k))
    sys.exit(1)
PY

# One byte less: only 3 slots fit, i.e. 2 + staging: still the minimum for top-2.
"$kestrel" plan -m "$model" --device ref --mem host=1022207 --ctx 64 --json >"$tmp/plan" 2>"$tmp/err" \
  || fail "plan one byte less: $(cat "$tmp/err")"
grep -q '"expert_slots":3' "$tmp/plan" || fail "one byte less: $(cat "$tmp/plan")"

# The dense weights and the KV alone exceed 500K.
if "$kestrel" plan -m "$model" --device ref --mem host=500K --ctx 64 >"$tmp/out" 2>"$tmp/err"; then
  fail "plan under 500K succeeded: $(cat "$tmp/out")"
fi
grep -q "RESOURCE_EXHAUSTED" "$tmp/err" || fail "no RESOURCE_EXHAUSTED: $(cat "$tmp/err")"
grep -q "512000 bytes" "$tmp/err" || fail "no budget number: $(cat "$tmp/err")"
grep -q "465152 bytes" "$tmp/err" || fail "no weight number: $(cat "$tmp/err")"
grep -q "65536 bytes" "$tmp/err" || fail "no KV number: $(cat "$tmp/err")"

"$kestrel" plan -m "$model" --mem host=12Q >/dev/null 2>"$tmp/err" && fail "12Q accepted"
grep -q "12Q" "$tmp/err" || fail "bad size not named: $(cat "$tmp/err")"

for dev in ref cpu; do
  "$kestrel" generate -m "$model" --device $dev -p "Once upon a time" -n 24 --temp 0 --ctx 64 \
    >"$tmp/want" 2>"$tmp/err" || fail "generate $dev: $(cat "$tmp/err")"
  "$kestrel" generate -m "$model" --device $dev -p "Once upon a time" -n 24 --temp 0 --ctx 64 \
    --mem host=1022208 --expert-policy lfu >"$tmp/got" 2>"$tmp/err" \
    || fail "generate --mem $dev: $(cat "$tmp/err")"
  cmp -s "$tmp/want" "$tmp/got" || fail "generate --mem $dev differs: $(cat "$tmp/got") vs $(cat "$tmp/want")"
done
echo "offload_cli_test: ok"
