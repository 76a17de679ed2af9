#!/usr/bin/env bash
# Configures and builds Tayori into ./build (Ninja, ccache). Extra arguments go to `cmake --build`.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="${TAYORI_BUILD_TYPE:-RelWithDebInfo}" >/dev/null
cmake --build build "$@"
