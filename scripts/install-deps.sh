#!/usr/bin/env bash
# Installs the Debian packages meshlm needs to build, test and run. Idempotent: when every
# package is already present it only checks (a fraction of a second) and installs nothing.
set -euo pipefail

packages=(
  cmake ninja-build g++ make pkg-config
  libdnnl-dev          # oneDNN: the GEMM library (fp32 and bf16 on AMX)
  libomp-dev           # OpenMP runtime headers (g++ uses libgomp; kept for clang builds)
  libopenmpi-dev openmpi-bin
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev         # command-line parsing
  nlohmann-json3-dev   # JSON (manifests, metrics, safetensors headers)
  libtomlplusplus-dev  # TOML config files
  libpcre2-dev         # GPT-2 pre-tokenization regex (Unicode classes, JIT)
  libcairo2-dev fonts-dejavu-core  # loss-curve plots (PNG; the SVG is written by hand)
  libpng-dev           # tests only: the plot PNG decodes
  libssl-dev           # SHA-256 (libcrypto) for checkpoint and data checksums
  iproute2 nftables    # tests only: network namespaces and packet loss for the multi-host test
  clang libclang-rt-14-dev  # tests only: libFuzzer targets (tests/fuzz)
  python3-numpy        # tests only: the independent NumPy GPT-2 reference (tests/model)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
