# The instrumented builds compiled by clang-14 (tools/fuzz.sh, tools/sanitize.sh). Sourced.

# clang_configure DIR [cmake -D options...]: configures DIR with OSS-Fuzz's flags, -O1 with line tables
# (symbolised stacks at a fraction of -g's compile time) and frame pointers kept for the sanitizers' fast
# unwinder. RelWithDebInfo's flags are replaced whole, so NDEBUG is not set and asserts are checked too.
clang_configure() {
  local dir=${1:?usage: clang_configure DIR [cmake options...]}
  shift
  local opt="-O1 -gline-tables-only -fno-omit-frame-pointer"
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="$opt" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$opt" "$@" >/dev/null
}
