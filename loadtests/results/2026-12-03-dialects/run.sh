#!/usr/bin/env bash
# Native, Deepgram and OpenAI Realtime, interleaved level by level and
# round by round against one mock server (release build). The server runs
# one core pinned to CPU 0, the load generator one thread pinned to CPU 1.
# Each line of $OUT/runs.jsonl is loadgen's JSON plus the load average
# (1 min) read just before the run.
set -u
cd "$(dirname "$0")/../../.."
OUT=${OUT:-loadtests/results/2026-12-03-dialects}
LEVELS=${LEVELS:-300 600 900}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-18820}
taskset -c 0 ./target/release/transcription-server --host 127.0.0.1 --port "$PORT" --log-level warn \
    --max-sessions 4000 --cores 1 --model-workers 1 >/dev/null 2>&1 &
PID=$!
sleep 1
for round in $(seq "$ROUNDS"); do
  for level in $LEVELS; do
    for dialect in native deepgram openai; do
      load=$(cut -d' ' -f1 /proc/loadavg)
      taskset -c 1 ./target/release/loadgen --json --url "http://127.0.0.1:$PORT" stream \
          --file tests/fixtures/two_utterances.wav --sessions "$level" --ramp 5s --duration 9.9s \
          --dialect "$dialect" --threads 1 --server-pid "$PID" \
        | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); d['round']=$round; d['load1']=$load; print(json.dumps(d))" \
        >>"$OUT/runs.jsonl"
      sleep 2
    done
  done
done
kill "$PID"; wait "$PID"
