#!/bin/sh
# Every file a page names exists: docs/architecture.md draws a message's path through the code file by file
# (§1) and lists each folder's files (§2), and a rename that forgets the page must fail here, not mislead the
# next reader. A path is a backticked token with a slash inside it (a bare `ops/` in a folder's row is that
# folder's), ending in an extension, a slash or `.*`; it is looked up from the root, below gateway/ (the page's
# paths are relative to it), and beside the page. Paths with a placeholder (`plugins/<name>/`) are skipped.
#
# Usage: check_doc_paths.sh <source root> <page>...
root=${1:?usage: check_doc_paths.sh <source root> <page>...}
shift
cd "$root" || exit 1
missing=""
for page in "$@"; do
  for path in $(grep -o '`[A-Za-z0-9_./*-]*`' "$page" | tr -d '`' | grep '/' | grep -v '^/' |
    grep '/[^/]' | grep -E '(\.[a-z]+|/|\.\*)$' | sort -u); do
    stem=${path%.\*}
    found=no
    for base in . gateway "$(dirname "$page")"; do
      if [ "$stem" != "$path" ]; then
        ls "$base/$stem".* >/dev/null 2>&1 && found=yes
      elif [ -e "$base/$path" ]; then
        found=yes
      fi
    done
    [ $found = yes ] || missing="$missing
$page names $path"
  done
done
if [ -n "$missing" ]; then
  echo "These files are named but do not exist:$missing"
  exit 1
fi
echo "Every file the pages name exists."
