#!/usr/bin/env bash
# Installs what building and testing Tayori needs on Debian 12, and nothing when it is all there.
# Idempotent; uses sudo when not root. Everything comes from Debian's archive (and npm for the
# OpenAPI validator and for puppeteer-core, which drives chromium in the operator console's test; each
# test installs its own pinned packages on first use). PostgreSQL (server and libpq) runs the tests of the store on several nodes
# (only its programs: the tests start throw-away clusters of their own, tests/support/pg_cluster.hpp).
# SQLite is compiled in from third_party/sqlite (no libsqlite3-dev: the build must not pick up Debian's header);
# the sqlite3 program below is for looking into a store by hand.
# Arguments are more packages a stage of its own needs (tools/fuzz.sh: clang-14 libfuzzer-14-dev).
set -euo pipefail

packages=(
  g++ cmake ninja-build ccache pkg-config make
  libboost-dev libcurl4-openssl-dev libssl-dev libyaml-cpp-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev
  libcctz-dev libkainjow-mustache-dev libjemalloc-dev tzdata
  postgresql libpq-dev
  binutils curl jq sqlite3 ca-certificates openssl nghttp2-server libnghttp2-dev python3-aiosmtpd wrk
  chromium
)
# Node.js + npm run the OpenAPI validator and the console's browser test; keep an existing installation.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
packages+=("$@")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
