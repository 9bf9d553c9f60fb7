#!/usr/bin/env bash
# Checks systemd/tiktok-poster.service: `systemd-analyze verify` (with ExecStart pointed at a built
# binary) and `systemd-analyze security --offline=yes` must rate it 2.0 or better. Skipped, with a
# message, where systemd-analyze is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "systemd-analyze is not installed; unit check skipped"
    exit 0
fi
unit=systemd/tiktok-poster.service
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=$(pwd)/target/release/tiktok-poster
[ -x "$bin" ] || bin=$(pwd)/target/debug/tiktok-poster
sed "s#/usr/local/bin/tiktok-poster#$bin#" "$unit" >"$tmp/tiktok-poster.service"
if ! systemd-analyze verify "$tmp/tiktok-poster.service" 2>"$tmp/verify.log"; then
    # Without the credential files and video directory of a real install, verify may warn about them
    # only; anything else fails the check.
    if grep -vE "LoadCredential|ReadOnlyPaths|/srv/videos|/etc/tiktok-poster" "$tmp/verify.log" | grep -q .; then
        cat "$tmp/verify.log" >&2
        exit 1
    fi
fi
rating=$(systemd-analyze security --offline=yes "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
echo "systemd unit exposure rating: $rating (2.0 or better required)"
awk -v r="$rating" 'BEGIN { exit !(r != "" && r <= 2.0) }'
