#!/bin/sh
# kestrel-synth as a program: usage errors exit 2 with a message naming the problem; a tiny custom
# model is written and `kestrel info` reads it back.
#
#   synth_cli_test.sh PATH/TO/kestrel-synth PATH/TO/kestrel
set -u
synth=$1
kestrel=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() { echo "FAIL: $*" >&2; failed=1; }

expect_exit() {  # expect_exit CODE STDERR_SUBSTRING -- ARGS...
  want=$1 needle=$2
  shift 3
  "$synth" "$@" >"$tmp/out" 2>"$tmp/err"
  got=$?
  [ "$got" -eq "$want" ] || fail "kestrel-synth $* exited $got, expected $want; stderr: $(cat "$tmp/err")"
  if [ -n "$needle" ] && ! grep -qF -- "$needle" "$tmp/err"; then
    fail "kestrel-synth $*: stderr lacks '$needle': $(cat "$tmp/err")"
  fi
}

expect_exit 0 "" -- --help
grep -q -- '--shape' "$tmp/out" || fail "--help lacks --shape"
expect_exit 2 "missing --shape" -- -o "$tmp/x.gguf"
expect_exit 2 "unknown shape 'nope'" -- --shape nope -o "$tmp/x.gguf"
expect_exit 2 "'Q7_K' for --type" -- --shape tinyllama-1.1b --type Q7_K -o "$tmp/x.gguf"
expect_exit 2 "must be a multiple of 256 for Q4_K" -- --shape custom --dim 128 --layers 1 --heads 4 \
  --ffn 256 --type Q4_K_M -o "$tmp/x.gguf"
expect_exit 2 "--dim 48" -- --shape custom --dim 48 --layers 1 --heads 4 --ffn 64 -o "$tmp/x.gguf"
expect_exit 1 "kestrel-synth: error:" -- --shape custom --dim 64 --layers 1 --heads 4 --ffn 64 \
  --vocab 300 -o "$tmp/no/such/dir/x.gguf"
expect_exit 1 "not a regular file" -- --shape custom --dim 64 --layers 1 --heads 4 --ffn 64 \
  --vocab 300 -o "$tmp"
expect_exit 0 "wrote" -- --shape custom --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 \
  --vocab 1000 --type Q4_0 --seed 5 -o "$tmp/t.gguf"
[ -s "$tmp/t.gguf" ] || fail "no output file"
"$kestrel" info -m "$tmp/t.gguf" --device ref >"$tmp/info" 2>&1 || fail "kestrel info: $(cat "$tmp/info")"
grep -q "Q4_0" "$tmp/info" || fail "kestrel info lacks Q4_0: $(cat "$tmp/info")"
# The llama-quantize mix: Q4_K matrices, Q6_K output (and attn_v / ffn_down of some layers).
expect_exit 0 "wrote" -- --shape custom --dim 256 --layers 2 --heads 4 --kv-heads 2 --ffn 512 \
  --vocab 1000 --type Q4_K_M --seed 5 -o "$tmp/k.gguf"
"$kestrel" info -m "$tmp/k.gguf" --device ref >"$tmp/info" 2>&1 || fail "kestrel info: $(cat "$tmp/info")"
for t in Q4_K Q6_K; do
  grep -q "$t" "$tmp/info" || fail "kestrel info lacks $t: $(cat "$tmp/info")"
done

if [ "$failed" -ne 0 ]; then exit 1; fi
echo "synth_cli_test: ok"
