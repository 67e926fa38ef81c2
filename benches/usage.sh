#!/usr/bin/env bash
# What counting key usage costs the token endpoint, measured side by side in
# one run: two servers on one SQLite database, one with `usage_counting =
# false` and one with it on, driven in turn with the same wrk load
# (POST /oauth/token, client_secret_basic, a random one of the keys per
# request), in ABBA order over several rounds so that the machine's other
# load falls on both alike.
#
#   bash benches/usage.sh [--rounds 6] [--duration 10s] [--connections 32] [--keys 50]
#
# Prints each round's req/s, the median of each side and their ratio
# (counting on ÷ off), and checks that the counting server counted: after a
# clean stop (which writes what it counted), the tokens it stored must match
# the token requests wrk saw answered (wrk does not see those in flight when
# it stops, so the stored count may be a little higher). RUST_LOG defaults
# to warn (no access line per request), so counting is compared with the
# least other work per request; RUST_LOG=info measures it with the access log.

set -euo pipefail

ROUNDS=6
DURATION=10s
CONNECTIONS=32
THREADS=2
KEYS=50
while (($#)); do
    case $1 in
        --rounds) ROUNDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --connections) CONNECTIONS=$2; shift ;;
        --keys) KEYS=$2; shift ;;
        -h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
say() { printf '[usage %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 1; }
for tool in wrk jq curl sqlite3; do command -v $tool >/dev/null || die "needs $tool"; done

say "cargo build --release --bin keyport"
cargo build --release --bin keyport >&2
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
BIN=$TARGET_DIR/release/keyport
COMMIT=$(git rev-parse --short HEAD)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyport-usage.XXXXXX")
PIDS=()
cleanup() {
    local rc=$? pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
unset KEYPORT_CONFIG KEYPORT_BIND
export KEYPORT_DATABASE_URL="sqlite://$WORK/keyport.db"
kp() { KEYPORT_MAX_ACTIVE_KEYS_PER_USER=100000 RUST_LOG=warn "$BIN" --json "$@"; }

say "seeding $KEYS keys through the CLI"
kp migrate >/dev/null
kp tenant create BenchCo >/dev/null
kp user create --tenant BenchCo --email member@bench.test --role member \
    --permissions reports:read >/dev/null
for ((k = 1; k <= KEYS; k++)); do
    kp key create --user member@bench.test --name "bench key $k"
done | jq -er '"Basic " + ("\(.client_id):\(.client_secret)" | @base64)' >"$WORK/basic.txt"

free_port() {
    local port
    for _ in $(seq 200); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
    done
    return 1
}

# start NAME COUNTING: a server; sets URL and PID (not in a subshell, so
# the cleanup knows the PID).
start() {
    local port i
    port=$(free_port) || die "no free port"
    KEYPORT_BIND="127.0.0.1:$port" KEYPORT_USAGE_COUNTING=$2 RUST_LOG=${RUST_LOG:-warn} \
        "$BIN" serve >"$WORK/$1.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    for ((i = 0; ; i++)); do
        kill -0 "$PID" 2>/dev/null || { tail -5 "$WORK/$1.log" >&2; die "server $1 exited"; }
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz") == 200 ]] && break
        ((i < 300)) || die "server $1 did not become ready"
        sleep 0.1
    done
    URL="http://127.0.0.1:$port"
}
start off false
OFF=$URL
start on true
ON=$URL
ON_PID=$PID

# drive URL: one wrk run of the token endpoint; prints "rps requests bad".
drive() {
    local out
    out=$(KP_METHOD=POST KP_BODY=grant_type=client_credentials \
        KP_CONTENT_TYPE=application/x-www-form-urlencoded KP_AUTH_FILE="$WORK/basic.txt" \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 10s --latency \
        -s benches/load.lua "$1/oauth/token" 2>&1 | grep '^KP_RESULT ')
    awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
           print f["rps"], f["requests"], f["bad"] + f["socket"] }' <<<"$out"
}

declare -a RPS_OFF RPS_ON
ON_REQUESTS=0
BAD=0
ROWS=""
for ((r = 1; r <= ROUNDS; r++)); do
    # ABBA: odd rounds off first, even rounds on first.
    if ((r % 2)); then order=(off on); else order=(on off); fi
    for side in "${order[@]}"; do
        url=$OFF; [[ $side == on ]] && url=$ON
        read -r rps requests bad < <(drive "$url")
        BAD=$((BAD + bad))
        if [[ $side == on ]]; then RPS_ON+=("$rps"); ON_REQUESTS=$((ON_REQUESTS + requests)); else RPS_OFF+=("$rps"); fi
        say "round $r, counting $side: $rps req/s ($requests requests, $bad failed)"
    done
    ROWS+="| $r | ${RPS_OFF[-1]} | ${RPS_ON[-1]} | $(awk -v a="${RPS_ON[-1]}" -v b="${RPS_OFF[-1]}" 'BEGIN { printf "%.3f", a / b }') |"$'\n'
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
MED_OFF=$(median "${RPS_OFF[@]}")
MED_ON=$(median "${RPS_ON[@]}")

# A clean stop writes what the counting server counted since its last flush.
kill "$ON_PID"
wait "$ON_PID" 2>/dev/null || true
STORED=$(sqlite3 "$WORK/keyport.db" "SELECT COALESCE(SUM(count), 0) FROM key_usage WHERE outcome = 'tokens_issued'")

{
    echo "### Usage counting: token endpoint, counting off vs on"
    echo
    echo "- commit \`$COMMIT\`, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores shared by wrk and both servers; load average before: $LOADAVG"
    echo "- SQLite file, $KEYS keys, RUST_LOG=${RUST_LOG:-warn}; wrk $THREADS threads, $CONNECTIONS connections, $DURATION per run, $ROUNDS rounds in ABBA order"
    echo
    echo "| round | off req/s | on req/s | on ÷ off |"
    echo "| ---: | ---: | ---: | ---: |"
    printf '%s' "$ROWS"
    echo
    echo "- median: off $MED_OFF req/s, on $MED_ON req/s: **on ÷ off = $(awk -v a="$MED_ON" -v b="$MED_OFF" 'BEGIN { printf "%.3f", a / b }')**"
    echo "- tokens the counting server stored: $STORED; token requests wrk saw answered there: $ON_REQUESTS; failed requests: $BAD"
} | tee "$TARGET_DIR/usage-report.md"

((BAD == 0)) || die "$BAD requests failed"
((STORED >= ON_REQUESTS)) || die "the counting server stored $STORED tokens for $ON_REQUESTS answered"
