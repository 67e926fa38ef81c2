#!/usr/bin/env bash
# What the log format costs the token endpoint: POST /oauth/token driven with
# wrk against the release binary logging in text, then in JSON, alternating
# (text, json, text, json, …) so that drift in the machine's load falls on
# both alike. Prints the median tokens/s of each format and their ratio.
#
#   bash benches/logging.sh [--duration 8s] [--connections 32] [--rounds 3]
#
# One key on a fresh SQLite file; every request authenticates with it and
# writes one access line (to a file, as a collector would read it). Exit
# status 1 when any request failed; no timing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=8s
CONNECTIONS=32
ROUNDS=3
while (($#)); do
    case $1 in
        --duration) DURATION=$2; shift ;;
        --connections) CONNECTIONS=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//;/^set -e/d'; exit 0 ;;
        *) echo "logging.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
command -v wrk >/dev/null || { echo "logging.sh: needs wrk (apt-get install wrk)" >&2; exit 2; }

cargo build --release --quiet
BIN=$PWD/target/release/keyport
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

export KEYPORT_DATABASE_URL=sqlite://$WORK/keyport.db RUST_LOG=info
"$BIN" migrate >/dev/null
"$BIN" tenant create Bench >/dev/null
"$BIN" user create --tenant Bench --email bench@example.com --role admin \
    --permissions reports:read >/dev/null
KEY=$("$BIN" --json key create --user bench@example.com --name bench)
CLIENT_ID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_id"])' "$KEY")
SECRET=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_secret"])' "$KEY")
BASIC="Basic $(printf '%s:%s' "$CLIENT_ID" "$SECRET" | base64 -w0)"

# run FORMAT: one server, one wrk run; prints req/s.
run() {
    local format=$1 port result
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    KEYPORT_BIND=127.0.0.1:$port KEYPORT_LOG_FORMAT=$format "$BIN" serve >"$WORK/server-$format.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    result=$(KP_METHOD=POST KP_BODY=grant_type=client_credentials \
        KP_CONTENT_TYPE=application/x-www-form-urlencoded KP_AUTHORIZATION="$BASIC" KP_EXPECT=200 \
        wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --timeout 10s -s benches/load.lua \
        "http://127.0.0.1:$port/oauth/token" | grep '^KP_RESULT ')
    kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    if ! grep -q ' bad=0 socket=0 ' <<<"$result"; then
        echo "logging.sh: failed requests with $format logs: $result" >&2
        exit 1
    fi
    sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$result"
}

declare -A RATES=([text]="" [json]="")
for ((round = 1; round <= ROUNDS; round++)); do
    for format in text json; do
        rps=$(run "$format")
        echo "round $round, $format logs: $rps tokens/s" >&2
        RATES[$format]+="$rps "
    done
done

median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
TEXT=$(median <<<"${RATES[text]}")
JSON=$(median <<<"${RATES[json]}")
echo "| log_format | tokens/s (median of $ROUNDS × $DURATION, $CONNECTIONS connections) | ÷ text |"
echo "| --- | ---: | ---: |"
echo "| text | $TEXT | 1.00× |"
awk -v j="$JSON" -v t="$TEXT" 'BEGIN { printf "| json | %s | %.2f× |\n", j, j / t }'
