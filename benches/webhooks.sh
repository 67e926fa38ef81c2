#!/usr/bin/env bash
# Webhook deliveries benchmark: one command, one Markdown table.
#
#   bash benches/webhooks.sh [--postgres] [--duration 10s] [--connections 16]
#                            [--rounds 2] [--binary PATH]
#
# Builds the release binary (or takes --binary's, to compare two builds in
# turn), starts it on a fresh database (a temporary SQLite
# file, or with --postgres a new database on 127.0.0.1:5432, dropped at the
# end) with its delivery worker off, and measures with wrk, side by side:
#
#   push        POST /api/v1/webhooks/bench-quiet, one record, no endpoint
#               listening to that collection
#   push+event  POST /api/v1/webhooks/bench, one record, one endpoint listening
#               to record.created in that collection: each push also writes
#               the event and its delivery in its transaction
#
# A first push run before any endpoint exists, then --rounds rounds of the
# two alternated (push+event first), so a machine whose load drifts weighs
# on both alike; the ratio is the rounds' summed rates'.
#
# then restarts the server with its worker on and counts, for the same
# duration, the signed deliveries a local receiver (a Python
# ThreadingHTTPServer answering 204 at once) gets from the backlog the second
# run left: deliveries per second. No timing is asserted; the report goes to
# stdout and target/webhooks-report.md.
set -euo pipefail
cd "$(dirname "$0")/.."

POSTGRES=0
DURATION=10s
CONNECTIONS=16
ROUNDS=2
BINARY=""
while (($#)); do
    case $1 in
        --postgres) POSTGRES=1; shift ;;
        --duration) DURATION=$2; shift 2 ;;
        --connections) CONNECTIONS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --binary) BINARY=$2; shift 2 ;;
        -h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "webhooks.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
SECONDS_WANTED=${DURATION%s}

say() { echo "webhooks.sh: $*" >&2; }
die() { say "$*"; exit 1; }

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
if ((POSTGRES)); then command -v psql >/dev/null || missing+=(postgresql-client); fi
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if [[ -n $BINARY ]]; then
    BIN=$(realpath "$BINARY")
else
    cargo build --release --quiet
    BIN=$PWD/target/release/keyport
fi
[[ -x $BIN ]] || die "no binary at $BIN"
LUA=$PWD/benches/load.lua
WORK=$(mktemp -d)
SERVER_PID=""
SINK_PID=""
PG_DB=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    [[ -n $SINK_PID ]] && kill "$SINK_PID" 2>/dev/null
    [[ -n $PG_DB ]] && psql -q -h 127.0.0.1 -U postgres -d postgres \
        -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

for name in $(env | grep -oE '^KEYPORT_[A-Z_]+' || true); do unset "$name"; done
if ((POSTGRES)); then
    PG_DB=keyport_webhooks_bench_$$
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $PG_DB" >/dev/null
    export KEYPORT_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$PG_DB
    KEYPORT_MASTER_KEY=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
    export KEYPORT_MASTER_KEY
    BACKEND=PostgreSQL
else
    export KEYPORT_DATABASE_URL=sqlite://$WORK/keyport.db
    BACKEND="SQLite (file, WAL)"
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
export KEYPORT_BIND=127.0.0.1:$PORT RUST_LOG=warn
export KEYPORT_WEBHOOK_ALLOW_HTTP=true KEYPORT_WEBHOOK_ALLOW_PRIVATE_TARGETS=true
export KEYPORT_WEBHOOK_POLL_INTERVAL_MS=100

# The receiver: counts POSTs, answers 204; GET answers the count.
cat >"$WORK/sink.py" <<'EOF'
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
count = 0
lock = threading.Lock()
class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global count
        self.rfile.read(int(self.headers.get("content-length", "0")))
        with lock:
            count += 1
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        body = str(count).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
server.serve_forever()
EOF
python3 "$WORK/sink.py" >"$WORK/sink.port" &
SINK_PID=$!
for _ in $(seq 50); do [[ -s $WORK/sink.port ]] && break; sleep 0.1; done
SINK=http://127.0.0.1:$(cat "$WORK/sink.port")

# Only `serve` and `migrate` create a database.
"$BIN" migrate >/dev/null
"$BIN" tenant create Bench >/dev/null
"$BIN" user create --tenant Bench --email bench@example.com --role admin \
    --permissions webhooks:write,webhooks:manage >/dev/null
KEY=$("$BIN" --json key create --user bench@example.com --name bench)
CLIENT_ID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_id"])' "$KEY")
SECRET=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_secret"])' "$KEY")

start_server() {
    KEYPORT_WEBHOOK_DELIVER=$1 "$BIN" serve >>"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do curl -fs "$BASE/healthz" >/dev/null && return 0; sleep 0.1; done
    die "the server did not start: $(cat "$WORK/server.log")"
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; }
token() {
    curl -fs -u "$CLIENT_ID:$SECRET" -d grant_type=client_credentials "$BASE/oauth/token" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
# push_rps NAME COLLECTION: one wrk run of one-record pushes; req/s.
push_rps() {
    KP_METHOD=POST KP_BEARER="$(token)" KP_CONTENT_TYPE=application/json \
        KP_BODY='{"order":1001,"total":99.5}' KP_EXPECT=201 \
        wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s "$LUA" "$BASE/api/v1/webhooks/$2" >"$WORK/wrk-$1.txt" 2>&1
    grep '^KP_RESULT ' "$WORK/wrk-$1.txt" | tr ' ' '\n' | grep '^rps=' | cut -d= -f2
}
load() { cut -d' ' -f1-3 /proc/loadavg; }

start_server false
say "push without any endpoint ($DURATION, $CONNECTIONS connections, load $(load))"
FIRST=$(push_rps first bench-quiet)
curl -fs -X POST "$BASE/api/v1/webhook-endpoints" -H "Authorization: Bearer $(token)" \
    -H 'content-type: application/json' \
    -d "{\"url\": \"$SINK/hooks\", \"events\": [\"record.created\"], \"collections\": [\"bench\"]}" >/dev/null
ROUND_ROWS=""
PLAIN_SUM=0
EVENT_SUM=0
for round in $(seq "$ROUNDS"); do
    say "round $round: push with one endpoint listening (load $(load))"
    event=$(push_rps "event-$round" bench)
    say "round $round: push to a collection nobody listens to (load $(load))"
    plain=$(push_rps "plain-$round" bench-quiet)
    say "round $round: $event vs $plain pushes/s"
    ROUND_ROWS+="$round $plain $event;"
    PLAIN_SUM=$(python3 -c "print($PLAIN_SUM + $plain)")
    EVENT_SUM=$(python3 -c "print($EVENT_SUM + $event)")
done
PLAIN=$(python3 -c "print($PLAIN_SUM / $ROUNDS)")
WITH_EVENT=$(python3 -c "print($EVENT_SUM / $ROUNDS)")
stop_server

start_server true
say "deliveries for $DURATION"
sleep 1
BEFORE=$(curl -fs "$SINK/count")
sleep "$SECONDS_WANTED"
AFTER=$(curl -fs "$SINK/count")
DELIVERED=$((AFTER - BEFORE))
stop_server

REPORT=$(python3 - "$PLAIN" "$WITH_EVENT" "$DELIVERED" "$SECONDS_WANTED" "$BACKEND" "$CONNECTIONS" "$FIRST" "$ROUND_ROWS" <<'EOF'
import sys
plain, event, delivered, seconds, backend, connections, first, rounds = sys.argv[1:]
plain, event, delivered, seconds, first = float(plain), float(event), int(delivered), float(seconds), float(first)
print(f"## Webhook deliveries ({backend}, {connections} connections, {seconds:g} s per run)\n")
print("| run | per second | ratio |")
print("| --- | ---: | ---: |")
print(f"| push, before any endpoint exists | {first:,.0f} | {first / plain:.2f} |")
for row in filter(None, rounds.split(";")):
    n, p, e = row.split()
    print(f"| round {n}: push, no endpoint listening / one listening | {float(p):,.0f} / {float(e):,.0f} | {float(e) / float(p):.2f} |")
print(f"| push, no endpoint listening (mean of the rounds) | {plain:,.0f} | 1.00 |")
print(f"| push, one endpoint listening (event + delivery written; mean) | {event:,.0f} | {event / plain:.2f} |")
print(f"| signed deliveries to a local receiver (default webhook_concurrency) | {delivered / seconds:,.0f} | {delivered / seconds / plain:.2f} |")
EOF
)
echo "$REPORT"
mkdir -p target
echo "$REPORT" >target/webhooks-report.md
