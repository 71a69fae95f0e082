#!/usr/bin/env bash
# whisper.sh — the real engine's numbers for loadtests/RESULTS.md: real-time
# factor per worker, memory per worker, batch throughput, concurrent real-time
# streams. Loopback only; every run is bounded.
#
#   scripts/fetch-model.sh
#   cargo build --release --features whisper -p transcription-service -p loadtests
#   loadtests/whisper.sh [OUT_DIR]        (default loadtests/results/<today>-whisper)
#
# Writes the raw outputs to OUT_DIR and a summary to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
server=$target/release/transcription-server
loadgen=$target/release/loadgen
model=${MODEL:-models/ggml-tiny.en.bin}
out=${1:-loadtests/results/$(date +%F)-whisper}
mkdir -p "$out"
for tool in sox curl python3; do
  command -v $tool >/dev/null || { echo "whisper.sh: $tool is needed" >&2; exit 1; }
done

# 30.2 s of speech: the WER set, hello world and the two utterances, joined.
long=$out/long.wav
f=tests/fixtures/whisper
sox "$f"/wer_0{1,2,3,4,5,6,7,8}.wav "$f/hello_world.wav" "$f/two_utterances.wav" "$long"

port=18300
pid=
start() { # start ARGS...: a whisper server on $port, ready
  port=$((port + 1))
  "$server" --host 127.0.0.1 --port "$port" --model whisper --model-path "$model" \
    --log-level warn "$@" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 300); do curl -sf "localhost:$port/v1/ready" >/dev/null && return; sleep 0.1; done
  echo "whisper.sh: the server never became ready" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
trap '[[ -n $pid ]] && kill $pid 2>/dev/null || true' EXIT
batch() { # batch FILE: processing_ms and duration of one request
  curl -s -H 'content-type: audio/wav' --data-binary @"$1" "localhost:$port/v1/transcribe" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["processing_ms"], d["duration"], len(d["segments"]))'
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }

echo "== real-time factor per worker (1 core, 1 worker; 3 runs after a warm-up)"
for threads in 1 2; do
  start --cores 1 --model-workers 1 --model-threads "$threads"
  batch "$long" >/dev/null
  for _ in 1 2 3; do
    read -r ms dur segs < <(batch "$long")
    python3 -c "print('threads $threads: %.2f s of audio (%s segments) in %s ms: RTF %.3f' % ($dur, $segs, $ms, $ms / 1000 / $dur))"
  done | tee -a "$out/rtf.txt"
  stop
done

echo "== memory per worker (RSS once every worker has run a job)"
for workers in 1 2 4; do
  start --cores 1 --model-workers "$workers" --model-threads 1
  ready=$(rss_kb)
  for _ in $(seq $((workers * 2))); do batch "$f/hello_world.wav" >/dev/null & done
  wait $(jobs -p | grep -vx "$pid") 2>/dev/null || true
  echo "workers $workers: RSS ${ready} kB when ready, $(rss_kb) kB after jobs" | tee -a "$out/memory.txt"
  stop
done

echo "== batch throughput (2 cores; 4 connections sending the 30.2 s file, 40 s)"
for cfg in "2 1" "1 2"; do
  read -r workers threads <<<"$cfg"
  start --model-workers "$workers" --model-threads "$threads"
  echo "workers $workers x threads $threads:" | tee -a "$out/batch.txt"
  "$loadgen" --json --url "http://127.0.0.1:$port" transcribe --file "$long" \
    --connections 4 --duration 40s --warmup 5s | tee -a "$out/batch.jsonl" |
    python3 -c "import json,sys; d=json.loads(sys.stdin.read()); a=d['requests']*30.2176; print('  %d requests, %.1f audio s per wall s, latency p50 %.0f ms' % (d['requests'], a/d['duration_s'], d['latency_ms']['p50']))" |
    tee -a "$out/batch.txt"
  stop
done

echo "== concurrent real-time streams (2 cores, 2 workers; 20 ms chunks paced in real time)"
start
"$loadgen" --json --url "http://127.0.0.1:$port" stream --file "$f/two_utterances.wav" \
  --sweep 1,2,4,8,12,16 --duration 30s --ramp 3s > "$out/stream-sweep.jsonl"
stop
python3 - "$out/stream-sweep.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line); f = d["final_lag_ms"]; i = d["interim_lag_ms"]
    print("%2d streams: %d failed, %d violations; final lag p50 %.0f p99 %.0f ms (%d); interim p50 %.0f p99 %.0f ms (%d)"
          % (d["sessions"], d["failed"], d["violations"], f["p50"], f["p99"], f["count"], i["p50"], i["p99"], i["count"]))
PY
