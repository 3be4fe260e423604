#!/usr/bin/env bash
# The reverse proxy's CPU per warm request against the Ed25519 limit, on loopback, bounded:
#
#   bash gateway/bench.sh [DURATION] [CONNECTIONS]      (defaults: 10 s, 8 connections)
#   WORKERS=1 bash gateway/bench.sh                      (the gateway's `workers` setting)
#   BATCH=eager bash gateway/bench.sh                    (its `batch_verification` setting:
#                                                         off, concurrent, eager; unset: the default)
#
# * upstream: examples/load_server's plain port (`GET /data` → "ok", no layer);
# * access server: examples/load_server's access-server mode, which also writes the
#   headers of a signed warm `GET /data` (jwt scheme, an auth token granting data.read);
# * aauth-gateway (release) as reverse proxy in front of the upstream, route `/data`
#   needing `data.read`;
# * wrk -t1 -cCONNECTIONS for DURATION seconds after a 2 s warm-up; the gateway's CPU is
#   its utime + stime from /proc/<pid>/stat (the upstream runs in another process, so its
#   own CPU is not counted), divided by the requests wrk completed;
# * the limit: gateway/examples/verify_limit (CPU time per verify_strict, 60 distinct
#   signatures), measured right before and right after the load, in the same run.
#
# Prints the ratio (goal ≤ 1.3) and wrk's latency percentiles (p99 on loopback).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION=${1:-10}
CONNECTIONS=${2:-8}
GW_PORT=${GW_PORT:-18181}
UP_PORT=${UP_PORT:-18182}
LAYER_PORT=${LAYER_PORT:-18183}
ACCESS_PORT=${ACCESS_PORT:-18184}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
cargo build --release -p aauth-gateway --bins --example verify_limit
cargo build --release -p tower-aauth --example load_server
TARGET=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

wait_for() { # log file, word
  for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "server did not start:"; cat "$1"; exit 1
}
cpu_ticks() { # pid -> utime + stime
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
limit() {
  "$TARGET/release/examples/verify_limit" 3 | awk '/limit_cpu_ns/ { print $2 }'
}

"$TARGET/release/examples/load_server" "$LAYER_PORT" "$UP_PORT" "$work/layer-headers" > "$work/upstream.log" 2>&1 &
up=$!
pids+=($up)
wait_for "$work/upstream.log" listening
"$TARGET/release/examples/load_server" access-server "$ACCESS_PORT" \
  "http://127.0.0.1:$GW_PORT" "$work/headers" > "$work/access.log" 2>&1 &
pids+=($!)
wait_for "$work/access.log" listening

mkdir "$work/keys"
cp tests/vectors/pem/resource-key.pem "$work/keys/resource-1.pem"
cat > "$work/gateway.toml" <<TOML
resource = "http://127.0.0.1:$GW_PORT"
mode = "reverse-proxy"
listen = "127.0.0.1:$GW_PORT"
upstream = "http://127.0.0.1:$UP_PORT"
signing_keys = "$work/keys"
${WORKERS:+workers = $WORKERS}
${BATCH:+batch_verification = \"$BATCH\"}

[trust]
access_server = "http://127.0.0.1:$ACCESS_PORT"
allow_http_loopback = true

[[route]]
path = "/data"
methods = ["GET"]
scopes = ["data.read"]
TOML
RUST_LOG=warn "$TARGET/release/aauth-gateway" --config "$work/gateway.toml" > "$work/gateway.log" 2>&1 &
gw=$!
pids+=($gw)
wait_for "$work/gateway.log" "reverse proxy"

args=()
while IFS= read -r line; do args+=(-H "$line"); done < "$work/headers"
url="http://127.0.0.1:$GW_PORT/data"
status=$(curl -s -o /dev/null -w '%{http_code}' "${args[@]}" "$url" || true)
[ "$status" = 200 ] || { echo "one signed request: $status, expected 200"; cat "$work/gateway.log"; exit 1; }

wrk -t1 -c"$CONNECTIONS" -d2s "${args[@]}" "$url" > /dev/null
before_limit=$(limit)
if [ -n "${PERF_OUT:-}" ]; then  # optional profile of the gateway during the load
  perf record -F 499 -g -p "$gw" -o "$PERF_OUT" -- sleep "$DURATION" > /dev/null 2>&1 &
fi
t0=$(cpu_ticks "$gw")
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${args[@]}" "$url" | tee "$work/wrk.txt"
t1=$(cpu_ticks "$gw")
after_limit=$(limit)
requests=$(awk '/requests in/ { print $1 }' "$work/wrk.txt")
non2xx=$(awk '/Non-2xx/ { print $5 }' "$work/wrk.txt")
[ -z "$non2xx" ] || { echo "non-2xx answers: $non2xx"; exit 1; }
ticks_per_second=$(getconf CLK_TCK)
awk -v t0="$t0" -v t1="$t1" -v n="$requests" -v hz="$ticks_per_second" \
    -v l0="$before_limit" -v l1="$after_limit" 'BEGIN {
  cpu = (t1 - t0) / hz * 1e9 / n
  limit = (l0 + l1) / 2
  printf "requests %d; gateway CPU %.0f ns per request\n", n, cpu
  printf "limit (verify_strict CPU) %.0f ns before, %.0f ns after\n", l0, l1
  printf "RATIO gateway CPU per request / limit = %.2f (goal <= 1.3)\n", cpu / limit
}'
awk '/ 99%/ { print "p99 latency " $2 }' "$work/wrk.txt"

# Reference: the same warm request served in process (examples/load_server's layer port:
# AAuthLayer + require_scopes + an empty handler, no proxying), same load, its CPU.
args=()
while IFS= read -r line; do args+=(-H "$line"); done < "$work/layer-headers"
wrk -t1 -c"$CONNECTIONS" -d2s "${args[@]}" "http://127.0.0.1:$LAYER_PORT/data" > /dev/null
u0=$(cpu_ticks "$up")
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${args[@]}" "http://127.0.0.1:$LAYER_PORT/data" > "$work/wrk-layer.txt"
u1=$(cpu_ticks "$up")
requests=$(awk '/requests in/ { print $1 }' "$work/wrk-layer.txt")
awk -v t0="$u0" -v t1="$u1" -v n="$requests" -v hz="$ticks_per_second" -v l0="$before_limit" -v l1="$after_limit" 'BEGIN {
  cpu = (t1 - t0) / hz * 1e9 / n
  printf "in-process layer server: %.0f ns per request, %.2f x the limit\n", cpu, cpu / ((l0 + l1) / 2)
}'
awk '/ 99%/ { print "in-process p99 latency " $2 }' "$work/wrk-layer.txt"
