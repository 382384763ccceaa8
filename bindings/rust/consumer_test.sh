#!/usr/bin/env bash
# A fresh Rust application outside the tree uses the kestrel crate, as the README tells a user to
# (ctest rust_consumer_test, label `bindings`; offline: the crates have no crates.io dependencies).
#
#   consumer_test.sh BUILD_DIR MODEL CMAKE
#
# 1. `cargo new` in a temporary folder, a path dependency on bindings/rust/kestrel, the documented
#    build.rs (rpath from DEP_KESTREL_RS_LIB_DIR) and a main.rs that streams a greedy story.
# 2. KESTREL_LIB_DIR=<build>/lib (absolute): builds; the binary runs from another folder with no
#    LD_LIBRARY_PATH or plugin path and prints the golden text.
# 3. A relative KESTREL_LIB_DIR stops the build with a message saying to make it absolute.
# 4. pkg-config alone: `cmake --install` into a temporary prefix, PKG_CONFIG_PATH, no
#    KESTREL_LIB_DIR: builds and runs the same way.
# Exit 0 pass, 1 fail, 77 skip (no model, no cargo).
set -euo pipefail
build=$(cd "$1" && pwd)
model=$2
cmake=${3:-cmake}
src=$(cd "$(dirname "$0")" && pwd)
[[ -f "$model" ]] || { echo "SKIP: model not found: $model"; exit 77; }
command -v cargo >/dev/null || { echo "SKIP: cargo not found"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kestrel_rust_consumer.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
unset CARGO_TARGET_DIR KESTREL_LIB_DIR KESTREL_PLUGIN_PATH LD_LIBRARY_PATH PKG_CONFIG_PATH
fail() { echo "FAIL: $*" >&2; [[ -f "$tmp/log" ]] && tail -n 40 "$tmp/log" >&2; exit 1; }
want="Once upon a time, there was a little girl named Lily."

cd "$tmp"
cargo new --offline --vcs none --quiet app >"$tmp/log" 2>&1 || fail "cargo new"
cat >>app/Cargo.toml <<TOML
kestrel = { path = "$src/kestrel" }
TOML
cat >app/build.rs <<'RS'
// Bakes the folder of libkestrel.so (found by the kestrel crate) into this program.
fn main() {
    if let Ok(dir) = std::env::var("DEP_KESTREL_RS_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
RS
cat >app/src/main.rs <<'RS'
fn main() -> kestrel::Result<()> {
    let model_path = std::env::args().nth(1).expect("usage: app MODEL");
    let runtime = kestrel::Runtime::new()?;
    let model = runtime.load_model(model_path)?;
    let mut session = model.new_session_with(
        &kestrel::SessionOptions::default().sampler(kestrel::SamplerOptions::greedy()))?;
    print!("Once upon a time");
    session.generate("Once upon a time", &kestrel::GenerateOptions::default().max_new_tokens(12),
                     |_, text| { print!("{text}"); true })?;
    println!();
    Ok(())
}
RS
mkdir -p elsewhere

run_app() {  # $1: what
  (cd "$tmp/elsewhere" && "$tmp/app/target/debug/app" "$model" >"$tmp/out" 2>"$tmp/log") ||
    fail "$1: the program failed"
  grep -qF "$want" "$tmp/out" || fail "$1: not the golden text: $(cat "$tmp/out")"
  echo "  $1: ok ($(head -c 60 "$tmp/out"))"
}

echo "== KESTREL_LIB_DIR=$build/lib"
(cd app && KESTREL_LIB_DIR="$build/lib" cargo build --offline --quiet >"$tmp/log" 2>&1) ||
  fail "cargo build with KESTREL_LIB_DIR"
run_app "KESTREL_LIB_DIR"

echo "== relative KESTREL_LIB_DIR"
if (cd app && KESTREL_LIB_DIR=build/lib cargo build --offline --quiet >"$tmp/log" 2>&1); then
  fail "a relative KESTREL_LIB_DIR was accepted"
fi
grep -q "KESTREL_LIB_DIR=build/lib is a relative path" "$tmp/log" || fail "no clear message for a relative path"
echo "  refused with: $(grep -o 'KESTREL_LIB_DIR=build/lib is a relative path[^;]*' "$tmp/log" | head -n 1)"

echo "== pkg-config (installed into a temporary prefix)"
"$cmake" --install "$build" --prefix "$tmp/prefix" >"$tmp/log" 2>&1 || fail "cmake --install"
pcdir=$(dirname "$(find "$tmp/prefix" -name kestrel.pc | head -n 1)")
rm -rf app/target
(cd app && PKG_CONFIG_PATH="$pcdir" cargo build --offline --quiet >"$tmp/log" 2>&1) ||
  fail "cargo build with pkg-config"
readelf -d app/target/debug/app | grep -q "R.*PATH.*$tmp/prefix" || fail "the program's rpath is not the installed libdir"
run_app "pkg-config"
echo "rust_consumer_test: ok"
