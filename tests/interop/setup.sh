#!/usr/bin/env bash
# Installs the real third-party AAuth peers used by the interop tests.
#
#   tests/interop/setup.sh [DIR]
#
# DIR defaults to $AAUTH_INTEROP_DIR, else $CARGO_TARGET_DIR/interop, else target/interop; a
# relative DIR is relative to the repo root. build.rs looks for the launchers by the same
# rule: a test whose peer is missing is reported ignored (under CI=true it fails).
#
# Creates, under DIR:
#   venv-v05/   aauth==0.5.0 + aauth-signing==0.2.0   (draft -11 generation)
#   venv-v03/   aauth==0.3.4 + aauth-signing==0.1.2   (demo generation)
#   venv-introspection/  introspection-aauth[fastapi]==0.1.0 + uvicorn   (a Person Server and an
#               Access Server, draft -11, for tests/interop_four_party.rs)
#   node/       @hellocoop/httpsig (exact pin below)
#   bin/        launchers peer-v05, peer-v03, peer-js (each: `<launcher> SUBCOMMAND < request.json`)
#               and introspection-server (`introspection-server person|access|version`)
#
# Idempotent: every step leaves a marker naming the exact pins; a step whose
# marker matches is skipped. Needs only python3 (with venv + pip), node and npm.
set -euo pipefail

AAUTH_V05=0.5.0
AAUTH_SIGNING_V05=0.2.0
AAUTH_V03=0.3.4
AAUTH_SIGNING_V03=0.1.2
HELLOCOOP_HTTPSIG=2.2.0
INTROSPECTION_AAUTH=0.1.0
UVICORN=0.54.0

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DEFAULT_DIR="${AAUTH_INTEROP_DIR:-}"
if [[ -z "$DEFAULT_DIR" ]]; then
  DEFAULT_DIR="${CARGO_TARGET_DIR:-target}/interop"
fi
DIR="${1:-$DEFAULT_DIR}"
case "$DIR" in
  /*) ;;
  *) DIR="$ROOT/$DIR" ;;
esac
PYTHON="${PYTHON:-python3}"
NODE="${NODE:-node}"
NPM="${NPM:-npm}"
CONSTRAINTS="$HERE/py/constraints.txt"

say() { printf '[interop-setup] %s\n' "$*"; }

mkdir -p "$DIR" "$DIR/bin"
say "peer directory: $DIR"

need() {
  command -v "$1" >/dev/null 2>&1 || { say "ERROR: '$1' not found on PATH"; exit 1; }
}
need "$PYTHON"
need "$NODE"
need "$NPM"

make_venv() { # name aauth-version aauth-signing-version
  local name="$1" aauth="$2" signing="$3"
  local venv="$DIR/$name"
  local marker="$venv/.interop-installed"
  local want="aauth==$aauth aauth-signing==$signing constraints=$(cksum <"$CONSTRAINTS" | cut -d' ' -f1)"
  if [[ -f "$marker" && "$(cat "$marker")" == "$want" && -x "$venv/bin/python" ]] \
     && "$venv/bin/python" -c 'import aauth, aauth_signing' >/dev/null 2>&1; then
    say "$name: already has $want (skip)"
    return
  fi
  if [[ ! -x "$venv/bin/python" ]]; then
    say "$name: creating virtualenv with $("$PYTHON" --version 2>&1)"
    if ! "$PYTHON" -m venv "$venv"; then
      say "ERROR: '$PYTHON -m venv' failed (on Debian: apt-get install python3-venv)"
      exit 1
    fi
  fi
  say "$name: pip install aauth==$aauth aauth-signing==$signing (constraints: tests/interop/py/constraints.txt)"
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
    -c "$CONSTRAINTS" "aauth==$aauth" "aauth-signing==$signing"
  # Verify what actually got installed before writing the marker.
  "$venv/bin/python" - "$aauth" "$signing" <<'PY'
import sys, importlib.metadata as md
want = {"aauth": sys.argv[1], "aauth-signing": sys.argv[2]}
got = {k: md.version(k) for k in want}
if got != want:
    sys.exit(f"installed {got}, wanted {want}")
PY
  printf '%s' "$want" >"$marker"
  say "$name: installed $want"
}

make_venv venv-v05 "$AAUTH_V05" "$AAUTH_SIGNING_V05"
make_venv venv-v03 "$AAUTH_V03" "$AAUTH_SIGNING_V03"

# The Person Server and Access Server of introspection-aauth, served by uvicorn.
INTROSPECTION_CONSTRAINTS="$HERE/py/constraints-introspection.txt"
make_introspection_venv() {
  local venv="$DIR/venv-introspection"
  local marker="$venv/.interop-installed"
  local want="introspection-aauth[fastapi]==$INTROSPECTION_AAUTH uvicorn==$UVICORN constraints=$(cksum <"$INTROSPECTION_CONSTRAINTS" | cut -d' ' -f1)"
  if [[ -f "$marker" && "$(cat "$marker")" == "$want" && -x "$venv/bin/python" ]] \
     && "$venv/bin/python" -c 'import introspection_aauth, fastapi, uvicorn' >/dev/null 2>&1; then
    say "venv-introspection: already has $want (skip)"
    return
  fi
  if [[ ! -x "$venv/bin/python" ]]; then
    say "venv-introspection: creating virtualenv with $("$PYTHON" --version 2>&1)"
    if ! "$PYTHON" -m venv "$venv"; then
      say "ERROR: '$PYTHON -m venv' failed (on Debian: apt-get install python3-venv)"
      exit 1
    fi
  fi
  say "venv-introspection: pip install $want"
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
    -c "$INTROSPECTION_CONSTRAINTS" "introspection-aauth[fastapi]==$INTROSPECTION_AAUTH" "uvicorn==$UVICORN"
  "$venv/bin/python" - "$INTROSPECTION_AAUTH" "$UVICORN" <<'PY'
import sys, importlib.metadata as md
want = {"introspection-aauth": sys.argv[1], "uvicorn": sys.argv[2]}
got = {k: md.version(k) for k in want}
if got != want:
    sys.exit(f"installed {got}, wanted {want}")
PY
  printf '%s' "$want" >"$marker"
  say "venv-introspection: installed $want"
}
make_introspection_venv

NODE_DIR="$DIR/node"
mkdir -p "$NODE_DIR"
installed_js=""
if [[ -f "$NODE_DIR/node_modules/@hellocoop/httpsig/package.json" ]]; then
  installed_js="$("$NODE" -e 'process.stdout.write(require(process.argv[1]).version)' \
    "$NODE_DIR/node_modules/@hellocoop/httpsig/package.json")"
fi
if [[ "$installed_js" == "$HELLOCOOP_HTTPSIG" ]]; then
  say "node: @hellocoop/httpsig@$HELLOCOOP_HTTPSIG already installed (skip)"
else
  say "node: npm install --save-exact @hellocoop/httpsig@$HELLOCOOP_HTTPSIG into $NODE_DIR"
  if [[ ! -f "$NODE_DIR/package.json" ]]; then
    printf '{\n  "name": "aauth-interop-peers",\n  "private": true\n}\n' >"$NODE_DIR/package.json"
  fi
  (cd "$NODE_DIR" && "$NPM" install --save-exact --no-audit --no-fund --loglevel=error \
     "@hellocoop/httpsig@$HELLOCOOP_HTTPSIG")
fi

write_launcher() { # name interpreter script [env-assignment]
  local path="$DIR/bin/$1"
  local content
  content="#!/bin/sh
# generated by tests/interop/setup.sh
${4:+export $4
}exec \"$2\" \"$3\" \"\$@\"
"
  if [[ ! -f "$path" || "$(cat "$path")" != "${content%$'\n'}" ]]; then
    printf '%s' "$content" >"$path"
    chmod +x "$path"
    say "launcher: $path"
  fi
}
write_launcher peer-v05 "$DIR/venv-v05/bin/python" "$HERE/py/peer_v05.py"
write_launcher peer-v03 "$DIR/venv-v03/bin/python" "$HERE/py/peer_v03.py"
write_launcher peer-js "$(command -v "$NODE")" "$HERE/js/peer.mjs" "AAUTH_INTEROP_NODE_DIR=\"$NODE_DIR\""
write_launcher introspection-server "$DIR/venv-introspection/bin/python" "$HERE/py/introspection_server.py"

say "smoke test (version):"
for p in peer-v05 peer-v03 peer-js introspection-server; do
  "$DIR/bin/$p" version </dev/null | sed "s/^/[interop-setup]   $p: /"
done
# build.rs watches tests/interop/: touching it makes the next build look for the peers again.
touch "$HERE"
say "done"
