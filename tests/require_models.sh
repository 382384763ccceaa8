#!/bin/sh
# require_models.sh FILE...: the test-model check every script test shares.
#   exit 0   every FILE exists
#   exit 1   one is missing and KESTREL_REQUIRE_MODELS=1 (CI: scripts/test.sh exports it): FAIL
#   exit 77  one is missing otherwise: the caller exits 77 too, which ctest reports as skipped
# Usage in a test script:  sh "$root/tests/require_models.sh" "$model" || exit $?
missing=0
for f in "$@"; do
  if [ ! -f "$f" ]; then
    missing=1
    if [ "${KESTREL_REQUIRE_MODELS:-0}" = "1" ]; then
      echo "FAIL: model file not found: $f (KESTREL_REQUIRE_MODELS=1: scripts/fetch_models.sh fetches the real models; ../shared/models holds the tiny ones)" >&2
    else
      echo "SKIP: model file not found: $f (set KESTREL_REQUIRE_MODELS=1 to make this a failure)"
    fi
  fi
done
if [ "$missing" = 0 ]; then exit 0; fi
if [ "${KESTREL_REQUIRE_MODELS:-0}" = "1" ]; then exit 1; fi
exit 77
