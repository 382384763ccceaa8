#!/usr/bin/env bash
# A real model's golden file through the CLI (issue 12): `kestrel generate --json` on the golden
# prompts (text in, --special for the chat-formatted cases; the tokenizer's prompt ids checked
# against the file's), --device ref token-exact on the first REF_TOKENS generated ids of cases 1
# and 4 (ref is slow on these models; the C API tests cover every case), --device cpu on every case
# with the leading-agreement rule (>= 90% of llama.cpp's sum over the cases).
#
#   golden_cli_test.sh PATH/TO/kestrel PATH/TO/GOLDEN.json MODEL_FILE
#
# The model: $KESTREL_MODEL_CACHE/MODEL_FILE (default cache ~/.cache/kestrel/models; for Gemma 3,
# $KESTREL_GEMMA3_MODEL overrides the path). REF_TOKENS: $KESTREL_MODELS_REF_TOKENS (Gemma 3:
# $KESTREL_GEMMA3_REF_TOKENS), default 8. Missing: exit 1 when KESTREL_REQUIRE_MODELS=1, else 77.
set -u
kestrel=$1
golden=$2
model_file=$3
cache=${KESTREL_MODEL_CACHE:-$HOME/.cache/kestrel/models}
model=$cache/$model_file
ref_tokens=${KESTREL_MODELS_REF_TOKENS:-8}
if [[ $model_file == gemma-3-270m-q4_k_m.gguf ]]; then
  model=${KESTREL_GEMMA3_MODEL:-$model}
  ref_tokens=${KESTREL_GEMMA3_REF_TOKENS:-$ref_tokens}
fi
if [[ ! -f "$model" ]]; then
  echo "missing model $model (run scripts/fetch_models.sh)" >&2
  [[ "${KESTREL_REQUIRE_MODELS:-0}" == 1 ]] && { echo "FAIL: KESTREL_REQUIRE_MODELS=1" >&2; exit 1; }
  exit 77
fi
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 - "$kestrel" "$model" "$golden" "$ref_tokens" "$tmp" <<'PY'
import json, subprocess, sys
kestrel, model, golden_path, ref_tokens, tmp = sys.argv[1:]
golden = json.load(open(golden_path))
failed = False

def generate(device, case, n):
    prompt = case["prompt"]
    special = ["--special"] if case.get("parse_special") else []
    out = subprocess.run([kestrel, "generate", "-m", model, "-p", prompt, "-n", str(n), "--temp", "0",
                          "--device", device, "--ctx", "128", "--json", "--no-echo"] + special,
                         capture_output=True, text=True)
    if out.returncode != 0 and "cannot compute with" in out.stderr:
        # Until the K-quant formats land this build cannot run the file: a skip naming why.
        print(f"this build cannot run {model}: {out.stderr.strip()}")
        sys.exit(77)
    if out.returncode != 0:
        sys.exit(f"FAIL: kestrel generate --device {device} exited {out.returncode}: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])

for i in (0, 3):
    c = golden["cases"][i]
    want = c["generated_ids"][:int(ref_tokens)]
    j = generate("ref", c, len(want))
    if j["prompt_token_ids"] != c["prompt_ids"]:
        print(f"FAIL: ref '{c['prompt']}': prompt ids {j['prompt_token_ids']} != {c['prompt_ids']}")
        failed = True
    if j["token_ids"] != want:
        print(f"FAIL: ref '{c['prompt']}': {j['token_ids']} != {want}")
        failed = True
agree = llamacpp = 0
for c in golden["cases"]:
    want = c["generated_ids"]
    j = generate("cpu", c, len(want))
    got = j["token_ids"]
    lead = 0
    while lead < min(len(got), len(want)) and got[lead] == want[lead]:
        lead += 1
    agree += lead
    llamacpp += c["llamacpp_quantized_agreement"]
    print(f"cpu '{c['prompt']}': {lead} leading ids agree (llama.cpp {c['llamacpp_quantized_agreement']})")
print(f"cpu: {agree} leading ids agree over the cases, llama.cpp {llamacpp}")
if agree * 10 < llamacpp * 9:
    print(f"FAIL: cpu agreement {agree} < 90% of llama.cpp's {llamacpp}")
    failed = True
sys.exit(1 if failed else 0)
PY
status=$?
[[ $status == 0 ]] && echo PASS
exit $status
