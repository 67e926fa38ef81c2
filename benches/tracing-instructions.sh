#!/usr/bin/env bash
# What traces cost the token endpoint, in instructions rather than seconds:
# the release server runs under valgrind's callgrind, once without traces and
# once exporting every request's spans to a local OTLP collector, and each
# answers the same N token requests (one key on a fresh SQLite file, one
# keep-alive connection). Callgrind counts the instructions the server
# executed while answering them (all its threads, the exporter's included),
# so the ratio is the same on a busy machine as on an idle one, unlike a
# rate (benches/logging.sh).
#
#   bash benches/tracing-instructions.sh [--requests 2000] [--keep DIR]
#
# --keep DIR keeps callgrind's dumps (DIR/plain.*, DIR/traced.*) for
# callgrind_annotate, to see which functions the difference is made of.
#
# Prints instructions per token for each and their ratio. Needs valgrind
# (apt-get install valgrind) and the Python clients of scripts/test (.venv).
# No timing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=2000
KEEP=""
while (($#)); do
    case $1 in
        --requests) REQUESTS=$2; shift ;;
        --keep) KEEP=$2; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//;/^set -e/d'; exit 0 ;;
        *) echo "tracing-instructions.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
command -v valgrind >/dev/null || { echo "tracing-instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
[[ -x .venv/bin/python ]] || { echo "tracing-instructions.sh: needs .venv (bash scripts/test makes it)" >&2; exit 2; }

cargo build --release --quiet
BIN=$PWD/target/release/keyport
WORK=$(mktemp -d)
SERVER_PID=""
COLLECTOR_PID=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
    [[ -n $COLLECTOR_PID ]] && kill "$COLLECTOR_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# One worker thread: the requests come one at a time anyway, and callgrind
# runs one thread at a time.
export KEYPORT_DATABASE_URL=sqlite://$WORK/keyport.db RUST_LOG=info KEYPORT_WORKERS=1
"$BIN" migrate >/dev/null 2>&1
"$BIN" tenant create Bench >/dev/null
"$BIN" user create --tenant Bench --email bench@example.com --role admin \
    --permissions reports:read >/dev/null
"$BIN" --json key create --user bench@example.com --name bench >"$WORK/key.json"

mkdir "$WORK/collector"
.venv/bin/python tests/clients/otlp_receiver.py "$WORK/collector" --count-only >"$WORK/collector.out" &
COLLECTOR_PID=$!
for _ in $(seq 1 100); do
    grep -q 'listening on port' "$WORK/collector.out" 2>/dev/null && break
    sleep 0.1
done
COLLECTOR="http://127.0.0.1:$(awk '{ print $NF }' "$WORK/collector.out")"

# ask PORT N: N token requests on one connection, each answered 200.
ask() {
    python3 - "$1" "$2" "$WORK/key.json" <<'PY'
import base64, http.client, json, sys
port, count, key = int(sys.argv[1]), int(sys.argv[2]), json.load(open(sys.argv[3]))
basic = base64.b64encode(f"{key['client_id']}:{key['client_secret']}".encode()).decode()
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for _ in range(count):
    connection.request("POST", "/oauth/token", body="grant_type=client_credentials",
                       headers={"Authorization": "Basic " + basic,
                                "Content-Type": "application/x-www-form-urlencoded"})
    answer = connection.getresponse()
    answer.read()
    if answer.status != 200:
        sys.exit(f"a token request was answered {answer.status}")
PY
}

# measure VARIANT ENDPOINT: instructions per token request.
measure() {
    local variant=$1 endpoint=$2 port dump
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    KEYPORT_BIND=127.0.0.1:$port KEYPORT_OTLP_ENDPOINT=$endpoint OTEL_BSP_SCHEDULE_DELAY=1000 \
        valgrind --tool=callgrind --callgrind-out-file="$WORK/$variant.%p" \
        "$BIN" serve >"$WORK/server-$variant.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 600); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.2
    done
    ask "$port" 200 # warm: the credential cache, the key ring, the allocator
    sleep 3
    callgrind_control -z "$SERVER_PID" >/dev/null
    ask "$port" "$REQUESTS"
    sleep 3 # the exporter sends what is still queued (every second)
    callgrind_control -d "$SERVER_PID" >/dev/null
    sleep 1
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    dump=$(ls "$WORK/$variant".*.1)
    if [[ -n $KEEP ]]; then mkdir -p "$KEEP" && cp "$dump" "$KEEP/"; fi
    awk -v n="$REQUESTS" '/^summary:/ { printf "%d\n", $2 / n }' "$dump"
}

PLAIN=$(measure plain "")
TRACED=$(measure traced "$COLLECTOR")
SPANS=$(cat "$WORK/collector/count" 2>/dev/null || echo 0)
echo "| variant | instructions per token ($REQUESTS requests) | ÷ without traces |"
echo "| --- | ---: | ---: |"
echo "| without traces | $PLAIN | 1.00× |"
awk -v t="$TRACED" -v p="$PLAIN" 'BEGIN { printf "| traces exported (every request) | %d | %.3f× |\n", t, t / p }'
echo "The collector received $SPANS spans."
