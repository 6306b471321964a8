#!/usr/bin/env bash
# The whole test suite: unit, behaviour, stress, macro UI (trybuild), golden
# drawing, headless-browser (needs chromium: $CHROMIUM or on PATH), CLI and doc
# tests of every crate, then every example workflow and the demo (the main
# job) run for real.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets
cargo test --workspace --doc
for example in parallel_flow concurrent_flow multi_event_flow; do
  echo "== example $example"
  cargo run --quiet -p stepwise-demo --example "$example"
done
echo "== the demo: cargo run --release -p stepwise-demo"
demo_dir="$(mktemp -d)"
trap 'rm -rf "$demo_dir"' EXIT
STEPWISE_DB="$demo_dir/demo.db" cargo run --quiet --release -p stepwise-demo </dev/null
