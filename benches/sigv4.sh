#!/usr/bin/env bash
# SigV4 against bearer tokens: one command, one Markdown table.
#
#   bash benches/sigv4.sh [--postgres] [--duration 10s] [--connections 32]
#                         [--rounds 2] [--binary PATH]
#
# Builds the release binary, starts it on a fresh database (a temporary SQLite
# file, or with --postgres a new database on 127.0.0.1:5432, dropped at the
# end), makes one key allowing SigV4, and drives with wrk, alternated for
# --rounds rounds so a machine whose load drifts weighs on both alike:
#
#   bearer  GET /api/v1/whoami, one access token of that key reused
#   SigV4   GET /api/v1/whoami signed with the key's secret, one signature
#           reused (valid for sigv4_max_skew_seconds; a GET is not a write,
#           so the replay cache does not refuse it): each request is parsed,
#           canonicalised, its HMAC checked and its key's standing asked
#
# and prints req/s, p50 and p99 per run, the load average before each, and
# SigV4's throughput as a share of the bearer token's (the rounds' sums). No
# timing is asserted; the report goes to stdout and target/sigv4-report.md.
# --binary PATH runs another build instead of building this tree's (e.g. an
# older commit's, to compare).
set -euo pipefail
cd "$(dirname "$0")/.."

POSTGRES=0
DURATION=10s
CONNECTIONS=32
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
        *) echo "sigv4.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

say() { echo "sigv4.sh: $*" >&2; }
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
    cargo build --release --quiet --bin keyport
    BIN=$PWD/target/release/keyport
fi
LUA=$PWD/benches/load.lua
WORK=$(mktemp -d)
SERVER_PID=""
PG_DB=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    [[ -n $PG_DB ]] && psql -q -h 127.0.0.1 -U postgres -d postgres \
        -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

for name in $(env | grep -oE '^KEYPORT_[A-Z_]+' || true); do unset "$name"; done
if ((POSTGRES)); then
    PG_DB=keyport_sigv4_bench_$$
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $PG_DB" >/dev/null
    export KEYPORT_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$PG_DB
    BACKEND=PostgreSQL
else
    export KEYPORT_DATABASE_URL=sqlite://$WORK/keyport.db
    BACKEND="SQLite (file, WAL)"
fi
KEYPORT_MASTER_KEY=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
export KEYPORT_MASTER_KEY
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
export KEYPORT_BIND=127.0.0.1:$PORT RUST_LOG=warn

"$BIN" migrate >/dev/null
"$BIN" tenant create Bench >/dev/null
"$BIN" user create --tenant Bench --email bench@example.com --role admin \
    --permissions reports:read,webhooks:write >/dev/null
KEY=$("$BIN" --json key create --user bench@example.com --name bench --sigv4)
CLIENT_ID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_id"])' "$KEY")
SECRET=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_secret"])' "$KEY")

"$BIN" serve >>"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do curl -fs "$BASE/readyz" >/dev/null && break; sleep 0.1; done
curl -fs "$BASE/readyz" >/dev/null || die "the server did not start: $(cat "$WORK/server.log")"

TOKEN=$(curl -fs -u "$CLIENT_ID:$SECRET" -d grant_type=client_credentials "$BASE/oauth/token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
{ read -r AMZ_DATE; read -r AUTHORIZATION; } < <(
    SIGV4_ID=$CLIENT_ID SIGV4_SECRET=$SECRET SIGV4_HOST="127.0.0.1:$PORT" python3 benches/sigv4_sign.py
)
signed=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/api/v1/whoami" \
    -H "Authorization: $AUTHORIZATION" -H "X-Amz-Date: $AMZ_DATE")
[[ $signed == 200 ]] || die "a SigV4-signed whoami answered $signed"

# run NAME VAR=VALUE...: one wrk run; prints "rps p50_us p99_us".
run() {
    local name=$1
    shift
    env "$@" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$LUA" "$BASE/api/v1/whoami" \
        >"$WORK/wrk-$name.txt" 2>&1 || { cat "$WORK/wrk-$name.txt" >&2; die "wrk failed in $name"; }
    local line
    line=$(grep '^KP_RESULT ' "$WORK/wrk-$name.txt") || { cat "$WORK/wrk-$name.txt" >&2; die "no result in $name"; }
    local bad
    bad=$(tr ' ' '\n' <<<"$line" | grep '^bad=' | cut -d= -f2)
    [[ $bad == 0 ]] || die "$name: $bad requests answered other than 200"
    for field in rps p50_us p99_us; do tr ' ' '\n' <<<"$line" | grep "^$field=" | cut -d= -f2; done | paste -sd' '
}
load() { cut -d' ' -f1-3 /proc/loadavg; }

ROWS=""
for round in $(seq "$ROUNDS"); do
    for variant in bearer sigv4; do
        before=$(load)
        say "round $round, $variant ($DURATION, $CONNECTIONS connections, load average $before)"
        if [[ $variant == bearer ]]; then
            result=$(run "bearer-$round" KP_BEARER="$TOKEN")
        else
            result=$(run "sigv4-$round" KP_AUTHORIZATION="$AUTHORIZATION" KP_AMZ_DATE="$AMZ_DATE")
        fi
        say "  $result"
        ROWS+="$round|$variant|$before|$result;"
    done
done

REPORT=$(python3 - "$BACKEND" "$CONNECTIONS" "$DURATION" "$ROWS" <<'PY'
import sys
backend, connections, duration, rows = sys.argv[1:]
rows = [r.split("|") for r in rows.split(";") if r]
print(f"## SigV4 against bearer tokens ({backend}, {connections} connections, {duration} per run)\n")
print("| round | request | load average before | req/s | p50 / p99 |")
print("| ---: | --- | --- | ---: | ---: |")
sums = {"bearer": 0.0, "sigv4": 0.0}
for round_, variant, load, result in rows:
    rps, p50, p99 = (float(x) for x in result.split())
    sums[variant] += rps
    label = "bearer token" if variant == "bearer" else "SigV4, one signature reused"
    print(f"| {round_} | {label} | {load} | {rps:,.0f} | {p50 / 1000:.2f} / {p99 / 1000:.2f} ms |")
print(f"\nSigV4 / bearer (sums of the rounds): {sums['sigv4'] / sums['bearer']:.2f}")
PY
)
echo "$REPORT"
mkdir -p target
echo "$REPORT" >target/sigv4-report.md
