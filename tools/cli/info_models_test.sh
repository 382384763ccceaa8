#!/usr/bin/env bash
# `kestrel info` on the real models of scripts/fetch_models.sh, which this build may not be able
# to run: the command must still describe each file (architecture, hyperparameters, tensor types,
# tokenizer, chat template) and exit 0, and when it reports a file not runnable it must say why.
# Models come from $KESTREL_MODEL_CACHE (default ~/.cache/kestrel/models); a missing one skips
# (exit 77) unless KESTREL_REQUIRE_MODELS=1, which makes it a failure.
set -u
kestrel="$1"
cache="${KESTREL_MODEL_CACHE:-$HOME/.cache/kestrel/models}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# file  architecture  layers  embd  heads  kv_heads  head_dim  tokenizer  chat_template  types
cases=(
  "SmolLM2-135M-Instruct.Q4_1.gguf llama 30 576 9 3 64 gpt2 true Q4_1,Q8_0,F32"
  "gemma-3-270m-q4_k_m.gguf gemma3 18 640 4 1 256 llama false Q4_K,Q6_K,Q5_0,Q8_0,F32"
)
missing=0
for c in "${cases[@]}"; do
  read -r file arch layers embd heads kv head_dim tok chat types <<<"$c"
  model="$cache/$file"
  if [[ ! -f "$model" ]]; then
    echo "missing model $model (run scripts/fetch_models.sh)" >&2
    missing=1
    continue
  fi
  "$kestrel" info -m "$model" --json >"$tmp/out" 2>"$tmp/err" || fail "info --json $file: $(cat "$tmp/err")"
  python3 - "$tmp/out" "$arch" "$layers" "$embd" "$heads" "$kv" "$head_dim" "$tok" "$chat" "$types" <<'PY' || fail "info --json $file"
import json, sys
out, arch, layers, embd, heads, kv, head_dim, tok, chat, types = sys.argv[1:]
j = json.loads(open(out).read().strip().splitlines()[-1])
def eq(key, want):
    if j[key] != want:
        sys.exit(f"{key} = {j[key]!r}, expected {want!r}")
eq("architecture", arch)
eq("n_layers", int(layers)); eq("n_embd", int(embd)); eq("n_heads", int(heads))
eq("n_kv_heads", int(kv)); eq("head_dim", int(head_dim)); eq("tokenizer", tok)
eq("chat_template", chat == "true")
have = {t["type"] for t in j["tensor_types"]}
if have != set(types.split(",")):
    sys.exit(f"tensor types {sorted(have)}, expected {types}")
if j["runnable"] == bool(j["unsupported"]):
    sys.exit(f"runnable {j['runnable']} but unsupported {j['unsupported']}")
print(f"{arch}: runnable={j['runnable']} {j['unsupported']}")
PY
  "$kestrel" info -m "$model" >"$tmp/text" 2>&1 || fail "info $file: $(cat "$tmp/text")"
  grep -q "^runnable:" "$tmp/text" || fail "info $file lacks the runnable line: $(cat "$tmp/text")"
done
if [[ $missing == 1 ]]; then
  [[ "${KESTREL_REQUIRE_MODELS:-0}" == 1 ]] && fail "KESTREL_REQUIRE_MODELS=1 and a model is missing"
  exit 77
fi
echo PASS
