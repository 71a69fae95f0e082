#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property and integration
# tests of every workspace member. This is the command the README names and
# .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --features transcription-service/fault-injection -- -D warnings
# fault-injection: test-only inputs that make a handler or session panic.
cargo test --workspace --features transcription-service/fault-injection
