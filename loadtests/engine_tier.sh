#!/usr/bin/env bash
# engine_tier.sh — the engine tier (issue 17) on loopback, one run each:
#
# 1. scaling: 1, 2, 4 and 8 engine nodes (`transcription-server engine`,
#    --mock-rtf 0.5, 2 workers each) behind one front end (--engine remote):
#    `loadgen stream --sweep` of real-time streams (interims off) at
#    N x {1..6} sessions; the largest level with no failed session, no
#    ordering violation and final lag p99 <= hangover (500 ms) + 1 s.
# 2. remote overhead: batch requests of one segment (one job each, mock with
#    --mock-latency-ms 0), one connection, closed loop, a local front end vs
#    a remote one with one engine node, interleaved in ROUNDS rounds.
#
#   cargo build --release -p transcription-service -p loadtests
#   loadtests/engine_tier.sh [OUT_DIR]          (needs redis-server, curl, python3)
#
# ENGINES="1 2 4 8" LEVELS="1 2 3 4 5 6" DURATION=10s ROUNDS=3 override the plan.
# Writes OUT_DIR/scaling.jsonl, OUT_DIR/overhead.jsonl and a summary to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
server=$target/release/transcription-server
loadgen=$target/release/loadgen
out=${1:-loadtests/results/$(date +%F)-engine-tier}
engines_plan=${ENGINES:-1 2 4 8}
levels_plan=${LEVELS:-1 2 3 4 5 6}
duration=${DURATION:-10s}
rounds=${ROUNDS:-3}
file=tests/fixtures/two_utterances.wav
mkdir -p "$out"
: >"$out/scaling.jsonl"
: >"$out/overhead.jsonl"

redis_port=16390
redis_url=redis://127.0.0.1:$redis_port/0
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$(mktemp -d)" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

port=18500
front_pid=
start_front() { # start_front ARGS...: a front end on a new $port, ready
  port=$((port + 1))
  "$server" --host 127.0.0.1 --port "$port" --cores 2 --node-id "fe-$port" \
    --log-level warn "$@" >/dev/null 2>&1 &
  front_pid=$!
  pids+=("$front_pid")
  for _ in $(seq 200); do curl -sf "localhost:$port/v1/health" >/dev/null && return; sleep 0.1; done
  echo "engine_tier.sh: the front end never answered" >&2; exit 1
}
stop_front() { kill "$front_pid"; wait "$front_pid" 2>/dev/null || true; }
engine_pids=()
start_engines() { # start_engines N ARGS...: N engine nodes, listed live by the front end
  local n=$1; shift
  for i in $(seq "$n"); do
    "$server" engine --redis-url "$redis_url" --node-id "engine-$i" --model-workers 2 \
      --log-level warn "$@" >/dev/null 2>&1 &
    engine_pids+=($!)
    pids+=($!)
  done
  for _ in $(seq 300); do
    curl -s "localhost:$port/metrics" | grep -qx "transcribe_engine_remote_engines_live $n" && return
    sleep 0.1
  done
  echo "engine_tier.sh: the engine nodes never registered" >&2; exit 1
}
stop_engines() {
  for pid in "${engine_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${engine_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  engine_pids=()
}

echo "== scaling: engine nodes --mock-rtf 0.5 x 2 workers; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $engines_plan; do
  start_front --redis-url "$redis_url" --engine remote --model-workers 64 \
    --max-sessions 2000
  start_engines "$n" --mock-rtf 0.5
  sweep=$(for level in $levels_plan; do printf '%s,' $((n * level)); done)
  "$loadgen" --url "http://127.0.0.1:$port" --json stream -f "$file" --interim false \
    --sweep "${sweep%,}" --duration "$duration" --ramp 3s |
    python3 -c '
import json, sys
n = int(sys.argv[1])
for line in sys.stdin:
    line = line.strip()
    if line.startswith("{"):
        run = json.loads(line); run["engine_nodes"] = n; print(json.dumps(run))
' "$n" >>"$out/scaling.jsonl"
  stop_engines
  stop_front
done
python3 - "$out/scaling.jsonl" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
best = {}
print(f"{'engines':>7} {'sessions':>8} {'failed':>6} {'viol':>4} {'final p50':>9} {'final p99':>9} {'audio x rt':>10}")
for r in runs:
    lag = r.get("final_lag_ms") or {}
    p99 = lag.get("p99") or 0
    print(f"{r['engine_nodes']:>7} {r['sessions']:>8} {r['failed']:>6} {r['violations']:>4} {lag.get('p50', 0):>9.0f} {p99:>9.0f} {r['audio_x_realtime']:>10.2f}")
    if r["failed"] == 0 and r["violations"] == 0 and p99 <= 1500:
        best[r["engine_nodes"]] = max(best.get(r["engine_nodes"], 0), r["sessions"])
print("sustained (final lag p99 <= 1500 ms, no failure):", best)
one = best.get(1)
for n, s in sorted(best.items()):
    if one:
        print(f"  {n} nodes: {s} streams, efficiency {s / (n * one):.2f}")
PY

echo "== overhead: one-segment batch jobs, mock latency 0, local vs remote; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
  start_front --model-workers 2
  "$loadgen" --url "http://127.0.0.1:$port" --json transcribe -f tests/fixtures/hello.wav \
    --connections 1 --duration 5s --warmup 1s |
    python3 -c 'import json,sys; [print(json.dumps(dict(json.loads(l), setup="local", round=int(sys.argv[1])))) for l in sys.stdin if l.startswith("{")]' "$round" \
    >>"$out/overhead.jsonl"
  stop_front
  start_front --redis-url "$redis_url" --engine remote --model-workers 8
  start_engines 1
  "$loadgen" --url "http://127.0.0.1:$port" --json transcribe -f tests/fixtures/hello.wav \
    --connections 1 --duration 5s --warmup 1s |
    python3 -c 'import json,sys; [print(json.dumps(dict(json.loads(l), setup="remote", round=int(sys.argv[1])))) for l in sys.stdin if l.startswith("{")]' "$round" \
    >>"$out/overhead.jsonl"
  stop_engines
  stop_front
done
python3 - "$out/overhead.jsonl" <<'PY'
import json, sys
for r in (json.loads(l) for l in open(sys.argv[1])):
    lat = r.get("latency_ms") or {}
    print(f"round {r['round']} {r['setup']:>6}: requests {r.get('requests')} p50 {lat.get('p50')} ms p99 {lat.get('p99')} ms")
PY
