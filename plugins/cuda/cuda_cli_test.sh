#!/bin/sh
# cuda_cli_test.sh PATH/TO/kestrel PATH/TO/stories260K.gguf
# `kestrel generate --device cuda --json` (and --device cuda:0) runs on the CUDA device,
# says so in the JSON `device` field, and generates llama.cpp's tokens. Exit 77 (skipped) without
# a CUDA device or python3.
set -u
kestrel=$1
model=$2
golden=$(dirname "$model")/stories260K.golden.json
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipped"; exit 77; }
devices=$("$kestrel" devices --json) || { echo "FAIL: kestrel devices --json" >&2; exit 1; }
if ! printf '%s' "$devices" | grep -q '"plugin": *"cuda"'; then
  echo "no CUDA device: skipped"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
for dev in cuda cuda:0; do
  if ! "$kestrel" generate -m "$model" -p "Once upon a time" -n 16 --temp 0 --json --no-echo \
      --device "$dev" >"$tmp/out" 2>"$tmp/err"; then
    echo "FAIL: kestrel generate --device $dev: $(cat "$tmp/err")" >&2
    failed=1
    continue
  fi
  python3 - "$tmp/out" "$golden" <<'PY' || { echo "FAIL: --device $dev" >&2; failed=1; }
import json, sys
d = json.loads(open(sys.argv[1], encoding="utf-8").read().splitlines()[-1])
golden = json.load(open(sys.argv[2]))["cases"][0]
assert d["device"].startswith("cuda"), "device field: %r" % d["device"]
assert d["token_ids"] == golden["generated_ids"][:16], d["token_ids"]
PY
done
[ "$failed" -eq 0 ] || exit 1
echo "cuda_cli_test: ok"
