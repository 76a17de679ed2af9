#!/usr/bin/env bash
# scaffold.sh PREFIX WORK: `tayori new-plugin` from the installed binary writes a plugin folder, which builds
# against the installed SDK and passes its test as written. It also refuses what it must refuse.
set -euo pipefail
prefix=$1 work=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
"$prefix/bin/tayori" new-plugin acme_push --dir "$work/acme_push"
for file in CMakeLists.txt acme_push.cpp acme_push_test.cpp README.md; do
  test -s "$work/acme_push/$file" || { echo "scaffold.sh: $file was not written"; exit 1; }
done
# Written once, never over an author's work; a name the loader would refuse is refused here.
if "$prefix/bin/tayori" new-plugin acme_push --dir "$work/acme_push" 2>"$work/again.err"; then
  echo "scaffold.sh: new-plugin wrote into a folder that is not empty"; exit 1
fi
grep -q "exists and is not empty" "$work/again.err"
if "$prefix/bin/tayori" new-plugin Acme-Push --dir "$work/bad" 2>"$work/bad.err"; then
  echo "scaffold.sh: new-plugin took the name Acme-Push"; exit 1
fi
grep -q 'must be \[a-z\]\[a-z0-9_\]\*' "$work/bad.err"
bash "$here/build_out_of_tree.sh" "$prefix" "$work/acme_push" "$work/acme_push/build"
test -f "$work/acme_push/build/acme_push.so"
# The library exports the entry symbol and nothing else (tayori_add_plugin's version script).
exported=$(nm -D --defined-only "$work/acme_push/build/acme_push.so" | awk '$2 ~ /[TDBRVW]/ {print $3}' | sort -u)
[ "$exported" = "tayori_plugin_entry" ] || { echo "scaffold.sh: exports: $exported"; exit 1; }
# The guide's walkthrough, step 6: the gateway loads the scaffolded plugin from its build folder and delivers.
python3 "$here/example_e2e.py" acme_push "$prefix/bin/tayori" "$work/acme_push/build" "$work/e2e"
# The guide's recipe without CMake: pkg-config's flags, a shared library and a version script.
pc_dir=$(dirname "$(find "$prefix" -name tayori-plugin.pc | head -1)")
printf '{ global: tayori_plugin_entry; local: *; };\n' >"$work/exports.map"
g++ -std=c++20 $(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags tayori-plugin) -shared -fPIC -fvisibility=hidden \
  -Wl,--version-script="$work/exports.map" -o "$work/acme_push_pkgconfig.so" "$work/acme_push/acme_push.cpp"
exported=$(nm -D --defined-only "$work/acme_push_pkgconfig.so" | awk '$2 ~ /[TDBRVW]/ {print $3}' | sort -u)
[ "$exported" = "tayori_plugin_entry" ] || { echo "scaffold.sh: pkg-config build exports: $exported"; exit 1; }
