#!/bin/sh
# No layer of the gateway reaches up: docs/architecture.md §2 lists gateway/'s folders from the bottom up, and a
# file may include (#include "folder/...") only its own folder and those listed before it. This check, a CTest
# test, reads that order from the table itself, so the page and the code cannot drift apart, and fails naming
# every include that reaches up. A file in no listed folder (main.cpp) is the top.
#
# Usage: check_layers.sh <source root>
root=${1:?usage: check_layers.sh <source root>}
# The table's first column in order: `gateway/common/`, ..., `gateway/core/message.*`, ..., `gateway/core/` (rest).
# Each becomes a path prefix below gateway/ ("common/", "core/message.", "core/"); a file belongs to the first that
# matches, so core/message.* is placed before the rest of core/.
layers=$(sed -n 's#^| `gateway/\([a-z_/]*\)\(\.\*\)\{0,1\}` .*#\1#p' "$root/docs/architecture.md" |
  awk '{ print (substr($0, length($0)) == "/" ? $0 : $0 ".") }')
[ "$(echo "$layers" | wc -l)" -ge 10 ] || { echo "no layer table found in docs/architecture.md §2"; exit 1; }
rank() {
  echo "$layers" | awk -v f="$1" 'index(f, $0) == 1 { print NR; found = 1; exit } END { if (!found) print 1000 }'
}
cd "$root/gateway" || exit 1
offenders=""
for file in $(find . -name '*.cpp' -o -name '*.hpp' | sed 's|^\./||' | sort); do
  mine=$(rank "$file")
  for included in $(sed -n 's|^#include "\([a-z_]*/[^"]*\)".*|\1|p' "$file"); do
    [ -e "$included" ] || continue  # not a gateway header (include/tayori/, a plugin's)
    theirs=$(rank "$included")
    [ "$theirs" -le "$mine" ] || offenders="$offenders
$file includes $included"
  done
done
if [ -n "$offenders" ]; then
  echo "These includes reach up the layers of docs/architecture.md §2 (a folder includes only those listed before it):$offenders"
  exit 1
fi
echo "No include reaches up: $(echo "$layers" | tr '\n' ' ')"
