#!/usr/bin/env bash
# CI's lint stage, on what the change touched (the whole tree is not clang-format clean, and clang-tidy on
# every file would take most of an hour on two cores): the lines changed in C and C++ files must be as
# clang-format (.clang-format) lays them out, and the changed .cpp and header files must pass clang-tidy
# (.clang-tidy) with every finding an error. clang-tidy reads ./build/compile_commands.json and checks a header
# through a .cpp that includes it, found in the build's dependency log, so run tools/build.sh first (CI's
# tools/test.sh has). The change is measured from LINT_BASE when set; else from the merge base with origin/main
# where that exists (a branch in a developer's clone); else from HEAD~1, the last commit, since CI runs on a
# clean clone of main. A shallow clone (CI's checkout, depth 1) has no HEAD~1: the script fetches it (a commit
# records its tree, not what it changed, so without the parent there is no change to lint), and stops when it
# cannot rather than lint every file or none. Only a repository of one commit is measured from nothing: every
# file is its change.
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
elif [[ $(git rev-parse --is-shallow-repository) == true ]]; then
  echo "lint: a shallow clone without the parent of HEAD: fetching it (git fetch --deepen=1)" >&2
  if git fetch --quiet --deepen=1 && git rev-parse -q --verify HEAD~1 >/dev/null; then
    base=$(git rev-parse HEAD~1)
  else
    echo "lint: no base to measure the change from: set LINT_BASE=REV, or clone with --depth=2 or more" >&2
    exit 2
  fi
else
  base=$empty_tree
fi
# The working tree against the base: committed and uncommitted changes alike. Deleted files are left out, and
# so is a file moved without a change (R100): the lines it brings are not the change's.
# third_party/ is others' code, kept as they publish it (third_party/sqlite/README.md).
sources=('*.c' '*.cc' '*.cpp' '*.h' '*.hpp' ':(exclude)third_party/**')
mapfile -t changed < <(git diff -M --name-status "$base" -- "${sources[@]}" |
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
done < <(git diff -M -U0 "$base" -- "${sources[@]}" | awk '
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

# (b) clang-tidy on the changed .cpp files the build compiles (the headers they include are checked with them,
# within .clang-tidy's HeaderFilterRegex), and on each changed header that none of them includes, through one
# compiled .cpp that does, reporting that header's findings only (--line-filter names it alone). Who includes
# what, directly or not, is the build's dependency log (ninja -t deps: each object's source, then every file it
# read, relative to build/). Two files at a time per core: each takes seconds.
db=build/compile_commands.json
[[ -f $db ]] || { echo "lint: $db is missing: run tools/build.sh first" >&2; exit 1; }
declare -A compiled=()
while read -r f; do compiled[${f#"$PWD/"}]=1; done < <(jq -r '.[].file' "$db")
tidy=()
headers=()
for f in "${changed[@]}"; do
  if [[ $f == *.cpp ]]; then
    [[ -n ${compiled[$f]:-} ]] && tidy+=("$f")
  elif [[ $f == *.h || $f == *.hpp ]]; then
    headers+=("$f")
  fi
done
declare -A through=()  # changed header -> a .cpp it is checked through
if ((${#headers[@]})); then
  declare -A wanted=()
  for h in "${headers[@]}"; do wanted[$h]=1; done
  for f in "${tidy[@]}"; do wanted[$f]=tidy; done
  # "HEADER SOURCE" for each changed header and each compiled source that reads it. A source checked anyway is
  # preferred: a header it includes needs no run of its own.
  while read -r h src; do
    [[ -z ${through[$h]:-} || ${wanted[$src]:-} == tidy ]] && through[$h]=$src
  done < <(ninja -C build -t deps 2>/dev/null | awk -v root="$PWD/" '
    function rel(p) { sub(/^\.\.\//, "", p); if (index(p, root) == 1) p = substr(p, length(root) + 1); return p }
    /^[^ ]/ { src = ""; next }
    /^    / { p = rel($1); if (src == "") src = p; else print p, src }' |
    while read -r h src; do [[ -n ${wanted[$h]:-} && -n ${compiled[$src]:-} ]] && echo "$h $src"; done | sort)
fi
extra=()
for h in "${headers[@]}"; do
  src=${through[$h]:-}
  if [[ -z $src ]]; then
    echo "lint: $h: no compiled .cpp includes it (build first, or it is unused): not checked by clang-tidy" >&2
  elif ! printf '%s\n' "${tidy[@]}" | grep -qxF "$src"; then
    extra+=("$h" "$src")
  fi
done
echo "lint: clang-tidy on ${#tidy[@]} file(s) and $(( ${#extra[@]} / 2 )) header(s) through a .cpp including it" >&2
if ((${#tidy[@]})); then
  printf '%s\n' "${tidy[@]}" | xargs -P "$(nproc)" -n 2 clang-tidy-14 -p build --quiet || {
    echo "lint: clang-tidy found the problems above" >&2
    status=1
  }
fi
if ((${#extra[@]})); then
  # shellcheck disable=SC2016  # $1 and $2 are the inner shell's
  printf '%s\n' "${extra[@]}" | xargs -P "$(nproc)" -n 2 sh -c \
    'echo "lint: $1 through $2" >&2; clang-tidy-14 -p build --quiet --line-filter="[{\"name\":\"$1\"}]" "$2"' sh || {
    echo "lint: clang-tidy found the problems above in changed headers" >&2
    status=1
  }
fi
exit "$status"
