#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property and integration
# tests of every workspace member, then the real-engine suite
# (scripts/test-whisper.sh) and the browser suite (scripts/test-browser.sh).
# This is the command the README names and .ci/run calls. Each suite ends
# with one line totalling its results.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --features transcription-service/fault-injection -- -D warnings

# fault-injection: test-only inputs that make a handler or session panic.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --features transcription-service/fault-injection 2>&1 | tee "$log"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"

# The real engine (feature `whisper`: fetches the model, builds whisper.cpp)
# and the pages in headless Chromium.
scripts/test-whisper.sh
scripts/test-browser.sh
# The page's microphone audio through the real engine: Whisper must hear it.
scripts/test-browser.sh --whisper
