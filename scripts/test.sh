#!/usr/bin/env bash
# The whole test suite: every example workflow and the demo (the main job) run
# for real, then the unit, behaviour, stress, property, crash-recovery, macro
# UI (trybuild), golden drawing, headless-browser (needs chromium: $CHROMIUM or
# on PATH), CLI and doc tests of every crate.
set -euo pipefail
cd "$(dirname "$0")/.."

# The HTML drawings are tested in a real headless browser: Debian's chromium.
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium (for the HTML drawing tests)"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "test.sh: chromium is missing and we are not root (no sudo) to install it" >&2; exit 1; }
    SUDO="sudo"
  fi
  $SUDO apt-get update || { echo "test.sh: apt-get update failed; cannot install chromium" >&2; exit 1; }
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium \
    || { echo "test.sh: installing chromium failed" >&2; exit 1; }
fi
if [ -x /usr/bin/chromium ]; then
  export CHROMIUM=/usr/bin/chromium
else
  CHROMIUM="$(command -v chromium)"
  export CHROMIUM
fi
[ -x "$CHROMIUM" ] || { echo "test.sh: chromium is not runnable at '$CHROMIUM'" >&2; exit 1; }
echo "== browser: $CHROMIUM"
"$CHROMIUM" --version || { echo "test.sh: '$CHROMIUM --version' failed" >&2; exit 1; }

# Each entry is an example name followed by its arguments (hitl_console gets a
# scripted answer so it never waits on a terminal).
for example in parallel_flow concurrent_flow multi_event_flow retry_flaky state_counter "hitl_console --answer yes"; do
  read -r name args <<<"$example"
  echo "== example $example"
  # shellcheck disable=SC2086 # args are split on purpose
  cargo run --quiet -p stepwise-demo --example "$name" -- $args </dev/null
done
echo "== the demo: cargo run --release -p stepwise-demo"
demo_dir="$(mktemp -d)"
trap 'rm -rf "$demo_dir"' EXIT
STEPWISE_DB="$demo_dir/demo.db" cargo run --quiet --release -p stepwise-demo </dev/null
cargo test --workspace --doc
cargo test --workspace --all-targets
