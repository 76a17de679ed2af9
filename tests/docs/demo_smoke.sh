#!/usr/bin/env bash
# The README's first command keeps working: tools/demo.sh (after the suite's own setup and build) plays every
# scene and each two-way scene ends as the README says, down to the funnel. It checks outcomes, never speed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
status=0
out=$(TAYORI_DEMO_PREPARED=1 bash "$root/tools/demo.sh" 2>&1) || status=$?
if ((status != 0)); then
  printf '%s\n' "$out"
  echo "demo_smoke: tools/demo.sh exited with $status" >&2
  exit 1
fi
missing=0
expect() {
  if ! grep -qE -- "$1" <<<"$out"; then
    echo "demo_smoke: the demo's output lacks: $1" >&2
    missing=1
  fi
}
expect 'promo-4002 +202 accepted +-> suppressed'      # after the SMS STOP
expect 'taps 「あとで」 -> postback webhook .* -> 200'
expect 'follow-up fair-1301~follow_up~later scheduled'
expect 'clicks http://127\.0\.0\.1:8787/c/.* -> 302 Location: https://shop\.example\.jp/winter-sale'
expect 'attributed to sale-1401: clicked on email'
expect 'opted_out of marketing on email \(source list_unsubscribe\)'
expect '^  sale +4 → +1 / +0 → +1'                    # the funnel
expect '^console: http://127\.0\.0\.1:8787/console'
if ((missing)); then
  printf '%s\n' "$out"
  exit 1
fi
echo "demo_smoke: every scene ended as expected"
