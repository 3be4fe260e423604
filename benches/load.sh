#!/usr/bin/env bash
# Loopback load run: a signed warm `GET /data` (jwt scheme, cached auth token) against
# the layer, and the same router without the layer, with wrk. Bounded: two runs of
# DURATION seconds each, loopback only. Usage: bash benches/load.sh [DURATION] [CONNECTIONS]
set -euo pipefail
DURATION=${1:-10}
CONNECTIONS=${2:-16}
LAYER_PORT=${LAYER_PORT:-18081}
PLAIN_PORT=${PLAIN_PORT:-18082}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
cargo build --release --example load_server
TARGET=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
"$TARGET/release/examples/load_server" "$LAYER_PORT" "$PLAIN_PORT" "$work/headers" > "$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q listening "$work/server.log" 2>/dev/null && break; sleep 0.1; done
cat "$work/server.log"
args=()
while IFS= read -r line; do args+=(-H "$line"); done < "$work/headers"
status=$(curl -s -o /dev/null -w '%{http_code}' "${args[@]}" "http://127.0.0.1:$LAYER_PORT/data" || true)
echo "signed request status: $status"
echo "== with the layer (signed, warm jwt)"
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${args[@]}" "http://127.0.0.1:$LAYER_PORT/data"
echo "== without the layer (same headers)"
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${args[@]}" "http://127.0.0.1:$PLAIN_PORT/data"
