#!/usr/bin/env bash
# The test command of the README: unit and integration tests. Tests start their own redis-server on a
# free port and the simulator on port 0; nothing outside the test run is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis-server is missing; install it (apt-get install redis-server) or run bash .ci/run" >&2
    exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked --lib --bins --tests "$@" 2>&1 | tee "$log" || status=$?
# One closing line with the totals of every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
exit $status
