#!/usr/bin/env bash
# pytest-summary.sh LABEL LOG: the closing line of a pytest run, in the form
# every suite of scripts/test.sh ends with:
#   LABEL: N passed, N failed, N ignored, N skipped
# (failed counts errors too; ignored counts deselected and xfailed tests).
set -euo pipefail
label=$1
log=$2
count() { # count WORD...: the sum of "N word" on pytest's last summary line
  local total=0 word n
  local line
  line=$(grep -E '[0-9]+ (passed|failed|error|errors|skipped|deselected|xfailed|xpassed)' "$log" | tail -n 1 || true)
  for word in "$@"; do
    n=$(grep -Eo "[0-9]+ $word\\b" <<<"$line" | grep -Eo '[0-9]+' | head -n 1 || true)
    total=$((total + ${n:-0}))
  done
  echo "$total"
}
echo "$label: $(count passed xpassed) passed, $(count failed error errors) failed, $(count deselected xfailed) ignored, $(count skipped) skipped"
