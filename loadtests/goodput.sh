#!/usr/bin/env bash
# goodput.sh — past the engine's capacity (issue 18): goodput (audio seconds
# per wall second of the sessions that completed), refusals and their
# latency, and final lag of the admitted, at 0.5x, 1x, 2x and 4x the engine's
# capacity, with admission by capacity on (the default) and off
# (`--engine-max-utilisation 0`, the behaviour before it). Loopback only;
# every run is bounded.
#
#   cargo build --release -p transcription-service -p loadtests      (mock)
#   cargo build --release --features whisper -p transcription-service -p loadtests
#   loadtests/goodput.sh mock|whisper [OUT_DIR]
#
# mock: 2 workers at --mock-rtf 0.5 (4 audio seconds per second), the server
# pinned to CPU 0 and the load generator to CPU 1; 1x is 4 streams.
# whisper: tiny.en, 2 workers; the server on both CPUs (the load generator's
# paced sends cost little; its send delay is reported); 1x is the live
# capacity the server measured at start-up, in streams.
# Writes one JSON line per run to OUT_DIR/runs.jsonl and a table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
engine=${1:-mock}
target=${CARGO_TARGET_DIR:-target}
server=$target/release/transcription-server
loadgen=$target/release/loadgen
file=${FILE:-loadtests/data/speech_9s.wav}
duration=${DURATION:-20s}
out=${2:-loadtests/results/$(date +%F)-goodput-$engine}
mkdir -p "$out"
: >"$out/runs.jsonl"
command -v curl >/dev/null || { echo "goodput.sh: curl is needed" >&2; exit 1; }

port=18400
pid=
trap '[[ -n $pid ]] && kill $pid 2>/dev/null || true' EXIT
start() { # start ARGS...: a server on $port, ready
  port=$((port + 1))
  case $engine in
    mock) taskset -c 0 "$server" --host 127.0.0.1 --port "$port" --cores 1 \
            --model-workers 2 --mock-rtf 0.5 --log-level warn "$@" >/dev/null 2>&1 & ;;
    whisper) "$server" --host 127.0.0.1 --port "$port" --model whisper \
               --model-path "${MODEL:-models/ggml-tiny.en.bin}" --log-level warn "$@" >/dev/null 2>&1 & ;;
    *) echo "usage: loadtests/goodput.sh mock|whisper [OUT_DIR]" >&2; exit 2 ;;
  esac
  pid=$!
  for _ in $(seq 600); do curl -sf "localhost:$port/v1/health" >/dev/null && break; sleep 0.1; done
  # Whisper: wait for the model and the warm-up (ready, or saturated at rest).
  for _ in $(seq 600); do
    curl -s "localhost:$port/v1/health" | grep -q '"model_state":"ready"' && return
    sleep 0.1
  done
  echo "goodput.sh: the server never became ready" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
capacity() { # the live capacity the server measured, audio s per s
  curl -s "localhost:$port/v1/sessions/metrics" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["engine"]["live_capacity"] or 0)'
}
run() { # run LABEL MULTIPLE SESSIONS: one loadgen stream run, its JSON line
  local pin=()
  [[ $engine == mock ]] && pin=(taskset -c 1)
  "${pin[@]}" "$loadgen" --url "http://127.0.0.1:$port" --json stream -f "$file" -s "$3" \
    --duration "$duration" --ramp 2s --timeout 30s --server-pid "$pid" 2>/dev/null |
    grep '^{' | tail -n 1 |
    python3 -c 'import json,sys; d=json.load(sys.stdin); d["label"]=sys.argv[1]; d["multiple"]=float(sys.argv[2]); print(json.dumps(d))' "$1" "$2" |
    tee -a "$out/runs.jsonl" >/dev/null
}

start
unit=4
if [[ $engine == whisper ]]; then
  unit=$(python3 -c "import sys; print(max(1, round(float(sys.argv[1]))))" "$(capacity)")
fi
stop
echo "1x = $unit streams" | tee "$out/unit.txt"
for admission in on off; do
  for multiple in 0.5 1 2 4; do
    sessions=$(python3 -c "import sys; print(max(1, round(float(sys.argv[1]) * int(sys.argv[2]))))" "$multiple" "$unit")
    if [[ $admission == on ]]; then start; else start --engine-max-utilisation 0; fi
    run "$admission" "$multiple" "$sessions"
    stop
  done
done
python3 - "$out/runs.jsonl" <<'EOF'
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
print("| admission | offered | sessions | completed | refused | failed | goodput audio s/s | refusal p99 ms | final lag p99 ms (admitted) | send delay p99 ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in runs:
    print(f"| {r['label']} | {r['multiple']}x | {r['sessions']} | {r['completed']} | {r.get('refused', 0)} | {r['failed']} "
          f"| {r.get('goodput_audio_s_per_s', 0):.2f} | {r.get('refusal_ms', {}).get('p99', 0):.1f} "
          f"| {r['final_lag_ms']['p99']:.0f} | {r['send_late_ms']['p99']:.1f} |")
EOF
