#!/usr/bin/env bash
# SigV4 against bearer tokens, in instructions rather than seconds: the
# release server runs under valgrind's callgrind on a fresh SQLite file with
# one key allowing SigV4, and answers --requests `GET /api/v1/whoami` with
# one access token of that key reused, then as many signed with the key's
# secret (one signature reused: a GET is not a write, so each request is
# parsed, canonicalised, its HMAC checked and its key's standing asked), from
# --connections keep-alive connections. Callgrind counts the instructions of
# all the server's threads while each batch is answered, so the ratio is the
# same on a busy machine as on an idle one, unlike the rates of
# benches/sigv4.sh.
#
#   bash benches/sigv4-instructions.sh [--requests 2000] [--connections 4]
#                                      [--binary PATH] [--keep DIR]
#
# --binary PATH measures another build (e.g. main's, to compare);
# --keep DIR keeps callgrind's dumps (DIR/bearer.out, DIR/sigv4.out) for
# callgrind_annotate, to see which functions the difference is made of.
#
# Prints instructions per request for each and their ratio. Needs valgrind
# (apt-get install valgrind): without it, says so and exits 0. No timing is
# asserted.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=2000
CONNECTIONS=4
BINARY=""
KEEP=""
while (($#)); do
    case $1 in
        --requests) REQUESTS=$2; shift ;;
        --connections) CONNECTIONS=$2; shift ;;
        --binary) BINARY=$2; shift ;;
        --keep) KEEP=$2; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//;/^set -e/d'; exit 0 ;;
        *) echo "sigv4-instructions.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
    echo "sigv4-instructions.sh: valgrind is not installed (apt-get install valgrind); nothing measured"
    exit 0
fi

if [[ -n $BINARY ]]; then
    BIN=$(realpath "$BINARY")
else
    cargo build --release --quiet --bin keyport
    BIN=$PWD/target/release/keyport
fi
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

for name in $(env | grep -oE '^KEYPORT_[A-Z_]+' || true); do unset "$name"; done
# One worker thread: callgrind runs one thread at a time anyway.
export KEYPORT_DATABASE_URL=sqlite://$WORK/keyport.db RUST_LOG=warn KEYPORT_WORKERS=1
KEYPORT_MASTER_KEY=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
export KEYPORT_MASTER_KEY
"$BIN" migrate >/dev/null 2>&1
"$BIN" tenant create Bench >/dev/null
"$BIN" user create --tenant Bench --email bench@example.com --role admin \
    --permissions reports:read >/dev/null
"$BIN" --json key create --user bench@example.com --name bench --sigv4 >"$WORK/key.json"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
KEYPORT_BIND=127.0.0.1:$PORT valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.%p" \
    "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$WORK/server.log" >&2; exit 1; }

TOKEN=$(python3 - "$WORK/key.json" "$PORT" <<'PY'
import base64, http.client, json, sys
key, port = json.load(open(sys.argv[1])), int(sys.argv[2])
basic = base64.b64encode(f"{key['client_id']}:{key['client_secret']}".encode()).decode()
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
connection.request("POST", "/oauth/token", body="grant_type=client_credentials",
                   headers={"Authorization": "Basic " + basic,
                            "Content-Type": "application/x-www-form-urlencoded"})
print(json.load(connection.getresponse())["access_token"])
PY
)
{ read -r AMZ_DATE; read -r AUTHORIZATION; } < <(
    SIGV4_ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_id"])' "$WORK/key.json") \
    SIGV4_SECRET=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_secret"])' "$WORK/key.json") \
    SIGV4_HOST="127.0.0.1:$PORT" python3 benches/sigv4_sign.py
)

# ask N HEADER=VALUE...: N whoami requests spread over the connections, each
# answered 200.
ask() {
    python3 - "$PORT" "$1" "$CONNECTIONS" "${@:2}" <<'PY'
import http.client, sys, threading
port, count, connections = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
headers = dict(h.split("=", 1) for h in sys.argv[4:])
failures = []
def drive(n):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    for _ in range(n):
        connection.request("GET", "/api/v1/whoami", headers=headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            failures.append(answer.status)
            return
shares = [count // connections + (i < count % connections) for i in range(connections)]
threads = [threading.Thread(target=drive, args=(n,)) for n in shares]
for t in threads: t.start()
for t in threads: t.join()
if failures:
    sys.exit(f"a whoami was answered {failures[0]}")
PY
}

BEARER=(Authorization="Bearer $TOKEN")
SIGNED=(Authorization="$AUTHORIZATION" X-Amz-Date="$AMZ_DATE")

# Warm both paths: the credential cache, the verified-token cache, the
# derived signing key, the allocator.
ask 200 "${BEARER[@]}"
ask 200 "${SIGNED[@]}"
sleep 2

# measure NAME SEQ HEADERS...: instructions per request of one batch, read
# from callgrind's SEQth dump.
measure() {
    local name=$1 dump="$WORK/callgrind.$SERVER_PID.$2"
    shift 2
    callgrind_control -z "$SERVER_PID" >/dev/null 2>&1
    ask "$REQUESTS" "$@"
    callgrind_control -d "$SERVER_PID" >/dev/null 2>&1
    for _ in $(seq 1 100); do [[ -s $dump ]] && break; sleep 0.1; done
    if [[ -n $KEEP ]]; then mkdir -p "$KEEP" && cp "$dump" "$KEEP/$name.out"; fi
    awk -v n="$REQUESTS" '/^summary:/ { printf "%d\n", $2 / n }' "$dump"
}

BEARER_IR=$(measure bearer 1 "${BEARER[@]}")
SIGV4_IR=$(measure sigv4 2 "${SIGNED[@]}")

echo "| request ($REQUESTS whoami, $CONNECTIONS connections) | instructions per request | ÷ bearer |"
echo "| --- | ---: | ---: |"
echo "| bearer token | $BEARER_IR | 1.00× |"
awk -v s="$SIGV4_IR" -v b="$BEARER_IR" 'BEGIN { printf "| SigV4, one signature reused | %d | %.3f× |\n", s, s / b }'
awk -v s="$SIGV4_IR" -v b="$BEARER_IR" 'BEGIN { printf "SigV4 costs %d instructions more per request than a bearer token.\n", s - b }'
