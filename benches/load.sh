#!/usr/bin/env bash
# Loopback load run, bounded: three wrk runs of DURATION seconds each, loopback only.
#  1. examples/resource_server itself: a signed warm `GET /data` (jwt scheme, an auth
#     token of an access server on loopback whose JWKS it discovers on the first request);
#  2. examples/load_server: the same `GET /data` + `require_scopes` behind the layer,
#     with an empty handler and a static key resolver;
#  3. the same router as 2 without the layer (same headers).
# Usage: bash benches/load.sh [DURATION] [CONNECTIONS]
set -euo pipefail
DURATION=${1:-10}
CONNECTIONS=${2:-16}
LAYER_PORT=${LAYER_PORT:-18081}
PLAIN_PORT=${PLAIN_PORT:-18082}
EXAMPLE_PORT=${EXAMPLE_PORT:-18083}
ACCESS_PORT=${ACCESS_PORT:-18084}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
cargo build --release --example load_server --example resource_server
TARGET=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

wait_for() { # log file
  for _ in $(seq 100); do grep -q listening "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "server did not start:"; cat "$1"; exit 1
}
headers_of() { # headers file -> wrk/curl arguments in the global array args
  args=()
  while IFS= read -r line; do args+=(-H "$line"); done < "$1"
}
run() { # title url
  local status
  status=$(curl -s -o /dev/null -w '%{http_code}' "${args[@]}" "$2" || true)
  echo "== $1 (status of one request: $status)"
  [ "$status" = 200 ] || { echo "expected 200"; exit 1; }
  wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${args[@]}" "$2"
}

"$TARGET/release/examples/load_server" access-server "$ACCESS_PORT" \
  "http://127.0.0.1:$EXAMPLE_PORT" "$work/example-headers" > "$work/access.log" 2>&1 &
pids+=($!)
wait_for "$work/access.log"
AAUTH_ADDR=127.0.0.1:$EXAMPLE_PORT AAUTH_RESOURCE=http://127.0.0.1:$EXAMPLE_PORT \
  AAUTH_AUTH_SERVER=http://127.0.0.1:$ACCESS_PORT AAUTH_ALLOW_HTTP_LOOPBACK=1 RUST_LOG=warn \
  "$TARGET/release/examples/resource_server" > "$work/example.log" 2>&1 &
pids+=($!)
wait_for "$work/example.log"
headers_of "$work/example-headers"
run "examples/resource_server (signed, warm jwt, JSON handler)" "http://127.0.0.1:$EXAMPLE_PORT/data"

"$TARGET/release/examples/load_server" "$LAYER_PORT" "$PLAIN_PORT" "$work/headers" > "$work/server.log" 2>&1 &
pids+=($!)
wait_for "$work/server.log"
cat "$work/server.log"
headers_of "$work/headers"
run "load_server with the layer (signed, warm jwt, empty handler)" "http://127.0.0.1:$LAYER_PORT/data"
echo "== load_server without the layer (same headers)"
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${args[@]}" "http://127.0.0.1:$PLAIN_PORT/data"
