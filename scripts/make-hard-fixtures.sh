#!/usr/bin/env bash
# make-hard-fixtures.sh — (re)generate tests/fixtures/whisper-hard/, harder
# versions of the word-error-rate set tests/fixtures/whisper/wer_01..08.wav
# (make-whisper-fixtures.sh) for comparing engines (loadtests/engine/):
#
#   noisy_0N.wav  pink noise mixed in at 15 dB SNR: the noise's RMS is the
#                 speech's RMS (measured with the file's leading and trailing
#                 silence trimmed) minus 15 dB. 16 kHz mono PCM16.
#   tel_0N.wav    telephone band: band-pass 300–3400 Hz, 8 kHz, through
#                 G.711 mu-law and back. 8 kHz mono PCM16.
#   wer.txt       NAME<TAB>REFERENCE for all of them (the references of
#                 tests/fixtures/whisper/wer.txt).
#
# Deterministic: sox runs in repeatable mode (-R: fixed noise seed) and without
# dither (-D), so the same sox version writes the same bytes. Idempotent:
# everything is built in a temporary directory, then moved into place.
# Needs sox (`apt-get install -y sox`) and awk.
set -euo pipefail

for tool in sox soxi awk; do
  command -v "$tool" >/dev/null || { echo "make-hard-fixtures: $tool is not installed" >&2; exit 1; }
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/tests/fixtures/whisper"
out="$root/tests/fixtures/whisper-hard"
snr_db=15
work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT
[[ -f $src/wer.txt ]] || { echo "make-hard-fixtures: no $src/wer.txt (scripts/make-whisper-fixtures.sh)" >&2; exit 1; }

# rms FILE [EFFECTS...]: the RMS amplitude sox's `stat` reports.
rms() {
  local file=$1
  shift
  sox "$file" -n "$@" stat 2>&1 | awk '/^RMS +amplitude/ { print $3 }'
}

: >"$work/wer.txt"
names=(wer.txt)
count=0
while IFS=$'\t' read -r name reference; do
  [[ -n $name ]] || continue
  ((count < 100)) || { echo "make-hard-fixtures: more than 100 lines in wer.txt" >&2; exit 1; }
  count=$((count + 1))
  clean="$src/$name"
  [[ -f $clean ]] || { echo "make-hard-fixtures: no $clean" >&2; exit 1; }
  n=${name#wer_}
  n=${n%.wav}

  # Noise at -15 dB relative to the speech.
  samples=$(soxi -s "$clean")
  speech_rms=$(rms "$clean" silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse)
  sox -D -R -n -r 16000 -c 1 -b 16 -e signed-integer "$work/noise.wav" synth "${samples}s" pinknoise
  noise_rms=$(rms "$work/noise.wav")
  gain=$(awk -v s="$speech_rms" -v n="$noise_rms" -v db="$snr_db" 'BEGIN { printf "%.6f", s * 10 ^ (-db / 20) / n }')
  sox -D -R -m -v 1 "$clean" -v "$gain" "$work/noise.wav" -r 16000 -c 1 -b 16 -e signed-integer "$work/noisy_$n.wav"

  # Telephone: band-limit, 8 kHz, mu-law, back to PCM16.
  sox -D -R "$clean" -r 8000 -c 1 -e u-law "$work/ulaw.wav" sinc 300-3400 rate -v 8000
  sox -D -R "$work/ulaw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$work/tel_$n.wav"

  printf 'noisy_%s.wav\t%s\n' "$n" "$reference" >>"$work/wer.txt"
  names+=("noisy_$n.wav" "tel_$n.wav")
done <"$src/wer.txt"
# The telephone lines after the noisy ones.
for name in "${names[@]}"; do
  [[ $name == tel_* ]] || continue
  n=${name#tel_}
  reference=$(grep -P "^noisy_${n}\t" "$work/wer.txt" | cut -f2-)
  printf '%s\t%s\n' "$name" "$reference" >>"$work/wer.txt"
done

mkdir -p "$out"
for name in "${names[@]}"; do
  mv "$work/$name" "$out/$name"
done
echo "make-hard-fixtures: wrote $out ($count noisy, $count telephone; $(du -sh "$out" | cut -f1))"
