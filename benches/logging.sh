#!/usr/bin/env bash
# What the log format and traces cost the token endpoint: POST /oauth/token
# driven with wrk against the release binary logging in text, in JSON, and
# in text with traces exported to a local OTLP collector, alternating
# (text, json, traced, text, …) so that drift in the machine's load falls on
# all alike. Prints the median tokens/s of each and its ratio to text, and
# the server's own CPU time per 1,000 tokens (which leaves out what the
# collector and wrk take of the same cores).
#
#   bash benches/logging.sh [--duration 8s] [--connections 32] [--rounds 3]
#                           [--sample-ratio 1.0]
#
# One key on a fresh SQLite file; every request authenticates with it and
# writes one access line (to a file, as a log collector would read it). The
# trace collector is tests/clients/otlp_receiver.py --count-only on the same
# machine: it decodes every export and counts its spans. Exit status 1 when
# any request failed; no timing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=8s
CONNECTIONS=32
ROUNDS=3
SAMPLE_RATIO=1.0
while (($#)); do
    case $1 in
        --duration) DURATION=$2; shift ;;
        --connections) CONNECTIONS=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --sample-ratio) SAMPLE_RATIO=$2; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//;/^set -e/d'; exit 0 ;;
        *) echo "logging.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
command -v wrk >/dev/null || { echo "logging.sh: needs wrk (apt-get install wrk)" >&2; exit 2; }
PYTHON=python3
[[ -x .venv/bin/python ]] && PYTHON=.venv/bin/python
"$PYTHON" -c 'import opentelemetry.proto' 2>/dev/null || {
    echo "logging.sh: needs opentelemetry-proto (bash scripts/test installs it into .venv)" >&2
    exit 2
}

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

export KEYPORT_DATABASE_URL=sqlite://$WORK/keyport.db RUST_LOG=info
"$BIN" migrate >/dev/null
"$BIN" tenant create Bench >/dev/null
"$BIN" user create --tenant Bench --email bench@example.com --role admin \
    --permissions reports:read >/dev/null
KEY=$("$BIN" --json key create --user bench@example.com --name bench)
CLIENT_ID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_id"])' "$KEY")
SECRET=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_secret"])' "$KEY")
BASIC="Basic $(printf '%s:%s' "$CLIENT_ID" "$SECRET" | base64 -w0)"

mkdir "$WORK/collector"
"$PYTHON" tests/clients/otlp_receiver.py "$WORK/collector" --count-only >"$WORK/collector.out" &
COLLECTOR_PID=$!
for _ in $(seq 1 100); do
    grep -q 'listening on port' "$WORK/collector.out" 2>/dev/null && break
    sleep 0.1
done
COLLECTOR="http://127.0.0.1:$(awk '{ print $NF }' "$WORK/collector.out")"

# The CPU seconds process PID has used (user + system).
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"
}

# run VARIANT: one server (text, json, or traced: text logs and traces to
# the local collector), one wrk run; prints req/s and the server's CPU
# milliseconds per 1,000 tokens.
run() {
    local variant=$1 format=$1 endpoint="" port result
    if [[ $variant == traced ]]; then
        format=text
        endpoint=$COLLECTOR
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    KEYPORT_BIND=127.0.0.1:$port KEYPORT_LOG_FORMAT=$format KEYPORT_OTLP_ENDPOINT=$endpoint \
        KEYPORT_TRACE_SAMPLE_RATIO=$SAMPLE_RATIO "$BIN" serve >"$WORK/server-$variant.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    cpu_before=$(cpu_seconds "$SERVER_PID")
    result=$(KP_METHOD=POST KP_BODY=grant_type=client_credentials \
        KP_CONTENT_TYPE=application/x-www-form-urlencoded KP_AUTHORIZATION="$BASIC" KP_EXPECT=200 \
        wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --timeout 10s -s benches/load.lua \
        "http://127.0.0.1:$port/oauth/token" | grep '^KP_RESULT ')
    cpu_after=$(cpu_seconds "$SERVER_PID")
    kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    if ! grep -q ' bad=0 socket=0 ' <<<"$result"; then
        echo "logging.sh: failed requests with $variant: $result" >&2
        exit 1
    fi
    requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$result")
    awk -v rps="$(sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$result")" \
        -v cpu="$((${cpu_after%.*} * 1000 + 10#${cpu_after#*.} - ${cpu_before%.*} * 1000 - 10#${cpu_before#*.}))" \
        -v n="$requests" 'BEGIN { printf "%s %.1f\n", rps, cpu / n * 1000 }'
}

declare -A RATES=([text]="" [json]="" [traced]="") CPU=([text]="" [json]="" [traced]="")
for ((round = 1; round <= ROUNDS; round++)); do
    for variant in text json traced; do
        read -r rps cpu < <(run "$variant")
        echo "round $round, $variant: $rps tokens/s, $cpu CPU ms per 1,000 tokens" >&2
        RATES[$variant]+="$rps "
        CPU[$variant]+="$cpu "
    done
done
SPANS=$(cat "$WORK/collector/count" 2>/dev/null || echo 0)

median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
TEXT=$(median <<<"${RATES[text]}")
JSON=$(median <<<"${RATES[json]}")
TRACED=$(median <<<"${RATES[traced]}")
CPU_TEXT=$(median <<<"${CPU[text]}")
CPU_JSON=$(median <<<"${CPU[json]}")
CPU_TRACED=$(median <<<"${CPU[traced]}")
echo "| variant | tokens/s (median of $ROUNDS × $DURATION, $CONNECTIONS connections) | ÷ text | server CPU ms per 1,000 tokens | ÷ text |"
echo "| --- | ---: | ---: | ---: | ---: |"
echo "| text logs | $TEXT | 1.00× | $CPU_TEXT | 1.00× |"
awk -v j="$JSON" -v t="$TEXT" -v c="$CPU_JSON" -v ct="$CPU_TEXT" \
    'BEGIN { printf "| JSON logs | %s | %.2f× | %s | %.2f× |\n", j, j / t, c, c / ct }'
awk -v j="$TRACED" -v t="$TEXT" -v c="$CPU_TRACED" -v ct="$CPU_TEXT" -v r="$SAMPLE_RATIO" \
    'BEGIN { printf "| text logs, traces exported (sample ratio %s) | %s | %.2f× | %s | %.2f× |\n", r, j, j / t, c, c / ct }'
echo "The collector received $SPANS spans."
