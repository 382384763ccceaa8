#!/bin/sh
# run_if_device.sh PLUGIN NAME PATH/TO/kestrel COMMAND [ARGS...]
# Runs COMMAND when the runtime finds a device of plugin PLUGIN ("opencl", "cuda"; NAME is how
# messages call it: "OpenCL", "CUDA") through `kestrel devices --json`, else exits 77 (ctest:
# skipped) saying why. Used to run the shared golden suite on --device PLUGIN.
plugin=$1
name=$2
kestrel=$3
shift 3
out=$("$kestrel" devices --json 2>&1) || { echo "kestrel devices failed: $out" >&2; exit 1; }
if ! printf '%s' "$out" | grep -q "\"plugin\": *\"$plugin\""; then
  reason=$(printf '%s' "$out" | sed -n "s/.*\"name\":\"$plugin\"[^}]*\"skip_reason\":\"\([^\"]*\)\".*/\1/p")
  echo "no $name device (skipped): ${reason:-the $plugin plugin is not on the plugin path}"
  exit 77
fi
exec "$@"
