#!/usr/bin/env bash
# Installs the Debian 12 packages Kestrel builds and tests with, if any is missing.
# Optional plugins (OpenCL, CUDA, oneDNN) build only when their SDK is present; PoCL lets the
# OpenCL tests run on a CPU.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libabsl-dev          # Abseil: Status/StatusOr, strings, containers
  flatbuffers-compiler libflatbuffers-dev  # .kpkg / .kstate manifests (flatc at build time)
  libgtest-dev libgmock-dev googletest
  nlohmann-json3-dev   # JSON in the integration tests (golden files) and kestrel serve
  libcpp-httplib-dev   # kestrel serve: the HTTP server
  python3-venv         # scripts/setup_python.sh: the openai client and pytest for the tests
  libpcre2-dev         # PCRE2: the byte-level BPE pre-tokenizer regexes (Unicode properties)
  binutils             # nm, for the exported-symbol check
  abigail-tools        # abidw/abidiff: the ABI baseline check
  clang libclang-rt-14-dev  # the fuzz preset: clang with libFuzzer (scripts/fuzz.sh)
  # Optional plugins and their test devices: OpenCL through the ICD loader, run on PoCL (CPU);
  # oneDNN for the fast CPU plugin.
  ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo
  libdnnl-dev
  # Rust bindings check (bindgen loads libclang at run time) and the aarch64 edge test.
  bindgen libclang1-14 libclang-common-14-dev
  g++-aarch64-linux-gnu libc6-dev-arm64-cross libstdc++-12-dev-arm64-cross qemu-user
  # tools/train_medusa.py (speculative heads trainer) and its test.
  python3 python3-numpy
)

# The aarch64 cross build of the edge test needs Abseil and PCRE2 for arm64 (Debian multiarch).
cross_packages=(libabsl-dev:arm64 libpcre2-dev:arm64)

native="$(dpkg --print-architecture)"
installed() {
  # A package installed for several architectures (multiarch) needs the :arch qualifier.
  dpkg -s "$1" >/dev/null 2>&1 || dpkg -s "$1:$native" >/dev/null 2>&1
}
missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done
missing_cross=()
for p in "${cross_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing_cross+=("$p")
done
if ((${#missing[@]} == 0 && ${#missing_cross[@]} == 0)); then
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
if ((${#missing_cross[@]} > 0)); then
  $SUDO dpkg --add-architecture arm64
fi
echo "kestrel: installing ${missing[*]} ${missing_cross[*]}" >&2
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" "${missing_cross[@]}" >/dev/null
