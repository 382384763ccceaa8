#!/bin/sh
# device_cli_test.sh PLUGIN NAME PATH/TO/kestrel PATH/TO/stories260K.gguf
# `kestrel generate --device PLUGIN --json` (and --device PLUGIN:0) runs on that plugin's device
# ("opencl", "cuda"; NAME is how messages call it: "OpenCL", "CUDA"), says so in the JSON `device`
# field, and generates llama.cpp's tokens. Exit 77 (skipped) without such a device or python3.
set -u
plugin=$1
name=$2
kestrel=$3
model=$4
golden=$(dirname "$model")/stories260K.golden.json
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipped"; exit 77; }
devices=$("$kestrel" devices --json) || { echo "FAIL: kestrel devices --json" >&2; exit 1; }
if ! printf '%s' "$devices" | grep -q "\"plugin\": *\"$plugin\""; then
  echo "no $name device: skipped"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
for dev in "$plugin" "$plugin:0"; do
  if ! "$kestrel" generate -m "$model" -p "Once upon a time" -n 16 --temp 0 --json --no-echo \
      --device "$dev" >"$tmp/out" 2>"$tmp/err"; then
    echo "FAIL: kestrel generate --device $dev: $(cat "$tmp/err")" >&2
    failed=1
    continue
  fi
  python3 - "$tmp/out" "$golden" "$plugin" <<'PY' || { echo "FAIL: --device $dev" >&2; failed=1; }
import json, sys
d = json.loads(open(sys.argv[1], encoding="utf-8").read().splitlines()[-1])
golden = json.load(open(sys.argv[2]))["cases"][0]
assert d["device"].startswith(sys.argv[3]), "device field: %r" % d["device"]
assert d["token_ids"] == golden["generated_ids"][:16], d["token_ids"]
PY
done
[ "$failed" -eq 0 ] || exit 1
echo "${plugin}_cli_test: ok"
