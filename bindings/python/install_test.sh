#!/usr/bin/env bash
# `pip install bindings/python` as a user does it, then `import kestrel` from elsewhere with no
# variable set (ctest python_install_test, label `bindings`). Offline: the package has no
# dependencies and is built with PYTHON's own setuptools and wheel (--no-build-isolation; the
# scripts/setup_python.sh venv has them), into a temporary --target folder.
#
#   install_test.sh PYTHON BUILD_DIR MODEL CMAKE
#
# 1. KESTREL_LIB_DIR=<build>/lib at install time: the package records the folder and later
#    imports find the build's library.
# 2. An installed Kestrel (cmake --install into a temporary prefix), PKG_CONFIG_PATH only.
# 3. A relative KESTREL_LIB_DIR is refused at install time with a message.
# Each installed package generates the golden greedy text of stories260K.
# Exit 0 pass, 1 fail, 77 skip (no model; setuptools or wheel missing).
set -euo pipefail
python=$1
build=$(cd "$2" && pwd)
model=$3
cmake=${4:-cmake}
src=$(cd "$(dirname "$0")" && pwd)
[[ -f "$model" ]] || { echo "SKIP: model not found: $model"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kestrel_python_install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
unset KESTREL_LIB_DIR KESTREL_LIBRARY KESTREL_PLUGIN_PATH PKG_CONFIG_PATH PYTHONPATH
fail() { echo "FAIL: $*" >&2; [[ -f "$tmp/log" ]] && tail -n 30 "$tmp/log" >&2; exit 1; }
want="Once upon a time, there was a little girl named Lily."
mkdir -p "$tmp/elsewhere"

# A copy of the package, so the build does not write into the source tree.
cp -r "$src" "$tmp/pkg"
rm -rf "$tmp/pkg/build" "$tmp/pkg/src/kestrel.egg-info" "$tmp/pkg/src/kestrel/_build_config.py"

"$python" -c "import setuptools, wheel" 2>/dev/null ||
  { echo "SKIP: $python lacks setuptools or wheel (run scripts/setup_python.sh)"; exit 77; }

pip_install() {
  rm -rf "$tmp/site"
  "$python" -m pip install --quiet --no-index --no-deps --no-build-isolation \
    --disable-pip-version-check --target "$tmp/site" "$tmp/pkg"
}

check_import() {  # $1: what, $2: expected library folder
  (cd "$tmp/elsewhere" && PYTHONPATH="$tmp/site" "$python" - "$model" >"$tmp/out" 2>"$tmp/log" <<'PY'
import sys
import kestrel
print(kestrel.LIBRARY_PATH)
model = kestrel.Runtime().load_model(sys.argv[1])
session = model.new_session(temperature=0)
print("Once upon a time" + "".join(session.generate("Once upon a time", max_new_tokens=12)))
PY
  ) || fail "$1: import kestrel and generate"
  grep -qF "$want" "$tmp/out" || fail "$1: not the golden text: $(cat "$tmp/out")"
  [[ "$(head -n 1 "$tmp/out")" == "$2"/* ]] || fail "$1: loaded $(head -n 1 "$tmp/out"), not from $2"
  echo "  $1: ok ($(head -n 1 "$tmp/out"))"
}

echo "== KESTREL_LIB_DIR=$build/lib at install"
KESTREL_LIB_DIR="$build/lib" pip_install >"$tmp/log" 2>&1 || fail "pip install with KESTREL_LIB_DIR"
check_import "build tree" "$build/lib"

echo "== installed Kestrel, pkg-config"
"$cmake" --install "$build" --prefix "$tmp/prefix" >"$tmp/log" 2>&1 || fail "cmake --install"
pcdir=$(dirname "$(find "$tmp/prefix" -name kestrel.pc | head -n 1)")
PKG_CONFIG_PATH="$pcdir" pip_install >"$tmp/log" 2>&1 || fail "pip install with pkg-config"
check_import "installed" "$(cd "$pcdir/.." && pwd)"

echo "== relative KESTREL_LIB_DIR"
if KESTREL_LIB_DIR=build/lib pip_install >"$tmp/log" 2>&1; then
  fail "a relative KESTREL_LIB_DIR was accepted"
fi
grep -q "KESTREL_LIB_DIR=build/lib is relative" "$tmp/log" || fail "no clear message for a relative path"
echo "python_install_test: ok"
