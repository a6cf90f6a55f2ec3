#!/usr/bin/env bash
# install-deps.sh — install everything pathseg needs to build and test, from
# Debian 12 packages. Idempotent: packages already present are left alone.
#
#   tools/install-deps.sh            build + test dependencies
#   tools/install-deps.sh --peers    also the benchmark peers (python3-torch, openslide-python)
set -euo pipefail

packages=(
  build-essential cmake pkg-config ninja-build
  libglib2.0-dev libyaml-dev libjson-glib-dev
  libvips-dev libtiff-dev libopenslide-dev libopenblas-dev libopenblas-openmp-dev
  libcurl4-openssl-dev libpng-dev libdeflate-dev
  libopenmpi-dev openmpi-bin
  clang libclang-rt-14-dev
  libonnx-testdata
  chromium
)
if [[ "${1:-}" == "--peers" ]]; then
  packages+=(python3-torch python3-openslide python3-pil python3-numpy hyperfine)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: installed ${missing[*]}"
