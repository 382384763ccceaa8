#!/bin/sh
# Smoke test of tools/train_eagle.py: its backward pass against finite differences, then a small
# EAGLE head trained for stories260K from text the model generates (a few sequences and epochs);
# `kestrel bench --spec eagle` with it must keep the plain greedy ids and accept some drafts (a
# head whose layout disagreed with the runtime's would accept next to nothing). Speed and
# acceptance of fully trained heads: docs/perf/speculative.md.
#
#   train_eagle_test.sh PATH/TO/train_eagle.py PATH/TO/kestrel PATH/TO/libkestrel.so MODELS_DIR
set -u
trainer=$1
kestrel=$2
lib=$3
models=$4
python3 -c "import numpy" 2>/dev/null || { echo "python3 with numpy not found: skipped"; exit 77; }
python3 "$trainer" --check-gradients || exit 1
# A sanitizer build's library cannot be loaded into an uninstrumented python (ctypes).
if ldd "$lib" 2>/dev/null | grep -q -e libasan -e libubsan; then
  echo "sanitizer build: python cannot load the instrumented library: skipped"; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$trainer" -m "$models/stories260K.gguf" -o "$tmp/eagle.gguf" --sequences 16 --tokens 80 \
  --epochs 8 --device ref --lib "$lib" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
grep -q "held-out top-1" "$tmp/log" || { cat "$tmp/log"; exit 1; }
"$kestrel" bench -m "$models/stories260K.gguf" --spec eagle --heads "$tmp/eagle.gguf" \
  -p "Once upon a time" -n 48 --reps 1 --warmup 0 --json >"$tmp/out" 2>"$tmp/err" ||
  { cat "$tmp/err"; exit 1; }
cat "$tmp/log"
tail -n 1 "$tmp/out"
tail -n 1 "$tmp/out" | grep -q '"identical":true' || { cat "$tmp/out" "$tmp/err"; exit 1; }
python3 - "$tmp/out" <<'PY' || exit 1
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
if r["mean_accepted"] < 0.3:
    sys.exit(f"train_eagle_test: mean accepted {r['mean_accepted']:.2f} per step: the trained head "
             "does not predict what the model decodes")
PY
exit 0
