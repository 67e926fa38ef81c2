#!/usr/bin/env bash
# The console's overview and key list for a company with many busy keys:
# the release server on a fresh SQLite file holding --keys keys of one
# admin, each with usage in every hour of the last 14 days (tokens issued,
# refusals and busiest minutes, written straight into the usage tables as
# the flush would), then the admin's pages fetched --requests times each.
#
#   bash benches/console-scale.sh [--keys 1000] [--requests 3] [--binary PATH]
#
# Prints the time, status and size of each fetch and the server's resident
# memory after them. To compare two builds, run it with each one's binary
# (--binary) in turn on the same machine. No timing is asserted. Needs curl,
# jq and sqlite3 (apt-get install sqlite3).
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=1000
REQUESTS=3
BINARY=""
while (($#)); do
    case $1 in
        --keys) KEYS=$2; shift ;;
        --requests) REQUESTS=$2; shift ;;
        --binary) BINARY=$2; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//;/^set -e/d'; exit 0 ;;
        *) echo "console-scale.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for tool in curl jq sqlite3; do
    command -v "$tool" >/dev/null || { echo "console-scale.sh: needs $tool" >&2; exit 2; }
done
if [[ -z $BINARY ]]; then
    cargo build --release --bin keyport >&2
    BINARY=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/release/keyport
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyport-console-scale.XXXXXX")
SERVER_PID=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
export KEYPORT_DATABASE_URL="sqlite://$WORK/keyport.db"
unset KEYPORT_BIND KEYPORT_CONFIG
kp() { RUST_LOG=warn "$BINARY" --json "$@"; }
kp migrate >/dev/null 2>&1
TENANT_ID=$(kp tenant create ScaleCo | jq -er .id)
ADMIN_ID=$(kp user create --tenant ScaleCo --email admin@scale.test --role admin \
    --permissions reports:read,keys:manage,webhooks:manage | jq -er .id)
PASSWORD='a long enough passphrase'
echo "$PASSWORD" | kp user set-password admin@scale.test >/dev/null

# Keys and usage straight into SQLite: random client IDs and digests (no
# secret hashes to them), every hour of the fortnight used.
B62=0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz
client_id="'kpc_'"
for ((i = 0; i < 24; i++)); do client_id+=" || substr('$B62', 1 + abs(random() % 62), 1)"; done
NOW=$(date +%s)
FIRST_HOUR=$((NOW - NOW % 3600 - 14 * 86400))
sqlite3 -bail "$WORK/keyport.db" >/dev/null <<SQL
PRAGMA busy_timeout = 30000;
PRAGMA synchronous = OFF;
BEGIN IMMEDIATE;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $KEYS),
     u(h, i) AS (SELECT lower(hex(randomblob(16))), i FROM n)
INSERT INTO api_keys (id, tenant_id, owner_id, client_id, secret_digest, name, created_at, updated_at)
SELECT h, '$TENANT_ID', '$ADMIN_ID', $client_id, lower(hex(randomblob(32))), 'key ' || i,
       $NOW - 30 * 86400, $NOW - 30 * 86400 FROM u;
CREATE TEMP TABLE hours AS
WITH RECURSIVE h(t) AS (SELECT $FIRST_HOUR UNION ALL SELECT t + 3600 FROM h WHERE t < $NOW - 3600)
SELECT t FROM h;
INSERT INTO key_usage (key_id, tenant_id, hour, outcome, count)
SELECT k.id, k.tenant_id, h.t, 'tokens_issued', 1 + abs(random() % 100) FROM api_keys k, hours h;
INSERT INTO key_usage (key_id, tenant_id, hour, outcome, count)
SELECT k.id, k.tenant_id, h.t, 'refused:wrong_secret', 1 + abs(random() % 3) FROM api_keys k, hours h;
INSERT INTO key_usage_peaks (key_id, tenant_id, hour, per_minute)
SELECT k.id, k.tenant_id, h.t, 1 + abs(random() % 20) FROM api_keys k, hours h;
COMMIT;
SQL
ROWS=$(sqlite3 "$WORK/keyport.db" "SELECT COUNT(*) FROM key_usage")

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
KEYPORT_BIND=127.0.0.1:$PORT RUST_LOG=warn "$BINARY" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
SESSION=$(curl -fs -X POST "http://127.0.0.1:$PORT/api/v1/session" -H 'content-type: application/json' \
    -d "{\"email\":\"admin@scale.test\",\"password\":\"$PASSWORD\"}" | jq -er .session_token)

echo "| page | fetch | status | seconds | bytes |"
echo "| --- | ---: | ---: | ---: | ---: |"
for page in /console/overview /console/keys; do
    for ((r = 1; r <= REQUESTS; r++)); do
        curl -s -o /dev/null -b "keyport_session=$SESSION" \
            -w "| $page | $r | %{http_code} | %{time_total} | %{size_download} |\n" \
            "http://127.0.0.1:$PORT$page"
    done
done
echo
echo "- $KEYS keys, $ROWS hourly usage rows; load average before the fetches: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- server resident memory after them: $(($(ps -o rss= -p "$SERVER_PID") / 1024)) MiB"
