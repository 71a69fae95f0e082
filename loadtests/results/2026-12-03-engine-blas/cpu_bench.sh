#!/usr/bin/env bash
# As run for ct2-spike.txt (a record: the paths are those of that machine).
# cpu_bench.sh BIN N FLAGS... : CPU seconds of the server per request of meeting.wav
set -euo pipefail
bin=$1; n=$2; shift 2
wav=/tmp/eng-blas2/meeting.wav
port=$((20000 + RANDOM % 20000))
cd /work/wt-ct2
"$bin" --host 127.0.0.1 --port $port --log-level warn "$@" >/tmp/cpu_bench.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 300); do curl -sf http://127.0.0.1:$port/v1/ready >/dev/null && break; sleep 0.2; done
curl -sf -X POST -H 'content-type: audio/wav' --data-binary @$wav http://127.0.0.1:$port/v1/transcribe >/dev/null
tick=$(getconf CLK_TCK)
cpu() { awk -v t=$tick '{ print ($14 + $15) / t }' /proc/$pid/stat; }
c0=$(cpu); t0=$(date +%s.%N)
for _ in $(seq $n); do curl -sf -X POST -H 'content-type: audio/wav' --data-binary @$wav http://127.0.0.1:$port/v1/transcribe >/tmp/cpu_bench.json; done
c1=$(cpu); t1=$(date +%s.%N)
python3 - "$c0" "$c1" "$t0" "$t1" "$n" <<'PY'
import sys, json
c0, c1, t0, t1, n = map(float, sys.argv[1:])
audio = 98.370375 * n
print(f"cpu {c1-c0:.2f} s for {audio:.0f} audio s: {audio/(c1-c0):.1f} audio s per CPU s; wall {t1-t0:.1f} s ({audio/(t1-t0):.1f} audio s per wall s)")
print(json.load(open('/tmp/cpu_bench.json'))["text"][:150])
PY
