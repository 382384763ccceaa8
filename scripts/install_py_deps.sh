#!/usr/bin/env bash
# Set-up step: the Python packages the tests need, installed for the user's python3 with pip.
#   gguf (gguf-py, llama.cpp's GGUF package; pulls numpy): quants_gguf_test checks that the
#     reference plugin's dequantization of Q4_1..Q6_K is bit-exact with gguf.quants.dequantize.
# Offline-safe: does nothing (and needs no network) when the pinned versions are importable.
set -euo pipefail

gguf_version="0.17.1"

have() {
  python3 - "$gguf_version" <<'PYEOF' 2>/dev/null
import sys
import importlib.metadata as md
import numpy  # noqa: F401  (gguf's dependency)
import gguf  # noqa: F401
sys.exit(0 if md.version("gguf") == sys.argv[1] else 1)
PYEOF
}

if have; then
  exit 0
fi
echo "install_py_deps: installing gguf==$gguf_version (with numpy) via pip" >&2
python3 -m pip install --quiet --disable-pip-version-check "gguf==$gguf_version" >&2 ||
  python3 -m pip install --quiet --disable-pip-version-check --user "gguf==$gguf_version" >&2
have || { echo "install_py_deps: gguf==$gguf_version is still not importable" >&2; exit 1; }
