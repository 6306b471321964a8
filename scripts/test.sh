#!/usr/bin/env bash
# The whole test suite: unit, behaviour, stress, macro UI (trybuild) and doc
# tests of every crate, then every example workflow run for real.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets
cargo test --workspace --doc
for example in parallel_flow concurrent_flow multi_event_flow; do
  echo "== example $example"
  cargo run --quiet -p stepwise-demo --example "$example"
done
