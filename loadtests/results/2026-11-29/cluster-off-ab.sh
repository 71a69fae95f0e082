#!/bin/bash
# A/B: the server before the cluster layer (8fd2325) and with it wired in but off (bd6461b)
LG=/work/target-loadgen/release/loadgen
for round in 1 2 3; do
  for side in before after; do
    if [ $side = before ]; then BIN=/work/target-ab-before/release/transcription-server; else BIN=/work/target-loadgen/release/transcription-server; fi
    $BIN --host 127.0.0.1 --port 8010 --log-level warn > /dev/null 2>&1 &
    PID=$!
    sleep 1
    kill -0 $PID || { echo "server $side did not start"; exit 1; }
    H=$($LG --url http://127.0.0.1:8010 --json health -c 16 -d 4s --warmup 1s | python3 -c 'import json,sys; d=json.loads(sys.stdin.readline()); print(round(d.get("rps", d.get("throughput_rps",0))))')
    S=$($LG --url http://127.0.0.1:8010 --json stream -s 100 --no-pace -d 8s --ramp 1s --file tests/fixtures/two_utterances.wav | python3 -c 'import json,sys; d=json.loads(sys.stdin.readline()); print(d["audio_x_realtime"], "violations", d["violations"])')
    echo "$round $side health_rps=$H stream=$S"
    kill $PID; wait $PID 2>/dev/null
  done
done
