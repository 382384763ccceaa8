#!/usr/bin/env bash
# Set-up step: the Python environment the tests use — the real `openai` client (PyPI) that drives
# `kestrel serve` in tests/serve, pytest for the Python binding (bindings/python), and setuptools
# and wheel, with which its install test builds the package offline. A virtual
# environment, so Debian's externally managed system Python is left alone:
#   ${KESTREL_PYTHON_ENV:-$HOME/.cache/kestrel/pyenv}
# Prints the environment's python on stdout. Offline-safe: when the packages are already there,
# nothing is downloaded. scripts/test.sh runs it and passes the python to CMake
# (KESTREL_TEST_PYTHON); without it the tests that need these packages report "skipped".
set -euo pipefail
env_dir="${KESTREL_PYTHON_ENV:-$HOME/.cache/kestrel/pyenv}"
python="${PYTHON:-python3}"
packages=("openai>=1.30,<4" "pytest>=7" "setuptools>=61" "wheel")

if [[ ! -x "$env_dir/bin/python" ]]; then
  "$python" -m venv "$env_dir" >&2 ||
    { echo "setup_python: cannot create a venv in $env_dir (Debian: apt-get install python3-venv)" >&2; exit 1; }
fi
if ! "$env_dir/bin/python" -c "import openai, pytest, setuptools, wheel" 2>/dev/null; then
  echo "setup_python: installing ${packages[*]} into $env_dir" >&2
  "$env_dir/bin/python" -m pip install --quiet --disable-pip-version-check "${packages[@]}" >&2
fi
echo "$env_dir/bin/python"
