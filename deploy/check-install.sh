#!/usr/bin/env bash
# Checks deploy/install.sh into a temporary root: files and modes, that a second run keeps the config
# and key, and that --uninstall keeps them while --purge removes them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
fail() { echo "install check: $*" >&2; exit 1; }
bash deploy/install.sh --root "$root" >/dev/null
[ -x "$root/usr/local/bin/tiktok-poster" ] || fail "binary not installed"
[ -f "$root/etc/systemd/system/tiktok-poster.service" ] || fail "unit not installed"
[ "$(stat -c %a "$root/etc/tiktok-poster/token.key")" = 600 ] || fail "token key is not mode 600"
grep -q 'encryption_key_file = "/run/credentials/tiktok-poster.service/token.key"' "$root/etc/tiktok-poster/config.toml" || fail "config does not use the credential"
key=$(sha256sum "$root/etc/tiktok-poster/token.key")
echo '# edited by the operator' >>"$root/etc/tiktok-poster/config.toml"
bash deploy/install.sh --root "$root" >/dev/null
[ "$(sha256sum "$root/etc/tiktok-poster/token.key")" = "$key" ] || fail "a second run replaced the key"
grep -q 'edited by the operator' "$root/etc/tiktok-poster/config.toml" || fail "a second run replaced the config"
bash deploy/install.sh --root "$root" --uninstall >/dev/null
[ ! -e "$root/usr/local/bin/tiktok-poster" ] || fail "uninstall left the binary"
[ -f "$root/etc/tiktok-poster/token.key" ] || fail "uninstall removed the key without --purge"
bash deploy/install.sh --root "$root" --uninstall --purge >/dev/null
[ ! -e "$root/etc/tiktok-poster" ] || fail "--purge left the configuration"
echo "install script: ok (install, idempotent re-run, uninstall, purge)"
