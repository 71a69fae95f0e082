#!/usr/bin/env bash
# The official Deepgram Python SDK against the real server (issue 15):
# tests/sdk/deepgram/test_deepgram_sdk.py streams a fixture live (interim and
# final Results, Finalize, KeepAlive over a silence longer than the idle
# timeout, CloseStream) and sends a pre-recorded request, changing nothing in
# the SDK but its base URL and key.
#
# Idempotent: the virtualenv (every package pinned in
# tests/sdk/deepgram/requirements.txt, from PyPI) lives under the cargo target
# directory and is rebuilt only when the pins change. The server binary is
# $TRANSCRIPTION_SERVER_BIN when scripts/test.sh exported it, else built here.
# Ends with pytest's own summary line (`N passed ...`).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "test-sdk-deepgram: $*"; }
command -v python3 >/dev/null || { echo "test-sdk-deepgram: python3 is needed" >&2; exit 1; }

target=${CARGO_TARGET_DIR:-target}
venv=$target/sdk-venv/deepgram
requirements=tests/sdk/deepgram/requirements.txt
stamp=$venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    say "venv $venv is up to date"
else
    say "creating $venv (deepgram-sdk and its pinned dependencies from PyPI)"
    rm -rf -- "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --only-binary=:all: --no-deps -r "$requirements"
    echo "$want" >"$stamp"
fi

binary=${TRANSCRIPTION_SERVER_BIN:-}
if [[ -z $binary ]]; then
    binary=$(cargo build --bin transcription-server --message-format=json-render-diagnostics |
        "$venv/bin/python" -c '
import json, sys
for line in sys.stdin:
    if line.startswith("{"):
        m = json.loads(line)
        if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "transcription-server" and m.get("executable"):
            print(m["executable"])')
fi
[[ -x $binary ]] || { echo "test-sdk-deepgram: no transcription-server binary" >&2; exit 1; }
export TRANSCRIPTION_SERVER_BIN=$binary

# The SDK imports websockets.legacy, which warns on import: not ours to fix.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
"$venv/bin/python" -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning tests/sdk/deepgram 2>&1 |
    tee "$log" || status=$?
scripts/pytest-summary.sh "deepgram sdk tests" "$log"
exit "$status"
