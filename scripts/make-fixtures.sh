#!/usr/bin/env bash
# make-fixtures.sh — (re)generate the small audio files under tests/fixtures/.
#
# Needs espeak-ng and sox (`apt-get install -y espeak-ng sox`). Run from anywhere:
#     scripts/make-fixtures.sh
# It is idempotent: every file is rebuilt from scratch in a temporary directory and
# then moved into place, and the output is deterministic (no dither: sox -D; fixed
# noise seed: sox -R), so re-running it gives the same bytes with the same tools.
#
# Files (all PCM16 little-endian unless noted):
#   hello.wav             "hello world this is a test", 16 kHz mono, 0.3 s silence each side
#   two_utterances.wav    two sentences with 1.5 s of silence between, 16 kHz mono
#   silence.wav           2 s of digital silence, 16 kHz mono
#   noise_low.wav         2 s of white noise at about -60 dBFS RMS, 16 kHz mono
#   hello_stereo_44k.wav  hello, 44.1 kHz stereo (right channel at half level)
#   hello_f32.wav         hello, 16 kHz mono, 32-bit float
#   hello_8k.wav          hello, 8 kHz mono
#   hello.flac            hello, 16 kHz mono FLAC
#   hello.raw             hello, headerless s16le 16 kHz mono
set -euo pipefail

for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || { echo "make-fixtures: $tool is not installed" >&2; exit 1; }
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/tests/fixtures"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# Speech from espeak-ng (22.05 kHz mono) brought to 16 kHz mono PCM16, with the
# silence espeak-ng leaves at both ends trimmed (the `silence` effects, the second one
# on the reversed audio), so the padding below is exactly the silence in the file.
speak() { # speak TEXT OUTPUT
    espeak-ng -v en-us -s 160 -w "$work/speak.wav" "$1"
    sox -D "$work/speak.wav" -r 16000 -c 1 -b 16 -e signed-integer "$2" \
        silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse
}

speak "hello world this is a test" "$work/hello_dry.wav"
sox -D "$work/hello_dry.wav" "$work/hello.wav" pad 0.3 0.3

speak "the quick brown fox" "$work/first.wav"
speak "jumps over the lazy dog" "$work/second.wav"
sox -D -n -r 16000 -c 1 -b 16 -e signed-integer "$work/gap.wav" trim 0 1.5
sox -D "$work/first.wav" "$work/gap.wav" "$work/second.wav" "$work/two_utterances.wav" pad 0.3 0.3

sox -D -n -r 16000 -c 1 -b 16 -e signed-integer "$work/silence.wav" trim 0 2
# sox full-scale white noise measures about -10 dBFS RMS; x0.003 gives about -60 dBFS.
sox -D -R -n -r 16000 -c 1 -b 16 -e signed-integer "$work/noise_low.wav" synth 2 whitenoise vol 0.003

sox -D "$work/hello.wav" -r 44100 -c 2 -b 16 "$work/hello_stereo_44k.wav" remix 1 1v0.5 rate -v 44100
sox -D "$work/hello.wav" -e floating-point -b 32 "$work/hello_f32.wav"
sox -D "$work/hello.wav" -r 8000 "$work/hello_8k.wav" rate -v 8000
sox -D "$work/hello.wav" "$work/hello.flac"
sox -D "$work/hello.wav" -t raw -e signed-integer -b 16 -L "$work/hello.raw"

for file in hello.wav two_utterances.wav silence.wav noise_low.wav hello_stereo_44k.wav \
            hello_f32.wav hello_8k.wav hello.flac hello.raw; do
    mv -f "$work/$file" "$out/$file"
done
ls -l "$out"
