#!/usr/bin/env bash
# What a PostgreSQL outage costs the answers: the release server on a fresh
# PostgreSQL database, reached through a relay (benches/tcp_switch.py) that
# cuts the link for a while in the middle of a load run, as a database that
# is stopped and started again.
#
#   bash benches/outage.sh [--duration 15] [--outage 5] [--connections 16]
#
# Two scenarios, each driven with wrk for DURATION seconds while the link is
# down from second 5 for OUTAGE seconds:
#
#   tokens  POST /oauth/token with 50 keys the server has already answered
#           (so its credential cache holds them): every answer should be 200
#           (credential_cache_serve_stale_seconds, default 30)
#   pushes  POST /api/v1/webhooks/outage-push, which must write: 201 while
#           the database is up, 503 with Retry-After at once while it is known
#           to be down
#
# Prints one Markdown table: requests, statuses, the slowest answer and p99
# (wrk's latency), socket errors. Exits 1 when a token request failed. No
# timing is asserted. Needs wrk, jq, psql and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=15
OUTAGE=5
CONNECTIONS=16
while (($#)); do
    case $1 in
        --duration) DURATION=${2%s}; shift ;;
        --outage) OUTAGE=${2%s}; shift ;;
        --connections) CONNECTIONS=$2; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//;/^set -e/d'; exit 0 ;;
        *) echo "outage.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for tool in wrk jq psql curl; do
    command -v "$tool" >/dev/null || { echo "outage.sh: needs $tool" >&2; exit 2; }
done
((DURATION >= OUTAGE + 7)) || { echo "outage.sh: --duration must be at least --outage + 7" >&2; exit 2; }

cargo build --release --quiet
BIN=$PWD/target/release/keyport
WORK=$(mktemp -d)
PG_BASE=${KEYPORT_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
PG_DB=keyport_outage_$$
SERVER_PID=""
SWITCH_PID=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    [[ -n $SWITCH_PID ]] && kill "$SWITCH_PID" 2>/dev/null
    psql -X -q "$PG_BASE/postgres" -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
[[ -n ${KEEP_LOG:-} ]] && trap "cp \"\$WORK/server.log\" \"$KEEP_LOG\"; cleanup" EXIT
psql -X -q -v ON_ERROR_STOP=1 "$PG_BASE/postgres" -c "CREATE DATABASE \"$PG_DB\"" >/dev/null

python3 benches/tcp_switch.py 127.0.0.1 "$(sed -E 's|.*:([0-9]+).*|\1|' <<<"$PG_BASE")" >"$WORK/switch.out" &
SWITCH_PID=$!
for _ in $(seq 1 100); do
    grep -q 'listening on port' "$WORK/switch.out" 2>/dev/null && break
    sleep 0.1
done
RELAY_PORT=$(awk '/listening on port/ { print $NF }' "$WORK/switch.out")
export KEYPORT_DATABASE_URL="postgres://postgres@127.0.0.1:$RELAY_PORT/$PG_DB"
unset KEYPORT_BIND KEYPORT_CONFIG
# PostgreSQL needs the master key from outside (every instance shares it).
KEYPORT_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
export KEYPORT_MASTER_KEY
kp() { KEYPORT_MAX_ACTIVE_KEYS_PER_USER=1000 RUST_LOG=warn "$BIN" --json "$@"; }
kp migrate >/dev/null
kp tenant create OutageCo >/dev/null
kp user create --tenant OutageCo --email member@outage.test --role member \
    --permissions reports:read,webhooks:write >/dev/null
for k in $(seq 1 50); do kp key create --user member@outage.test --name "key $k"; done >"$WORK/keys.jsonl"
jq -er '"Basic " + ("\(.client_id):\(.client_secret)" | @base64)' "$WORK/keys.jsonl" >"$WORK/basic.txt"
FIRST_KEY=$(head -1 "$WORK/keys.jsonl" | jq -er '"\(.client_id):\(.client_secret)"')

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
KEYPORT_BIND=127.0.0.1:$PORT RUST_LOG=info "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null "$BASE/readyz" && break; sleep 0.1; done

token_load() {
    KP_METHOD=POST KP_BODY=grant_type=client_credentials \
        KP_CONTENT_TYPE=application/x-www-form-urlencoded KP_AUTH_FILE="$WORK/basic.txt" \
        KP_EXPECT="${1:-200}" wrk -t2 -c"$CONNECTIONS" -d"$2"s --timeout 30s -s benches/load.lua \
        "$BASE/oauth/token" | grep '^KP_RESULT '
}

# Every key answered once: the credential cache holds them all.
token_load 200 3 >/dev/null

# run NAME: wrk for DURATION seconds with the link cut from second 5 on.
run() {
    local name=$1 result
    case $name in
        tokens) token_load 200 "$DURATION" >"$WORK/$name.result" & ;;
        pushes)
            KP_METHOD=POST KP_BEARER="$TOKEN" KP_CONTENT_TYPE=application/json KP_EXPECT=201 \
                KP_BODY='{"order":1001,"total":99.5}' \
                wrk -t2 -c"$CONNECTIONS" -d"$DURATION"s --timeout 30s -s benches/load.lua \
                "$BASE/api/v1/webhooks/outage-push" | grep '^KP_RESULT ' >"$WORK/$name.result" &
            ;;
    esac
    local load=$!
    sleep 5
    kill -USR1 "$SWITCH_PID"
    sleep "$OUTAGE"
    kill -USR2 "$SWITCH_PID"
    wait "$load"
    result=$(cat "$WORK/$name.result")
    field() { sed -E "s/.* $1=([^ ]+).*/\1/" <<<" $result"; }
    printf '| %s | %s | %s | %.1f ms | %.1f ms | %s |\n' "$name" "$(field requests)" \
        "$(field statuses)" "$(awk -v v="$(field p99_us)" 'BEGIN { print v / 1000 }')" \
        "$(awk -v v="$(field max_us)" 'BEGIN { print v / 1000 }')" "$(field socket)"
    if [[ $name == tokens && $(field bad) != 0 ]]; then TOKENS_FAILED=1; fi
}

TOKEN=$(curl -sf -u "$FIRST_KEY" -d grant_type=client_credentials "$BASE/oauth/token" | jq -er .access_token)
TOKENS_FAILED=0
echo "| scenario (${DURATION} s, link down from 5 s for ${OUTAGE} s, $CONNECTIONS connections) | requests | statuses | p99 | slowest | socket errors |"
echo "| --- | ---: | --- | ---: | ---: | ---: |"
run tokens
sleep 2
run pushes
echo
echo "Server log lines about the database: $(grep -ci 'database' "$WORK/server.log" || true)."
exit "$TOKENS_FAILED"
