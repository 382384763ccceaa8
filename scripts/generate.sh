#!/usr/bin/env bash
# Set-up command 1: install what is missing, build Release, and generate a story on the CPU.
#   scripts/generate.sh [MODEL.gguf] [PROMPT]
# Default model: ../shared/models/stories260K.gguf (relative to the repository root).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model="${1:-$root/../shared/models/stories260K.gguf}"
prompt="${2:-Once upon a time}"

"$root/scripts/install_deps.sh"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" -j"$(nproc)" --target kestrel_cli kestrel_plugin_ref kestrel_plugin_cpu >/dev/null
exec "$root/build/bin/kestrel" generate -m "$model" -p "$prompt" -n 128
