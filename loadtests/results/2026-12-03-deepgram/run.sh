#!/usr/bin/env bash
# The Deepgram dialect against the native protocol on the mock engine, in one
# run (issue 15): the same paced sweep of real-time sessions, dialects
# alternated level by level, ROUNDS times (levels: LEVELS). Appends to
# $OUT/<dialect>-<round>.jsonl. Run from the repository root after
#   cargo build --release -p transcription-service -p loadtests
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${OUT:-loadtests/results/2026-12-03-deepgram}
mkdir -p "$out"
port=${PORT:-18431}
rounds=${ROUNDS:-2}
levels=${LEVELS:-1000,2000,2500,3000}
./target/release/transcription-server --host 127.0.0.1 --port "$port" --log-level warn \
    --max-sessions 20000 >/dev/null 2>"${SERVER_LOG:-/dev/null}" &
server=$!
trap 'kill $server; wait $server 2>/dev/null || true' EXIT
sleep 1
for round in $(seq 1 "$rounds"); do
    for level in ${levels//,/ }; do
        for dialect in native deepgram; do
            ./target/release/loadgen --url "http://127.0.0.1:$port" --json stream \
                --dialect "$dialect" --file tests/fixtures/two_utterances.wav \
                --sessions "$level" --ramp 10s --duration 9.9s --server-pid "$server" \
                >>"$out/$dialect-$round.jsonl"
        done
    done
done
