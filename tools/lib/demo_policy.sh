# The demo's frequency cap, as config/demo.yaml states it, for the scripts that write a gateway config of their
# own (tools/demo-nodes.sh, tools/bench/throughput.sh): the cap they exercise or measure is then the one the
# demo documents, written once. Sourced.

# demo_caps: prints the `caps:` entry of a config's `policy:` (indented for it): marketing_daily, 3 marketing
# messages per recipient in any 24 hours across every channel, the rest dropped.
demo_caps() {
  cat <<'EOF'
  caps:
    - name: marketing_daily
      scope: all
      purpose: marketing
      limit: 3
      window: 24h
      on_exceed: drop
EOF
}
