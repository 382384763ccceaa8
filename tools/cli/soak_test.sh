#!/bin/sh
# The short soak (ctest soak_test, labels soak;cli): `kestrel bench --soak` on stories260K with
# 600 requests, 32 in flight, random cancels and deadlines. Every request must end with a result
# or a status, no deadlock, and the JSON must account for every request. The 1 % memory-growth
# criterion belongs to the long run (10,000 requests, docs/RELIABILITY.md): a run this short is
# still warming the allocator, so it is held to 10 %. Under the asan preset LeakSanitizer checks
# the whole run too.
#
#   soak_test.sh PATH/TO/kestrel PATH/TO/stories260K.gguf
set -u
kestrel=$1
model=$2
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipped"; exit 77; }
sh "$(dirname "$0")/../../tests/require_models.sh" "$model" || exit $?
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

status=0
"$kestrel" bench --soak -m "$model" --requests 600 --concurrency 32 -n 24 --watchdog-s 120 \
  --max-rss-growth 0.10 --json >"$tmp/out" 2>"$tmp/err" || status=$?
cat "$tmp/out"
[ "$status" -eq 0 ] || { echo "FAIL: bench --soak exited $status: $(cat "$tmp/err")" >&2; exit 1; }
python3 - "$tmp/out" <<'PY' || { echo "FAIL: bench --soak --json: $(cat "$tmp/out")" >&2; exit 1; }
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert d["mode"] == "soak" and d["ok"] is True and d["deadlock"] is False, d
assert d["requests"] == 600 and d["concurrency"] == 32 and d["n"] == 24, d
assert d["failed"] == 0 and d["rejected"] == 0 and d["unaccounted"] == 0, d
ended = d["finished"] + d["cancelled"] + d["deadline_cancelled"]
assert ended == 600, ("not every request ended", d)
# Both kinds of cancellation really happened (1 in 6 each, drawn per request).
assert d["cancelled"] > 0 and d["deadline_cancelled"] > 0 and d["finished"] > 0, d
assert d["generated_tokens"] > 0 and d["rss_end_bytes"] > 0 and d["rss_warm_bytes"] > 0, d
assert abs(d["max_rss_growth"] - 0.1) < 1e-6 and d["rss_growth"] <= d["max_rss_growth"], d
PY

# Usage errors: exit 2.
for args in "--soak --engine" "--soak --concurrency 1,2" "--requests 5" "--soak -p 4" "--seed 3"; do
  status=0
  # shellcheck disable=SC2086
  "$kestrel" bench -m "$model" $args >/dev/null 2>&1 || status=$?
  [ "$status" -eq 2 ] || { echo "FAIL: bench $args: want exit 2, got $status" >&2; exit 1; }
done
echo "soak_test: ok"
