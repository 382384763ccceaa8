#!/bin/sh
# opencl_no_platform_test.sh PATH/TO/kestrel EMPTY_VENDOR_DIR
# With the ICD loader pointed at an empty vendor folder there is no OpenCL platform: the opencl
# plugin loads, reports 0 devices with the reason (clGetPlatformIDs ... -1001 ...), nothing
# crashes, and the other devices still work. Exit 77 (skipped) without python3.
set -u
kestrel=$1
vendors=$2
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipped"; exit 77; }
mkdir -p "$vendors"
out=$(OCL_ICD_VENDORS="$vendors" OCL_ICD_FILENAMES= "$kestrel" devices --json) || {
  echo "FAIL: kestrel devices --json exited $?" >&2
  exit 1
}
printf '%s\n' "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read().splitlines()[-1])
ocl = [p for p in d["plugins"] if p["name"] == "opencl"]
assert ocl, "the opencl plugin is not listed: %r" % d["plugins"]
p = ocl[0]
assert not p["loaded"] and p["device_count"] == 0, p
assert "clGetPlatformIDs returned -1001" in p["skip_reason"], p["skip_reason"]
assert "no OpenCL platform" in p["skip_reason"], p["skip_reason"]
assert not any(x["plugin"] == "opencl" for x in d["devices"]), d["devices"]
assert any(x["plugin"] == "ref" for x in d["devices"]), "ref device missing"
print("skip reason:", p["skip_reason"])
' || exit 1
echo "opencl_no_platform_test: ok"
