#!/usr/bin/env bash
# Load benchmark of a resource server built on keyport-verify: the crate's
# axum example (crates/keyport-verify/examples/axum.rs), release build,
# answering its protected route (`GET /protected`: a Keyport access token
# verified, the `reports:read` scope required, the subject answered as
# JSON) against its own open route (`GET /public`, the same JSON shape, no
# token), measured side by side in one run.
#
#   bash benches/resource_server.sh [--duration 10s] [--connections 32]
#                                   [--threads 2] [--rounds 3]
#
# A `keyport serve` (the debug build is enough: it only issues one token
# and serves its JWKS once) runs on a temporary SQLite file as the issuer;
# the example fetches its metadata and keys from it. The two routes are then
# driven with wrk in turns (open, protected, open, protected, …, `--rounds`
# of each) with one access token reused, as an integration does; the report
# gives each route's req/s (summed over its rounds), p50/p99, non-2xx
# answers, and the protected route's throughput as a multiple of the open
# one's. Alternating turns keeps a change in the machine's load from
# landing on one side only. The report goes to stdout (progress to stderr)
# and to target/resource-server-report.md. Exit status: 0 when every request
# got a 2xx, 1 otherwise. No timing is asserted.

set -euo pipefail

DURATION=10s
CONNECTIONS=32
THREADS=2
ROUNDS=3
while (($#)); do
    case $1 in
        --duration) DURATION=$2; shift ;;
        --connections) CONNECTIONS=$2; shift ;;
        --threads) THREADS=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        -h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "resource_server.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for n in CONNECTIONS THREADS ROUNDS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || { echo "resource_server.sh: ${n,,} must be a positive whole number" >&2; exit 2; }
done

cd "$(dirname "$0")/.."
START=$(date +%s.%N)
say() { printf '[resource-server %5.1fs] %s\n' "$(awk -v s="$START" -v n="$(date +%s.%N)" 'BEGIN { print n - s }')" "$*" >&2; }
die() { say "error: $*"; exit 1; }

missing=()
for tool in wrk jq curl; do command -v $tool >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
    say "installing ${missing[*]} with apt-get"
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo); fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get install -y -q "${missing[@]}" >&2 ||
        { "${SUDO[@]}" apt-get update -q >&2 && "${SUDO[@]}" apt-get install -y -q "${missing[@]}" >&2; }
fi

say "cargo build --bin keyport (the issuer) and --release --example axum (the resource server)"
cargo build --bin keyport >&2
cargo build --release -p keyport-verify --features axum --example axum >&2
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
ISSUER_BIN=$TARGET_DIR/debug/keyport
RESOURCE_BIN=$TARGET_DIR/release/examples/axum
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyport-resource.XXXXXX")
PIDS=()
cleanup() {
    local rc=$? pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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
wait_for() {
    local url=$1 pid=$2 log=$3 i
    for ((i = 0; ; i++)); do
        kill -0 "$pid" 2>/dev/null || { tail -20 "$log" >&2; die "$url: the process exited"; }
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$url") == 200 ]] && return 0
        ((i < 300)) || die "$url did not answer 200 in 30 s"
        sleep 0.1
    done
}

# --- the issuer ------------------------------------------------------------

unset KEYPORT_CONFIG KEYPORT_BIND
export KEYPORT_DATABASE_URL="sqlite://$WORK/keyport.db"
kp() { RUST_LOG=warn "$ISSUER_BIN" --json "$@"; }
kp migrate >/dev/null
kp tenant create BenchCo >/dev/null
kp user create --tenant BenchCo --email reader@bench.test --role member \
    --permissions reports:read >/dev/null
KEY=$(kp key create --user reader@bench.test --name "resource bench")
ISSUER_PORT=$(free_port) || die "no free port"
ISSUER="http://127.0.0.1:$ISSUER_PORT"
KEYPORT_BIND="127.0.0.1:$ISSUER_PORT" RUST_LOG=warn "$ISSUER_BIN" serve >"$WORK/issuer.log" 2>&1 &
PIDS+=($!)
wait_for "$ISSUER/readyz" "${PIDS[-1]}" "$WORK/issuer.log"
TOKEN=$(curl -sf -u "$(jq -er '"\(.client_id):\(.client_secret)"' <<<"$KEY")" \
    -d grant_type=client_credentials -d scope=reports:read "$ISSUER/oauth/token" | jq -er .access_token) ||
    die "the issuer gave no token"
ALGORITHM=$(jq -Rr 'split(".")[0] | @base64d | fromjson | .alg' <<<"$TOKEN")

# --- the resource server ---------------------------------------------------

PORT=$(free_port) || die "no free port"
BASE="http://127.0.0.1:$PORT"
ISSUER=$ISSUER LISTEN="127.0.0.1:$PORT" "$RESOURCE_BIN" >"$WORK/resource.log" 2>&1 &
PIDS+=($!)
wait_for "$BASE/public" "${PIDS[-1]}" "$WORK/resource.log"
[[ $(curl -s -H "Authorization: Bearer $TOKEN" "$BASE/protected" | jq -r .sub) != null ]] ||
    die "the protected route refused the token"
[[ $(curl -s -o /dev/null -w '%{http_code}' "$BASE/protected") == 401 ]] ||
    die "the protected route answered without a token"

# --- load --------------------------------------------------------------------

LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A RPS=([public]=0 [protected]=0) FAILED=([public]=0 [protected]=0) P50 P99
cat >"$WORK/report.lua" <<'LUA'
done = function(summary, latency, requests)
    local failed = summary.errors.status + summary.errors.connect + summary.errors.read
        + summary.errors.write + summary.errors.timeout
    io.write(string.format("RESULT %.2f %d %d %d\n", summary.requests / (summary.duration / 1e6),
        latency:percentile(50), latency:percentile(99), failed))
end
LUA
drive() {
    local route=$1 round=$2 line
    local args=(-t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" -s "$WORK/report.lua")
    [[ $route == protected ]] && args+=(-H "Authorization: Bearer $TOKEN")
    line=$(wrk "${args[@]}" "$BASE/$route" | grep '^RESULT')
    read -r _ rps p50 p99 failed <<<"$line"
    say "round $round, /$route: $rps req/s, p50 ${p50} µs, p99 ${p99} µs, $failed failed"
    RPS[$route]=$(awk -v a="${RPS[$route]}" -v b="$rps" 'BEGIN { print a + b }')
    FAILED[$route]=$((FAILED[$route] + failed))
    P50[$route]+="$p50 "
    P99[$route]+="$p99 "
}
for ((round = 1; round <= ROUNDS; round++)); do
    drive public "$round"
    drive protected "$round"
done
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)

median_ms() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ a[NR] = $1 } END { printf "%.2f", a[int((NR + 1) / 2)] / 1000 }'; }
RATIO=$(awk -v a="${RPS[protected]}" -v b="${RPS[public]}" 'BEGIN { printf "%.2f", a / b }')
{
    echo "## Resource server on keyport-verify (axum example), commit \`$COMMIT\`"
    echo
    echo "\`bash benches/resource_server.sh --duration $DURATION --connections $CONNECTIONS --threads $THREADS --rounds $ROUNDS\`;"
    echo "$(nproc) CPUs, load average $LOADAVG_START before, $LOADAVG_END after; token signed with $ALGORITHM."
    echo
    echo "| route | req/s (mean of $ROUNDS turns) | p50 / p99 (median turn) | failed |"
    echo "| --- | ---: | ---: | ---: |"
    for route in public protected; do
        printf '| `GET /%s` | %.0f | %s / %s ms | %d |\n' "$route" \
            "$(awk -v a="${RPS[$route]}" -v n="$ROUNDS" 'BEGIN { print a / n }')" \
            "$(median_ms "${P50[$route]}")" "$(median_ms "${P99[$route]}")" "${FAILED[$route]}"
    done
    echo
    echo "Protected ÷ open: **${RATIO}×**"
} | tee "$TARGET_DIR/resource-server-report.md"
((FAILED[public] + FAILED[protected] == 0))
