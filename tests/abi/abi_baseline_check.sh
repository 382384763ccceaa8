#!/usr/bin/env bash
# ABI guard: compares the committed ABI baseline of libkestrel with the library just built.
#
#   abi_baseline_check.sh LIBKESTREL.so BASELINE.abi [DEBUG_INFO_DIR]
#
# 1. abidw dumps the fresh library's ABI exactly as scripts/update_abi_baseline.sh dumped the
#    baseline: the exported kestrel_* functions and the types of api/include/kestrel/*.h that they
#    reach (from the DWARF of the C boundary; DEBUG_INFO_DIR holds it when the build moved it out
#    of the library, see api/CMakeLists.txt).
# 2. abidiff --leaf-changes-only compares baseline -> fresh (libabigail's default filtering of
#    harmless changes applies).
# 3. Verdict from abidiff's exit status (a bit mask) and its report:
#      bit 1 or 2 (error, usage)                                  -> fail (the guard is broken)
#      bit 8 ABIDIFF_ABI_INCOMPATIBLE_CHANGE (a symbol removed)   -> fail
#      bit 4 ABIDIFF_ABI_CHANGE: libabigail sets only this bit for changes that "might or might
#         not be compatible" (a struct member's type or offset, a parameter type, ...), so the
#         report is classified here: only additions (functions, variables, fields appended past a
#         struct's old end with a larger size, enumerators) -> pass, report printed;
#         anything else -> fail
#      0                                                          -> pass
#    (libabigail's own suppression `has_data_member_inserted_at = end` is not used: version 2.2
#    also suppresses member type and offset changes of a struct that did not shrink.)
# Exit status: 0 pass, 1 fail, 77 skip (abigail-tools not installed).
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 LIBKESTREL.so BASELINE.abi [DEBUG_INFO_DIR]" >&2
  exit 2
fi
lib=$1
baseline=$2
debug_dir=${3:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
headers_dir=$(cd "$here/../../api/include/kestrel" && pwd)

for tool in abidw abidiff; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIP: $tool not found (Debian package abigail-tools; scripts/install_deps.sh installs it)"
    exit 77
  fi
done
[[ -f "$lib" ]] || { echo "FAIL: no such library: $lib" >&2; exit 1; }
[[ -f "$baseline" ]] || {
  echo "FAIL: no ABI baseline at $baseline (scripts/update_abi_baseline.sh creates it)" >&2
  exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kestrel_abi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The same dump options as scripts/update_abi_baseline.sh (keep them in sync).
dump_args=(--headers-dir "$headers_dir" --drop-private-types --drop-undefined-syms
           --no-corpus-path --no-comp-dir-path --no-elf-needed --no-show-locs --short-locs
           --type-id-style hash --exported-interfaces-only)
[[ -n "$debug_dir" ]] && dump_args+=(--debug-info-dir "$debug_dir")
if ! abidw "${dump_args[@]}" --out-file "$tmp/current.abi" "$lib" 2>"$tmp/abidw.err"; then
  echo "FAIL: abidw could not read $lib:" >&2
  cat "$tmp/abidw.err" >&2
  exit 1
fi
# Without debug info abidw still lists the symbols but no types; that would hide every change.
if ! grep -q "<function-decl name='kestrel_runtime_create'" "$tmp/current.abi"; then
  echo "FAIL: no debug info for the C API in $lib (build with KESTREL_ABI_DEBUG_INFO=ON;" \
       "debug info dir: '${debug_dir:-none}')" >&2
  exit 1
fi

# Leaf mode: every changed type is reported once, with only its own changes.
status=0
abidiff --leaf-changes-only "$baseline" "$tmp/current.abi" >"$tmp/report.txt" 2>&1 || status=$?

if ((status == 0)); then
  echo "abi_baseline: no ABI change against $(basename "$baseline")"
  exit 0
fi
if ((status & 1)) || ((status & 2)); then
  echo "FAIL: abidiff failed (exit status $status):" >&2
  cat "$tmp/report.txt" >&2
  exit 1
fi

# Classifies the report. Allowed (compatible under Kestrel's rules):
#   - added functions and variables;
#   - a struct whose only changes are a larger size and members inserted at offsets at or past
#     its old size (appended fields; the size must grow, or older clients' struct_size could not
#     be told from newer ones');
#   - an enum whose only changes are inserted enumerators.
# Everything else is reported as a breaking change: removed or changed functions, changed member
# types, offsets or order, removed members, a shrunk struct, removed or changed enumerators, a
# changed SONAME or symbol version, and any line this script does not recognise.
verdict=$(awk '
  function flush() {
    if (block != "" && !block_ok) { bad = bad "\n  " block ": " why }
    block = ""
  }
  # A changed type: no indentation, quoted name, "changed:".
  /^\047(struct|union|class|enum|typedef) [^\047]*\047 changed:$/ {
    flush(); block = $0; sub(/ changed:$/, "", block); block_ok = 1; why = ""
    kind = $1; sub(/^\047/, "", kind); old_size = -1; grew = 0; in_insertions = 0
    if (kind != "struct" && kind != "enum") { block_ok = 0; why = "a " kind " changed" }
    next
  }
  /^  / && block != "" {
    line = $0; sub(/^ +/, "", line)
    if (kind == "struct" && match(line, /^type size changed from [0-9]+ to [0-9]+ \(in bits\)$/)) {
      split(line, w, " "); old_size = w[5] + 0
      if (w[7] + 0 <= old_size) { block_ok = 0; why = "its size did not grow" } else grew = 1
      in_insertions = 0; next
    }
    if (kind == "struct" && line ~ /^[0-9]+ data member insertions?:$/) { in_insertions = 1; next }
    if (kind == "struct" && in_insertions && match(line, /at offset [0-9]+ \(in bits\)/)) {
      off = substr(line, RSTART + 10); sub(/ .*/, "", off)
      if (old_size >= 0 && off + 0 < old_size) { block_ok = 0; why = "a member was inserted before the old end" }
      next
    }
    if (kind == "struct" && line ~ /^type size hasn.t changed$/) {
      block_ok = 0; why = "a field was added or changed without growing the struct (older" \
        " clients could not be told apart by struct_size)"; next
    }
    if (kind == "enum" && line ~ /^type size hasn.t changed$/) next
    if (kind == "enum" && line ~ /^[0-9]+ enumerator insertions?:$/) { in_insertions = 1; next }
    if (kind == "enum" && in_insertions && line ~ /^\047[^\047]*\047 value \047[^\047]*\047$/) next
    block_ok = 0; if (why == "") why = line
    next
  }
  /^$/ { flush(); next }
  /^Leaf changes summary:/ || /^Changed leaf types summary:/ { flush(); next }
  /^Removed\/Changed\/Added (functions|variables) summary:/ {
    flush()
    if (!match($0, /: 0 Removed, 0 Changed/)) bad = bad "\n  " $0
    next
  }
  /^[0-9]+ Added (functions?|variables?):$/ { flush(); in_added = 1; next }
  /^  \[A\] / && in_added { next }
  { flush(); bad = bad "\n  " $0 }
  END {
    flush()
    if (bad != "") print "BAD" bad; else print "OK"
  }' "$tmp/report.txt")

if ((status & 8)) || [[ "$verdict" != OK ]]; then
  echo "FAIL: breaking ABI change against $(basename "$baseline") (abidiff exit status $status)" >&2
  if [[ "$verdict" != OK ]]; then
    echo "Not an append-only change:${verdict#BAD}" >&2
  fi
  echo "--- abidiff report:" >&2
  cat "$tmp/report.txt" >&2
  cat >&2 <<'MSG'
---
Kestrel's ABI rules allow only adding functions, appending fields at the end of a struct (its
size grows) and appending enum values. A removed function, a changed field type, offset or
order, a changed function signature or a changed SONAME breaks clients that are already
compiled. If the change is deliberate, follow docs/ABI_GUARD.md (major version bump, new
baseline).
MSG
  exit 1
fi
echo "abi_baseline: compatible ABI additions against $(basename "$baseline") (refresh the" \
     "baseline with scripts/update_abi_baseline.sh when they are released):"
cat "$tmp/report.txt"
exit 0
