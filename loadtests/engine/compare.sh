#!/usr/bin/env bash
# compare.sh — this server's Whisper engine next to faster-whisper, in one run,
# on the same files, weights (Whisper tiny.en) and CPUs (issue 16). See
# loadtests/engine/README.md.
#
#   scripts/fetch-model.sh
#   cargo build --release --features whisper -p transcription-service -p loadtests
#   loadtests/engine/setup.sh
#   loadtests/engine/compare.sh [options]
#
# Options:
#   --out DIR             raw outputs (default loadtests/results/<today>-engine)
#   --runs N              measured runs per figure after a warm-up (default 3)
#   --concurrency N       concurrent requests of the server's second figure (default 4)
#   --server 'FLAGS'      a server configuration: flags added to the command line
#                         below; repeat for several. 'default' means no extra flags.
#                         'bin=PATH FLAGS' runs the server binary PATH (another
#                         build, e.g. with OpenBLAS) for that configuration.
#                         Without any, $SERVER_CONFIGS (configurations separated by
#                         ';') or: 'default' and '--model-workers 1 --model-threads 2'.
#   --fw-configs LIST     faster-whisper configurations (fw_bench.py; default all)
#   --word-timestamps on|off|both   faster-whisper word timestamps (default both)
#   --skip-server, --skip-fw, --skip-wer   (results of an earlier run into the
#                         same OUT stay and are summarised with the new ones)
#   --quick               --runs 1 (a check that everything works; noisy figures)
#
# Every server runs as
#   target/release/transcription-server --host 127.0.0.1 --port <free port>
#     --model whisper --model-path models/ggml-tiny.en.bin --log-level warn FLAGS
# (FLAGS with `--model ct2` run CTranslate2 instead, on models/ct2-tiny.en
# unless they give --model-path; scripts/fetch-ct2.sh, --features ct2)
# ($SERVER and $MODEL override the binary and the model; $CT2_MODEL the
# CTranslate2 directory). Loopback only; every wait is bounded; servers are
# stopped on exit. The summary (markdown) goes to stdout and OUT/summary.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

here=loadtests/engine
server_bin=${SERVER:-${CARGO_TARGET_DIR:-target}/release/transcription-server}
model=${MODEL:-models/ggml-tiny.en.bin}
ct2_model=${CT2_MODEL:-models/.cache/ct2-tiny.en}
python=$here/.venv/bin/python
out=loadtests/results/$(date +%F)-engine
runs=3
concurrency=4
configs=()
fw_configs=
word_timestamps=both
skip_server=0 skip_fw=0 skip_wer=0
failed=0

die() { echo "compare: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$here/compare.sh" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

while (($#)); do
  case $1 in
    --out) out=${2:?}; shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --concurrency) concurrency=${2:?}; shift 2 ;;
    --server) configs+=("${2?}"); shift 2 ;;
    --fw-configs) fw_configs=${2:?}; shift 2 ;;
    --word-timestamps) word_timestamps=${2:?}; shift 2 ;;
    --skip-server) skip_server=1; shift ;;
    --skip-fw) skip_fw=1; shift ;;
    --skip-wer) skip_wer=1; shift ;;
    --quick) runs=1; shift ;;
    -h | --help) usage ;;
    *) echo "compare: unknown option $1" >&2; usage ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]?$ ]] || die "--runs must be 1..99"
[[ $concurrency =~ ^[1-9][0-9]?$ ]] || die "--concurrency must be 1..99"
if ((${#configs[@]} == 0)); then
  if [[ -n ${SERVER_CONFIGS:-} ]]; then
    IFS=';' read -r -a configs <<<"$SERVER_CONFIGS"
  else
    configs=("default" "--model-workers 1 --model-threads 2")
  fi
fi

for tool in curl python3 sox soxi flite; do
  command -v "$tool" >/dev/null || die "$tool is needed (apt-get install -y curl sox flite)"
done
if ((!skip_server)); then
  [[ -x $server_bin ]] || die "no $server_bin: cargo build --release --features whisper -p transcription-service -p loadtests"
  [[ -f $model ]] || die "no $model: scripts/fetch-model.sh"
fi
if ((!skip_fw)) || ((!skip_wer)); then
  [[ -x $python && -f $ct2_model/model.bin ]] || die "no faster-whisper venv or model: loadtests/engine/setup.sh"
fi

mkdir -p "$out"
# The run's inputs and machine state, for reading the figures later. Appended:
# a run with --skip-server or --skip-fw keeps the other side's earlier results
# in OUT, and the summary shows them.
{
  [[ ! -s $out/run.txt ]] || echo "--- another run into the same directory:"
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "cpus: $(nproc) ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo))"
  echo "server: $server_bin ($(stat -c %y "$server_bin" 2>/dev/null || echo absent))"
  echo "model: $model; ct2 model: $ct2_model"
  echo "runs: $runs after a warm-up; concurrency: $concurrency"
} >>"$out/run.txt"
load_note() { echo "load average before $1: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/run.txt" >&2; }

# The test audio: generated here, the same bytes every time.
"$here/make-audio.sh" "$here/sentences.txt" "$out" >&2
audio=$out/meeting.wav
# The WAV is 3 MB and made again by every run: keep it out of commits.
echo meeting.wav >"$out/.gitignore"
echo "meeting.wav: $(soxi -D "$audio") s, sha256 $(sha256sum "$audio" | cut -d' ' -f1)" >>"$out/run.txt"

# --- this server ----------------------------------------------------------
pid=
stop_server() {
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
}
cleanup() {
  local job
  for job in $(jobs -p); do kill "$job" 2>/dev/null || true; done
  stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
status_kb() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0; }
# The server's CPU seconds so far (all threads, user + system), from /proc.
clock_ticks=$(getconf CLK_TCK)
cpu_s() { awk -v t="$clock_ticks" '{ printf "%.2f\n", ($14 + $15) / t }' "/proc/$pid/stat" 2>/dev/null || echo 0; }

# post FILE RESPONSE: one transcription; prints the HTTP status.
post() {
  curl -s --max-time 600 -o "$2" -w '%{http_code}' -H 'content-type: audio/wav' \
    --data-binary @"$1" "http://127.0.0.1:$port/v1/transcribe" || true
}
# round DIR TAG N: N concurrent requests of the meeting file; prints the wall seconds.
round() {
  local dir=$1 tag=$2 n=$3 i begin end
  local pids=()
  begin=$EPOCHREALTIME
  for ((i = 0; i < n; i++)); do
    post "$audio" "$dir/$tag-$i.json" >"$dir/$tag-$i.code" &
    pids+=($!)
  done
  wait "${pids[@]}"
  end=$EPOCHREALTIME
  for ((i = 0; i < n; i++)); do
    [[ $(cat "$dir/$tag-$i.code") == 200 ]] || { echo "compare: request $tag-$i got HTTP $(cat "$dir/$tag-$i.code")" >&2; return 1; }
  done
  python3 -c "print(f'{$end - $begin:.4f}')"
}

# server_wer DIR FIXTURES TAG: NAME<TAB>TEXT of every file of FIXTURES/wer.txt.
server_wer() {
  local dir=$1 fixtures=$2 tag=$3 name code
  : >"$dir/wer-$tag.tsv"
  while IFS=$'\t' read -r name _; do
    [[ -n $name ]] || continue
    code=$(post "$fixtures/$name" "$dir/wer-$tag-response.json")
    [[ $code == 200 ]] || { echo "compare: $name got HTTP $code" >&2; return 1; }
    printf '%s\t%s\n' "$name" "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["text"].replace("\t", " ").replace("\n", " "))' "$dir/wer-$tag-response.json")" >>"$dir/wer-$tag.tsv"
  done <"$fixtures/wer.txt"
  rm -f "$dir/wer-$tag-response.json"
}

# measure_server INDEX FLAGS: everything about one server configuration.
measure_server() {
  local index=$1 flags=$2 dir=$out/server-$1 extra=() start ready deadline code r wall cpu0
  local bin=$server_bin
  if [[ $flags == bin=* ]]; then
    bin=${flags%% *}
    bin=${bin#bin=}
    [[ $flags == *" "* ]] && flags=${flags#* } || flags=default
    [[ -x $bin ]] || die "no server binary $bin"
  fi
  [[ $flags == default ]] || read -r -a extra <<<"$flags"
  # A configuration may name its engine (`--model ct2`: CTranslate2, its
  # directory models/ct2-tiny.en unless --model-path says otherwise) and its
  # own weights; otherwise whisper.cpp on $model.
  local engine=(--model whisper)
  if [[ " ${extra[*]} " == *" --model "* ]]; then
    engine=()
  elif [[ " ${extra[*]} " != *" --model-path "* ]]; then
    extra=(--model-path "$model" "${extra[@]}")
  fi
  mkdir -p "$dir"
  printf 'flags\t%s\n' "$flags" >"$dir/info.tsv"
  [[ $bin == "$server_bin" ]] || printf 'bin\t%s\n' "$bin" >>"$dir/info.tsv"
  port=$(free_port)
  start=$EPOCHREALTIME
  "$bin" --host 127.0.0.1 --port "$port" "${engine[@]}" \
    --log-level warn "${extra[@]}" >"$dir/server.log" 2>&1 &
  pid=$!
  ready=
  deadline=$(python3 -c "print(int($start) + 60)") # 60 s at most
  while ((${EPOCHREALTIME%.*} < deadline)); do
    kill -0 "$pid" 2>/dev/null || break
    code=$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "http://127.0.0.1:$port/v1/ready" || true)
    if [[ $code == 200 ]]; then ready=$EPOCHREALTIME; break; fi
    sleep 0.05
  done
  if [[ -z $ready ]]; then
    echo "compare: server '$flags' never became ready; its log:" >&2
    tail -n 20 "$dir/server.log" >&2
    printf 'failed\tnot ready\n' >>"$dir/info.tsv"
    failed=$((failed + 1))
    stop_server
    return 0
  fi
  printf 'startup_s\t%s\n' "$(python3 -c "print(f'{$ready - $start:.3f}')")" >>"$dir/info.tsv"
  printf 'rss_ready_kb\t%s\n' "$(status_kb VmRSS)" >>"$dir/info.tsv"
  echo "compare: server '$flags' ready on port $port" >&2

  # Warm-up: one request, then one round with every worker busy.
  round "$dir" warmup-1 1 >/dev/null
  round "$dir" warmup-c "$concurrency" >/dev/null
  cpu0=$(cpu_s)
  for ((r = 1; r <= runs; r++)); do
    wall=$(round "$dir" "single-$r" 1)
    printf '1\t%s\n' "$wall" >>"$dir/walls.tsv"
    echo "compare:   1 request: ${wall} s" >&2
  done
  # CPU seconds of the server over the measured rounds of each figure: how
  # much CPU the work costs, which a busy machine changes far less than wall time.
  printf '1\t%s\t%s\n' "$(python3 -c "print(f'{$(cpu_s) - $cpu0:.2f}')")" "$runs" >>"$dir/cpu.tsv"
  cpu0=$(cpu_s)
  for ((r = 1; r <= runs; r++)); do
    wall=$(round "$dir" "concurrent-$r" "$concurrency")
    printf '%s\t%s\n' "$concurrency" "$wall" >>"$dir/walls.tsv"
    echo "compare:   $concurrency requests: ${wall} s" >&2
  done
  printf '%s\t%s\t%s\n' "$concurrency" "$(python3 -c "print(f'{$(cpu_s) - $cpu0:.2f}')")" "$runs" >>"$dir/cpu.tsv"
  printf 'rss_kb\t%s\n' "$(status_kb VmRSS)" >>"$dir/info.tsv"
  printf 'hwm_kb\t%s\n' "$(status_kb VmHWM)" >>"$dir/info.tsv"
  if ((!skip_wer)); then
    server_wer "$dir" tests/fixtures/whisper clean
    server_wer "$dir" tests/fixtures/whisper-hard hard
  fi
  # Keep one response of each kind; the rest were the same file.
  find "$dir" -name '*.code' -delete
  find "$dir" \( -name 'warmup-*.json' -o -name 'single-[2-9]*.json' -o -name 'concurrent-*.json' \) -delete
  stop_server
}

if ((!skip_server)); then
  load_note "the server"
  for index in "${!configs[@]}"; do
    measure_server "$index" "${configs[$index]}"
  done
fi

# --- faster-whisper -------------------------------------------------------
if ((!skip_fw)); then
  load_note faster-whisper
  rm -f "$out/fw.jsonl"
  fw_args=(speed --model "$ct2_model" --audio "$audio" --runs "$runs" --word-timestamps "$word_timestamps" --out "$out/fw.jsonl")
  [[ -z $fw_configs ]] || fw_args+=(--configs "$fw_configs")
  "$python" "$here/fw_bench.py" "${fw_args[@]}" >&2
fi
if ((!skip_wer)); then
  for compute in int8 float32; do
    "$python" "$here/fw_bench.py" wer --model "$ct2_model" --compute-type "$compute" \
      --fixtures tests/fixtures/whisper --out "$out/fw-wer-$compute-clean.tsv"
    "$python" "$here/fw_bench.py" wer --model "$ct2_model" --compute-type "$compute" \
      --fixtures tests/fixtures/whisper-hard --out "$out/fw-wer-$compute-hard.tsv"
  done
fi
load_note "the summary"

python3 "$here/summarise.py" "$out" | tee "$out/summary.md"
echo "compare: raw outputs in $out" >&2
((failed == 0)) || die "$failed server configuration(s) never became ready"
