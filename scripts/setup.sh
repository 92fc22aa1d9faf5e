#!/usr/bin/env bash
# Installs hwnas's Debian dependencies if any is missing, then configures and builds.
# Idempotent: when everything is installed and built it only runs an incremental build.
#   scripts/setup.sh [build-dir]        (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"

PACKAGES=(build-essential cmake pkg-config libtbb-dev libboost-graph-dev libopenmpi-dev openmpi-bin
          libsqlite3-dev sqlite3 libeigen3-dev nlohmann-json3-dev libcli11-dev libgtest-dev
          zlib1g-dev libfftw3-dev libjemalloc-dev dataset-fashion-mnist clang-format
          libjs-chart.js chromium fonts-dejavu-core
          libonnx-dev libprotobuf-dev python3-onnx python3-torch python3-numpy)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Configuring every time is cheap and recovers from an earlier configure that failed halfway.
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
