#!/usr/bin/env bash
# The HTTP API's contract: schemathesis (from PyPI) against an embedded cloud on
# loopback — the OpenAPI document it serves, every check, player routes with a real
# access token and edge routes with a real edge credential — and zero failures.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${OUTPOST_BIN:-target/debug/outpost}
[ -x "$bin" ] || { echo "build $bin first (cargo build)" >&2; exit 1; }
command -v st >/dev/null || { echo "schemathesis is missing: pip install schemathesis" >&2; exit 1; }

work=$(mktemp -d)
cloud=""
beating=""
cleanup() {
  [ -n "$beating" ] && kill "$beating" 2>/dev/null || true
  [ -n "$cloud" ] && kill "$cloud" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
python3 -c 'import secrets; print(secrets.token_hex(32))' > "$work/edge-secret"
RUST_LOG=warn "$bin" cloud --listen "127.0.0.1:$port" --edge-secret-file "$work/edge-secret" \
  --replay-dir "$work/replays" 2> "$work/cloud.log" &
cloud=$!
curl -sf --retry 100 --retry-connrefused --retry-delay 0 --max-time 30 "$base/.well-known/jwks.json" > /dev/null

# A live edge (kept alive by heartbeats), so tickets naming its region can be placed.
credential=$("$bin" edge-credential --edge-secret-file "$work/edge-secret" --edge-id st-edge)
export OUTPOST_ST_EDGE_AUTH="st-edge:$credential"
beat='{"edge_id":"st-edge","region":"st-region","quic_addr":"127.0.0.1:7777","cert_sha256":"'$(printf 'ab%.0s' $(seq 32))'","capacity":1000,"load":0,"match_capacity":100,"matches":0,"draining":false}'
heartbeat() {
  curl -sf -X POST -H "Authorization: Edge $OUTPOST_ST_EDGE_AUTH" -H 'Content-Type: application/json' \
    -d "$beat" "$base/v1/edges/heartbeat" > /dev/null
}
heartbeat
( while sleep 5; do heartbeat || true; done ) &
beating=$!

export OUTPOST_ST_TOKEN=$(curl -sf -X POST -H 'Content-Type: application/json' \
  -d '{"device_id":"schemathesis-device-0123456789"}' "$base/v1/auth/guest" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

# One worker: under Python 3.11 before 3.11.8, `ast` used from two threads at once (as
# hypothesis does describing its strategies) can fail with "AST constructor recursion
# depth mismatch" (CPython gh-106905), an error of the tool, not of the API.
st --config-file .ci/schemathesis.toml run "$base/v1/openapi.json" \
  --checks all --seed 7 --max-examples 40 --workers 1 --no-color \
  --request-timeout 15 --warnings off
