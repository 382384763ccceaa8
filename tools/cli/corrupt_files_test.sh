#!/bin/sh
# The corrupt-file sets through the CLI (ctest corrupt_files_test, labels cli;fuzz): copies of
# stories260K with truncations, huge counts and lengths, overlapping tensors, tensor offsets past
# the end, bad versions, types and dims must each be refused by `kestrel info` (exit 1, a
# "kestrel: error:" line naming the problem), never by a signal; 120 seeded random bit flips in
# the header may parse (a changed vocab string is still a valid file) but must exit 0 or 1.
# Under the asan preset every run is also checked by ASan + UBSan.
#
#   corrupt_files_test.sh PATH/TO/kestrel PATH/TO/stories260K.gguf
set -u
kestrel=$1
model=$2
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipped"; exit 77; }
sh "$(dirname "$0")/../../tests/require_models.sh" "$model" || exit $?
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
seed=${KESTREL_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "seed $seed (KESTREL_TEST_SEED=$seed reproduces)"

python3 - "$model" "$tmp" "$seed" <<'PY' || { echo "FAIL: cannot write the corrupt files" >&2; exit 1; }
import random, struct, sys
src, out, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(src, "rb").read()

# Walks the header: offsets of the counts, every key/value and every tensor info.
pos = 0
def u32():
    global pos; v = struct.unpack_from("<I", data, pos)[0]; pos += 4; return v
def u64():
    global pos; v = struct.unpack_from("<Q", data, pos)[0]; pos += 8; return v
def string():
    global pos; at = pos; n = u64(); pos += n; return at
sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def value(t):
    global pos
    if t == 8: string()
    elif t == 9:
        et = u32(); n = u64()
        for _ in range(n): value(et)
    else: pos += sizes[t]
assert data[:4] == b"GGUF"
pos = 8
n_tensors_at = pos; n_tensors = u64()
n_kv_at = pos; n_kv = u64()
kv = []
for _ in range(n_kv):
    key_at = string(); t_at = pos; t = u32(); value_at = pos; value(t)
    kv.append((key_at, t, value_at))
tensors = []
for _ in range(n_tensors):
    name_at = string(); nd = u32(); dims_at = pos; pos += 8 * nd; u32(); off_at = pos; u64()
    tensors.append((name_at, nd, dims_at, off_at))
header_end = pos

def put(name, b):
    open(f"{out}/refuse-{name}.gguf", "wb").write(bytes(b))
def patched(at, fmt, v):
    b = bytearray(data); struct.pack_into(fmt, b, at, v); return b

for cut in (0, 3, 4, 7, 8, 15, 23, 24, 40, n_kv_at + 20, kv[3][2], kv[-1][2] + 2,
            tensors[0][0] + 3, tensors[-1][3], header_end, header_end + 100, len(data) // 2,
            len(data) - 1):
    put(f"truncated-{cut}", data[:cut])
put("n_tensors-huge", patched(n_tensors_at, "<Q", 1 << 62))
put("n_kv-huge", patched(n_kv_at, "<Q", (1 << 64) - 1))
put("key-length-huge", patched(kv[0][0], "<Q", 1 << 61))
arrays = [k for k in kv if k[1] == 9]
put("array-length-huge", patched(arrays[0][2] + 4, "<Q", (1 << 63) + 5))
put("value-type-unknown", patched(kv[2][2] - 4, "<I", 1234))  # the type field before the value
put("tensor-name-length-huge", patched(tensors[1][0], "<Q", 1 << 40))
put("tensor-rank-9", patched(tensors[0][0] + 8 + struct.unpack_from("<Q", data, tensors[0][0])[0], "<I", 9))
put("tensor-dim-zero", patched(tensors[0][2], "<Q", 0))
put("tensor-dims-overflow", patched(tensors[0][2], "<Q", 1 << 62))
put("tensor-type-unknown", patched(tensors[0][3] - 4, "<I", 777))
put("tensor-offset-past-end", patched(tensors[-1][3], "<Q", len(data)))
put("tensor-offset-misaligned", patched(tensors[-1][3], "<Q", struct.unpack_from("<Q", data, tensors[-1][3])[0] + 4))
put("tensors-overlap", patched(tensors[1][3], "<Q", struct.unpack_from("<Q", data, tensors[0][3])[0]))
put("magic", b"GGUX" + data[4:])
put("version-1", patched(4, "<I", 1))
put("version-99", patched(4, "<I", 99))

rng = random.Random(seed)
for i in range(120):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        b[rng.randrange(header_end)] = rng.choice([0xFF, 0x00, rng.randrange(256)])
    open(f"{out}/flip-{i}.gguf", "wb").write(bytes(b))
PY

failed=0
refused=0
for f in "$tmp"/refuse-*.gguf; do
  "$kestrel" info -m "$f" --device ref >/dev/null 2>"$tmp/err"
  rc=$?
  if [ "$rc" -ne 1 ] || ! grep -q "^kestrel: error: " "$tmp/err"; then
    echo "FAIL: $(basename "$f"): exit $rc, stderr: $(cat "$tmp/err")" >&2
    failed=1
  else
    refused=$((refused + 1))
  fi
done
parsed=0
flip_refused=0
for f in "$tmp"/flip-*.gguf; do
  "$kestrel" info -m "$f" --device ref >/dev/null 2>"$tmp/err"
  rc=$?
  case $rc in
    0) parsed=$((parsed + 1)) ;;
    1) grep -q "^kestrel: error: " "$tmp/err" || { echo "FAIL: $(basename "$f"): exit 1 without an error line" >&2; failed=1; }
       flip_refused=$((flip_refused + 1)) ;;
    *) echo "FAIL: $(basename "$f") (seed $seed): exit $rc: $(cat "$tmp/err")" >&2; failed=1 ;;
  esac
done
echo "corrupt files: $refused refused as they must be; bit flips: $flip_refused refused, $parsed still valid"
[ "$failed" -eq 0 ] && echo "corrupt_files_test: ok"
exit $failed
