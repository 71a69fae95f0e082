#!/usr/bin/env bash
# The browser tests: the live page and the dashboard in real headless Chromium
# (tests/browser, docs/WEB.md). Idempotent: installs Chromium and the npm
# packages only when missing, builds the server, starts it on an ephemeral
# port with an API key and an admin key, runs the tests, stops the server.
# Screenshots go to <target dir>/browser-artifacts/. Ends with one line:
#   browser tests: N passed, N failed, N ignored, N skipped
# (node's `todo` tests are the ignored ones, its `skip` tests the skipped ones).
#
# With --whisper: the server is built with the `whisper` feature and runs the
# real engine (scripts/fetch-model.sh first), and the test is
# tests/browser/whisper.test.mjs: Whisper must hear the words the page streams
# from the fake microphone. It ends with `browser tests (whisper): …`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

mode=mock
case ${1:-} in
    "") ;;
    --whisper) mode=whisper ;;
    *) echo "usage: scripts/test-browser.sh [--whisper]" >&2; exit 2 ;;
esac
build_args=()
# The mock with a cost (0.05 s per audio second) so the engine's capacity is
# finite and the dashboard's utilisation chart has a figure to draw.
server_args=(--mock-rtf 0.05)
test_file=browser.test.mjs
label="browser tests"
if [ "$mode" = whisper ]; then
    scripts/fetch-model.sh
    build_args=(--features whisper)
    server_args=(--model whisper --model-path "$root/models/ggml-tiny.en.bin")
    test_file=whisper.test.mjs
    label="browser tests (whisper)"
fi

if [ ! -x /usr/bin/chromium ]; then
    echo "installing Debian's chromium" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# npm writes node_modules/.package-lock.json on every install: older than the
# lock file (or absent) means the packages are stale.
browser_dir=tests/browser
if [ ! -f "$browser_dir/node_modules/.package-lock.json" ] ||
    [ "$browser_dir/package-lock.json" -nt "$browser_dir/node_modules/.package-lock.json" ]; then
    (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi

# Build, and take the binary's path from cargo itself (CARGO_TARGET_DIR, a
# configured target dir or triple: cargo knows).
binary=$(cargo build --bin transcription-server "${build_args[@]}" --message-format=json-render-diagnostics |
    node -e '
        let out = "";
        process.stdin.on("data", (d) => (out += d)).on("end", () => {
            for (const line of out.split("\n")) {
                if (!line.startsWith("{")) continue;
                const m = JSON.parse(line);
                if (m.reason === "compiler-artifact" && m.target.name === "transcription-server" && m.executable) {
                    console.log(m.executable);
                }
            }
        });')
[ -x "$binary" ] || { echo "no transcription-server binary from cargo build" >&2; exit 1; }
target_dir=$(cargo metadata --format-version 1 --no-deps |
    node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).target_directory))')
artifacts="$target_dir/browser-artifacts"
mkdir -p "$artifacts"
if [ "$mode" = whisper ]; then rm -f "$artifacts/page-whisper.png"; else rm -f "$artifacts"/*.png; fi

# Fresh random keys each run, passed in the environment (not on a command line
# that `ps` shows).
api_key=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
admin_key=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
server_log="$artifacts/server-$mode.log"
server_out=$(mktemp)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -f "$server_out"
}
trap cleanup EXIT
TRANSCRIBE_API_KEY=$api_key TRANSCRIBE_ADMIN_KEY=$admin_key \
    "$binary" --host 127.0.0.1 --port 0 --log-level warn "${server_args[@]}" >"$server_out" 2>"$server_log" &
server_pid=$!
addr=
for _ in $(seq 1 200); do
    addr=$(sed -n 's/^listening on //p' "$server_out" | head -n 1)
    [ -n "$addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
done
if [ -z "$addr" ]; then
    echo "the server did not start:" >&2
    cat "$server_log" >&2
    exit 1
fi

tap="$artifacts/results-$mode.tap"
status=0
(cd "$browser_dir" &&
    BASE_URL="http://$addr" API_KEY=$api_key ADMIN_KEY=$admin_key ARTIFACTS_DIR=$artifacts \
        node --test --test-concurrency=1 \
        --test-reporter=spec --test-reporter-destination=stdout \
        --test-reporter=tap --test-reporter-destination="$tap" \
        "$test_file") || status=$?

passed=$(sed -n 's/^# pass //p' "$tap")
failed=$(sed -n 's/^# fail //p' "$tap")
ignored=$(sed -n 's/^# todo //p' "$tap")
skipped=$(sed -n 's/^# skipped //p' "$tap")
echo "screenshots: $artifacts"
echo "$label: ${passed:-0} passed, ${failed:-0} failed, ${ignored:-0} ignored, ${skipped:-0} skipped"
if [ "$status" -ne 0 ] && [ "${failed:-0}" -eq 0 ]; then
    failed=1 # node itself failed (a syntax error, a crash before any test)
fi
exit $(( status != 0 || ${failed:-0} != 0 ))
