#!/usr/bin/env bash
# Validates the API reference (docs/openapi.yaml, or the file given as $1) with swagger-cli, a standard
# OpenAPI 2/3 validator (structure against the OpenAPI 3.0 schema, and every $ref resolved).
# swagger-cli is pinned in tools/openapi/package.json and installed into tools/openapi/node_modules on
# first use. Exits 0 when valid, non-zero when not (or when npm is missing: tools/setup.sh installs it).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
spec="${1:-$root/docs/openapi.yaml}"
tools="$root/tools/openapi"
cli="$tools/node_modules/.bin/swagger-cli"

if [[ ! -x "$cli" ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "validate_openapi: npm is not installed (tools/setup.sh installs it), cannot install swagger-cli" >&2
    exit 1
  fi
  echo "validate_openapi: installing swagger-cli into $tools/node_modules" >&2
  npm install --prefix "$tools" --no-audit --no-fund >&2
fi

"$cli" validate "$spec"
