#!/usr/bin/env bash
# Installs tiktok-poster as a systemd service on Debian/Ubuntu. Idempotent: run it again to upgrade.
#
#   sudo bash deploy/install.sh                 # install (or upgrade) and start
#   sudo bash deploy/install.sh --uninstall     # remove what it added; keeps config, key and data
#   sudo bash deploy/install.sh --uninstall --purge   # also remove config, key and state
#
# What it does: installs Redis from the distribution when no Redis answers on 127.0.0.1:6379 (with
# append-only persistence, noeviction and loopback binding; an existing Redis is left alone), builds and
# installs the binary to /usr/local/bin, installs systemd/tiktok-poster.service, creates
# /etc/tiktok-poster/config.toml from config.example.toml when absent (pointing secrets at the
# credentials systemd passes in), generates a token key with mode 0600 when absent, and enables and
# starts the unit.
#
# --root DIR installs into DIR instead of / and skips packages and systemctl (used by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=""
UNINSTALL=0
PURGE=0
SYSTEMD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=$2; SYSTEMD=0; shift 2 ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        --no-systemd) SYSTEMD=0; shift ;;
        *) echo "install.sh: unknown option $1 (see the comment at the top)" >&2; exit 2 ;;
    esac
done
say() { printf '==> %s\n' "$*"; }
[ -d /run/systemd/system ] || SYSTEMD=0

BIN="$ROOT/usr/local/bin/tiktok-poster"
UNIT="$ROOT/etc/systemd/system/tiktok-poster.service"
ETC="$ROOT/etc/tiktok-poster"
STATE="$ROOT/var/lib/tiktok-poster"

if [ "$UNINSTALL" = 1 ]; then
    if [ "$SYSTEMD" = 1 ]; then
        systemctl disable --now tiktok-poster.service 2>/dev/null || true
    fi
    rm -f "$BIN" "$UNIT"
    [ "$SYSTEMD" = 1 ] && systemctl daemon-reload
    if [ "$PURGE" = 1 ]; then
        rm -rf "$ETC" "$STATE" "$ROOT/var/lib/private/tiktok-poster"
        say "Removed tiktok-poster, its configuration, key and state"
    else
        say "Removed tiktok-poster; kept $ETC (config, key) and Redis data (--purge removes the config and key)"
    fi
    exit 0
fi

if [ -z "$ROOT" ]; then
    if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
        say "Installing Redis from the distribution"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
        conf=/etc/redis/redis.conf
        sed -i -E 's/^#?\s*appendonly .*/appendonly yes/; s/^#?\s*maxmemory-policy .*/maxmemory-policy noeviction/; s/^#?\s*bind .*/bind 127.0.0.1 -::1/' "$conf"
        grep -q '^appendonly yes' "$conf" || echo 'appendonly yes' >>"$conf"
        grep -q '^maxmemory-policy noeviction' "$conf" || echo 'maxmemory-policy noeviction' >>"$conf"
        [ "$SYSTEMD" = 1 ] && systemctl restart redis-server
    else
        say "A Redis answers on 127.0.0.1:6379; leaving it alone (make sure it persists and does not evict)"
    fi
fi

if [ -x target/release/tiktok-poster ] && [ -z "$(find src Cargo.toml -newer target/release/tiktok-poster -print -quit)" ]; then
    say "Using the release build in target/release"
else
    command -v cargo >/dev/null || { echo "install.sh: Rust is missing; install it from https://rustup.rs" >&2; exit 1; }
    say "Building tiktok-poster (release)"
    cargo build --release --locked --quiet
fi
install -D -m 0755 target/release/tiktok-poster "$BIN"
install -D -m 0644 systemd/tiktok-poster.service "$UNIT"
install -d -m 0755 "$ETC"
if [ ! -f "$ETC/config.toml" ]; then
    sed -e 's#^encryption_key_file = .*#encryption_key_file = "/run/credentials/tiktok-poster.service/token.key"#' \
        -e 's#^\# client_secret_file = .*#client_secret_file = "/run/credentials/tiktok-poster.service/client_secret"#' \
        -e 's#^format = "auto"#format = "json"#' \
        config.example.toml >"$ETC/config.toml"
    chmod 0644 "$ETC/config.toml"  # no secrets in it: they come in as credentials
    say "Wrote $ETC/config.toml: set [tiktok] client_key and put the client secret in $ETC/client_secret"
else
    say "Kept the existing $ETC/config.toml"
fi
if [ ! -f "$ETC/token.key" ]; then
    "$BIN" keys generate "$ETC/token.key" >/dev/null
    say "Generated the token key $ETC/token.key (mode 0600)"
else
    chmod 0600 "$ETC/token.key"
    say "Kept the existing token key"
fi
if [ ! -f "$ETC/client_secret" ]; then
    install -m 0600 /dev/null "$ETC/client_secret"
fi

if [ "$SYSTEMD" = 1 ]; then
    systemctl daemon-reload
    systemctl enable tiktok-poster.service >/dev/null
    if [ -s "$ETC/client_secret" ]; then
        systemctl restart tiktok-poster.service
        say "tiktok-poster is running: systemctl status tiktok-poster; journalctl -u tiktok-poster -f"
    else
        say "Enabled; start it once the client secret is in $ETC/client_secret: systemctl start tiktok-poster"
    fi
else
    say "Installed under ${ROOT:-/} (systemd not used)"
fi
