#!/bin/sh
# cuda_no_device_test.sh PATH/TO/kestrel PATH/TO/stories260K.gguf
# On a machine without a usable GPU (no driver, no device, or only GPUs older than sm_80) the
# cuda plugin loads, is listed with 0 devices and a reason that names CUDA (e.g.
# "cudaGetDeviceCount returned cudaErrorInsufficientDriver (35): ..."), nothing crashes, the other
# devices still work, and `kestrel generate --device cuda` fails with a runtime error (exit 1,
# "kestrel: error: ..."), not a crash or a usage error. Exit 77 (skipped) where a CUDA device
# exists (the other `cuda` tests cover that machine) or without python3.
set -u
kestrel=$1
model=$2
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipped"; exit 77; }
out=$("$kestrel" devices --json) || {
  echo "FAIL: kestrel devices --json exited $?" >&2
  exit 1
}
if printf '%s' "$out" | grep -q '"plugin": *"cuda"'; then
  echo "a CUDA device is present: skipped (covered by cuda_conformance_test and golden_cuda)"
  exit 77
fi
printf '%s\n' "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read().splitlines()[-1])
cuda = [p for p in d["plugins"] if p["name"] == "cuda"]
assert cuda, "the cuda plugin is not listed (not built, or not on the plugin path): %r" % d["plugins"]
p = cuda[0]
assert not p["loaded"] and p["device_count"] == 0, p
assert "CUDA" in p["skip_reason"], p["skip_reason"]
assert not any(x["plugin"] == "cuda" for x in d["devices"]), d["devices"]
assert any(x["plugin"] == "ref" for x in d["devices"]), "ref device missing"
print("skip reason:", p["skip_reason"])
' || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$kestrel" generate -m "$model" -p "Once upon a time" -n 4 --temp 0 --device cuda \
  >"$tmp/out" 2>"$tmp/err"
status=$?
if [ "$status" -ne 1 ]; then
  echo "FAIL: kestrel generate --device cuda exited $status (want 1, a runtime error)" >&2
  cat "$tmp/err" >&2
  exit 1
fi
# The error names the device and says why the cuda plugin has none (the plugin's skip reason).
if ! grep -q '^kestrel: error: ' "$tmp/err" || ! grep -q "no device named 'cuda' (plugin 'cuda' was skipped: .*CUDA" "$tmp/err"; then
  echo "FAIL: no clear error naming the cuda device and the reason it is missing on stderr:" >&2
  cat "$tmp/err" >&2
  exit 1
fi
echo "generate --device cuda: $(cat "$tmp/err")"
echo "cuda_no_device_test: ok"
