#!/usr/bin/env bash
# make-audio.sh — the "meeting" file of the engine comparison: every line of a
# sentence list spoken by flite's `slt` voice, 16 kHz mono PCM16, with pauses of
# 0.6–2.0 s of digital silence between utterances (a fixed pattern, so the file
# is the same bytes on every machine with the same flite and sox).
#
#   loadtests/engine/make-audio.sh [SENTENCES [OUT_DIR]]
#     SENTENCES  default loadtests/engine/sentences.txt (one utterance a line)
#     OUT_DIR    default loadtests/results/engine-audio
#
# Writes OUT_DIR/meeting.wav, OUT_DIR/meeting.txt (the reference: the
# sentences joined by spaces, one line) and OUT_DIR/meeting.tsv (START<TAB>END
# <TAB>TEXT per utterance, seconds). Fails if the file is shorter than 60 s.
# Needs flite and sox (`apt-get install -y flite sox`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sentences=${1:-$here/sentences.txt}
out=${2:-$here/../results/engine-audio}
for tool in flite sox soxi awk; do
  command -v "$tool" >/dev/null || { echo "make-audio: $tool is not installed" >&2; exit 1; }
done
[[ -f $sentences ]] || { echo "make-audio: no $sentences" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT

fmt=(-r 16000 -c 1 -b 16 -e signed-integer)
lead=0.5 # silence before the first and after the last utterance
parts=()
: >"$work/meeting.tsv"
t=$lead
i=0
while IFS= read -r line || [[ -n $line ]]; do
  [[ -n ${line// /} ]] || continue
  ((i < 100)) || { echo "make-audio: more than 100 sentences" >&2; exit 1; }
  # Speak, resample to 16 kHz PCM16 without dither, trim flite's own silence.
  flite -voice slt -t "$line" -o "$work/raw.wav"
  sox -D "$work/raw.wav" "${fmt[@]}" "$work/u$i.wav" \
    silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse
  len=$(soxi -D "$work/u$i.wav")
  end=$(awk -v t="$t" -v l="$len" 'BEGIN { printf "%.3f", t + l }')
  printf '%s\t%s\t%s\n' "$t" "$end" "$line" >>"$work/meeting.tsv"
  # A pause after each utterance: 0.6 + ((37 i) mod 15) / 10 s, i.e. 0.6–2.0 s.
  pause=$(awk -v i="$i" 'BEGIN { printf "%.1f", 0.6 + ((37 * i) % 15) / 10 }')
  sox -D -n "${fmt[@]}" "$work/p$i.wav" trim 0 "$pause"
  parts+=("$work/u$i.wav" "$work/p$i.wav")
  t=$(awk -v e="$end" -v p="$pause" 'BEGIN { printf "%.3f", e + p }')
  i=$((i + 1))
done <"$sentences"
((i > 0)) || { echo "make-audio: $sentences has no sentences" >&2; exit 1; }
# The last pause is replaced by the trailing silence.
unset 'parts[-1]'
sox -D -n "${fmt[@]}" "$work/edge.wav" trim 0 "$lead"
sox -D "$work/edge.wav" "${parts[@]}" "$work/edge.wav" "$work/meeting.wav"

duration=$(soxi -D "$work/meeting.wav")
if ! awk -v d="$duration" 'BEGIN { exit !(d >= 60) }'; then
  echo "make-audio: the file is only $duration s; the comparison needs >= 60 s (add sentences)" >&2
  exit 1
fi
grep -v '^[[:space:]]*$' "$sentences" | tr '\n' ' ' | sed 's/ *$//' >"$work/meeting.txt"
echo >>"$work/meeting.txt"
mv "$work/meeting.wav" "$work/meeting.txt" "$work/meeting.tsv" "$out/"
echo "make-audio: $out/meeting.wav: $i utterances, $duration s"
