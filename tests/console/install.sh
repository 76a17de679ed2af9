#!/usr/bin/env bash
# Installs the browser test's npm packages (puppeteer-core, pinned by package-lock.json beside this file) into
# DIR/node_modules with `npm ci`, unless the same lock file was installed there before. Run by CTest as the
# fixture of console_browser (tests/console/CMakeLists.txt); DIR is in the build tree, so the source tree
# stays clean. Without npm it installs nothing and says so: the test then skips, or fails under CI=true.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${1:?usage: install.sh DIR}"
mkdir -p "$dir"
stamp="$dir/installed-package-lock.json"  # written only after a successful install
if cmp -s "$here/package-lock.json" "$stamp" && [[ -d "$dir/node_modules/puppeteer-core" ]]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "console: npm is not installed (tools/setup.sh installs it); the browser test cannot run" >&2
  exit 0
fi
cp "$here/package.json" "$here/package-lock.json" "$dir/"
# No browser download: puppeteer-core never fetches one; the test drives Debian's chromium.
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
cp "$here/package-lock.json" "$stamp"
