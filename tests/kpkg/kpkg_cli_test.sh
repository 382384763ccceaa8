#!/bin/sh
# The .kpkg package and session state through the `kestrel` tool, every step a new process:
#   pack (with cpu prepared weights and a draft), info on the package (--verify, --json), GGUF and
#   package give the same greedy token_ids; generate --save-state then --load-state continues
#   token-identically to one uninterrupted run (greedy and sampled with the same seed, F16 KV,
#   state saved with the GGUF and resumed with the package); damaged, truncated, foreign states
#   and packages are refused with a message naming what is wrong (exit 1, never a crash).
#
#   kpkg_cli_test.sh PATH/TO/kestrel MODELS_DIR
set -u
kestrel=$1
models=$2
model=$models/stories260K.gguf
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() { echo "FAIL: $*" >&2; failed=1; }

# run EXPECTED_EXIT STDERR_SUBSTRING -- ARGS...: stdout in $tmp/out, stderr in $tmp/err.
run() {
  want=$1 needle=$2
  shift 3
  "$kestrel" "$@" >"$tmp/out" 2>"$tmp/err"
  got=$?
  [ "$got" -eq "$want" ] || fail "kestrel $* exited $got, expected $want; stderr: $(cat "$tmp/err")"
  if [ -n "$needle" ] && ! grep -qF -- "$needle" "$tmp/err"; then
    fail "kestrel $*: stderr lacks '$needle': $(cat "$tmp/err")"
  fi
}
# The token_ids of the JSON line that ends $tmp/out.
ids() { tail -n 1 "$tmp/out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token_ids"])'; }
field() { tail -n 1 "$tmp/out" | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
join() { python3 -c "import sys; print(eval(sys.argv[1]) + eval(sys.argv[2]))" "$1" "$2"; }

# ---- pack and info ----
run 0 "" -- pack -m "$model" --device cpu --draft "$models/stories260K-first4L.gguf" -o "$tmp/s.kpkg" --json
[ "$(field 'd["package"]["model"]["prepared"][0]["plugin"]')" = cpu ] || fail "pack: no cpu prepared set: $(cat "$tmp/out")"
[ "$(field 'd["package"]["draft"]["role"]')" = draft ] || fail "pack: no draft"
[ -e "$tmp/s.kpkg.tmp" ] && fail "pack left its .tmp file behind"
run 0 "" -- info -m "$tmp/s.kpkg" --verify --json
[ "$(field 'd["package"]["checksums_verified"]')" = True ] || fail "info --verify: $(cat "$tmp/out")"
[ "$(field 'd["architecture"]')" = llama ] || fail "info on a package: architecture"
[ "$(field 'd["tokenizer"]')" = llama ] || fail "info on a package: tokenizer"
run 2 "not one" -- info -m "$model" --verify
run 1 "cannot export prepared weights" -- pack -m "$model" --device ref -o "$tmp/r.kpkg"
[ -e "$tmp/r.kpkg" ] && fail "a failed pack left a package"
run 1 "already a .kpkg package" -- pack -m "$tmp/s.kpkg" -o "$tmp/again.kpkg"
run 2 "needs -o/--output" -- pack -m "$model"

# ---- GGUF and package: same greedy ids ----
run 0 "" -- generate -m "$model" -p "Once upon a time" -n 24 --temp 0 --json
expect_ids=$(ids)
for device in cpu ref; do
  run 0 "" -- generate -m "$tmp/s.kpkg" --device $device -p "Once upon a time" -n 24 --temp 0 --json
  [ "$(ids)" = "$expect_ids" ] || fail "package on $device: $(ids) != $expect_ids"
done

# ---- save, then continue in a new process ----
# check NAME FULL_ARGS... : one run of 30 tokens vs 12 saved + 18 resumed.
check() {
  name=$1 resume_model=$2
  shift 2
  run 0 "" -- generate -m "$model" -p "Once upon a time" -n 30 --json "$@"
  full=$(ids)
  run 0 "" -- generate -m "$model" -p "Once upon a time" -n 12 --json --save-state "$tmp/$name.kstate" "$@"
  first=$(ids)
  [ "$(field 'd["saved_state"]')" = "$tmp/$name.kstate" ] || fail "$name: saved_state field"
  run 0 "" -- generate -m "$resume_model" --load-state "$tmp/$name.kstate" -n 18 --json "$@"
  rest=$(ids)
  [ "$(join "$first" "$rest")" = "$full" ] || fail "$name: $first + $rest != $full"
}
check greedy "$model" --temp 0
check sampled "$model" --temp 0.9 --seed 77 --repeat-penalty 1.1
check f16 "$model" --temp 0.7 --seed 3 --kv-type f16
check gguf_to_package "$tmp/s.kpkg" --temp 0

# More prompt after the restored context: the same as one run over the joined prompt's tokens.
run 0 "" -- generate -m "$model" --load-state "$tmp/greedy.kstate" -p " and then" -n 4 --temp 0 --json
[ "$(field 'len(d["token_ids"])')" = 4 ] || fail "--load-state -p: $(cat "$tmp/out")"

# ---- refusals ----
run 1 "fingerprint" -- generate -m "$models/tiny-moe-f32.gguf" --load-state "$tmp/greedy.kstate" -n 2
run 1 "saved as F16 but this session's is F32" -- generate -m "$model" --load-state "$tmp/f16.kstate" -n 2
head -c 1000 "$tmp/greedy.kstate" > "$tmp/short.kstate"
run 1 "truncated" -- generate -m "$model" --load-state "$tmp/short.kstate" -n 2
python3 - "$tmp/greedy.kstate" "$tmp/flipped.kstate" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[len(b) - 100] ^= 0x08
open(sys.argv[2], "wb").write(b)
PY
run 1 "checksum mismatch" -- generate -m "$model" --load-state "$tmp/flipped.kstate" -n 2
run 1 "not a KSTA container" -- generate -m "$model" --load-state "$model" -n 2
run 1 "cannot open" -- generate -m "$model" --load-state "$tmp/missing.kstate" -n 2
head -c 70000 "$tmp/s.kpkg" > "$tmp/short.kpkg"
run 1 "truncated" -- generate -m "$tmp/short.kpkg" -p hi -n 2
python3 - "$tmp/s.kpkg" "$tmp/flipped.kpkg" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[200] ^= 0x01  # inside the manifest
open(sys.argv[2], "wb").write(b)
PY
run 1 "manifest checksum mismatch" -- info -m "$tmp/flipped.kpkg"
python3 - "$tmp/s.kpkg" "$tmp/data_flipped.kpkg" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[65536 + 1000] ^= 0x01  # inside the main data section
open(sys.argv[2], "wb").write(b)
PY
run 1 "checksum mismatch" -- info -m "$tmp/data_flipped.kpkg" --verify

exit $failed
