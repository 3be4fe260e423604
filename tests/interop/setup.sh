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
#   venv-wba/   regent-httpsig==0.7.3   (a Web Bot Auth signer and verifier)
#   node/       @hellocoop/httpsig (exact pin below)
#   node-wba/   web-bot-auth + http-message-sig (Cloudflare's Web Bot Auth packages, exact
#               pins below, with their two dependencies pinned exactly too)
#   bin/        launchers peer-v05, peer-v03, peer-js, peer-wba-py, peer-wba-js (each:
#               `<launcher> SUBCOMMAND < request.json`) and introspection-server
#               (`introspection-server person|access|version`)
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
REGENT_HTTPSIG=0.7.3
REGENT_HTTP_MESSAGE_SIGNATURES=2.0.1
WEB_BOT_AUTH_JS=0.1.3
HTTP_MESSAGE_SIG_JS=0.2.0
JSONWEBKEY_THUMBPRINT_JS=0.1.0
STRUCTURED_HEADERS_JS=2.0.2

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

# make_venv NAME CONSTRAINTS IMPORTS REQUIREMENT…: a virtualenv DIR/NAME holding exactly
# the pinned REQUIREMENTs (`dist==version`, extras allowed), checked by importing IMPORTS
# (space-separated modules) and by the installed versions before its marker is written.
make_venv() {
  local name="$1" constraints="$2" imports="$3"
  shift 3
  local venv="$DIR/$name"
  local marker="$venv/.interop-installed"
  local want="$* constraints=$(cksum <"$constraints" | cut -d' ' -f1)"
  if [[ -f "$marker" && "$(cat "$marker")" == "$want" && -x "$venv/bin/python" ]] \
     && "$venv/bin/python" -c "import ${imports// /, }" >/dev/null 2>&1; then
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
  say "$name: pip install $* (constraints: ${constraints#"$HERE/"})"
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -c "$constraints" "$@"
  # Verify what actually got installed before writing the marker.
  "$venv/bin/python" - "$@" <<'PY'
import re, sys, importlib.metadata as md
want = {}
for requirement in sys.argv[1:]:
    name, version = requirement.split("==")
    want[re.sub(r"\[.*\]", "", name)] = version
got = {k: md.version(k) for k in want}
if got != want:
    sys.exit(f"installed {got}, wanted {want}")
PY
  printf '%s' "$want" >"$marker"
  say "$name: installed $want"
}

make_venv venv-v05 "$CONSTRAINTS" "aauth aauth_signing" "aauth==$AAUTH_V05" "aauth-signing==$AAUTH_SIGNING_V05"
make_venv venv-v03 "$CONSTRAINTS" "aauth aauth_signing" "aauth==$AAUTH_V03" "aauth-signing==$AAUTH_SIGNING_V03"
# The Person Server and Access Server of introspection-aauth, served by uvicorn.
make_venv venv-introspection "$HERE/py/constraints-introspection.txt" "introspection_aauth fastapi uvicorn" \
  "introspection-aauth[fastapi]==$INTROSPECTION_AAUTH" "uvicorn==$UVICORN"
# The Web Bot Auth peer regent-httpsig (its own venv: it needs http-message-signatures <2.1).
make_venv venv-wba "$HERE/py/constraints-wba.txt" "regent_httpsig http_message_signatures" \
  "regent-httpsig==$REGENT_HTTPSIG" "http-message-signatures==$REGENT_HTTP_MESSAGE_SIGNATURES"

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

# Cloudflare's npm Web Bot Auth packages, in their own directory so the two npm peers never
# share a dependency tree. Every package of the tree is named with its exact version.
WBA_NODE_DIR="$DIR/node-wba"
WBA_NODE_PINS="web-bot-auth@$WEB_BOT_AUTH_JS http-message-sig@$HTTP_MESSAGE_SIG_JS jsonwebkey-thumbprint@$JSONWEBKEY_THUMBPRINT_JS structured-headers@$STRUCTURED_HEADERS_JS"
installed_wba=""
for pin in $WBA_NODE_PINS; do
  name="${pin%@*}"
  if [[ -f "$WBA_NODE_DIR/node_modules/$name/package.json" ]]; then
    installed_wba+="$name@$("$NODE" -e 'process.stdout.write(require(process.argv[1]).version)' \
      "$WBA_NODE_DIR/node_modules/$name/package.json") "
  fi
done
if [[ "${installed_wba% }" == "$WBA_NODE_PINS" ]]; then
  say "node-wba: $WBA_NODE_PINS already installed (skip)"
else
  say "node-wba: npm install --save-exact $WBA_NODE_PINS into $WBA_NODE_DIR"
  mkdir -p "$WBA_NODE_DIR"
  if [[ ! -f "$WBA_NODE_DIR/package.json" ]]; then
    printf '{\n  "name": "aauth-interop-web-bot-auth-peers",\n  "private": true\n}\n' >"$WBA_NODE_DIR/package.json"
  fi
  # shellcheck disable=SC2086 # the pins are separate words
  (cd "$WBA_NODE_DIR" && "$NPM" install --save-exact --no-audit --no-fund --loglevel=error $WBA_NODE_PINS)
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
write_launcher peer-wba-py "$DIR/venv-wba/bin/python" "$HERE/py/peer_wba.py"
write_launcher peer-wba-js "$(command -v "$NODE")" "$HERE/js/wba.mjs" "AAUTH_INTEROP_WBA_NODE_DIR=\"$WBA_NODE_DIR\""

say "smoke test (version):"
for p in peer-v05 peer-v03 peer-js introspection-server peer-wba-py peer-wba-js; do
  "$DIR/bin/$p" version </dev/null | sed "s/^/[interop-setup]   $p: /"
done
# build.rs watches tests/interop/: touching it makes the next build look for the peers again.
touch "$HERE"
say "done"
