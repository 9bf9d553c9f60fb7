#!/usr/bin/env bash
# Quick start: one command on a fresh Debian machine.
#
# Installs what is missing (Redis, curl, a C toolchain), builds tiktok-poster, then starts a private
# Redis, the TikTok simulator and the daemon (all in ./.quickstart, nothing system-wide is changed
# besides the packages), connects a simulated TikTok account through the daemon's Connect page,
# submits a sample video with redis-cli XADD exactly as a producer would, and shows it published.
#
# With real TikTok credentials in TIKTOK_CLIENT_KEY and TIKTOK_CLIENT_SECRET the daemon talks to
# TikTok instead; the simulator is used when they are absent.
#
#   bash deploy/quickstart.sh          # runs the demo, then keeps the daemon running (Ctrl-C stops)
#   bash deploy/quickstart.sh --exit   # runs the demo and stops everything (used by the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
EXIT_AFTER=0
[ "${1:-}" = "--exit" ] && EXIT_AFTER=1

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

# 1. Packages.
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if [ ${#need[@]} -gt 0 ]; then
    say "Installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || die "Rust is missing: install Rust 1.85 or newer (https://rustup.rs), then run this again"

# 2. Build.
say "Building tiktok-poster (release)"
cargo build --release --locked --quiet
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/tiktok-poster"

# 3. A private Redis on a unix socket (no port to collide with), with append-only persistence.
WORK="$ROOT/.quickstart"
rm -rf "$WORK"
mkdir -p "$WORK"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
say "Starting Redis in $WORK"
redis-server --port 0 --unixsocket "$WORK/redis.sock" --unixsocketperm 700 --dir "$WORK" \
    --appendonly yes --maxmemory-policy noeviction --save "" --daemonize no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -S "$WORK/redis.sock" ] && break; sleep 0.1; done
redis-cli -s "$WORK/redis.sock" ping >/dev/null || die "Redis did not start; see $WORK/redis.log"

# 4. TikTok: the simulator unless credentials are given.
if [ -n "${TIKTOK_CLIENT_KEY:-}" ] && [ -n "${TIKTOK_CLIENT_SECRET:-}" ]; then
    API_BASE=https://open.tiktokapis.com
    AUTH_BASE=https://www.tiktok.com
    CLIENT_KEY=$TIKTOK_CLIENT_KEY
    printf '%s\n' "$TIKTOK_CLIENT_SECRET" >"$WORK/client_secret"
    say "Using TikTok itself (client key $CLIENT_KEY)"
else
    say "No TIKTOK_CLIENT_KEY/TIKTOK_CLIENT_SECRET: starting the TikTok simulator"
    "$BIN" sim --listen 127.0.0.1:0 --publish-delay-ms 1500 >"$WORK/sim.out" 2>"$WORK/sim.log" &
    PIDS+=($!)
    for _ in $(seq 100); do grep -q listening "$WORK/sim.out" 2>/dev/null && break; sleep 0.1; done
    API_BASE=$(awk '/listening on/ {print $NF}' "$WORK/sim.out")
    [ -n "$API_BASE" ] || die "the simulator did not start; see $WORK/sim.log"
    AUTH_BASE=$API_BASE
    CLIENT_KEY=quickstart
    printf 'quickstart-secret\n' >"$WORK/client_secret"
    echo "    simulator at $API_BASE"
fi
chmod 600 "$WORK/client_secret"

# 5. A free port for the daemon's page and OAuth callback.
PORT=""
for p in $(seq 18080 18180); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then PORT=$p; break; fi
done
[ -n "$PORT" ] || die "no free port between 18080 and 18180"

"$BIN" keys generate "$WORK/token.key" >/dev/null
cat >"$WORK/config.toml" <<EOF
[redis]
url = "unix://$WORK/redis.sock"

[tiktok]
client_key = "$CLIENT_KEY"
client_secret_file = "$WORK/client_secret"
redirect_uri = "http://127.0.0.1:$PORT/oauth/callback"
api_base = "$API_BASE"
auth_base = "$AUTH_BASE"

[http]
listen = "127.0.0.1:$PORT"

[worker]
status_interval_ms = 500

[video]
# The sample video is copied here; the daemon takes videos from these directories only.
allowed_dirs = ["$WORK"]

[tokens]
encryption_key_file = "$WORK/token.key"

[log]
format = "text"
EOF
export TIKTOK_POSTER_CONFIG="$WORK/config.toml"

say "Starting the daemon (log: $WORK/daemon.log)"
"$BIN" run >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
PIDS+=($DAEMON)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null || die "the daemon did not come up; see $WORK/daemon.log"
echo "    accounts page at http://127.0.0.1:$PORT/"

if [ "$API_BASE" = "https://open.tiktokapis.com" ]; then
    say "Connect your TikTok account: open http://127.0.0.1:$PORT/connect?account=main in a browser on this machine"
    echo "    then submit posts with redis-cli; see the README. Ctrl-C stops everything."
    wait "$DAEMON"
    exit 0
fi

# 6. Connect a simulated account through the daemon's Connect page (the simulator approves at once).
say "Connecting the simulated account 'demo' through the Connect TikTok page"
page=$(curl -fsSL "http://127.0.0.1:$PORT/connect?account=demo&sim_username=demo_creator&sim_private=true")
echo "$page" | grep -q "is connected" || die "connecting failed: $page"
"$BIN" accounts list

# 7. A sample video, submitted exactly as a producer would.
# A real 1.2 s 720x1280 H.264/AAC file: the daemon probes every video and refuses what TikTok would.
VIDEO="$WORK/sample.mp4"
cp "$ROOT/tests/fixtures/video/good.mp4" "$VIDEO"
"$BIN" validate "$VIDEO"
say "Submitting $VIDEO with redis-cli XADD"
echo "    redis-cli XADD tiktok-poster:submit '*' id quickstart-1 account demo video $VIDEO title 'hello from tiktok-poster #demo' privacy_level SELF_ONLY"
redis-cli -s "$WORK/redis.sock" XADD tiktok-poster:submit '*' id quickstart-1 account demo video "$VIDEO" \
    title 'hello from tiktok-poster #demo' privacy_level SELF_ONLY >/dev/null

say "Waiting for TikTok to publish it"
state=""
for _ in $(seq 300); do
    state=$(redis-cli -s "$WORK/redis.sock" HGET tiktok-poster:post:quickstart-1 state)
    case "$state" in published|failed|unconfirmed) break ;; esac
    sleep 0.1
done
"$BIN" status quickstart-1
[ "$state" = "published" ] || die "the sample post ended as '$state'; see $WORK/daemon.log"
want=$(sha256sum "$VIDEO" | cut -d' ' -f1)
curl -fsS "$API_BASE/_sim/posts" | grep -q "$want" || die "the simulator did not receive the video's exact bytes"
say "Published: the simulator received the exact bytes (sha256 $want)"

if [ "$EXIT_AFTER" = 1 ]; then
    exit 0
fi
say "The daemon keeps running: http://127.0.0.1:$PORT/ · config $WORK/config.toml · Ctrl-C stops everything"
echo "    try: TIKTOK_POSTER_CONFIG=$WORK/config.toml $BIN list"
wait "$DAEMON"
