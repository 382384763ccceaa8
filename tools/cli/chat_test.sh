#!/bin/sh
# End-to-end test of `kestrel tokenize`, `generate --chat`, `generate --special` and `kestrel chat`.
#
#   chat_test.sh PATH/TO/kestrel PATH/TO/kestrel_test_set_chat_template PATH/TO/stories260K.gguf
#
# stories260K has no chat template; the test gives a copy one that renders the conversation as
# plain continued text, so the templated prompt must reproduce the golden greedy ids. With the real
# SmolLM2 GGUF in $KESTREL_MODEL_CACHE (default ~/.cache/kestrel/models), `tokenize --special`
# must give llama.cpp's ids of the corpus's chat prompt (missing: fails when
# KESTREL_REQUIRE_MODELS=1, else that part is skipped with a message). Needs python3 (77 without).
set -u
kestrel=$1
set_template=$2
model=$3
models_dir=$(dirname "$model")
golden=$models_dir/stories260K.golden.json
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() { echo "FAIL: $*" >&2; failed=1; }

run() {  # run EXPECTED_EXIT ARGS... (stdin from $tmp/in if present)
  want=$1
  shift
  if [ -f "$tmp/in" ]; then "$kestrel" "$@" <"$tmp/in" >"$tmp/out" 2>"$tmp/err"; else "$kestrel" "$@" >"$tmp/out" 2>"$tmp/err"; fi
  got=$?
  [ "$got" -eq "$want" ] || fail "kestrel $* exited $got, expected $want; stderr: $(cat "$tmp/err")"
}

# tokenize --json: the golden prompt ids; pieces spell BOS out.
run 0 tokenize -m "$model" -p "Once upon a time" --json
python3 - "$tmp/out" "$golden" <<'PY' || fail "tokenize --json"
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
golden = json.load(open(sys.argv[2]))["cases"][0]
assert set(d) == {"ids", "pieces"}, d.keys()
assert d["ids"] == golden["prompt_ids"], d
assert d["pieces"][0] == "<s>" and "".join(d["pieces"][1:]) == " Once upon a time", d["pieces"]
PY
run 0 tokenize -m "$model" -p "a</s>" --special --json
python3 - "$tmp/out" <<'PY' || fail "tokenize --special"
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert d["ids"][-1] == 2 and d["pieces"][-1] == "</s>", d
PY
run 0 tokenize -m "$model" -p "a</s>"
grep -q "^ *2 -> " "$tmp/out" && fail "without --special </s> must not be token 2: $(cat "$tmp/out")"

# No template in stories260K: --chat fails naming the key.
run 1 generate -m "$model" -p hi --chat
grep -qF "tokenizer.chat_template" "$tmp/err" || fail "generate --chat without a template: $(cat "$tmp/err")"
run 2 generate -m "$model" -p hi --system x
grep -qF -- "'--system' needs --chat" "$tmp/err" || fail "--system without --chat: $(cat "$tmp/err")"

# A copy with a template: BOS text, then the messages' contents.
"$set_template" "$model" "$tmp/chat.gguf" '{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}' ||
  { fail "could not write the templated copy"; exit 1; }
run 0 generate -m "$tmp/chat.gguf" -p "Once upon a time" --chat -n 16 --temp 0 --json --no-echo
python3 - "$tmp/out" "$golden" <<'PY' || fail "generate --chat"
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
golden = json.load(open(sys.argv[2]))["cases"][0]
assert d["prompt"] == "<s>Once upon a time", d["prompt"]
assert d["prompt_token_ids"] == golden["prompt_ids"], d["prompt_token_ids"]  # one BOS, from the template
assert d["token_ids"] == golden["generated_ids"][:16], d["token_ids"]
PY

# chat: two turns in one session; the first reply is the golden continuation.
printf 'Once upon a time\n/reset\nOnce upon a time\n and\n' >"$tmp/in"
run 0 chat -m "$tmp/chat.gguf" -n 8 --temp 0
python3 - "$tmp/out" "$golden" <<'PY' || fail "chat"
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
golden = json.load(open(sys.argv[2]))["cases"][0]
first = "".join(golden["generated_pieces"][:8])
assert len(lines) == 3, lines
assert lines[0] == first and lines[1] == first, (lines, first)  # /reset starts over: same reply
assert lines[2].strip(), lines
PY
rm -f "$tmp/in"

# The real SmolLM2 vocab: llama.cpp's ids of the corpus's chat prompt.
smol=${KESTREL_MODEL_CACHE:-$HOME/.cache/kestrel/models}/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$smol" ]; then
  prompt=$(python3 -c 'import json,sys; c=[c for c in json.load(open(sys.argv[1]))["cases"] if c["parse_special"]][0]; sys.stdout.write(c["prompt"])' "$models_dir/tokenizer-smollm2.json")
  run 0 tokenize -m "$smol" -p "$prompt
" --special --json
  python3 - "$tmp/out" "$models_dir/tokenizer-smollm2.json" <<'PY' || fail "tokenize SmolLM2 --special"
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
c = [c for c in json.load(open(sys.argv[2]))["cases"] if c["parse_special"]][0]
assert d["ids"] == c["prompt_ids"], (d["ids"], c["prompt_ids"])
assert d["pieces"][0] == "<|im_start|>", d["pieces"]
PY
elif [ "${KESTREL_REQUIRE_MODELS:-0}" = 1 ]; then
  fail "real model missing: $smol (KESTREL_REQUIRE_MODELS=1)"
else
  echo "skipped the SmolLM2 part: $smol missing (run scripts/fetch_models.sh)"
fi

if [ "$failed" -ne 0 ]; then exit 1; fi
echo "chat_test: ok"
