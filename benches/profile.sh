#!/usr/bin/env bash
# Where an endpoint's CPU goes: the release server on a fresh SQLite file
# with 200 keys, driven by wrk (load.lua, 32 connections, 20 s) while
# `perf record` samples the server alone for 10 s. Prints wrk's result, the
# credential cache's counters and perf's flat profile (shares of the
# server's samples, by DSO and symbol).
#
#   bash benches/profile.sh [SCENARIO]   (needs perf, wrk, jq, node; root or
#                                         perf_event_paranoid <= 1)
#
# SCENARIO (default token):
#   token         POST /oauth/token, client_secret_basic, a random key per request
#   token-dpop    POST /oauth/token, one key, a fresh DPoP proof per request
#   whoami        GET /api/v1/whoami, one access token reused
#   whoami-dpop   GET /api/v1/whoami, one DPoP-bound token, a fresh proof per request
#   whoami-sigv4  GET /api/v1/whoami, one SigV4 signature reused (a key allowing SigV4)
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIO=${1:-token}
case $SCENARIO in
    token | token-dpop | whoami | whoami-dpop | whoami-sigv4) ;;
    *) echo "profile.sh: unknown scenario $SCENARIO (token, token-dpop, whoami, whoami-dpop, whoami-sigv4)" >&2; exit 2 ;;
esac
cargo build --release --bin keyport >&2
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
BIN=$TARGET_DIR/release/keyport
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyport-profile.XXXXXX")
SERVER_PID=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
export KEYPORT_DATABASE_URL="sqlite://$WORK/keyport.db"
unset KEYPORT_BIND KEYPORT_CONFIG
kp() { KEYPORT_MAX_ACTIVE_KEYS_PER_USER=1000 RUST_LOG=warn "$BIN" --json "$@"; }
kp migrate >/dev/null
kp tenant create ProfileCo >/dev/null
kp user create --tenant ProfileCo --email member@profile.test --role member \
    --permissions reports:read,webhooks:write >/dev/null
for k in $(seq 1 200); do kp key create --user member@profile.test --name "key $k"; done >"$WORK/keys.jsonl"
jq -er '"Basic " + ("\(.client_id):\(.client_secret)" | @base64)' "$WORK/keys.jsonl" >"$WORK/basic.txt"
[[ $SCENARIO == whoami-sigv4 ]] && kp key create --user member@profile.test --name sigv4 --sigv4 >"$WORK/sigv4-key.json"
PORT=$((20000 + RANDOM % 40000))
BASE=http://127.0.0.1:$PORT
KEYPORT_BIND=127.0.0.1:$PORT RUST_LOG=info "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do curl -sf -o /dev/null "$BASE/readyz" && break; sleep 0.1; done
BASIC=$(head -1 "$WORK/basic.txt")
# Proofs are single-use: enough for 20 s at a rate well above DPoP's.
proofs() { # METHOD PATH [TOKEN]
    KP_DPOP_KEY=$WORK/dpop-key.json KP_TOKEN=${3:-} node benches/dpop-proofs.mjs proofs 300000 "$1" "$BASE$2"
}
case $SCENARIO in
    token)
        set -- KP_METHOD=POST KP_BODY=grant_type=client_credentials \
            KP_CONTENT_TYPE=application/x-www-form-urlencoded KP_AUTH_FILE="$WORK/basic.txt"
        URL=$BASE/oauth/token ;;
    whoami)
        TOKEN=$(curl -sf -H "Authorization: $BASIC" -d grant_type=client_credentials "$BASE/oauth/token" | jq -er .access_token)
        set -- KP_BEARER="$TOKEN"
        URL=$BASE/api/v1/whoami ;;
    whoami-sigv4)
        { read -r AMZ_DATE; read -r SIGV4_AUTHORIZATION; } < <(
            SIGV4_ID=$(jq -er .client_id "$WORK/sigv4-key.json") \
                SIGV4_SECRET=$(jq -er .client_secret "$WORK/sigv4-key.json") \
                SIGV4_HOST="127.0.0.1:$PORT" python3 benches/sigv4_sign.py)
        set -- KP_AUTHORIZATION="$SIGV4_AUTHORIZATION" KP_AMZ_DATE="$AMZ_DATE"
        URL=$BASE/api/v1/whoami ;;
    token-dpop | whoami-dpop)
        node benches/dpop-proofs.mjs key >"$WORK/dpop-key.json"
        if [[ $SCENARIO == token-dpop ]]; then
            proofs POST /oauth/token >"$WORK/proofs.txt"
            set -- KP_METHOD=POST KP_BODY=grant_type=client_credentials \
                KP_CONTENT_TYPE=application/x-www-form-urlencoded KP_AUTHORIZATION="$BASIC"
            URL=$BASE/oauth/token
        else
            TOKEN=$(curl -sf -H "Authorization: $BASIC" -d grant_type=client_credentials \
                -H "DPoP: $(KP_DPOP_KEY=$WORK/dpop-key.json node benches/dpop-proofs.mjs proofs 1 POST "$BASE/oauth/token")" \
                "$BASE/oauth/token" | jq -er 'select(.token_type == "DPoP") | .access_token')
            proofs GET /api/v1/whoami "$TOKEN" >"$WORK/proofs.txt"
            set -- KP_AUTHORIZATION="DPoP $TOKEN"
            URL=$BASE/api/v1/whoami
        fi
        set -- "$@" KP_DPOP_FILE="$WORK/proofs.txt" KP_THREADS=2 ;;
esac
env "$@" wrk -t2 -c32 -d20s --latency -s benches/load.lua "$URL" >"$WORK/wrk.txt" 2>&1 &
WRK_PID=$!
sleep 4
perf record -F 999 -g -p "$SERVER_PID" -o "$WORK/perf.data" -- sleep 10 >/dev/null 2>&1
wait "$WRK_PID"
grep KP_RESULT "$WORK/wrk.txt"
curl -s "$BASE/metrics" | grep '^keyport_credential_cache' || true
echo
echo "By DSO:"
perf report -i "$WORK/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null |
    grep '%' | grep -v '^#' | sed -E 's/ +$//' | head -8 || true
echo
echo "By symbol (top ${PROFILE_SYMBOLS:-40}):"
perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
    grep '%' | grep -v '^#' | sed -E 's/ +-? *-? *$//' | head -"${PROFILE_SYMBOLS:-40}" || true
