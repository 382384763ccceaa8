#!/bin/sh
# bench_opencl.sh [BUILD_DIR] [MODELS_DIR] [RUNS]
# Speed of `kestrel generate --device opencl` vs `--device ref`, measured in the same run:
# -n 64 --temp 0 --json, RUNS runs each (default 5), medians of prefill/decode tokens per second
# for stories260K and llama-2-tiny-random. One warm-up run per device and model first, so that
# driver-side kernel compilation (PoCL compiles per kernel on first launch) and the plugin's
# binary cache are not measured. Prints one JSON line per (model, device) and a markdown table.
set -eu
build=${1:-build}
models=${2:-../shared/models}
runs=${3:-5}
kestrel=$build/bin/kestrel
export KESTREL_PLUGIN_PATH=${KESTREL_PLUGIN_PATH:-$build/lib/kestrel/plugins}
command -v python3 >/dev/null 2>&1 || { echo "bench_opencl.sh needs python3" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for model in stories260K llama-2-tiny-random; do
  for dev in ref opencl; do
    "$kestrel" generate -m "$models/$model.gguf" -p "Once upon a time" -n 64 --temp 0 --json \
      --no-echo --device "$dev" >/dev/null 2>&1
    i=0
    while [ "$i" -lt "$runs" ]; do
      "$kestrel" generate -m "$models/$model.gguf" -p "Once upon a time" -n 64 --temp 0 --json \
        --no-echo --device "$dev" 2>/dev/null | tail -n 1 >>"$tmp/$model.$dev.jsonl"
      i=$((i + 1))
    done
  done
done
python3 - "$tmp" <<'PY'
import json, os, statistics, sys
tmp = sys.argv[1]
rows = {}
for name in sorted(os.listdir(tmp)):
    model, dev, _ = name.rsplit(".", 2)
    runs = [json.loads(l) for l in open(os.path.join(tmp, name)) if l.strip()]
    r = {
        "model": model, "device": runs[0]["device"], "runs": len(runs),
        "n_generated": runs[0]["n_generated"],
        "prefill_tok_s": statistics.median(x["prefill_tokens_per_s"] for x in runs),
        "decode_tok_s": statistics.median(x["decode_tokens_per_s"] for x in runs),
        "decode_ms": statistics.median(x["decode_ms"] for x in runs),
    }
    rows[(model, dev)] = r
    print(json.dumps(r))
print()
print("| model | device | prefill tok/s | decode tok/s | decode vs ref |")
print("|---|---|---:|---:|---:|")
for (model, dev), r in sorted(rows.items()):
    base = rows[(model, "ref")]["decode_tok_s"]
    print("| %s | %s | %.0f | %.0f | %.2fx |" % (model, r["device"], r["prefill_tok_s"],
          r["decode_tok_s"], r["decode_tok_s"] / base))
PY
