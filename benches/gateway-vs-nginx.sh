#!/usr/bin/env bash
# Cache-hit throughput and latency of the Outpost edge gateway against nginx with an
# equivalent proxy_cache, in front of the same origin, on loopback, in one run.
# Prints one JSON line: {"outpost_rps", "nginx_rps", "ratio", "outpost_p99_ms", "nginx_p99_ms"}.
#
#   benches/gateway-vs-nginx.sh            (installs nginx and wrk with apt-get if missing)
#   DURATION=10s CONNECTIONS=64 THREADS=2 benches/gateway-vs-nginx.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ORIGIN=127.0.0.1:18080
GATEWAY=127.0.0.1:18081
NGINX=127.0.0.1:18082
ROUTE=/v1/leaderboards/arena-best?limit=100

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "installing $2" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq "$2" >&2
  fi
}
need nginx nginx
need wrk wrk

cargo build --release --example gateway_bench >&2
work=$(mktemp -d)
chmod 777 "$work"
cleanup() {
  [[ -n "${nginx_pid:-}" ]] && kill "$nginx_pid" 2>/dev/null || true
  [[ -n "${app_pid:-}" ]] && kill "$app_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

./target/release/examples/gateway_bench --origin "$ORIGIN" --gateway "$GATEWAY" >"$work/app.out" 2>"$work/app.err" &
app_pid=$!
for _ in $(seq 1 100); do grep -q ready "$work/app.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$work/app.out" || { cat "$work/app.err" >&2; echo "the origin and gateway did not start" >&2; exit 1; }

mkdir -p "$work/cache" "$work/logs"
cat >"$work/nginx.conf" <<CONF
user root;
worker_processes auto;
error_log $work/logs/error.log warn;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  proxy_cache_path $work/cache levels=1:2 keys_zone=outpost:10m max_size=64m inactive=60m use_temp_path=off;
  upstream origin { server $ORIGIN; keepalive 64; }
  server {
    listen $NGINX;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache outpost;
      proxy_cache_lock on;
      proxy_cache_revalidate on;
      proxy_cache_background_update on;
      proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
      add_header X-Cache \$upstream_cache_status;
    }
  }
}
CONF
nginx -c "$work/nginx.conf" -p "$work" -g 'daemon off;' &
nginx_pid=$!
sleep 0.5

# Warm both caches and check they answer from cache.
for url in "http://$GATEWAY$ROUTE" "http://$NGINX$ROUTE"; do
  for _ in 1 2 3; do curl -fsS -o /dev/null "$url"; done
  curl -fsS -D - -o /dev/null "$url" | grep -i '^x-cache' >&2
done

run() {
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$1"
}
rps() { awk '/Requests\/sec/ {print $2}'; }
p99() {
  awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v = v / 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v = v * 1000 } print v }'
}
nginx_out=$(run "http://$NGINX$ROUTE")
outpost_out=$(run "http://$GATEWAY$ROUTE")
echo "$nginx_out" >&2
echo "$outpost_out" >&2
n_rps=$(echo "$nginx_out" | rps)
o_rps=$(echo "$outpost_out" | rps)
n_p99=$(echo "$nginx_out" | p99)
o_p99=$(echo "$outpost_out" | p99)
python3 -c "import json; print(json.dumps({'outpost_rps': $o_rps, 'nginx_rps': $n_rps, 'ratio': round($o_rps / $n_rps, 3), 'outpost_p99_ms': $o_p99, 'nginx_p99_ms': $n_p99}))"
