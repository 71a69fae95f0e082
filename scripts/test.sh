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
features=transcription-service/fault-injection
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Build every test binary first; the server binary from that same build is the
# one loadtests/tests/against_real_server.rs starts (it fails without it). Its
# path comes from cargo's own artifact list (the non-test `transcription-server`
# bin), so a configured target dir or triple is followed.
TRANSCRIPTION_SERVER_BIN=$(cargo test --workspace --features "$features" --no-run \
    --message-format=json-render-diagnostics |
    grep '"reason":"compiler-artifact"' |
    grep '"name":"transcription-server"' |
    grep '"test":false' |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | head -n 1)
[ -x "$TRANSCRIPTION_SERVER_BIN" ] || { echo "test: no transcription-server binary from cargo" >&2; exit 1; }
export TRANSCRIPTION_SERVER_BIN
status=0
cargo test --workspace --features "$features" 2>&1 | tee "$log" || status=$?
scripts/test-summary.sh tests "$log"
[ "$status" -eq 0 ] || exit "$status"

# The official Deepgram and OpenAI Python SDKs against the binary built above.
scripts/test-sdk-deepgram.sh
scripts/test-sdk-openai.sh

# The real engine (feature `whisper`: fetches the model, builds whisper.cpp)
# and the pages in headless Chromium.
scripts/test-whisper.sh
scripts/test-browser.sh
# The page's microphone audio through the real engine: Whisper must hear it.
scripts/test-browser.sh --whisper
