#!/bin/sh
# End-to-end test of speculative decoding on the command line with stories260K and its 4-layer
# draft: `generate --spec` prints the golden text and a `speculative` JSON object, `bench --spec`
# prints (last line) exactly the six contract fields with identical = true, and bad --spec
# usage is refused with exit 2.
#
#   spec_cli_test.sh PATH/TO/kestrel PATH/TO/models
#
# Needs python3 to read the JSON (exits 77 = skipped without it). Speed is never asserted.
set -u
kestrel=$1
models=$2
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() { echo "FAIL: $*" >&2; failed=1; }

"$kestrel" generate -m "$models/stories260K.gguf" -p "Once upon a time" -n 20 --temp 0 --spec draft \
  --draft-model "$models/stories260K-first4L.gguf" --spec-max 4 --json --no-echo >"$tmp/out" 2>"$tmp/err" ||
  fail "generate --spec exited $?: $(cat "$tmp/err")"
python3 - "$tmp/out" <<'PY' || fail "generate --spec --json: $(cat "$tmp/out")"
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert d["text"].startswith(", there was a little girl named Lily"), d["text"]
s = d["speculative"]
assert s["method"] == "draft" and s["drafted"] > 0 and s["accepted"] > 0, s
assert s["by_method"]["draft"]["drafted"] == s["drafted"], s
PY

"$kestrel" bench -m "$models/stories260K.gguf" --spec ngram -p "Once upon a time, there was a little girl. Once upon a time, there was a little" \
  -n 16 --reps 1 --warmup 0 --json >"$tmp/out" 2>"$tmp/err" || fail "bench --spec exited $?: $(cat "$tmp/err")"
python3 - "$tmp/out" <<'PY' || fail "bench --spec --json: $(cat "$tmp/out")"
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert sorted(d) == sorted(["spec_method", "decode_tokens_per_s", "plain_decode_tokens_per_s",
                            "speedup", "mean_accepted", "identical"]), sorted(d)
assert d["spec_method"] == "ngram" and d["identical"] is True, d
assert d["decode_tokens_per_s"] > 0 and d["plain_decode_tokens_per_s"] > 0 and d["speedup"] > 0, d
assert d["mean_accepted"] > 0, d
PY

printf 'Once upon a time' >"$tmp/prompt"
"$kestrel" bench -m "$models/stories260K.gguf" --spec auto --prompt-file "$tmp/prompt" -n 8 --reps 1 \
  --warmup 0 --json >"$tmp/out" 2>"$tmp/err" || fail "bench --spec --prompt-file exited $?: $(cat "$tmp/err")"
tail -n 1 "$tmp/out" | grep -q '"identical":true' || fail "--prompt-file: $(cat "$tmp/out")"

# The engine form: speculating requests inside continuous batching vs a plain engine.
"$kestrel" bench -m "$models/stories260K.gguf" --spec lookahead --engine --concurrency 1,3 -p "Once upon a time" \
  -n 12 --reps 1 --warmup 0 --json >"$tmp/out" 2>"$tmp/err" || fail "bench --spec --engine exited $?: $(cat "$tmp/err")"
python3 - "$tmp/out" <<'PY' || fail "bench --spec --engine --json: $(cat "$tmp/out")"
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert d["identical"] is True and d["concurrency"] == 3 and len(d["runs"]) == 2, d
assert all(r["decode_tokens_per_s"] > 0 and r["plain_decode_tokens_per_s"] > 0 for r in d["runs"]), d
PY

for bad in "--spec fast" "--spec-max 3" "--spec ngram --spec-max 0" "--spec ngram --membw"; do
  # shellcheck disable=SC2086
  "$kestrel" bench -m "$models/stories260K.gguf" -p "x" $bad >"$tmp/out" 2>"$tmp/err"
  [ $? -eq 2 ] || fail "'bench $bad' should be a usage error: $(cat "$tmp/err")"
done
"$kestrel" generate -m "$models/stories260K.gguf" -p x --spec draft \
  --draft-model "$models/llama-2-tiny-random.gguf" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "vocab" "$tmp/err" || fail "another vocab's draft: $(cat "$tmp/err")"
exit $failed
