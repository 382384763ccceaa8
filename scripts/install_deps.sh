#!/usr/bin/env bash
# Installs the Debian 12 packages Kestrel builds and tests with, if any is missing.
# Optional plugins (OpenCL, CUDA, oneDNN) build only when their SDK is present; PoCL lets the
# OpenCL tests run on a CPU.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libabsl-dev          # Abseil: Status/StatusOr, strings, containers
  libgtest-dev libgmock-dev googletest
  nlohmann-json3-dev   # JSON in the integration tests (golden files)
  binutils             # nm, for the exported-symbol check
  abigail-tools        # abidw/abidiff: the ABI baseline check
  # Optional plugins and their test devices: OpenCL through the ICD loader, run on PoCL (CPU);
  # oneDNN for the fast CPU plugin.
  ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo
  libdnnl-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "kestrel: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
