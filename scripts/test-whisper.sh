#!/usr/bin/env bash
# The real-engine tests: the server built with the `whisper` feature,
# transcribing the committed flite fixtures (tests/whisper.rs) with the
# Whisper tiny.en weights. Idempotent: installs cmake (whisper.cpp's build)
# when missing, fetches and converts the model (scripts/fetch-model.sh, a
# no-op once done), lints and tests the feature. Ends with one line:
#   whisper tests: N passed, N failed
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cmake >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "test-whisper: please install cmake" >&2
    exit 1
  fi
  echo "test-whisper: installing cmake"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null
fi
scripts/fetch-model.sh

features=transcription-service/whisper,transcription-service/fault-injection
cargo clippy --all-targets --features "$features" -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The engine's unit tests, then the end-to-end tests against the real binary.
cargo test --features "$features" --lib model:: 2>&1 | tee "$log"
cargo test --features "$features" --test whisper -- --nocapture 2>&1 | tee -a "$log"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "whisper tests: %d passed, %d failed\n", p, f }' "$log"
