#!/usr/bin/env bash
# Mixed traffic at many connections: zero 5xx, zero errors, or exit 1.
#
#   bash benches/soak.sh [--duration 60s] [--connections 256] [--release] [--postgres]
#
# Starts keyport on a fresh database (a temporary SQLite file, or with
# --postgres a new PostgreSQL database, dropped at the end), creates a key,
# then drives token requests, whoami, pulls, pushes and health checks at
# random (benches/soak.lua) with wrk. It fails when any response is not 2xx,
# any socket error happens, or the server logged a 5xx. It measures nothing
# else: throughput is benches/load.sh's job. CI runs a short variant on the
# debug binary (.ci/run); the issue's 60 s at 256 connections is the default.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=60s
CONNECTIONS=256
PROFILE=debug
POSTGRES=0
while (($#)); do
    case $1 in
        --duration) DURATION=$2; shift 2 ;;
        --connections) CONNECTIONS=$2; shift 2 ;;
        --release) PROFILE=release; shift ;;
        --postgres) POSTGRES=1; shift ;;
        -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "soak.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if ! command -v wrk >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
fi
if [[ $PROFILE == release ]]; then
    cargo build --release --quiet
else
    cargo build --quiet
fi
BIN=$PWD/target/$PROFILE/keyport

WORK=$(mktemp -d)
PG_DB=""
SERVER_PID=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    [[ -n $PG_DB ]] && psql -q -h 127.0.0.1 -U postgres -d postgres \
        -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

if ((POSTGRES)); then
    PG_DB=keyport_soak_$$
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $PG_DB" >/dev/null
    export KEYPORT_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$PG_DB
    # PostgreSQL needs a master key (SQLite creates one beside its file).
    KEYPORT_MASTER_KEY=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
    export KEYPORT_MASTER_KEY
else
    export KEYPORT_DATABASE_URL=sqlite://$WORK/keyport.db
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export KEYPORT_BIND=127.0.0.1:$PORT RUST_LOG=info

# Only `serve` and `migrate` create a database.
"$BIN" migrate >/dev/null
"$BIN" tenant create Soak >/dev/null
"$BIN" user create --tenant Soak --email soak@example.com --role admin \
    --permissions reports:read,webhooks:write >/dev/null
KEY=$("$BIN" --json key create --user soak@example.com --name soak)
CLIENT_ID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_id"])' "$KEY")
SECRET=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_secret"])' "$KEY")

"$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done

KP_BASIC="Basic $(printf '%s:%s' "$CLIENT_ID" "$SECRET" | base64 -w0)"
KP_TOKEN=$(curl -fs -u "$CLIENT_ID:$SECRET" -d grant_type=client_credentials \
    "http://127.0.0.1:$PORT/oauth/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
curl -fs -X POST -H "Authorization: Bearer $KP_TOKEN" -H 'Content-Type: application/json' \
    -d '{"seed":true}' "http://127.0.0.1:$PORT/api/v1/webhooks/soak" >/dev/null
export KP_BASIC KP_TOKEN

RESULT=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --timeout 10s -s benches/soak.lua \
    "http://127.0.0.1:$PORT" | grep '^SOAK')
kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
# Access lines look like `[… INFO  keyport::access] POST /oauth/token 200 request_id=… status=200 …`.
LOGGED=$(grep -cE '\] (GET|POST|PUT|DELETE) \S+ [0-9]{3} ' "$WORK/server.log" || true)
LOGGED_5XX=$(grep -cE '\] (GET|POST|PUT|DELETE) \S+ 5[0-9]{2} ' "$WORK/server.log" || true)
PANICS=$(grep -c 'panicked' "$WORK/server.log" || true)

echo "$RESULT logged_requests=$LOGGED logged_5xx=$LOGGED_5XX panics=$PANICS (duration $DURATION, $CONNECTIONS connections, $PROFILE build)"
failed=$(sed -E 's/.* failed=([0-9]+).*/\1/' <<<"$RESULT")
socket=$(sed -E 's/.* socket_errors=([0-9]+).*/\1/' <<<"$RESULT")
# No logged requests would mean the log check is blind: fail rather than pass.
if [[ $failed != 0 || $socket != 0 || $LOGGED == 0 || $LOGGED_5XX != 0 || $PANICS != 0 ]]; then
    echo "soak: FAILED" >&2
    exit 1
fi
echo "soak: ok"
