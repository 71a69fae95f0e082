#!/usr/bin/env bash
# The native and OpenAI Realtime dialects, alternated level by level against
# one mock server (release build), paced sessions of two_utterances.wav.
set -u
cd "$(dirname "$0")/../../.."
out=loadtests/results/2026-12-03-openai/stream-dialects.jsonl
./target/release/transcription-server --host 127.0.0.1 --port 18800 --log-level warn --max-sessions 4000 >/dev/null 2>&1 &
PID=$!
sleep 1
for level in 500 1000 1500; do
  for dialect in native openai; do
    ./target/release/loadgen --json --url http://127.0.0.1:18800 stream --file tests/fixtures/two_utterances.wav \
      --sessions "$level" --ramp 5s --duration 9.9s --dialect "$dialect" --server-pid "$PID" >>"$out"
    sleep 2
  done
done
kill "$PID"; wait "$PID"
