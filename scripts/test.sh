#!/usr/bin/env bash
# Set-up command 2: install what is missing, build everything from scratch and run every test,
# first in Release, then again with AddressSanitizer + UndefinedBehaviorSanitizer.
#   scripts/test.sh            both passes
#   KESTREL_SKIP_SANITIZE=1 scripts/test.sh   Release pass only
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
jobs="$(nproc)"

"$root/scripts/install_deps.sh"

echo "== Release build and tests" >&2
cmake --preset release -S "$root" >/dev/null
cmake --build --preset release -j"$jobs"
ctest --preset release

if [[ "${KESTREL_SKIP_SANITIZE:-0}" != "1" ]]; then
  echo "== ASan + UBSan build and tests" >&2
  cmake --preset asan -S "$root" >/dev/null
  cmake --build --preset asan -j"$jobs"
  ctest --preset asan
fi
