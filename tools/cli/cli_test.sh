#!/bin/sh
# End-to-end test of the `kestrel` tool: exit codes, usage errors, and a greedy --json generation
# of stories260K compared with the shared golden token ids.
#
#   cli_test.sh PATH/TO/kestrel PATH/TO/stories260K.gguf
#
# Needs python3 to read the JSON (exits 77 = skipped without it). Plugins are found through
# KESTREL_PLUGIN_PATH, which ctest sets.
set -u
kestrel=$1
model=$2
golden=$(dirname "$model")/stories260K.golden.json
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() { echo "FAIL: $*" >&2; failed=1; }

# expect_exit CODE STDERR_SUBSTRING -- ARGS...
expect_exit() {
  want=$1 needle=$2
  shift 3
  "$kestrel" "$@" >"$tmp/out" 2>"$tmp/err"
  got=$?
  [ "$got" -eq "$want" ] || fail "kestrel $* exited $got, expected $want; stderr: $(cat "$tmp/err")"
  if [ -n "$needle" ] && ! grep -qF -- "$needle" "$tmp/err"; then
    fail "kestrel $*: stderr lacks '$needle': $(cat "$tmp/err")"
  fi
}

expect_exit 0 "" -- --version
grep -q '^kestrel [0-9]' "$tmp/out" || fail "--version printed: $(cat "$tmp/out")"
expect_exit 0 "" -- help generate
grep -q -- '--repeat-last-n' "$tmp/out" || fail "help generate lacks the flag list"
expect_exit 2 "usage:" --
expect_exit 2 "unknown command 'frob'" -- frob
expect_exit 2 "'abc' for -n" -- generate -m "$model" -p hi -n abc
expect_exit 2 "'1.5x' for -n" -- generate -m "$model" -p hi -n 1.5x
expect_exit 2 "needs -p/--prompt" -- generate -m "$model"
expect_exit 2 "does not apply to 'devices'" -- devices -p hi
expect_exit 1 "kestrel: error: NOT_FOUND: " -- generate -m "$tmp/missing.gguf" -p hi
expect_exit 1 "kestrel: error: " -- generate -m "$model" -p hi --device no-such-device

expect_exit 0 "" -- devices --json
python3 - "$tmp/out" <<'PY' || fail "devices --json"
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert d["devices"], "no devices"
assert any(p["loaded"] for p in d["plugins"]), "no loaded plugin"
PY

expect_exit 0 "" -- info -m "$model" --json
python3 - "$tmp/out" <<'PY' || fail "info --json"
import json, sys
d = json.loads(open(sys.argv[1]).read())
assert d["architecture"] == "llama" and d["vocab_size"] == 512 and d["n_layers"] == 5, d
assert sum(t["n_tensors"] for t in d["tensor_types"]) == d["n_tensors"] == 48, d
PY

# Greedy generation: stdout = prompt + streamed text + "\n" + JSON line.
expect_exit 0 "" -- generate -m "$model" -p "Once upon a time" -n 16 --temp 0 --json
python3 - "$tmp/out" "$golden" <<'PY' || fail "generate --json"
import json, sys
out = open(sys.argv[1], encoding="utf-8").read()
golden = json.load(open(sys.argv[2]))["cases"][0]
assert out.endswith("\n"), "stdout must end with a newline"
streamed, _, last = out[:-1].rpartition("\n")
d = json.loads(last)
for key in ("prompt_token_ids", "token_ids", "text", "n_prompt", "n_generated",
            "prefill_tokens_per_s", "decode_tokens_per_s", "prefill_ms", "decode_ms", "device",
            "model", "stop_reason", "seed", "temperature"):
    assert key in d, "missing " + key
assert d["prompt_token_ids"] == golden["prompt_ids"], d["prompt_token_ids"]
assert d["token_ids"] == golden["generated_ids"][:16], d["token_ids"]
assert d["n_prompt"] == len(golden["prompt_ids"]) and d["n_generated"] == 16, d
assert d["stop_reason"] == "max_tokens" and d["temperature"] == 0, d
assert streamed == "Once upon a time" + d["text"], (streamed, d["text"])
assert d["text"] == "".join(golden["generated_pieces"][:16]), d["text"]
PY

# A stop string ends the generation and is not printed.
expect_exit 0 "" -- generate -m "$model" -p "Once upon a time" -n 48 --temp 0 --stop " Lily" --json --no-echo
python3 - "$tmp/out" <<'PY' || fail "generate --stop"
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
d = json.loads(lines[-1])
assert d["stop_reason"] == "stop_string", d["stop_reason"]
assert "Lily" not in d["text"] and d["text"] == ", there was a little girl named", d["text"]
PY

# The prompt from a file (-f) and from stdin (-p -, -f -): one trailing newline dropped, so the
# same golden tokens as -p.
printf 'Once upon a time\n' >"$tmp/prompt.txt"
expect_exit 0 "" -- generate -m "$model" -f "$tmp/prompt.txt" -n 8 --temp 0 --json --no-echo
cp "$tmp/out" "$tmp/from_file"
"$kestrel" generate -m "$model" -p - -n 8 --temp 0 --json --no-echo <"$tmp/prompt.txt" >"$tmp/from_stdin" 2>"$tmp/err" ||
  fail "generate -p - failed: $(cat "$tmp/err")"
"$kestrel" generate -m "$model" -f - -n 8 --temp 0 --json --no-echo <"$tmp/prompt.txt" >"$tmp/from_stdin2" 2>"$tmp/err" ||
  fail "generate -f - failed: $(cat "$tmp/err")"
python3 - "$tmp/from_file" "$tmp/from_stdin" "$tmp/from_stdin2" "$golden" <<'PY' || fail "generate -f / -p -"
import json, sys
golden = json.load(open(sys.argv[4]))["cases"][0]
for path in sys.argv[1:4]:
    d = json.loads(open(path, encoding="utf-8").read().splitlines()[-1])
    assert d["prompt"] == "Once upon a time", (path, d["prompt"])
    assert d["token_ids"] == golden["generated_ids"][:8], (path, d["token_ids"])
PY
expect_exit 1 "cannot read prompt file '$tmp/none.txt': No such file" -- generate -m "$model" -f "$tmp/none.txt"
expect_exit 2 "give the prompt once" -- generate -m "$model" -p hi -f "$tmp/prompt.txt"

# -n -1: until EOS or a full context (here a 24-token context).
expect_exit 0 "" -- generate -m "$model" -p "Once upon a time" -n -1 --ctx 24 --temp 0 --json
python3 - "$tmp/out" <<'PY' || fail "generate -n -1"
import json, sys
d = json.loads(open(sys.argv[1], encoding="utf-8").read().splitlines()[-1])
assert d["stop_reason"] in ("eos", "context_full"), d["stop_reason"]
# the last sampled token is not decoded, so the context holds one fewer
assert d["n_prompt"] + d["n_generated"] <= 25 and d["n_generated"] > 0, d
assert d["max_new_tokens"] == 4294967295, d["max_new_tokens"]
PY

# A run that fails (prompt longer than the context) prints nothing on stdout: no prompt echo.
expect_exit 1 "kestrel: error: " -- generate -m "$model" -p "Once upon a time there was a little girl named Lily who liked to play" --ctx 8
[ ! -s "$tmp/out" ] || fail "a failed generate echoed on stdout: $(cat "$tmp/out")"

# --n-probs: log-probabilities in the JSON; greedy picks the most likely of each top list.
expect_exit 2 "'--n-probs' needs --json" -- generate -m "$model" -p hi --n-probs 3
expect_exit 2 "for --n-probs" -- generate -m "$model" -p hi --n-probs 101 --json
expect_exit 2 "TOKEN_ID+BIAS" -- generate -m "$model" -p hi --logit-bias 12
expect_exit 1 "logit_bias[0].token = 999999" -- generate -m "$model" -p hi --logit-bias 999999+1
expect_exit 0 "" -- generate -m "$model" -p "Once upon a time" -n 8 --temp 0 --n-probs 3 --json
python3 - "$tmp/out" <<'PY' || fail "generate --n-probs"
import json, math, sys
d = json.loads(open(sys.argv[1], encoding="utf-8").read().splitlines()[-1])
lp = d["logprobs"]
assert d["n_probs"] == 3 and len(lp) == d["n_generated"] == len(d["token_ids"]) == 8, d
for e, tok in zip(lp, d["token_ids"]):
    assert e["token"] == tok and e["logprob"] <= 0, e
    assert len(e["top_logprobs"]) == 3, e
    assert e["top_logprobs"][0]["token"] == tok, e  # greedy
    ps = [t["logprob"] for t in e["top_logprobs"]]
    assert ps == sorted(ps, reverse=True) and sum(math.exp(p) for p in ps) <= 1.0001, ps
first = lp[0]["token"]
open(sys.argv[1] + ".first", "w").write(str(first))
PY
first=$(cat "$tmp/out.first")
# --logit-bias ID-inf bans the greedy first token; --ignore-eos with EOS (id 2) forced runs to -n.
expect_exit 0 "" -- generate -m "$model" -p "Once upon a time" -n 4 --temp 0 --logit-bias "$first-inf" --json
python3 - "$tmp/out" "$first" <<'PY' || fail "generate --logit-bias"
import json, sys
d = json.loads(open(sys.argv[1], encoding="utf-8").read().splitlines()[-1])
assert d["token_ids"][0] != int(sys.argv[2]), d["token_ids"]
assert d["logit_bias"] == [[int(sys.argv[2]), None]], d["logit_bias"]
PY
expect_exit 0 "" -- generate -m "$model" -p "Once upon a time" -n 5 --temp 0 --logit-bias 2+100 --json
python3 - "$tmp/out" <<'PY' || fail "generate --logit-bias EOS"
import json, sys
d = json.loads(open(sys.argv[1], encoding="utf-8").read().splitlines()[-1])
assert d["stop_reason"] == "eos" and d["n_generated"] == 0, d
PY
expect_exit 0 "" -- generate -m "$model" -p "Once upon a time" -n 5 --temp 0 --logit-bias 2+100 --ignore-eos --json
python3 - "$tmp/out" <<'PY' || fail "generate --ignore-eos"
import json, sys
d = json.loads(open(sys.argv[1], encoding="utf-8").read().splitlines()[-1])
assert d["stop_reason"] == "max_tokens" and d["n_generated"] == 5 and d["ignore_eos"] is True, d
assert 2 not in d["token_ids"], d
PY

# Constrained output: --grammar FILE, --json-schema FILE, --json-object; errors name the position.
printf 'root ::= "The " ("cat" | "dog") " is " [0-9] "."\n' >"$tmp/g.gbnf"
expect_exit 0 "" -- generate -m "$model" -p "Once upon a time" -n 20 --temp 0.9 --seed 4 --grammar "$tmp/g.gbnf" --no-echo --json
python3 - "$tmp/out" <<'PY' || fail "generate --grammar"
import json, re, sys
d = json.loads(open(sys.argv[1], encoding="utf-8").read().splitlines()[-1])
assert d["stop_reason"] == "eos" and re.fullmatch(r"The (cat|dog) is [0-9]\.", d["text"]), d
PY
printf '{"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}}, "required": ["ok", "n"]}' >"$tmp/s.json"
expect_exit 0 "" -- generate -m "$model" -p "Lily" -n 100 --temp 0 --json-schema "$tmp/s.json" --no-echo --json
python3 - "$tmp/out" <<'PY' || fail "generate --json-schema"
import json, sys
d = json.loads(open(sys.argv[1], encoding="utf-8").read().splitlines()[-1])
v = json.loads(d["text"])
assert d["stop_reason"] == "eos" and set(v) == {"ok", "n"} and isinstance(v["ok"], bool) and isinstance(v["n"], int), d
PY
expect_exit 0 "" -- generate -m "$model" -p "Lily" -n 100 --temp 0 --json-object --no-echo
printf 'root ::= "a" [z-a]\n' >"$tmp/bad.gbnf"
expect_exit 1 "grammar line 1, column 15" -- generate -m "$model" -p hi --grammar "$tmp/bad.gbnf"
[ ! -s "$tmp/out" ] || fail "a refused grammar printed: $(cat "$tmp/out")"
expect_exit 1 "cannot read grammar file" -- generate -m "$model" -p hi --grammar "$tmp/none.gbnf"
expect_exit 2 "exclude each other" -- generate -m "$model" -p hi --grammar "$tmp/g.gbnf" --json-object

# embed: a unit vector of n_embd numbers; mean and last pooling differ.
expect_exit 2 "'max' for --pooling" -- embed -m "$model" -p hi --pooling max
expect_exit 2 "'embed' needs -p/--prompt" -- embed -m "$model"
expect_exit 0 "" -- embed -m "$model" -p "Once upon a time" --json
cp "$tmp/out" "$tmp/mean.json"
expect_exit 0 "" -- embed -m "$model" -p "Once upon a time" --pooling last
python3 - "$tmp/mean.json" "$tmp/out" <<'PY' || fail "embed"
import json, math, sys
d = json.loads(open(sys.argv[1]).read())
last = [float(x) for x in open(sys.argv[2]).read().split()]
v = d["embedding"]
assert d["pooling"] == "mean" and d["n_embd"] == len(v) == len(last) and d["n_tokens"] == 5, d
assert abs(sum(x * x for x in v) - 1) < 1e-4 and abs(sum(x * x for x in last) - 1) < 1e-4
assert sum(a * b for a, b in zip(v, last)) < 0.9999
PY

if [ "$failed" -ne 0 ]; then exit 1; fi
echo "cli_test: ok"
