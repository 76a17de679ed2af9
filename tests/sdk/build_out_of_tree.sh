#!/usr/bin/env bash
# build_out_of_tree.sh PREFIX SOURCE BUILD: builds a plugin project the way its author would, against the SDK
# installed in PREFIX only (find_package(Tayori) through CMAKE_PREFIX_PATH; nothing of the source tree is on
# any path), then runs its own tests with ctest.
set -euo pipefail
prefix=$1 source=$2 build=$3
rm -rf "$build"
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache); fi
cmake -S "$source" -B "$build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" "${launcher[@]}"
cmake --build "$build"
ctest --test-dir "$build" --output-on-failure
