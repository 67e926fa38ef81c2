#!/usr/bin/env bash
# Keyport load benchmark: one command, one Markdown table.
#
#   bash benches/load.sh [--postgres] [--duration 10s] [--connections 32]
#                        [--keys-large 1000000] [--no-micro] [--instances 2]
#                        [--peer]
#
# Builds the release binary, starts it on a fresh database (a temporary SQLite
# file, or with --postgres a new database on 127.0.0.1:5432 that is dropped at
# the end), seeds a tenant, users and keys, then drives each scenario with wrk
# for the same duration and connection count:
#
#   baseline   GET  /healthz
#   token      POST /oauth/token, client_secret_basic, a random one of the real
#              keys per request (database holding --keys-small keys)
#   validate   a token-protected route with one reused access token:
#              GET /api/v1/whoami when the server has it, otherwise
#              GET /api/v1/reports/<missing collection> (404 expected; that
#              route does database lookups) plus GET /api/v1/reports/_x
#              (400 expected: token checked, collection name refused, no
#              database work)
#   validate, SigV4  GET /api/v1/whoami signed with AWS Signature Version 4
#              (one signature reused: the server checks it in full each time)
#   pull       GET  /api/v1/reports/{collection}?limit=50 (100 records stored)
#   push       POST /api/v1/webhooks/{collection}, one JSON record
#   token      again, after bulk-inserting keys up to --keys-large
#
# With --instances N, N servers share the database and the baseline and token
# scenarios are driven on all of them at once (one wrk per instance, the
# connections split evenly; req/s summed, latencies the worst instance's);
# the others run against the first. With --peer, node `oidc-provider`
# (pinned in benches/package.json, installed with npm on first use) is
# started as a peer with one client_credentials client issuing ES256 JWT
# access tokens (benches/oidc-peer.mjs, one worker per core like Keyport),
# and its token endpoint is driven the same way, so the report can give
# Keyport's tokens/s as a multiple of it.
#
# and prints req/s, p50/p99/max latency, failed requests, socket errors and
# the 5xx answers in the server's request log per scenario, the ratio to
# baseline, the server's peak RSS and (unless --no-micro) the means from
# `cargo bench --bench micro`. The report goes to stdout (progress to stderr)
# and to target/load-report.md. Exit status: 0 when every request got its
# expected status, 1 when any failed, hit a socket error or was logged as a
# 5xx (or the micro benchmarks failed). No timing is asserted.
#
# Seeding: ~200 real keys go through the CLI (`keyport --json key create`);
# the filler keys (random client IDs and digests, never used) are inserted
# straight into api_keys with sqlite3/psql, which is far faster.
#
# Environment: RUST_LOG for the server (default: info, its own default: one
# log line per request, written to a file); other KEYPORT_* settings reach the
# server and are named in the report; KEYPORT_BENCH_POSTGRES_URL (default
# postgres://postgres@127.0.0.1:5432) is where --postgres creates its database.

set -euo pipefail

usage() {
    sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --postgres            use a fresh PostgreSQL database instead of SQLite
  --duration T          wrk duration per scenario (default 10s)
  --connections N       wrk connections (default 32)
  --threads N           wrk threads (default 2)
  --keys-small N        keys in the database for the first token run (default 1000)
  --keys-large N        keys in the database for the second token run (default 1000000)
  --real-keys N         keys created through the CLI, used by the token runs (default 200)
  --no-micro            skip `cargo bench --bench micro`
  --keep                keep the temporary directory (database, logs, wrk output)
  --instances N         serve from N instances on the one database (default 1)
  --peer                also benchmark node oidc-provider's token endpoint
EOF
}

POSTGRES=0
DURATION=10s
CONNECTIONS=32
THREADS=2
KEYS_SMALL=1000
KEYS_LARGE=1000000
REAL_KEYS=200
MICRO=1
KEEP=0
INSTANCES=1
PEER=0

while (($#)); do
    arg=$1
    value=""
    case $arg in
        --*=*) value=${arg#*=}; arg=${arg%%=*} ;;
    esac
    case $arg in
        --duration | --connections | --threads | --keys-small | --keys-large | --real-keys | --instances)
            if [[ -z $value ]]; then
                (($# >= 2)) || { echo "load.sh: $arg needs a value" >&2; exit 2; }
                value=$2
                shift
            fi
            ;;
    esac
    case $arg in
        --postgres) POSTGRES=1 ;;
        --duration) DURATION=$value ;;
        --connections) CONNECTIONS=$value ;;
        --threads) THREADS=$value ;;
        --keys-small) KEYS_SMALL=$value ;;
        --keys-large) KEYS_LARGE=$value ;;
        --real-keys) REAL_KEYS=$value ;;
        --no-micro) MICRO=0 ;;
        --keep) KEEP=1 ;;
        --instances) INSTANCES=$value ;;
        --peer) PEER=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "load.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

for n in CONNECTIONS THREADS KEYS_SMALL KEYS_LARGE REAL_KEYS INSTANCES; do
    [[ ${!n} =~ ^[0-9]+$ ]] || { echo "load.sh: ${n,,} must be a whole number" >&2; exit 2; }
done
((REAL_KEYS >= 1)) || { echo "load.sh: --real-keys must be at least 1" >&2; exit 2; }
((INSTANCES >= 1 && INSTANCES <= CONNECTIONS)) ||
    { echo "load.sh: --instances must be between 1 and the connection count" >&2; exit 2; }
# The small key count includes the real keys and the admin's key.
if ((KEYS_SMALL < REAL_KEYS + 1)); then KEYS_SMALL=$((REAL_KEYS + 1)); fi

cd "$(dirname "$0")/.."
ROOT=$PWD
LUA=$ROOT/benches/load.lua
START=$(date +%s.%N)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

elapsed() { awk -v s="$START" -v n="$(date +%s.%N)" 'BEGIN { printf "%5.1fs", n - s }'; }
say() { printf '[load %s] %s\n' "$(elapsed)" "$*" >&2; }
die() { say "error: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v s="$1" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f", n - s }'; }
fmt_ms() { awk -v us="$1" 'BEGIN { ms = us / 1000; if (ms < 10) printf "%.2f ms", ms; else if (ms < 100) printf "%.1f ms", ms; else printf "%.0f ms", ms }'; }
fmt_ns() { awk -v ns="$1" 'BEGIN { if (ns < 1000) printf "%.1f ns", ns; else if (ns < 1e6) printf "%.2f µs", ns / 1000; else printf "%.2f ms", ns / 1e6 }'; }
fmt_int() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"${1%.*}"; }

# --- tools -----------------------------------------------------------------

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v jq >/dev/null || missing+=(jq)
command -v curl >/dev/null || missing+=(curl)
if ((PEER)); then
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
fi
if ((POSTGRES)); then
    command -v psql >/dev/null || missing+=(postgresql-client)
else
    command -v sqlite3 >/dev/null || missing+=(sqlite3)
fi
if ((${#missing[@]})); then
    say "installing ${missing[*]} with apt-get"
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo); fi
    export DEBIAN_FRONTEND=noninteractive
    if ! "${SUDO[@]}" apt-get install -y -q "${missing[@]}" >&2; then
        "${SUDO[@]}" apt-get update -q >&2
        "${SUDO[@]}" apt-get install -y -q "${missing[@]}" >&2
    fi
fi

# --- build -----------------------------------------------------------------

say "cargo build --release --bin keyport"
build_started=$(now)
cargo build --release --bin keyport >&2
BUILD_SECONDS=$(since "$build_started")
# What was built, for the report (the tree may change while the run goes on).
COMMIT="\`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`"
git diff --quiet HEAD -- src Cargo.toml Cargo.lock migrations config 2>/dev/null ||
    COMMIT+=" (with uncommitted changes)"
LOAD_STARTED=$(now)
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
BIN=$TARGET_DIR/release/keyport
[[ -x $BIN ]] || die "no binary at $BIN"

# --- database --------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyport-load.XXXXXX")
SERVER_PID=""
EXTRA_PIDS=()
PEER_PID=""
PG_DB=""
PG_BASE=${KEYPORT_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
PG_BASE=${PG_BASE%/}
unset KEYPORT_BENCH_POSTGRES_URL KEYPORT_CONFIG KEYPORT_BIND
# Other KEYPORT_* settings in the environment reach the server: name them.
OVERRIDES=$(env | grep -E '^KEYPORT_' | grep -vE '^KEYPORT_DATABASE_URL=' | sort | paste -sd ' ' - || true)

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 "$PG_BASE/postgres" "$@"; }

cleanup() {
    local rc=$? pid
    for pid in $SERVER_PID "${EXTRA_PIDS[@]}" $PEER_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ -n $PG_DB ]]; then
        psql_admin -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 ||
            say "could not drop PostgreSQL database $PG_DB"
    fi
    if ((KEEP)); then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ((POSTGRES)); then
    PG_DB="keyport_bench_$$_$RANDOM"
    psql_admin -c "CREATE DATABASE \"$PG_DB\"" >/dev/null || die "cannot create a database at $PG_BASE"
    DATABASE_URL="$PG_BASE/$PG_DB"
    # PostgreSQL needs a master key (SQLite creates one beside its file).
    KEYPORT_MASTER_KEY=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
    export KEYPORT_MASTER_KEY
    BACKEND="PostgreSQL $(psql -X -At "$DATABASE_URL" -c 'SHOW server_version' | awk '{print $1}')"
else
    DATABASE_URL="sqlite://$WORK/keyport.db"
    BACKEND="SQLite $(sqlite3 --version | awk '{print $1}') (file, WAL)"
fi
say "database: $BACKEND, $WORK"

export KEYPORT_DATABASE_URL=$DATABASE_URL

# The admin CLI, allowed as many keys per user as the seeding needs.
kp() { KEYPORT_MAX_ACTIVE_KEYS_PER_USER=1000000 RUST_LOG=warn "$BIN" --json "$@"; }

# Runs SQL on the benchmark database.
db_sql() {
    if ((POSTGRES)); then
        psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL"
    else
        sqlite3 -bail "$WORK/keyport.db"
    fi
}

B62=0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz

# Inserts $1 filler keys owned by the filler user: random `kpc_` + 24 base62
# client IDs and random 64-hex digests (no secret hashes to them).
insert_filler() {
    local count=$1 i expr
    ((count > 0)) || return 0
    if ((POSTGRES)); then
        db_sql <<SQL
SET synchronous_commit = off;
INSERT INTO api_keys (id, tenant_id, owner_id, client_id, secret_digest, name, created_at, updated_at)
SELECT gen_random_uuid()::text, '$TENANT_ID', '$FILLER_ID',
       'kpc_' || (SELECT string_agg(substr('$B62', 1 + floor(random() * 62)::int, 1), '')
                  FROM generate_series(1, 24 + 0 * g)),
       encode(sha256(uuid_send(gen_random_uuid())), 'hex'),
       'filler', extract(epoch FROM now())::bigint, extract(epoch FROM now())::bigint
FROM generate_series(1, $count) AS g;
VACUUM ANALYZE api_keys;
SQL
    else
        expr="'kpc_'"
        for ((i = 0; i < 24; i++)); do
            expr+=" || substr('$B62', 1 + abs(random() % 62), 1)"
        done
        db_sql <<SQL
PRAGMA busy_timeout = 30000;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -400000;
BEGIN IMMEDIATE;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $count),
     u(h) AS (SELECT lower(hex(randomblob(16))) FROM n)
INSERT INTO api_keys (id, tenant_id, owner_id, client_id, secret_digest, name, created_at, updated_at)
SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-8'
           || substr(h, 18, 3) || '-' || substr(h, 21, 12),
       '$TENANT_ID', '$FILLER_ID', $expr, lower(hex(randomblob(32))),
       'filler', CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER)
FROM u;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
    fi
}

key_count() {
    if ((POSTGRES)); then
        psql -X -At "$DATABASE_URL" -c "SELECT COUNT(*) FROM api_keys"
    else
        sqlite3 "$WORK/keyport.db" "SELECT COUNT(*) FROM api_keys"
    fi
}

# --- seed ------------------------------------------------------------------

say "seeding: tenant, users, $REAL_KEYS real keys through the CLI"
seed_started=$(now)
kp migrate >/dev/null
TENANT_ID=$(kp tenant create BenchCo | jq -er .id)
kp user create --tenant BenchCo --email admin@bench.test --role admin \
    --permissions reports:read,webhooks:write,keys:manage >/dev/null
FILLER_ID=$(kp user create --tenant BenchCo --email filler@bench.test --role member \
    --permissions reports:read | jq -er .id)
MEMBERS=10
for ((m = 1; m <= MEMBERS; m++)); do
    kp user create --tenant BenchCo --email "member$m@bench.test" --role member \
        --permissions reports:read,webhooks:write >/dev/null
done
ADMIN_KEY=$(kp key create --user admin@bench.test --name "bench admin")
SIGV4_KEY=$(kp key create --user admin@bench.test --name "bench sigv4" --sigv4)
: >"$WORK/keys.jsonl"
for ((k = 1; k <= REAL_KEYS; k++)); do
    kp key create --user "member$(((k - 1) % MEMBERS + 1))@bench.test" --name "bench key $k" \
        >>"$WORK/keys.jsonl" || die "key create failed: $(tail -1 "$WORK/keys.jsonl")"
done
jq -er '"Basic " + ("\(.client_id):\(.client_secret)" | @base64)' "$WORK/keys.jsonl" >"$WORK/basic.txt"
[[ $(wc -l <"$WORK/basic.txt") -eq $REAL_KEYS ]] || die "expected $REAL_KEYS keys, got $(wc -l <"$WORK/basic.txt")"
CLI_SEED_SECONDS=$(since "$seed_started")
say "  $((REAL_KEYS + 1)) keys through the CLI in ${CLI_SEED_SECONDS}s"

filler_started=$(now)
insert_filler $((KEYS_SMALL - REAL_KEYS - 1)) >/dev/null
SMALL_COUNT=$(key_count)
say "  $SMALL_COUNT keys in the database (filler in $(since "$filler_started")s)"

# --- server ----------------------------------------------------------------

free_port() {
    local port _
    for _ in $(seq 200); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

PORT=$(free_port) || die "no free port found"
BASE="http://127.0.0.1:$PORT"
say "starting keyport serve on 127.0.0.1:$PORT (log: server.log)"
KEYPORT_BIND="127.0.0.1:$PORT" RUST_LOG=${RUST_LOG:-info} "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for ((i = 0; ; i++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/server.log" >&2; die "the server exited"; }
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz") == 200 ]] && break
    ((i < 300)) || die "the server did not become ready in 30 s"
    sleep 0.1
done

# The other instances, on the same database, each on a port of its own.
BASES=("$BASE")
for ((n = 2; n <= INSTANCES; n++)); do
    port=$(free_port) || die "no free port found"
    say "starting instance $n on 127.0.0.1:$port (log: server$n.log)"
    KEYPORT_BIND="127.0.0.1:$port" RUST_LOG=${RUST_LOG:-info} "$BIN" serve >"$WORK/server$n.log" 2>&1 &
    EXTRA_PIDS+=($!)
    for ((i = 0; ; i++)); do
        kill -0 "${EXTRA_PIDS[-1]}" 2>/dev/null || { tail -20 "$WORK/server$n.log" >&2; die "instance $n exited"; }
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz") == 200 ]] && break
        ((i < 300)) || die "instance $n did not become ready in 30 s"
        sleep 0.1
    done
    BASES+=("http://127.0.0.1:$port")
done

admin_basic=$(jq -er '"\(.client_id):\(.client_secret)"' <<<"$ADMIN_KEY")
fresh_token() {
    curl -sf -u "$admin_basic" -d grant_type=client_credentials "$BASE/oauth/token" | jq -er .access_token
}

TOKEN=$(fresh_token) || die "the admin key could not get a token"
ALGORITHM=$(curl -sf "$BASE/.well-known/jwks.json" | jq -r '[.keys[].alg] | join(",")')
records=$(jq -nc '[range(100) | {order: ., total: (. * 1.5), note: "load-benchmark seed record"}]')
status=$(curl -s -o "$WORK/seed-push.json" -w '%{http_code}' -X POST "$BASE/api/v1/webhooks/bench-pull" \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$records")
[[ $status == 201 ]] || die "seeding records answered $status: $(cat "$WORK/seed-push.json")"
pulled=$(curl -sf "$BASE/api/v1/reports/bench-pull?limit=50" -H "Authorization: Bearer $TOKEN" |
    jq -er '.records | length')
[[ $pulled == 50 ]] || die "a pull of 50 returned $pulled records"

# --- scenarios -------------------------------------------------------------

declare -A R_RPS R_P50 R_P99 R_MAX R_REQ R_BAD R_SOCK R_5XX R_STATUS R_LABEL R_REQUEST R_NOTE
ORDER=()
FAILED=0

# 5xx answers in the request log from line $1 on, as "METHOD PATH STATUS": a
# request line has "METHOD PATH STATUS 1.234ms" somewhere (then maybe more).
log_5xx() {
    tail -n +"$1" "$WORK/server.log" | awk '{
        for (i = 4; i <= NF; i++)
            if ($i ~ /^[0-9.]+ms$/ && $(i - 1) ~ /^[1-5][0-9][0-9]$/) {
                if ($(i - 1) ~ /^5/) print $(i - 3), $(i - 2), $(i - 1)
                break
            }
    }'
}

# Waits (at most 15 s) until the server log stops growing: requests still in
# flight when wrk stopped are logged before the next scenario starts.
settle() {
    local before after _
    for _ in $(seq 50); do
        before=$(stat -c %s "$WORK/server.log")
        sleep 0.3
        after=$(stat -c %s "$WORK/server.log")
        [[ $before == "$after" ]] && return 0
    done
}

# The servers `run` drives: the first one, unless a caller sets TARGETS.
TARGETS=()

# Sums the KP_RESULT lines of wrk runs that went at once (one per target):
# counts and req/s added, latencies the worst of them, statuses listed.
merge_results() {
    awk '{
        for (i = 2; i <= NF; i++) {
            split($i, kv, "=")
            k = kv[1]; v = substr($i, length(k) + 2)
            if (k == "statuses") st = st (st == "" ? "" : ",") v
            else if (k ~ /_us$/) { if (v + 0 > m[k] + 0) m[k] = v }
            else if (k == "seconds") { if (v + 0 > m[k] + 0) m[k] = v }
            else m[k] += v
        }
    } END {
        printf "KP_RESULT requests=%d seconds=%s rps=%.1f p50_us=%s p90_us=%s p99_us=%s max_us=%s bad=%d socket=%d statuses=%s\n",
            m["requests"], m["seconds"], m["rps"], m["p50_us"], m["p90_us"], m["p99_us"], m["max_us"],
            m["bad"], m["socket"], st
    }'
}

# run NAME LABEL "REQUEST" PATH [VAR=VALUE ...]: one wrk run, parsed (one
# wrk per target at once, the connections split, when TARGETS has several).
run() {
    local name=$1 label=$2 request=$3 path=$4 out line kv first_line targets n t pids
    shift 4
    out="$WORK/wrk-$name.txt"
    first_line=$(($(wc -l <"$WORK/server.log") + 1))
    targets=("${TARGETS[@]:-$BASE}")
    n=${#targets[@]}
    say "scenario $label: $request ($DURATION, $CONNECTIONS connections${TARGETS_NOTE:+, $TARGETS_NOTE})"
    pids=()
    for ((t = 0; t < n; t++)); do
        env "$@" wrk -t"$(((THREADS + n - 1) / n))" -c"$((CONNECTIONS / n))" -d"$DURATION" --timeout 10s \
            --latency -s "$LUA" "${targets[t]}$path" >"$out.$t" 2>&1 &
        pids+=($!)
    done
    for ((t = 0; t < n; t++)); do
        if ! wait "${pids[t]}"; then
            cat "$out.$t" >&2
            die "wrk failed in scenario $name"
        fi
    done
    cat "$out".* >"$out"
    line=$(grep -h '^KP_RESULT ' "$out" | merge_results)
    [[ $(grep -c '^KP_RESULT ' "$out") == "$n" ]] || { cat "$out" >&2; die "no result from wrk in $name"; }
    settle
    declare -A f=()
    for kv in ${line#KP_RESULT }; do f[${kv%%=*}]=${kv#*=}; done
    R_RPS[$name]=${f[rps]}
    R_P50[$name]=${f[p50_us]}
    R_P99[$name]=${f[p99_us]}
    R_MAX[$name]=${f[max_us]}
    R_5XX[$name]=$(log_5xx "$first_line" | wc -l)
    R_REQ[$name]=${f[requests]}
    R_BAD[$name]=${f[bad]}
    R_SOCK[$name]=${f[socket]}
    R_STATUS[$name]=${f[statuses]}
    R_LABEL[$name]=$label
    R_REQUEST[$name]=$request
    ORDER+=("$name")
    if ((${f[bad]} > 0 || ${f[socket]} > 0 || ${R_5XX[$name]} > 0)); then
        FAILED=$((FAILED + ${f[bad]} + ${f[socket]} + ${R_5XX[$name]}))
        say "  FAILED: ${f[bad]} unexpected statuses, ${f[socket]} socket errors, ${R_5XX[$name]} 5xx in the server log"
    fi
    say "  ${f[rps]} req/s, p50 ${f[p50_us]} µs, p99 ${f[p99_us]} µs, max ${f[max_us]} µs, statuses ${f[statuses]}"
}

# Baseline and token on every instance at once; the rest on the first.
TARGETS=("${BASES[@]}")
TARGETS_NOTE=$( ((INSTANCES > 1)) && echo "over $INSTANCES instances" || true)
run baseline baseline "GET /healthz" /healthz

run token_small "token ($(fmt_int "$SMALL_COUNT") keys)" \
    "POST /oauth/token, Basic, $REAL_KEYS keys at random" /oauth/token \
    KP_METHOD=POST KP_BODY=grant_type=client_credentials \
    KP_CONTENT_TYPE=application/x-www-form-urlencoded KP_AUTH_FILE="$WORK/basic.txt"
TARGETS=()
TARGETS_NOTE=""

TOKEN=$(fresh_token)
whoami=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/api/v1/whoami" -H "Authorization: Bearer $TOKEN")
if [[ $whoami == 200 ]]; then
    run validate validate "GET /api/v1/whoami, one token reused" /api/v1/whoami KP_BEARER="$TOKEN"
else
    run validate validate "GET /api/v1/reports/no-such-collection (404), one token reused" \
        /api/v1/reports/no-such-collection KP_BEARER="$TOKEN" KP_EXPECT=404
    R_NOTE[validate]="no DB-free protected route yet (/api/v1/whoami answered $whoami): token check + 2 indexed DB lookups, 404 expected"
    run validate_nodb "validate, no DB" "GET /api/v1/reports/_x (400), one token reused" \
        /api/v1/reports/_x KP_BEARER="$TOKEN" KP_EXPECT=400
    R_NOTE[validate_nodb]="token check, then the collection name \`_x\` is refused before any DB work: 400 expected"
fi

# One SigV4 signature of GET /api/v1/whoami, reused for the whole run (valid
# for sigv4_max_skew_seconds): Keyport keeps no replay cache, so each request
# is parsed, canonicalised, its key read and its HMAC checked, as a fresh
# signature would be (only the derived signing key is cached, per key and day).
sigv4_sign() {
    SIGV4_ID=$(jq -er .client_id <<<"$SIGV4_KEY") SIGV4_SECRET=$(jq -er .client_secret <<<"$SIGV4_KEY") \
        SIGV4_HOST="127.0.0.1:$PORT" python3 - <<'PY'
import datetime, hashlib, hmac, os
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
scope = f"{date[:8]}/us-east-1/keyport/aws4_request"
canonical = "\n".join(["GET", "/api/v1/whoami", "", "host:" + os.environ["SIGV4_HOST"],
    "x-amz-date:" + date, "", "host;x-amz-date", hashlib.sha256(b"").hexdigest()])
to_sign = "\n".join(["AWS4-HMAC-SHA256", date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
key = ("AWS4" + os.environ["SIGV4_SECRET"]).encode()
for part in (date[:8], "us-east-1", "keyport", "aws4_request"):
    key = hmac.new(key, part.encode(), hashlib.sha256).digest()
signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
print(date)
print(f"AWS4-HMAC-SHA256 Credential={os.environ['SIGV4_ID']}/{scope}, SignedHeaders=host;x-amz-date, Signature={signature}")
PY
}
{ read -r AMZ_DATE; read -r SIGV4_AUTHORIZATION; } < <(sigv4_sign)
signed=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/api/v1/whoami" \
    -H "Authorization: $SIGV4_AUTHORIZATION" -H "X-Amz-Date: $AMZ_DATE")
[[ $signed == 200 ]] || die "a SigV4-signed whoami answered $signed"
run validate_sigv4 "validate, SigV4" "GET /api/v1/whoami, one SigV4 signature reused" /api/v1/whoami \
    KP_AUTHORIZATION="$SIGV4_AUTHORIZATION" KP_AMZ_DATE="$AMZ_DATE"
R_NOTE[validate_sigv4]="the key read on every request (its status), the derived signing key cached"

TOKEN=$(fresh_token)
run pull pull "GET /api/v1/reports/bench-pull?limit=50" "/api/v1/reports/bench-pull?limit=50" \
    KP_BEARER="$TOKEN"

TOKEN=$(fresh_token)
run push push "POST /api/v1/webhooks/bench-push, 1 record" /api/v1/webhooks/bench-push \
    KP_METHOD=POST KP_BEARER="$TOKEN" KP_CONTENT_TYPE=application/json \
    KP_BODY='{"order":1001,"total":99.5,"currency":"EUR"}'

LARGE_SECONDS=""
if ((KEYS_LARGE > SMALL_COUNT)); then
    say "bulk-inserting $((KEYS_LARGE - SMALL_COUNT)) filler keys (server keeps running)"
    large_started=$(now)
    insert_filler $((KEYS_LARGE - SMALL_COUNT)) >/dev/null
    LARGE_SECONDS=$(since "$large_started")
    LARGE_COUNT=$(key_count)
    say "  $LARGE_COUNT keys in the database, inserted in ${LARGE_SECONDS}s"
    TARGETS=("${BASES[@]}")
    TARGETS_NOTE=$( ((INSTANCES > 1)) && echo "over $INSTANCES instances" || true)
    run token_large "token ($(fmt_int "$LARGE_COUNT") keys)" \
        "POST /oauth/token, Basic, $REAL_KEYS keys at random" /oauth/token \
        KP_METHOD=POST KP_BODY=grant_type=client_credentials \
        KP_CONTENT_TYPE=application/x-www-form-urlencoded KP_AUTH_FILE="$WORK/basic.txt"
    TARGETS=()
    TARGETS_NOTE=""
fi

# --- peer: node oidc-provider ----------------------------------------------

PEER_VERSION=""
if ((PEER)); then
    if [[ ! -d $ROOT/benches/node_modules/oidc-provider ]]; then
        say "npm ci in benches/ (oidc-provider)"
        (cd "$ROOT/benches" && npm ci --no-audit --no-fund >&2)
    fi
    PEER_VERSION=$(jq -r .version "$ROOT/benches/node_modules/oidc-provider/package.json")
    port=$(free_port) || die "no free port found"
    PEER_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
    say "starting oidc-provider $PEER_VERSION on 127.0.0.1:$port (log: peer.log)"
    PEER_PORT=$port PEER_WORKERS=$(nproc) PEER_CLIENT_SECRET=$PEER_SECRET \
        node "$ROOT/benches/oidc-peer.mjs" >"$WORK/peer.log" 2>&1 &
    PEER_PID=$!
    for ((i = 0; ; i++)); do
        kill -0 "$PEER_PID" 2>/dev/null || { tail -20 "$WORK/peer.log" >&2; die "the peer exited"; }
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/.well-known/openid-configuration") == 200 ]] && break
        ((i < 300)) || die "the peer did not become ready in 30 s"
        sleep 0.1
    done
    printf 'Basic %s\n' "$(printf 'bench:%s' "$PEER_SECRET" | base64 -w0)" >"$WORK/peer-basic.txt"
    peer_token=$(curl -sf -u "bench:$PEER_SECRET" -d grant_type=client_credentials \
        "http://127.0.0.1:$port/token" | jq -er .access_token) || die "the peer issued no token"
    peer_alg=$(python3 -c 'import base64, json, sys; h = sys.argv[1].split(".")[0]
print(json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))["alg"])' "$peer_token")
    [[ $peer_alg == ES256 ]] || die "the peer's token is not an ES256 JWT ($peer_alg)"
    TARGETS=("http://127.0.0.1:$port")
    run peer_token "oidc-provider token" \
        "POST /token, Basic, one client, ES256 JWT (oidc-provider $PEER_VERSION, $(nproc) node workers)" /token \
        KP_METHOD=POST KP_BODY=grant_type=client_credentials \
        KP_CONTENT_TYPE=application/x-www-form-urlencoded KP_AUTH_FILE="$WORK/peer-basic.txt"
    TARGETS=()
    kill "$PEER_PID" 2>/dev/null || true
    wait "$PEER_PID" 2>/dev/null || true
    PEER_PID=""
fi

# --- server-side numbers ---------------------------------------------------

kill -0 "$SERVER_PID" 2>/dev/null || die "the server died during the run"
PEAK_RSS_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status")
END_RSS_KB=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status")
kill "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
for pid in "${EXTRA_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || die "an instance died during the run"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
done
EXTRA_PIDS=()
# 5xx answers of the other instances (the first's are counted per scenario).
EXTRA_5XX=0
for ((n = 2; n <= INSTANCES; n++)); do
    count=$(tail -n +1 "$WORK/server$n.log" | awk '{
        for (i = 4; i <= NF; i++)
            if ($i ~ /^[0-9.]+ms$/ && $(i - 1) ~ /^[1-5][0-9][0-9]$/) { if ($(i - 1) ~ /^5/) print; break }
    }' | wc -l)
    EXTRA_5XX=$((EXTRA_5XX + count))
done
FAILED=$((FAILED + EXTRA_5XX))
LOG_5XX=$(log_5xx 1 | wc -l)
LOG_5XX_SAMPLE=$(log_5xx 1 | sort | uniq -c | sort -rn | head -5 || true)
LOG_ERRORS=$(grep -c ' ERROR ' "$WORK/server.log" || true)
LOG_WARNINGS=$(grep -c ' WARN ' "$WORK/server.log" || true)
# ERROR and WARN lines grouped by level, module and the start of the message.
LOG_SAMPLE=$(grep -E '^\[[^]]* (ERROR|WARN) ' "$WORK/server.log" |
    sed -E 's/^\[[^ ]+ +([A-Z]+) +([^]]*)\] /\1 \2: /' | cut -c1-110 | tr -d '`' |
    sort | uniq -c | sort -rn | head -5 || true)
LOAD_SECONDS=$(since "$LOAD_STARTED")

# --- micro -----------------------------------------------------------------

MICRO_ROWS=""
MICRO_STATUS="skipped (--no-micro)"
if ((MICRO)); then
    say "cargo bench --bench micro --no-run (compiles the bench profile when needed)"
    micro_started=$(now)
    touch "$WORK/micro.marker"
    if cargo bench --bench micro --no-run >"$WORK/micro.txt" 2>&1 && {
        MICRO_BUILD_SECONDS=$(since "$micro_started")
        say "cargo bench --bench micro"
        micro_started=$(now)
        cargo bench --bench micro >>"$WORK/micro.txt" 2>&1
    }; then
        # In the order criterion ran them.
        while read -r _ file; do
            dir=$(dirname "$file")
            id=$(jq -r .full_id "$file")
            mean=$(jq -r .mean.point_estimate "$dir/estimates.json")
            MICRO_ROWS+="$id	$mean"$'\n'
        done < <(find "$TARGET_DIR/criterion" -path '*/new/benchmark.json' -newer "$WORK/micro.marker" \
            -printf '%T@ %p\n' | sort -n)
        MICRO_STATUS="compile ${MICRO_BUILD_SECONDS}s, run $(since "$micro_started")s"
        [[ -n $MICRO_ROWS ]] || MICRO_STATUS="ran, but no criterion results found under $TARGET_DIR/criterion"
    else
        tail -30 "$WORK/micro.txt" >&2
        MICRO_STATUS="FAILED (cargo bench --bench micro; see above)"
        FAILED=$((FAILED + 1))
    fi
fi

# --- report ----------------------------------------------------------------


BASE_RPS=${R_RPS[baseline]}
{
    echo "### Keyport load benchmark"
    echo
    echo "- commit $COMMIT, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)); wrk and the server share them; load average before the run: $LOADAVG_START"
    echo "- database: $BACKEND; server: built-in defaults${OVERRIDES:+ plus $OVERRIDES}, signing with $ALGORITHM, RUST_LOG=${RUST_LOG:-info} to a file"
    echo "- wrk: $THREADS threads, $CONNECTIONS connections, $DURATION per scenario"
    if ((INSTANCES > 1)); then
        echo "- $INSTANCES instances on the one database: baseline and token driven on all of them at once (one wrk each, $((CONNECTIONS / INSTANCES)) connections); req/s summed, latencies the worst instance's; the other scenarios on the first"
    fi
    echo
    echo "| scenario | request | req/s | vs baseline | p50 | p99 | max | requests | failed | socket errors | 5xx in server log |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for name in "${ORDER[@]}"; do
        ratio=$(awk -v a="${R_RPS[$name]}" -v b="$BASE_RPS" 'BEGIN { printf "%.2f×", a / b }')
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
            "${R_LABEL[$name]}" "${R_REQUEST[$name]}" "$(fmt_int "${R_RPS[$name]}")" "$ratio" \
            "$(fmt_ms "${R_P50[$name]}")" "$(fmt_ms "${R_P99[$name]}")" "$(fmt_ms "${R_MAX[$name]}")" \
            "$(fmt_int "${R_REQ[$name]}")" "${R_BAD[$name]}" "${R_SOCK[$name]}" "${R_5XX[$name]}"
    done
    echo
    echo "\"failed\": responses wrk got whose status was not the expected one (any 2xx unless noted);" \
        "\"5xx in server log\": 5xx answers the server logged during the scenario, including requests still" \
        "in flight when wrk stopped (wrk never sees those). validate reuses one token: if the verifier caches" \
        "verified tokens it measures a cache hit (compare verify/cached with verify/ES256 below). Statuses wrk saw:"
    for name in "${ORDER[@]}"; do
        echo "- ${R_LABEL[$name]}: ${R_STATUS[$name]}${R_NOTE[$name]:+ — ${R_NOTE[$name]}}"
    done
    echo
    if [[ -n ${R_RPS[validate_sigv4]:-} ]]; then
        echo "- SigV4-signed whoami: $(awk -v a="${R_RPS[validate_sigv4]}" -v b="${R_RPS[validate]}" 'BEGIN { printf "%.0f%%", 100 * a / b }') of the token-bearing whoami's throughput"
    fi
    if [[ -n ${R_RPS[peer_token]:-} ]]; then
        echo "- Keyport's token endpoint vs oidc-provider $PEER_VERSION's (ES256 JWT access tokens, client_credentials): $(awk -v a="${R_RPS[token_small]}" -v b="${R_RPS[peer_token]}" 'BEGIN { printf "%.1f×", a / b }') the tokens/s"
    fi
    if ((INSTANCES > 1)); then
        echo "- 5xx in the other instances' logs: $EXTRA_5XX"
    fi
    if [[ -n ${R_RPS[token_large]:-} ]]; then
        echo "- token throughput with $(fmt_int "$LARGE_COUNT") keys: $(awk -v a="${R_RPS[token_large]}" -v b="${R_RPS[token_small]}" 'BEGIN { printf "%.0f%%", 100 * a / b }') of that with $(fmt_int "$SMALL_COUNT") keys"
    fi
    echo "- server peak RSS (VmHWM): $(awk -v k="$PEAK_RSS_KB" 'BEGIN { printf "%.1f MiB", k / 1024 }'); RSS at the end: $(awk -v k="$END_RSS_KB" 'BEGIN { printf "%.1f MiB", k / 1024 }')"
    echo "- server log: $LOG_5XX responses 5xx, $LOG_ERRORS ERROR lines, $LOG_WARNINGS WARN lines"
    if [[ -n $LOG_5XX_SAMPLE ]]; then
        while read -r count line; do echo "  - ${count}× \`$line\`"; done <<<"$LOG_5XX_SAMPLE"
    fi
    if [[ -n $LOG_SAMPLE ]]; then
        while read -r count line; do echo "  - ${count}× \`$line…\`"; done <<<"$LOG_SAMPLE"
    fi
    echo "- seeding: $((REAL_KEYS + 1)) keys through the CLI in ${CLI_SEED_SECONDS}s${LARGE_SECONDS:+; bulk insert of $(fmt_int $((LARGE_COUNT - SMALL_COUNT))) filler keys in ${LARGE_SECONDS}s}"
    echo "- wall time: cargo build ${BUILD_SECONDS}s; seeding, server and scenarios ${LOAD_SECONDS}s; total $(since "$START")s"
    echo
    echo "Micro benchmarks (\`cargo bench --bench micro\`, criterion mean; one core): $MICRO_STATUS"
    if [[ -n $MICRO_ROWS ]]; then
        echo
        echo "| benchmark | mean | per second |"
        echo "| --- | ---: | ---: |"
        while IFS=$'\t' read -r id mean; do
            printf '| %s | %s | %s |\n' "$id" "$(fmt_ns "$mean")" "$(fmt_int "$(awk -v ns="$mean" 'BEGIN { printf "%.0f", 1e9 / ns }')")"
        done <<<"${MICRO_ROWS%$'\n'}"
    fi
    echo
    if ((FAILED)); then
        echo "**Result: $FAILED failures** (see \"failed\", \"socket errors\" and \"5xx in server log\" above)."
    else
        echo "Result: every request got its expected status; no socket errors; no 5xx in the server log."
    fi
} | tee "$TARGET_DIR/load-report.md"
say "report saved to $TARGET_DIR/load-report.md"

((FAILED == 0)) || exit 1
