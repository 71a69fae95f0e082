#!/usr/bin/env bash
# The closing line of a Rust test suite: totals over every `test result:` line
# cargo printed into LOG (unit, integration and doc tests of every member).
#   scripts/test-summary.sh LABEL LOG   ->   LABEL: N passed, N failed, N ignored, N skipped
# ignored: tests marked #[ignore] (the suite has none: measurements live in
# benches/). skipped: lines `skipped: <why>` a test printed when it could not
# run; no test in this repository does that (a test that lacks what it needs
# fails and says so), so anything but 0 is a defect to fix.
set -euo pipefail
label=$1
log=$2
awk -v label="$label" '
    /^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed/) p += $i
            if ($(i+1) ~ /^failed/) f += $i
            if ($(i+1) ~ /^ignored/) g += $i
        }
    }
    /^skipped: / { s++ }
    END { printf "%s: %d passed, %d failed, %d ignored, %d skipped\n", label, p, f, g, s }
' "$log"
