#!/bin/sh
# Checks the dynamic symbol tables of the Kestrel shared library and of every plugin.
#
#   check_exports.sh LIBKESTREL.so PLUGIN_DIR HEADER...
#
# 1. libkestrel exports (defined, dynamic) only symbols named kestrel_*. Version-script node
#    names (absolute "A" symbols such as KESTREL_0.1) and the linker's _init/_fini/_edata/_end/
#    __bss_start markers are ignored.
# 2. Every function declared KESTREL_API in the given public headers is exported (no missing
#    definition, no forgotten visibility).
# 3. Every plugin (PLUGIN_DIR/*.so) exports exactly kestrel_plugin_get_api and does not import
#    any kestrel_* symbol (plugins get everything through the host table; they never link the
#    runtime).
set -eu

if [ "$#" -lt 2 ]; then
  echo "usage: $0 LIBKESTREL.so PLUGIN_DIR [HEADER...]" >&2
  exit 2
fi
lib=$1
plugin_dir=$2
shift 2
NM=${NM:-nm}
failed=0

fail() {
  echo "FAIL: $*" >&2
  failed=1
}

# Prints the names of the defined dynamic symbols of $1, one per line, without @VERSION suffixes,
# skipping version nodes and linker markers.
exported() {
  "$NM" -D --defined-only "$1" | awk '
    NF >= 3 {
      type = $(NF - 1); name = $NF
      sub(/@.*/, "", name)
      if (type == "A") next                      # version-script node names
      if (name ~ /^(_init|_fini|_edata|_end|__bss_start)$/) next
      print name
    }' | sort -u
}

[ -f "$lib" ] || { echo "FAIL: no such library: $lib" >&2; exit 1; }
lib_symbols=$(exported "$lib")
if [ -z "$lib_symbols" ]; then
  fail "$lib exports nothing"
fi
bad=$(printf '%s\n' "$lib_symbols" | grep -v '^kestrel_' || true)
if [ -n "$bad" ]; then
  fail "$lib exports symbols outside the kestrel_ namespace:"
  printf '  %s\n' $bad >&2
fi
echo "$lib: $(printf '%s\n' "$lib_symbols" | grep -c . ) exported symbols"

# Every KESTREL_API function of the headers must be exported.
for header in "$@"; do
  for fn in $(awk '/^KESTREL_API/ { if (match($0, /kestrel_[a-z0-9_]*\(/)) \
                print substr($0, RSTART, RLENGTH - 1) }' "$header"); do
    if ! printf '%s\n' "$lib_symbols" | grep -qx "$fn"; then
      fail "$lib does not export $fn (declared in $(basename "$header"))"
    fi
  done
done

n_plugins=0
for plugin in "$plugin_dir"/*.so; do
  [ -e "$plugin" ] || continue
  n_plugins=$((n_plugins + 1))
  symbols=$(exported "$plugin")
  if [ "$symbols" != "kestrel_plugin_get_api" ]; then
    fail "$plugin must export exactly kestrel_plugin_get_api; it exports:"
    printf '  %s\n' $symbols >&2
  fi
  imports=$("$NM" -D --undefined-only "$plugin" | awk '{ n = $NF; sub(/@.*/, "", n); print n }' |
            grep '^kestrel_' || true)
  if [ -n "$imports" ]; then
    fail "$plugin imports runtime symbols (plugins must use the host table):"
    printf '  %s\n' $imports >&2
  fi
  echo "$plugin: ok"
done
if [ "$n_plugins" -eq 0 ]; then
  fail "no plugins (*.so) in $plugin_dir"
fi

if [ "$failed" -ne 0 ]; then
  exit 1
fi
echo "check_exports: ok"
