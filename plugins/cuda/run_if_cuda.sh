#!/bin/sh
# run_if_cuda.sh PATH/TO/kestrel COMMAND [ARGS...]
# Runs COMMAND when the runtime finds a CUDA device (through `kestrel devices --json`), else
# exits 77 (ctest: skipped) saying why. Used to run the shared golden suite on --device cuda.
kestrel=$1
shift
out=$("$kestrel" devices --json 2>&1) || { echo "kestrel devices failed: $out" >&2; exit 1; }
if ! printf '%s' "$out" | grep -q '"plugin": *"cuda"'; then
  reason=$(printf '%s' "$out" | sed -n 's/.*"name":"cuda"[^}]*"skip_reason":"\([^"]*\)".*/\1/p')
  echo "no CUDA device (skipped): ${reason:-the cuda plugin is not on the plugin path}"
  exit 77
fi
exec "$@"
