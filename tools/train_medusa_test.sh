#!/bin/sh
# Smoke test of tools/train_medusa.py: trains small Medusa heads for stories260K from text the
# model generates (a few sequences, a few epochs), then `kestrel bench --spec medusa` with them
# must keep the plain greedy ids. Acceptance itself is measured in docs/perf/speculative.md.
#
#   train_medusa_test.sh PATH/TO/train_medusa.py PATH/TO/kestrel PATH/TO/libkestrel.so MODELS_DIR
set -u
trainer=$1
kestrel=$2
lib=$3
models=$4
python3 -c "import numpy" 2>/dev/null || { echo "python3 with numpy not found: skipped"; exit 77; }
# A sanitizer build's library cannot be loaded into an uninstrumented python (ctypes).
if ldd "$lib" 2>/dev/null | grep -q -e libasan -e libubsan; then
  echo "sanitizer build: python cannot load the instrumented library: skipped"; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$trainer" -m "$models/stories260K.gguf" -o "$tmp/heads.gguf" --heads 2 --sequences 8 \
  --tokens 40 --epochs 3 --device ref --lib "$lib" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
grep -q "head 2: held-out top-1" "$tmp/log" || { cat "$tmp/log"; exit 1; }
"$kestrel" bench -m "$models/stories260K.gguf" --spec medusa --heads "$tmp/heads.gguf" \
  -p "Once upon a time" -n 24 --reps 1 --warmup 0 --json >"$tmp/out" 2>"$tmp/err" ||
  { cat "$tmp/err"; exit 1; }
tail -n 1 "$tmp/out" | grep -q '"identical":true' || { cat "$tmp/out" "$tmp/err"; exit 1; }
exit 0
