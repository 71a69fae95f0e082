#!/usr/bin/env bash
# The official OpenAI Python SDK against the real server (tests/sdk/openai):
# models, transcription in every format, streamed transcription, the refused
# translation, and Realtime transcription sessions. Idempotent: makes a venv
# in the target dir and installs the pinned packages
# (tests/sdk/openai/requirements.txt, from PyPI) only when they changed;
# builds the server; the tests start it on an ephemeral port themselves.
# Uses $TRANSCRIPTION_SERVER_BIN when set (scripts/test.sh builds it).
# Ends with pytest's closing line and one of its own:
#   openai sdk tests: N passed, N failed
set -euo pipefail
cd "$(dirname "$0")/.."

command -v python3 >/dev/null 2>&1 || { echo "test-sdk-openai: python3 not found" >&2; exit 1; }
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "test-sdk-openai: please install python3-venv" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi

target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
venv="$target_dir/sdk-venv/openai"
requirements=tests/sdk/openai/requirements.txt
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
if ! cmp -s "$requirements" "$venv/requirements.installed"; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.installed"
fi

binary=${TRANSCRIPTION_SERVER_BIN:-}
if [[ -z "$binary" ]]; then
    binary=$(cargo build --bin transcription-server --message-format=json-render-diagnostics |
        python3 -c '
import json, sys
for line in sys.stdin:
    if not line.startswith("{"):
        continue
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "transcription-server" and message.get("executable"):
        print(message["executable"])')
fi
[[ -x "$binary" ]] || { echo "test-sdk-openai: no transcription-server binary" >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
PYTHONDONTWRITEBYTECODE=1 SERVER_BIN=$binary "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/sdk/openai 2>&1 | tee "$log" || status=$?
scripts/pytest-summary.sh "openai sdk tests" "$log"
exit "$status"
