#!/usr/bin/env bash
# Tokens per second over HTTPS next to plain HTTP, in one run:
#
#   bash benches/https.sh [--duration 10s] [--connections 32] [--clients 16]
#                         [--rounds 2] [--no-peer] [--binary PATH] [--keep]
#
# Makes a throwaway CA and a server certificate for 127.0.0.1 with openssl
# (ECDSA P-256, the server sends its certificate and the CA's), starts two
# release servers on one temporary SQLite file, one plain HTTP and one HTTPS
# (tls_cert_file / tls_key_file; everything else the defaults), and, unless
# --no-peer, node oidc-provider (benches/oidc-peer.mjs, one worker per core)
# twice, plain and over HTTPS with the same certificate. Then, for each
# server, POST /oauth/token (client_secret_basic; Keyport: 50 keys taken in
# turn, the peer: its one client):
#
#   keep-alive        wrk (benches/load.lua), --connections connections
#                     that each send request after request
#   new connection    `cargo bench --bench reconnect` (benches/reconnect.rs),
#                     --clients clients that each open a new connection per
#                     request (`Connection: close`), as scheduled jobs do:
#                     plain HTTP; HTTPS resuming the session with the ticket
#                     the server gave at the previous connection; HTTPS with
#                     a full handshake every time (no resumption)
#
# (wrk with `Connection: close` also reconnects, but its OpenSSL keeps the
# session and resumes it every time, so it cannot measure full handshakes;
# reconnect counts the handshakes rustls saw, full and resumed, per run.)
#
# Every scenario runs --rounds times, the rounds one after the other and the
# scenarios alternated within each, for --duration each; tokens/s is a
# scenario's requests over its seconds, summed over the rounds, and each
# ratio is also given per round (neighbours in time, so the least disturbed
# by the machine's other load). The load average is printed before each
# scenario. The report (Markdown) goes to stdout and target/https-report.md,
# progress to stderr. Exit status: 0 when every request got 200 with no
# socket error and no 5xx in a server log, and every resuming connection
# after a client's first did resume on Keyport; 1 otherwise. No timing is
# asserted. The peer's handshakes are counted, not judged: node's OpenSSL
# sends no new ticket on a resumed TLS 1.3 connection and a rustls client
# uses each ticket once (RFC 8446 appendix C.4), so there one connection in
# three makes a full handshake.

set -euo pipefail

usage() {
    sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'
}

DURATION=10s
CONNECTIONS=32
CLIENTS=16
ROUNDS=2
PEER=1
BINARY=""
KEEP=0
KEYS=50
THREADS=2

while (($#)); do
    arg=$1
    value=""
    case $arg in
        --*=*) value=${arg#*=}; arg=${arg%%=*} ;;
    esac
    case $arg in
        --duration | --connections | --clients | --rounds | --binary)
            if [[ -z $value ]]; then
                (($# >= 2)) || { echo "https.sh: $arg needs a value" >&2; exit 2; }
                value=$2
                shift
            fi
            ;;
    esac
    case $arg in
        --duration) DURATION=$value ;;
        --connections) CONNECTIONS=$value ;;
        --clients) CLIENTS=$value ;;
        --rounds) ROUNDS=$value ;;
        --no-peer) PEER=0 ;;
        --binary) BINARY=$value ;;
        --keep) KEEP=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "https.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for n in CONNECTIONS CLIENTS ROUNDS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || { echo "https.sh: ${n,,} must be a whole number above 0" >&2; exit 2; }
done
[[ $DURATION =~ ^[0-9]+s$ ]] || { echo "https.sh: --duration is whole seconds, e.g. 10s" >&2; exit 2; }
SECONDS_EACH=${DURATION%s}

cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s.%N)
elapsed() { awk -v s="$START" -v n="$(date +%s.%N)" 'BEGIN { printf "%5.1fs", n - s }'; }
say() { printf '[https %s] %s\n' "$(elapsed)" "$*" >&2; }
die() { say "error: $*"; exit 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
fmt_int() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"${1%.*}"; }
fmt_ms() { awk -v us="$1" 'BEGIN { ms = us / 1000; if (ms < 10) printf "%.2f ms", ms; else if (ms < 100) printf "%.1f ms", ms; else printf "%.0f ms", ms }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }

for tool in wrk jq curl openssl sqlite3; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install $tool)"
done
if ((PEER)); then command -v node >/dev/null || die "node is needed for the peer (or --no-peer)"; fi

# --- build -----------------------------------------------------------------

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
if [[ -n $BINARY ]]; then
    BIN=$(realpath "$BINARY")
    COMMIT="the binary $BINARY ($("$BIN" --version 2>/dev/null || echo unknown version))"
else
    say "cargo build --release --bin keyport"
    cargo build --release --bin keyport >&2
    BIN=$TARGET_DIR/release/keyport
    COMMIT="\`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`"
    git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || COMMIT+=" (with uncommitted changes)"
fi
[[ -x $BIN ]] || die "no binary at $BIN"
say "cargo bench --bench reconnect --no-run (the new-connection client)"
RECONNECT=$(cargo bench --bench reconnect --no-run --message-format=json 2>/dev/null |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "reconnect") | .executable // empty' | tail -1)
[[ -x $RECONNECT ]] || { cargo bench --bench reconnect --no-run >&2; die "no reconnect executable"; }

# --- certificate, database, servers ----------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyport-https.XXXXXX")
PIDS=()
cleanup() {
    local rc=$? pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if ((KEEP)); then say "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "certificate: a throwaway CA and a P-256 server certificate for 127.0.0.1 ($WORK)"
(
    cd "$WORK"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout ca.key -out ca.pem -subj "/CN=Keyport bench CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile server.ext -out server.pem
    cat server.pem ca.pem >fullchain.pem
) >/dev/null 2>"$WORK/openssl.log" || { cat "$WORK/openssl.log" >&2; die "openssl failed"; }

unset KEYPORT_CONFIG KEYPORT_BIND KEYPORT_TLS_CERT_FILE KEYPORT_TLS_KEY_FILE KEYPORT_ISSUER
export KEYPORT_DATABASE_URL="sqlite://$WORK/keyport.db"
OVERRIDES=$(env | grep -E '^KEYPORT_' | grep -vE '^KEYPORT_DATABASE_URL=' | sort | paste -sd ' ' - || true)
kp() { KEYPORT_MAX_ACTIVE_KEYS_PER_USER=1000 RUST_LOG=warn "$BIN" --json "$@"; }
say "seeding: a tenant, a member, $KEYS keys through the CLI"
kp migrate >/dev/null
kp tenant create HttpsCo >/dev/null
kp user create --tenant HttpsCo --email member@https.test --role member \
    --permissions reports:read,webhooks:write >/dev/null
for ((k = 1; k <= KEYS; k++)); do kp key create --user member@https.test --name "key $k"; done >"$WORK/keys.jsonl"
jq -er '"Basic " + ("\(.client_id):\(.client_secret)" | @base64)' "$WORK/keys.jsonl" >"$WORK/basic.txt"
[[ $(wc -l <"$WORK/basic.txt") -eq $KEYS ]] || die "expected $KEYS keys"

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

# wait_ready PID LOG URL: until URL answers 200 (the CA trusted).
wait_ready() {
    local pid=$1 log=$2 url=$3 i
    for ((i = 0; ; i++)); do
        kill -0 "$pid" 2>/dev/null || { tail -20 "$log" >&2; die "the server behind $url exited"; }
        [[ $(curl -s --cacert "$WORK/ca.pem" -o /dev/null -w '%{http_code}' "$url") == 200 ]] && return 0
        ((i < 300)) || die "$url did not answer 200 in 30 s"
        sleep 0.1
    done
}

HTTP_PORT=$(free_port) || die "no free port"
say "starting keyport serve, plain HTTP, on 127.0.0.1:$HTTP_PORT (log: http.log)"
KEYPORT_BIND=127.0.0.1:$HTTP_PORT RUST_LOG=${RUST_LOG:-info} "$BIN" serve >"$WORK/http.log" 2>&1 &
PIDS+=($!)
wait_ready "${PIDS[-1]}" "$WORK/http.log" "http://127.0.0.1:$HTTP_PORT/readyz"
HTTPS_PORT=$(free_port) || die "no free port"
say "starting keyport serve, HTTPS, on 127.0.0.1:$HTTPS_PORT (log: https.log)"
KEYPORT_BIND=127.0.0.1:$HTTPS_PORT KEYPORT_TLS_CERT_FILE=$WORK/fullchain.pem KEYPORT_TLS_KEY_FILE=$WORK/server.key \
    RUST_LOG=${RUST_LOG:-info} "$BIN" serve >"$WORK/https.log" 2>&1 &
PIDS+=($!)
wait_ready "${PIDS[-1]}" "$WORK/https.log" "https://127.0.0.1:$HTTPS_PORT/readyz"
basic=$(head -1 "$WORK/basic.txt")
for url in "http://127.0.0.1:$HTTP_PORT" "https://127.0.0.1:$HTTPS_PORT"; do
    curl -sf --cacert "$WORK/ca.pem" -H "Authorization: $basic" -d grant_type=client_credentials \
        "$url/oauth/token" | jq -e .access_token >/dev/null || die "$url issued no token"
done

PEER_VERSION=""
if ((PEER)); then
    [[ -d $ROOT/benches/node_modules/oidc-provider ]] || (cd "$ROOT/benches" && npm ci --no-audit --no-fund >&2)
    PEER_VERSION=$(jq -r .version "$ROOT/benches/node_modules/oidc-provider/package.json")
    PEER_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
    printf 'Basic %s\n' "$(printf 'bench:%s' "$PEER_SECRET" | base64 -w0)" >"$WORK/peer-basic.txt"
    PEER_HTTP_PORT=$(free_port) || die "no free port"
    say "starting oidc-provider $PEER_VERSION, plain HTTP, on 127.0.0.1:$PEER_HTTP_PORT (log: peer-http.log)"
    PEER_PORT=$PEER_HTTP_PORT PEER_WORKERS=$(nproc) PEER_CLIENT_SECRET=$PEER_SECRET \
        node "$ROOT/benches/oidc-peer.mjs" >"$WORK/peer-http.log" 2>&1 &
    PIDS+=($!)
    wait_ready "${PIDS[-1]}" "$WORK/peer-http.log" "http://127.0.0.1:$PEER_HTTP_PORT/.well-known/openid-configuration"
    PEER_HTTPS_PORT=$(free_port) || die "no free port"
    say "starting oidc-provider $PEER_VERSION, HTTPS, on 127.0.0.1:$PEER_HTTPS_PORT (log: peer-https.log)"
    PEER_PORT=$PEER_HTTPS_PORT PEER_WORKERS=$(nproc) PEER_CLIENT_SECRET=$PEER_SECRET \
        PEER_TLS_CERT_FILE=$WORK/fullchain.pem PEER_TLS_KEY_FILE=$WORK/server.key \
        node "$ROOT/benches/oidc-peer.mjs" >"$WORK/peer-https.log" 2>&1 &
    PIDS+=($!)
    wait_ready "${PIDS[-1]}" "$WORK/peer-https.log" "https://127.0.0.1:$PEER_HTTPS_PORT/.well-known/openid-configuration"
    for url in "http://127.0.0.1:$PEER_HTTP_PORT" "https://127.0.0.1:$PEER_HTTPS_PORT"; do
        curl -sf --cacert "$WORK/ca.pem" -u "bench:$PEER_SECRET" -d grant_type=client_credentials \
            "$url/token" | jq -e .access_token >/dev/null || die "the peer at $url issued no token"
    done
fi

# --- scenarios -------------------------------------------------------------

# NAME|server|kind|URL|auth file
SCENARIOS=(
    "kp_http_ka|keyport|keep-alive, HTTP|http://127.0.0.1:$HTTP_PORT/oauth/token|$WORK/basic.txt"
    "kp_https_ka|keyport|keep-alive, HTTPS|https://127.0.0.1:$HTTPS_PORT/oauth/token|$WORK/basic.txt"
    "kp_http_new|keyport|new connection, HTTP|http://127.0.0.1:$HTTP_PORT/oauth/token|$WORK/basic.txt"
    "kp_https_resume|keyport|new connection, HTTPS, resumed|https://127.0.0.1:$HTTPS_PORT/oauth/token|$WORK/basic.txt"
    "kp_https_full|keyport|new connection, HTTPS, full handshake|https://127.0.0.1:$HTTPS_PORT/oauth/token|$WORK/basic.txt"
)
if ((PEER)); then
    SCENARIOS+=(
        "peer_http_ka|peer|keep-alive, HTTP|http://127.0.0.1:$PEER_HTTP_PORT/token|$WORK/peer-basic.txt"
        "peer_https_ka|peer|keep-alive, HTTPS|https://127.0.0.1:$PEER_HTTPS_PORT/token|$WORK/peer-basic.txt"
        "peer_http_new|peer|new connection, HTTP|http://127.0.0.1:$PEER_HTTP_PORT/token|$WORK/peer-basic.txt"
        "peer_https_resume|peer|new connection, HTTPS, resumed|https://127.0.0.1:$PEER_HTTPS_PORT/token|$WORK/peer-basic.txt"
        "peer_https_full|peer|new connection, HTTPS, full handshake|https://127.0.0.1:$PEER_HTTPS_PORT/token|$WORK/peer-basic.txt"
    )
fi

declare -A REQ SEC P50 P99 BAD ERR FULL RESUMED STATUS KIND SERVER RPS_ROUND LOAD_ROUND
ORDER=()
FAILED=0

# run NAME SERVER KIND URL AUTH_FILE ROUND
run() {
    local name=$1 server=$2 kind=$3 url=$4 auth=$5 round=$6 out line kv load
    out="$WORK/$name.$round.txt"
    load=$(loadavg)
    case $kind in
        keep-alive*)
            say "round $round: $server $kind (wrk, $CONNECTIONS connections, $DURATION; load $load)"
            KP_METHOD=POST KP_BODY=grant_type=client_credentials \
                KP_CONTENT_TYPE=application/x-www-form-urlencoded KP_AUTH_FILE=$auth \
                wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 10s -s "$ROOT/benches/load.lua" \
                "$url" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed in $name"; }
            line=$(grep '^KP_RESULT ' "$out") || { cat "$out" >&2; die "no result from wrk in $name"; }
            line=${line/ socket=/ errors=}
            ;;
        *)
            local tls=resume
            [[ $kind == *full* ]] && tls=full
            say "round $round: $server $kind (reconnect, $CLIENTS clients, $DURATION; load $load)"
            "$RECONNECT" "$url" --tls "$tls" --ca "$WORK/ca.pem" --connections "$CLIENTS" \
                --seconds "$SECONDS_EACH" --method POST --body grant_type=client_credentials \
                --content-type application/x-www-form-urlencoded --auth-file "$auth" >"$out" 2>&1 ||
                { cat "$out" >&2; die "reconnect failed in $name"; }
            line=$(grep '^RC_RESULT ' "$out") || { cat "$out" >&2; die "no result from reconnect in $name"; }
            ;;
    esac
    declare -A f=([full]=0 [resumed]=0)
    for kv in ${line#* }; do f[${kv%%=*}]=${kv#*=}; done
    if [[ -z ${SERVER[$name]:-} ]]; then
        ORDER+=("$name")
        SERVER[$name]=$server KIND[$name]=$kind REQ[$name]=0 SEC[$name]=0 BAD[$name]=0 ERR[$name]=0
        FULL[$name]=0 RESUMED[$name]=0 STATUS[$name]="" P50[$name]=0 P99[$name]=0
    fi
    REQ[$name]=$((REQ[$name] + f[requests]))
    SEC[$name]=$(awk -v a="${SEC[$name]}" -v b="${f[seconds]}" 'BEGIN { print a + b }')
    BAD[$name]=$((BAD[$name] + f[bad]))
    ERR[$name]=$((ERR[$name] + f[errors]))
    FULL[$name]=$((FULL[$name] + f[full]))
    RESUMED[$name]=$((RESUMED[$name] + f[resumed]))
    # Latency: the worse round's.
    ((f[p50_us] > P50[$name])) && P50[$name]=${f[p50_us]}
    ((f[p99_us] > P99[$name])) && P99[$name]=${f[p99_us]}
    STATUS[$name]+="${STATUS[$name]:+ }${f[statuses]}"
    RPS_ROUND[$name.$round]=${f[rps]}
    LOAD_ROUND[$name.$round]=$load
    say "  ${f[rps]} tokens/s, p50 $(fmt_ms "${f[p50_us]}"), p99 $(fmt_ms "${f[p99_us]}"), statuses ${f[statuses]}, errors ${f[errors]}, handshakes full ${f[full]} / resumed ${f[resumed]}"
}

LOAD_BEFORE=$(loadavg)
for ((round = 1; round <= ROUNDS; round++)); do
    for scenario in "${SCENARIOS[@]}"; do
        IFS='|' read -r name server kind url auth <<<"$scenario"
        run "$name" "$server" "$kind" "$url" "$auth" "$round"
    done
done
LOAD_AFTER=$(loadavg)

# 5xx answers in the servers' access logs (`… keyport::access] METHOD ROUTE STATUS …`).
LOG_5XX=$(cat "$WORK/http.log" "$WORK/https.log" | awk '{
    for (i = 1; i <= NF; i++) if ($i == "keyport::access]") { if ($(i + 3) ~ /^5/) n++; break }
} END { print n + 0 }')
for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || die "a server died during the run"; done

# --- report ----------------------------------------------------------------

rps() { awk -v r="${REQ[$1]}" -v s="${SEC[$1]}" 'BEGIN { printf "%.1f", r / s }'; }
per_round() { # A B: "0.91, 0.88" (A/B in each round)
    local r out=""
    for ((r = 1; r <= ROUNDS; r++)); do
        out+="${out:+, }$(ratio "${RPS_ROUND[$1.$r]}" "${RPS_ROUND[$2.$r]}")"
    done
    echo "$out"
}
line_ratio() { # TEXT A B
    printf -- '- %s: **%s×** (per round: %s)\n' "$1" "$(ratio "$(rps "$2")" "$(rps "$3")")" "$(per_round "$2" "$3")"
}

for name in "${ORDER[@]}"; do
    FAILED=$((FAILED + BAD[$name] + ERR[$name]))
    # A resuming client's first connection is a full handshake; every later one should resume.
    if [[ ${SERVER[$name]} == keyport && ${KIND[$name]} == *resumed* ]] && ((FULL[$name] > CLIENTS * ROUNDS)); then
        FAILED=$((FAILED + FULL[$name] - CLIENTS * ROUNDS))
    fi
done
FAILED=$((FAILED + LOG_5XX))

{
    echo "### HTTPS: tokens/s with and without TLS"
    echo
    echo "- commit $COMMIT, $(date -u '+%Y-%m-%d %H:%M UTC'); command: \`bash benches/https.sh --duration $DURATION --connections $CONNECTIONS --clients $CLIENTS --rounds $ROUNDS$( ((PEER)) || echo ' --no-peer')\`"
    echo "- $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)); load generators and servers share them; load average before the run $LOAD_BEFORE, after $LOAD_AFTER"
    echo "- Keyport: SQLite (file), built-in defaults${OVERRIDES:+ plus $OVERRIDES}, RUST_LOG=${RUST_LOG:-info} to a file; one server for HTTP and one for HTTPS on the one database; $KEYS keys taken in turn"
    if ((PEER)); then
        echo "- peer: node oidc-provider $PEER_VERSION ($(node --version), $(nproc) workers, ES256 JWT access tokens, one client), plain and HTTPS (node:https, session ticket keys shared by the workers)"
    fi
    echo "- certificate: ECDSA P-256 server certificate + its CA (sent as a chain of 2), TLS 1.3 negotiated by both clients"
    echo "- keep-alive: wrk, $THREADS threads, $CONNECTIONS connections; new connection: benches/reconnect.rs (rustls clients, the chain checked), $CLIENTS clients, one new connection per token; $ROUNDS rounds of $DURATION per scenario, alternated"
    echo
    echo "| server | connection | tokens/s | p50 | p99 | requests | failed | handshakes full / resumed | load average before (per round) |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    for name in "${ORDER[@]}"; do
        loads=""
        for ((r = 1; r <= ROUNDS; r++)); do loads+="${loads:+; }${LOAD_ROUND[$name.$r]%% *}"; done
        handshakes="—"
        [[ ${KIND[$name]} == new*HTTPS* ]] && handshakes="$(fmt_int "${FULL[$name]}") / $(fmt_int "${RESUMED[$name]}")"
        label=Keyport
        [[ ${SERVER[$name]} == peer ]] && label="oidc-provider"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "${KIND[$name]}" \
            "$(fmt_int "$(rps "$name")")" "$(fmt_ms "${P50[$name]}")" "$(fmt_ms "${P99[$name]}")" \
            "$(fmt_int "${REQ[$name]}")" "$((BAD[$name] + ERR[$name]))" "$handshakes" "$loads"
    done
    echo
    echo "Ratios (tokens/s over the rounds; per round in brackets):"
    echo
    line_ratio "Keyport, HTTPS keep-alive vs HTTP keep-alive (target ≥ 0.85)" kp_https_ka kp_http_ka
    line_ratio "Keyport, new connection: HTTPS resumed vs full handshake" kp_https_resume kp_https_full
    line_ratio "Keyport, new connection: HTTPS resumed vs plain HTTP" kp_https_resume kp_http_new
    line_ratio "Keyport, new connection: HTTPS full handshake vs plain HTTP" kp_https_full kp_http_new
    if ((PEER)); then
        line_ratio "oidc-provider, HTTPS keep-alive vs HTTP keep-alive" peer_https_ka peer_http_ka
        line_ratio "oidc-provider, new connection: HTTPS resumed vs full handshake" peer_https_resume peer_https_full
        line_ratio "Keyport vs oidc-provider, HTTPS keep-alive" kp_https_ka peer_https_ka
        line_ratio "Keyport vs oidc-provider, HTTPS new connection, resumed" kp_https_resume peer_https_resume
        line_ratio "Keyport vs oidc-provider, HTTPS new connection, full handshake" kp_https_full peer_https_full
        line_ratio "Keyport vs oidc-provider, HTTP new connection" kp_http_new peer_http_new
    fi
    echo
    echo "- statuses: $(for name in "${ORDER[@]}"; do printf '%s %s; ' "$name" "${STATUS[$name]}"; done)"
    echo "- 5xx in Keyport's access logs: $LOG_5XX"
    echo "- handshakes: a resuming client's first is full, and on Keyport every later one resumes (at most $CLIENTS full per round); node's OpenSSL sends no new ticket on a resumed TLS 1.3 connection and rustls uses a ticket once, so on the peer one in three is full"
    echo "- wall time $(awk -v s="$START" -v n="$(date +%s.%N)" 'BEGIN { printf "%.0f", n - s }') s"
    echo
    if ((FAILED)); then
        echo "**Result: $FAILED failures** (failed requests, 5xx, or handshakes that did not resume)."
    else
        echo "Result: every request got 200; no socket errors, no 5xx; every Keyport client that could resume did."
    fi
} | tee "$TARGET_DIR/https-report.md"
say "report saved to $TARGET_DIR/https-report.md"
((FAILED == 0)) || exit 1
