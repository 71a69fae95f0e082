#!/usr/bin/env bash
# make-whisper-fixtures.sh — (re)generate tests/fixtures/whisper/, the speech the
# real-engine tests (tests/whisper.rs) transcribe: flite's `slt` voice, which
# Whisper hears well, at 16 kHz mono PCM16.
#
# Needs flite and sox (`apt-get install -y flite sox`). Deterministic (no dither),
# idempotent: everything is built in a temporary directory, then moved into place.
#
# Files:
#   hello_world.wav      "hello world this is a test", 0.3 s silence each side
#   two_utterances.wav   two sentences with 1.5 s of digital silence between
#   german.wav           a German sentence (espeak-ng's `de` voice), for the
#                        translation and `language` tests with the multilingual
#                        base model
#   wer_01.wav … wer_08.wav and wer.txt
#                        the word-error-rate set: one sentence each; wer.txt has
#                        one line per file, `NAME<TAB>REFERENCE TEXT`
set -euo pipefail

for tool in flite sox espeak-ng; do
    command -v "$tool" >/dev/null || { echo "make-whisper-fixtures: $tool is not installed (apt-get install -y flite sox espeak-ng)" >&2; exit 1; }
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/tests/fixtures/whisper"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# flite speaks at 16 kHz; trim its own leading and trailing silence so the
# padding added below is all the silence there is.
speak() { # speak TEXT OUTPUT
    flite -voice slt -t "$1" -o "$work/speak.wav"
    sox -D "$work/speak.wav" -r 16000 -c 1 -b 16 -e signed-integer "$2" \
        silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse
}

speak "hello world this is a test" "$work/hello_dry.wav"
sox -D "$work/hello_dry.wav" "$work/hello_world.wav" pad 0.3 0.3

speak "the weather is nice today" "$work/first.wav"
speak "please send me the report tomorrow" "$work/second.wav"
sox -D -n -r 16000 -c 1 -b 16 -e signed-integer "$work/gap.wav" trim 0 1.5
sox -D "$work/first.wav" "$work/gap.wav" "$work/second.wav" "$work/two_utterances.wav" pad 0.3 0.3

# German for the multilingual model (espeak-ng speaks at 22.05 kHz).
espeak-ng -v de -s 140 -w "$work/german_raw.wav" "Guten Morgen. Das Wetter ist heute sehr schön, und die Sonne scheint."
sox -D "$work/german_raw.wav" -r 16000 -c 1 -b 16 -e signed-integer "$work/german.wav" \
    gain -1 silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse pad 0.3 0.3

sentences=(
    "the meeting starts at nine in the morning"
    "she bought three apples and a loaf of bread"
    "turn left at the next traffic light"
    "the library is closed on sundays"
    "we need to finish the project by friday"
    "my brother plays the guitar every evening"
    "the train to london leaves from platform two"
    "please remember to water the plants"
)
: > "$work/wer.txt"
for i in "${!sentences[@]}"; do
    name=$(printf 'wer_%02d.wav' $((i + 1)))
    speak "${sentences[$i]}" "$work/dry.wav"
    sox -D "$work/dry.wav" "$work/$name" pad 0.3 0.3
    printf '%s\t%s\n' "$name" "${sentences[$i]}" >> "$work/wer.txt"
    files+=("$name")
done

for file in hello_world.wav two_utterances.wav german.wav wer.txt "${files[@]}"; do
    mv "$work/$file" "$out/$file"
done
echo "make-whisper-fixtures: wrote $out"
