#!/usr/bin/env bash
# CI's lint stage, on what the change touched (the whole tree is not clang-format clean, and clang-tidy on
# every file would take most of an hour on two cores): the lines changed in C and C++ files must be as
# clang-format (.clang-format) lays them out, and the changed .cpp files must pass clang-tidy (.clang-tidy)
# with every finding an error. clang-tidy reads ./build/compile_commands.json, so run tools/build.sh first
# (CI's tools/test.sh has). The change is measured from LINT_BASE when set; else from the merge base with
# origin/main where that exists (a branch in a developer's clone); else from HEAD~1, the last commit, since CI
# runs on a clean clone of main; else, in a repository of one commit, from nothing (every file).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh clang-format-14 clang-tidy-14

empty_tree=$(git hash-object -t tree /dev/null)
if [[ -n ${LINT_BASE:-} ]]; then
  base=$(git rev-parse --verify "$LINT_BASE^{commit}")
elif git rev-parse -q --verify origin/main >/dev/null && base=$(git merge-base HEAD origin/main) &&
  [[ $base != "$(git rev-parse HEAD)" ]]; then
  :
elif git rev-parse -q --verify HEAD~1 >/dev/null; then
  base=$(git rev-parse HEAD~1)
else
  base=$empty_tree
fi
# The working tree against the base: committed and uncommitted changes alike. Deleted files are left out, and
# so is a file moved without a change (R100): the lines it brings are not the change's.
mapfile -t changed < <(git diff -M --name-status "$base" -- '*.c' '*.cc' '*.cpp' '*.h' '*.hpp' |
  awk '$1 ~ /^[ACM]$/ { print $2 } $1 ~ /^R/ && $1 != "R100" { print $3 }')
echo "lint: ${#changed[@]} C/C++ file(s) changed since ${base:0:12}" >&2
((${#changed[@]})) || exit 0

status=0
# (a) Only the changed lines: the ranges git diff (following moves, which is why it sees the old paths too) says
# were added in each file, given to clang-format as --lines; what it would change there fails the stage.
# (git clang-format would do this, but without following a move it takes every line of a moved file as new.)
declare -A ranges=()
while read -r file range; do
  ranges[$file]+=" --lines=$range"
done < <(git diff -M -U0 "$base" -- '*.c' '*.cc' '*.cpp' '*.h' '*.hpp' | awk '
  /^\+\+\+ / { file = substr($2, 3) }
  /^@@ / { split(substr($3, 2), r, ","); n = (r[2] == "" ? 1 : r[2]); if (n > 0) print file, r[1] ":" r[1] + n - 1 }')
for f in "${changed[@]}"; do
  [[ -n ${ranges[$f]:-} ]] || continue
  # shellcheck disable=SC2086  # one word per --lines
  if ! out=$(clang-format-14 --dry-run --Werror ${ranges[$f]} "$f" 2>&1); then
    echo "$out"
    status=1
  fi
done
((status == 0)) || echo "lint: the changed lines above are not as clang-format lays them out (clang-format-14 -i FILE, or git clang-format-14)" >&2

# (b) clang-tidy on the changed .cpp files the build compiles (a header is checked through them, within
# .clang-tidy's HeaderFilterRegex). Two at a time per core: each takes seconds.
db=build/compile_commands.json
[[ -f $db ]] || { echo "lint: $db is missing: run tools/build.sh first" >&2; exit 1; }
mapfile -t compiled < <(jq -r '.[].file' "$db" | sort -u)
tidy=()
for f in "${changed[@]}"; do
  [[ $f == *.cpp ]] || continue
  printf '%s\n' "${compiled[@]}" | grep -qxF "$PWD/$f" && tidy+=("$f")
done
echo "lint: clang-tidy on ${#tidy[@]} file(s)" >&2
if ((${#tidy[@]})); then
  printf '%s\n' "${tidy[@]}" | xargs -P "$(nproc)" -n 2 clang-tidy-14 -p build --quiet || {
    echo "lint: clang-tidy found the problems above" >&2
    status=1
  }
fi
exit "$status"
