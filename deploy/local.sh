#!/usr/bin/env bash
# The distributed shape on one machine, on loopback only: a Redis Cluster of three
# primaries with a replica each, two cloud replicas on it, an S3-compatible server (moto)
# for replays, two edges in two regions, and simulated players logging in and
# matchmaking through an edge's gateway with the operator's load-test key
# (`outpost loadtest --api … --load-test-key-file …`, the path a studio uses before
# launch). Mid-run it kills (SIGKILL) the Redis primary that holds results, then the
# cloud replica holding the matcher lease. It stops by itself (everything is bounded;
# a watchdog ends it after LOCAL_TIMEOUT seconds) and prints one JSON object.
#
#   deploy/local.sh                  # builds target/release/outpost if it is missing
#   OUTPOST_BIN=path/to/outpost deploy/local.sh
#
# Needs redis-server and redis-cli (Debian: redis-server, redis-tools), moto_server
# (pip install 'moto[server]'), curl and python3.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${OUTPOST_BIN:-$ROOT/target/release/outpost}
PLAYERS=${LOCAL_PLAYERS:-16}
HOLD=${LOCAL_HOLD:-45}
TIMEOUT=${LOCAL_TIMEOUT:-240}
KEY_PREFIX=outpost

for tool in redis-server redis-cli moto_server curl python3; do
  command -v "$tool" >/dev/null || { echo "deploy/local.sh needs $tool on the PATH" >&2; exit 2; }
done
if [ ! -x "$BIN" ]; then
  (cd "$ROOT" && cargo build --release --quiet)
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/outpost-local.XXXXXX")
declare -A PID
cleanup() {
  for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
# The watchdog: whatever happens, the run ends.
( sleep "$TIMEOUT"; echo "deploy/local.sh: out of time after ${TIMEOUT}s" >&2; kill -TERM $$ ) &
PID[watchdog]=$!

log() { echo "local: $*" >&2; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { python3 -c 'import time; print(time.monotonic())'; }
since() { python3 -c "import time; print(round(time.monotonic() - $1, 2))"; }
# wait_for FILE NEEDLE SECONDS: until the log FILE has a line containing NEEDLE.
wait_for() {
  local deadline=$((SECONDS + $3))
  until grep -q -- "$2" "$1" 2>/dev/null; do
    if [ $SECONDS -ge "$deadline" ]; then
      echo "local: timed out waiting for \`$2\` in $1" >&2; tail -n 20 "$1" >&2; exit 1
    fi
    sleep 0.05
  done
}
# field FILE PREFIX: the first word after PREFIX on its first line in FILE.
field() {
  grep -m1 -o -- "$2[^ ]*" "$1" | head -n1 | sed "s|^$2||" | grep . \
    || { echo "local: no \`$2\` in $1 (is $BIN up to date?)" >&2; tail -n 5 "$1" >&2; exit 1; }
}

# --- Redis Cluster: 3 primaries + 3 replicas, AOF on, 1 s node timeout ---------------
REDIS_PORTS=()
declare -A BUS_PORT
start_redis() {
  local port=$1 dir="$WORK/redis-$1"
  mkdir -p "$dir"
  # The cluster bus gets a free port of its own (by default it is port + 10000, which
  # need not be free, nor below 65536).
  [ -n "${BUS_PORT[$port]:-}" ] || BUS_PORT[$port]=$(free_port)
  redis-server --port "$port" --cluster-port "${BUS_PORT[$port]}" --bind 127.0.0.1 --dir "$dir" --save "" \
    --appendonly yes --appendfsync everysec --cluster-enabled yes \
    --cluster-config-file nodes.conf --cluster-node-timeout 1000 \
    --repl-diskless-sync-delay 0 >"$dir/log" 2>&1 &
  PID[redis-$port]=$!
  wait_for "$dir/log" "Ready to accept connections" 10
}
for _ in 1 2 3 4 5 6; do
  port=$(free_port); REDIS_PORTS+=("$port"); start_redis "$port"
done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${REDIS_PORTS[@]}") \
  --cluster-replicas 1 --cluster-yes >"$WORK/cluster-create.log" 2>&1
for port in "${REDIS_PORTS[@]}"; do
  wait_for "$WORK/redis-$port/log" "Cluster state changed: ok" 20
done
for port in "${REDIS_PORTS[@]}"; do
  if redis-cli -p "$port" ROLE | head -n1 | grep -q slave; then
    wait_for "$WORK/redis-$port/log" "MASTER <-> REPLICA sync: Finished with success" 20
  fi
done
REDIS_URL="redis+cluster://$(printf '127.0.0.1:%s,' "${REDIS_PORTS[@]}" | sed 's/,$//')"
log "redis cluster up: ${REDIS_PORTS[*]}"

# The primary serving a key's slot, and its replica, as "PRIMARY REPLICA" ports.
primary_and_replica() {
  python3 - "$1" "${REDIS_PORTS[@]}" <<'EOF'
import subprocess, sys
key, ports = sys.argv[1], sys.argv[2:]
def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", port, *args], capture_output=True, text=True, timeout=5).stdout
live = next(p for p in ports if cli(p, "PING").strip() == "PONG")
slot = int(cli(live, "CLUSTER", "KEYSLOT", key).strip())
nodes = {}
for line in cli(live, "CLUSTER", "NODES").splitlines():
    f = line.split()
    nodes[f[0]] = f
for node_id, f in nodes.items():
    if "master" in f[2] and "fail" not in f[2]:
        for r in f[8:]:
            a, _, b = r.partition("-")
            if not r.startswith("[") and int(a) <= slot <= int(b or a):
                replica = next(g for g in nodes.values() if g[3] == node_id)
                port = lambda g: g[1].split("@")[0].rsplit(":", 1)[1]
                print(port(f), port(replica))
                sys.exit(0)
sys.exit("no primary serves slot %d" % slot)
EOF
}

# --- S3-compatible server for replays ----------------------------------------------
MOTO_PORT=$(free_port)
moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PID[moto]=$!
wait_for "$WORK/moto.log" "Running on" 30
curl -sf -X PUT "http://127.0.0.1:$MOTO_PORT/outpost-replays" >/dev/null
export AWS_ENDPOINT="http://127.0.0.1:$MOTO_PORT" AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true \
  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
log "s3 (moto) up on $MOTO_PORT"

# --- Secrets --------------------------------------------------------------------------
python3 -c 'import os; print(os.urandom(32).hex())' >"$WORK/signing-key.hex"
python3 -c 'import os; print(os.urandom(24).hex())' >"$WORK/edge-secret"
python3 -c 'import os; print(os.urandom(24).hex())' >"$WORK/load-test-key"
for edge in eu-west-1 us-east-1; do
  "$BIN" edge-credential --edge-secret-file "$WORK/edge-secret" --edge-id "$edge" >"$WORK/$edge.credential"
done

# --- Two cloud replicas on the cluster ----------------------------------------------
start_cloud() {
  local name=$1 port
  port=$(free_port)
  RUST_LOG=warn "$BIN" cloud --listen "127.0.0.1:$port" --redis-url "$REDIS_URL" \
    --redis-wait-replicas 1 --signing-key-file "$WORK/signing-key.hex" \
    --edge-secret-file "$WORK/edge-secret" --replay-bucket outpost-replays \
    --replay-prefix local --modes arena --arena-players 4 --match-seconds 10 \
    >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
  wait_for "$WORK/$name.log" "cloud listening" 20
}
LEASE_KEY="$KEY_PREFIX:{mm}:lease:matcher:arena"
lease_holder() { redis-cli -c -p "${REDIS_PORTS[0]}" GET "$LEASE_KEY" 2>/dev/null || true; }
start_cloud cloud-a
CLOUD_A=$(field "$WORK/cloud-a.log" "cloud listening: ")
INSTANCE_A=$(field "$WORK/cloud-a.log" "instance ")
# Replica A takes the lease with its first round; B starts once it has.
deadline=$((SECONDS + 10))
until [ "$(lease_holder)" = "$INSTANCE_A" ]; do
  [ $SECONDS -lt $deadline ] || { echo "local: replica A never took the matcher lease" >&2; exit 1; }
  sleep 0.05
done
start_cloud cloud-b
CLOUD_B=$(field "$WORK/cloud-b.log" "cloud listening: ")
INSTANCE_B=$(field "$WORK/cloud-b.log" "instance ")
log "cloud replicas: A $CLOUD_A (lease holder) · B $CLOUD_B"

# --- Two edges in two regions, each with a gateway ------------------------------------
# Both link to replica B (in Kubernetes a Service spreads them over every replica).
declare -A METRICS GATEWAY
start_edge() {
  local id=$1 region=$2 admin gateway
  admin=$(free_port); gateway=$(free_port)
  RUST_LOG=warn "$BIN" edge --edge-id "$id" --region "$region" --listen 127.0.0.1:0 \
    --http "127.0.0.1:$admin" --cloud-url "$CLOUD_B" \
    --edge-credential-file "$WORK/$id.credential" --outbox-dir "$WORK/outbox-$id" \
    --gateway-listen "127.0.0.1:$gateway" --gateway-load-test-key-file "$WORK/load-test-key" \
    >"$WORK/$id.log" 2>&1 &
  PID[$id]=$!
  wait_for "$WORK/$id.log" "edge listening" 20
  METRICS[$id]="http://127.0.0.1:$admin/metrics"
  GATEWAY[$id]="http://127.0.0.1:$gateway"
}
start_edge eu-west-1 eu-west
start_edge us-east-1 us-east
# Both registered before players ask for edges.
deadline=$((SECONDS + 15))
until [ "$(curl -sf "$CLOUD_B/v1/edges" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["edges"]))' 2>/dev/null)" = 2 ]; do
  [ $SECONDS -lt $deadline ] || { echo "local: the edges did not register" >&2; exit 1; }
  sleep 0.1
done
log "edges: eu-west-1, us-east-1 (gateway ${GATEWAY[eu-west-1]})"

# --- Players through the gateway --------------------------------------------------------
RUST_LOG=error "$BIN" loadtest --api "${GATEWAY[eu-west-1]}" \
  --load-test-key-file "$WORK/load-test-key" --players "$PLAYERS" --ramp 8 \
  --duration "${HOLD}s" --json >"$WORK/loadtest.json" 2>"$WORK/loadtest.log" &
PID[loadtest]=$!
log "$PLAYERS players playing for ${HOLD}s"

# --- Kill the Redis primary that holds results, mid-run -----------------------------
sleep 12
read -r PLAY_PRIMARY PLAY_REPLICA < <(primary_and_replica "$KEY_PREFIX:{play}:x")
log "killing redis primary $PLAY_PRIMARY (results); its replica is $PLAY_REPLICA"
killed=$(now)
kill -9 "${PID[redis-$PLAY_PRIMARY]}"; wait "${PID[redis-$PLAY_PRIMARY]}" 2>/dev/null || true
wait_for "$WORK/redis-$PLAY_REPLICA/log" "Failover election won" 30
REDIS_FAILOVER_S=$(since "$killed")
log "replica $PLAY_REPLICA promoted after ${REDIS_FAILOVER_S}s; restarting $PLAY_PRIMARY as its replica"
start_redis "$PLAY_PRIMARY"
wait_for "$WORK/redis-$PLAY_PRIMARY/log" "MASTER <-> REPLICA sync: Finished with success" 30

# --- Kill the cloud replica holding the matcher lease --------------------------------
sleep 5
log "killing cloud replica A (lease $(lease_holder))"
killed=$(now)
kill -9 "${PID[cloud-a]}"; wait "${PID[cloud-a]}" 2>/dev/null || true
deadline=$((SECONDS + 20))
until [ "$(lease_holder)" = "$INSTANCE_B" ]; do
  [ $SECONDS -lt $deadline ] || { echo "local: replica B never took the lease" >&2; exit 1; }
  sleep 0.02
done
MATCHER_FAILOVER_S=$(since "$killed")
log "replica B holds the matcher lease after ${MATCHER_FAILOVER_S}s"

# --- The end: players done, matches over, outboxes delivered -------------------------
wait "${PID[loadtest]}" || { echo "local: loadtest failed" >&2; cat "$WORK/loadtest.log" >&2; exit 1; }
unset 'PID[loadtest]'
metric() { # metric NAME: summed over both edges
  local total=0 v
  for id in eu-west-1 us-east-1; do
    v=$(curl -sf "${METRICS[$id]}" | awk -v n="outpost_edge_$1" '$1 == n { print $2 }')
    total=$(python3 -c "print(int($total + ${v:-0}))")
  done
  echo "$total"
}
deadline=$((SECONDS + 60))
until [ "$(metric matches)" = 0 ] && [ "$(metric matches_finished_total)" = "$(metric results_delivered_total)" ] \
  && [ "$(metric replays_delivered_total)" = "$(metric results_delivered_total)" ]; do
  [ $SECONDS -lt $deadline ] || { log "outboxes not drained in time"; break; }
  sleep 0.2
done

# --- Figures -------------------------------------------------------------------------------
read -r PLAY_PRIMARY _ < <(primary_and_replica "$KEY_PREFIX:{play}:x")
read -r REPLAYS_PRIMARY _ < <(primary_and_replica "$KEY_PREFIX:{replays}:x")
MATCHES_FINISHED=$(metric matches_finished_total) \
RESULTS_DELIVERED=$(metric results_delivered_total) \
MATCHER_FAILOVER_S=$MATCHER_FAILOVER_S REDIS_FAILOVER_S=$REDIS_FAILOVER_S \
PLAY_PRIMARY=$PLAY_PRIMARY REPLAYS_PRIMARY=$REPLAYS_PRIMARY KEY_PREFIX=$KEY_PREFIX \
MOTO_PORT=$MOTO_PORT LOADTEST="$WORK/loadtest.json" python3 - <<'EOF'
import json, os, re, subprocess, urllib.request

env = os.environ
prefix = env["KEY_PREFIX"]

def cli(port, *args):
    out = subprocess.run(["redis-cli", "-p", port, *args], capture_output=True, text=True, timeout=30)
    return out.stdout.splitlines()

def scan(port, pattern):
    return [k for k in cli(port, "--scan", "--pattern", pattern) if k]

play = env["PLAY_PRIMARY"]
results = scan(play, prefix + ":{play}:result:*")
applied = {int(k.rsplit(":", 1)[1]) for k in results}
# A result applied twice would list its match twice in a player's history.
duplicated = 0
for key in scan(play, prefix + ":{play}:history:*"):
    ids = cli(play, "LRANGE", key, "0", "-1")
    duplicated += len(ids) - len(set(ids))
indexed = len(scan(env["REPLAYS_PRIMARY"], prefix + ":{replays}:replay:*"))
listing = urllib.request.urlopen(
    "http://127.0.0.1:%s/outpost-replays?list-type=2&prefix=local/" % env["MOTO_PORT"], timeout=10
).read().decode()
stored = len(re.findall(r"<Key>local/replays/[^<]+</Key>", listing))
finished = int(env["MATCHES_FINISHED"])
load = json.load(open(env["LOADTEST"]))
print(json.dumps({
    "matches_finished": finished,
    "results_delivered": int(env["RESULTS_DELIVERED"]),
    "results_applied": len(applied),
    "results_lost": max(0, finished - len(applied)),
    "results_duplicated": duplicated,
    "replays_stored": stored,
    "replays_indexed": indexed,
    "matcher_failover_s": float(env["MATCHER_FAILOVER_S"]),
    "redis_failover_s": float(env["REDIS_FAILOVER_S"]),
    "players": load["players_target"],
    "player_seconds_held": round(load["player_seconds_held"], 1),
    "player_seconds_target": round(load["player_seconds_target"], 1),
    "match_ends": load["match_ends"],
    "loadtest_errors": load["errors_by_kind"],
}))
EOF
