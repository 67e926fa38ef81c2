#!/usr/bin/env bash
# What an endpoint listening costs a push, in instructions rather than
# seconds: the release server runs under valgrind's callgrind on a fresh
# SQLite file (its delivery worker off) with one endpoint listening to
# `record.created` in the collection `bench`, and answers one-record pushes
# from --connections keep-alive connections at once (so they are group
# committed, as under load): --pushes to `bench-quiet` (nobody listens),
# then as many to `bench` (the push also writes its event and delivery),
# twice over. Callgrind counts the instructions of all the server's threads
# (sqlx's SQLite thread included), so the ratio is the same on a busy
# machine as on an idle one, unlike a rate (benches/webhooks.sh).
#
#   bash benches/webhooks-instructions.sh [--pushes 2000] [--connections 16] [--deliveries]
#                                         [--binary PATH]
#
# Prints instructions per push for each and their ratio; with KEEP_WORK=1
# the callgrind dumps (one per run) are kept, for callgrind_annotate. Needs
# valgrind (apt-get install valgrind). No timing is asserted.
#
# With --deliveries, the server is then started again under callgrind with
# its worker on, and sends the listened pushes' backlog to a local receiver
# (a Python server answering 204): instructions per delivery sent, counted
# from the first delivery's arrival to the last (the worker's own cost: the
# receiver runs outside valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."

PUSHES=2000
CONNECTIONS=16
BINARY=""
DELIVERIES=0
while (($#)); do
    case $1 in
        --pushes) PUSHES=$2; shift ;;
        --connections) CONNECTIONS=$2; shift ;;
        --binary) BINARY=$2; shift ;;
        --deliveries) DELIVERIES=1 ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//;/^set -e/d'; exit 0 ;;
        *) echo "webhooks-instructions.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
command -v valgrind >/dev/null || { echo "webhooks-instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 2; }

if [[ -n $BINARY ]]; then
    BIN=$(realpath "$BINARY")
else
    cargo build --release --quiet
    BIN=$PWD/target/release/keyport
fi
WORK=$(mktemp -d)
SERVER_PID=""
SINK_PID=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
    [[ -n $SINK_PID ]] && kill "$SINK_PID" 2>/dev/null || true
    if [[ -n ${KEEP_WORK:-} ]]; then echo "callgrind dumps kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

for name in $(env | grep -oE '^KEYPORT_[A-Z_]+' || true); do unset "$name"; done
export KEYPORT_DATABASE_URL=sqlite://$WORK/keyport.db RUST_LOG=warn
export KEYPORT_WEBHOOK_DELIVER=false
export KEYPORT_WEBHOOK_ALLOW_HTTP=true KEYPORT_WEBHOOK_ALLOW_PRIVATE_TARGETS=true
"$BIN" migrate >/dev/null 2>&1
"$BIN" tenant create Bench >/dev/null
"$BIN" user create --tenant Bench --email bench@example.com --role admin \
    --permissions webhooks:write,webhooks:manage >/dev/null
"$BIN" --json key create --user bench@example.com --name bench >"$WORK/key.json"

# The receiver: counts POSTs, answers 204; GET answers the count.
cat >"$WORK/sink.py" <<'EOF'
import threading
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

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
KEYPORT_BIND=127.0.0.1:$PORT valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" \
    "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.2
done

# push COLLECTION N: N one-record pushes over CONNECTIONS connections at
# once, each answered 201. `endpoint` instead registers the endpoint.
push() {
    python3 - "$PORT" "$WORK/key.json" "$CONNECTIONS" "$1" "$2" "$SINK" <<'PY'
import base64, http.client, json, sys, threading
port, key, connections = int(sys.argv[1]), json.load(open(sys.argv[2])), int(sys.argv[3])
collection, count, sink = sys.argv[4], int(sys.argv[5]), sys.argv[6]
def call(connection, method, path, body, headers, expect):
    connection.request(method, path, body=body, headers=headers)
    answer = connection.getresponse()
    data = answer.read()
    if answer.status != expect:
        sys.exit(f"{method} {path} was answered {answer.status}: {data[:200]!r}")
    return data
basic = base64.b64encode(f"{key['client_id']}:{key['client_secret']}".encode()).decode()
first = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
token = json.loads(call(first, "POST", "/oauth/token", "grant_type=client_credentials",
                        {"Authorization": "Basic " + basic,
                         "Content-Type": "application/x-www-form-urlencoded"}, 200))["access_token"]
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
if collection == "endpoint":
    call(first, "POST", "/api/v1/webhook-endpoints",
         json.dumps({"url": sink + "/hooks", "events": ["record.created"],
                     "collections": ["bench"]}), headers, 201)
    sys.exit(0)
failed = []
def pusher(n):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        for _ in range(n):
            call(connection, "POST", f"/api/v1/webhooks/{collection}",
                 '{"order":1001,"total":99.5}', headers, 201)
    except SystemExit as exit:
        failed.append(str(exit))
threads = [threading.Thread(target=pusher, args=(count // connections,)) for _ in range(connections)]
for thread in threads: thread.start()
for thread in threads: thread.join()
if failed:
    sys.exit(failed[0])
PY
}

push endpoint 0
push bench-quiet 200 # warm: the credential cache, the statements, the allocator
push bench 200
callgrind_control -z "$SERVER_PID" >/dev/null
PUSHED=$((PUSHES / CONNECTIONS * CONNECTIONS))
for round in 1 2; do
    push bench-quiet "$PUSHES"
    callgrind_control -d "quiet-$round" "$SERVER_PID" >/dev/null
    push bench "$PUSHES"
    callgrind_control -d "listened-$round" "$SERVER_PID" >/dev/null
done
sleep 1
kill "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
# per_push PATTERN: instructions per push over the dumps whose trigger
# names PATTERN.
per_push() {
    grep -l "^desc: Trigger: dump $1" "$WORK"/cg.* |
        xargs awk -v n=$((PUSHED * 2)) '/^summary:/ { total += $2 } END { printf "%d\n", total / n }'
}
QUIET=$(per_push quiet)
LISTENED=$(per_push listened)
echo "| push ($PUSHED pushes × 2, $CONNECTIONS connections, $($BIN --version 2>/dev/null || echo keyport)) | instructions per push | ÷ nobody listening |"
echo "| --- | ---: | ---: |"
echo "| to a collection nobody listens to | $QUIET | 1.00× |"
awk -v l="$LISTENED" -v q="$QUIET" 'BEGIN { printf "| to a collection one endpoint listens to | %d | %.3f× |\n", l, l / q }'
((DELIVERIES)) || exit 0

# The backlog (the listened pushes, warm-up included), sent by the worker.
BACKLOG=$((PUSHED * 2 + 200 / CONNECTIONS * CONNECTIONS))
sent() { curl -fs "$SINK/count"; }
KEYPORT_WEBHOOK_DELIVER=true KEYPORT_WEBHOOK_POLL_INTERVAL_MS=100 KEYPORT_BIND=127.0.0.1:$PORT \
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" \
    "$BIN" serve >>"$WORK/server.log" 2>&1 &
SERVER_PID=$!
while (($(sent) == 0)); do sleep 0.05; done
callgrind_control -z "$SERVER_PID" >/dev/null
FROM=$(sent)
while (($(sent) < BACKLOG)); do sleep 0.2; done
TO=$(sent)
callgrind_control -d deliveries "$SERVER_PID" >/dev/null
kill "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
PER_DELIVERY=$(grep -l "^desc: Trigger: dump deliveries" "$WORK"/cg.* |
    xargs awk -v n=$((TO - FROM)) '/^summary:/ { total += $2 } END { printf "%d\n", total / n }')
echo "| a delivery sent from the backlog ($((TO - FROM)) of $BACKLOG counted) | $PER_DELIVERY | |"
