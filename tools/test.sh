#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: install what is missing, build, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/build.sh
cd build
ctest --output-on-failure --timeout 900 -j "$(nproc)"
