#!/usr/bin/env bash
# Regenerates the committed ABI baseline api/abi/libkestrel.so.abi from a built libkestrel.
#
#   scripts/update_abi_baseline.sh [BUILD_DIR]      default BUILD_DIR: build (the release preset)
#
# Run it only when the ABI change is meant to ship (docs/ABI_GUARD.md says when that is): after
# adding functions or appending struct fields for a release, or as part of a deliberate major
# version bump. It prints what changed against the old baseline (abidiff), then overwrites it;
# review and commit api/abi/libkestrel.so.abi with the change that caused it.
# Needs abidw/abidiff (Debian abigail-tools) and a Release build with KESTREL_ABI_DEBUG_INFO=ON
# (the default).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
build="$(cd "$build" && pwd)"
baseline="$root/api/abi/libkestrel.so.abi"
lib="$build/lib/libkestrel.so"

for tool in abidw abidiff; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "update_abi_baseline: $tool not found: apt-get install abigail-tools" >&2
    exit 1
  }
done
[[ -f "$lib" ]] || {
  echo "update_abi_baseline: $lib not found; build first: cmake --build $build --target kestrel" >&2
  exit 1
}
if grep -q '^KESTREL_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  echo "update_abi_baseline: $build is a sanitizer build; use a Release build (cmake --preset release)" >&2
  exit 1
fi

debug_args=()
[[ -d "$build/lib/.debug" ]] && debug_args=(--debug-info-dir "$build/lib/.debug")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kestrel_abi_update.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Keep these options identical to tests/abi/abi_baseline_check.sh.
abidw --headers-dir "$root/api/include/kestrel" --drop-private-types --drop-undefined-syms \
  --no-corpus-path --no-comp-dir-path --no-elf-needed --no-show-locs --short-locs \
  --type-id-style hash --exported-interfaces-only \
  "${debug_args[@]}" --out-file "$tmp/new.abi" "$lib"
grep -q "<function-decl name='kestrel_runtime_create'" "$tmp/new.abi" || {
  echo "update_abi_baseline: no debug info for the C API in $lib (KESTREL_ABI_DEBUG_INFO=OFF?)" >&2
  exit 1
}

if [[ -f "$baseline" ]]; then
  status=0
  abidiff --leaf-changes-only "$baseline" "$tmp/new.abi" >"$tmp/report.txt" 2>&1 ||
    status=$?
  if ((status == 0)); then
    if cmp -s "$baseline" "$tmp/new.abi"; then
      echo "update_abi_baseline: $baseline is up to date"
      exit 0
    fi
    echo "update_abi_baseline: no reportable ABI change (only allowed additions or cosmetics)"
  else
    echo "update_abi_baseline: ABI changes against the old baseline (abidiff exit status $status):"
    cat "$tmp/report.txt"
    if ((status & 8)); then
      echo "update_abi_baseline: WARNING: incompatible change; this needs a major version bump" \
           "(docs/ABI_GUARD.md)" >&2
    fi
  fi
fi
mkdir -p "$(dirname "$baseline")"
cp "$tmp/new.abi" "$baseline"
echo "update_abi_baseline: wrote $baseline from $lib ($(grep -c "<elf-symbol " "$baseline") symbols)"
