"""CLI plumbing shared by peer_v05.py and peer_v03.py.

This module contains NO signing, verification or header-parsing logic of its
own: every byte that goes on the wire comes from the installed `aauth` /
`aauth_signing` package, imported by the caller and passed in. What lives here
is JSON in/out, JWK -> key-object loading, a clock shim for a fixed `created`,
and bookkeeping about what the library did.

Contract (see tests/interop/README.md):
  argv[1] = subcommand; stdin = one JSON object; stdout = one JSON object.
  exit 0: success, {"unsupported": ...}, or a verification/parse verdict
  exit 1: the library raised while doing what was asked -> {"error", "error_type"}
  exit 2: bad usage (unknown subcommand, malformed request) -> {"error", "error_type": "usage"}
"""

import base64
import contextlib
import importlib.metadata as md
import json
import platform
import re
import sys
import traceback
import types


class Usage(Exception):
    """The request JSON does not follow the contract."""


class Unsupported(Exception):
    """The library cannot do what was asked."""


def b64url_decode(s):
    if not isinstance(s, str):
        raise Usage("expected a base64url string")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def load_private_key(jwk):
    """Turn a private OKP/Ed25519 JWK into the `cryptography` key object the
    libraries' sign_request() takes (neither library ships a private-JWK loader)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not isinstance(jwk, dict):
        raise Usage("private_jwk must be a JSON object")
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" not in jwk:
        raise Usage("private_jwk must be an OKP / Ed25519 JWK with 'd'")
    key = Ed25519PrivateKey.from_private_bytes(b64url_decode(jwk["d"]))
    if "x" in jwk:
        x = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        if x != b64url_decode(jwk["x"]):
            raise Usage("private_jwk: 'x' does not match 'd'")
    return key


@contextlib.contextmanager
def frozen_time(modules, now):
    """Replace the `time` module reference inside the given library modules by a
    shim whose time() returns `now`. sign_request() takes no `created` argument
    (it calls time.time()), so this is how a fixed `created` is injected."""
    if now is None:
        yield
        return
    if isinstance(now, bool) or not isinstance(now, int):
        raise Usage("created/now must be an integer (unix seconds)")
    import time as real_time

    shim = types.SimpleNamespace(
        **{k: getattr(real_time, k) for k in dir(real_time) if not k.startswith("_")}
    )
    shim.time = lambda: float(now)
    saved = []
    for m in modules:
        saved.append((m, m.time))
        m.time = shim
    try:
        yield
    finally:
        for m, orig in saved:
            m.time = orig


def versions(dists):
    out = {}
    for d in dists:
        try:
            out[d] = md.version(d)
        except md.PackageNotFoundError:
            out[d] = None
    return out


def check_versions(expected):
    got = versions(expected)
    bad = {k: v for k, v in got.items() if v != expected[k]}
    if bad:
        raise Usage(
            f"wrong interpreter/venv: installed {got}, this peer needs {expected}; "
            "run tests/interop/setup.sh and use the venv's python (or target/interop/bin/peer-*)"
        )


def ci_get(headers, name):
    """Case-insensitive lookup in a plain dict, first match wins."""
    name = name.lower()
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


def lower_headers_first_wins(headers):
    """Lower-case a header dict. When the library left two spellings of one
    field (e.g. input 'content-type' plus its own 'Content-Type'), keep the
    FIRST in insertion order: that is the value aauth_signing's _get_header()
    put in the signature base."""
    out, dupes = {}, []
    for k, v in headers.items():
        lk = k.lower()
        if lk in out:
            if out[lk] != v:
                dupes.append(f"{k}: {v!r} (dropped; first value {out[lk]!r} is the one signed)")
            continue
        out[lk] = v
    return out, dupes


def covered_from_signature_input(value):
    """Read back the covered components / created from the library's own
    Signature-Input (reporting only)."""
    m = re.search(r"=\(([^)]*)\)", value or "")
    comps = re.findall(r'"([^"]+)"', m.group(1)) if m else []
    c = re.search(r";created=(-?\d+)", value or "")
    return comps, int(c.group(1)) if c else None


def parse_sign_request(req):
    method = req.get("method", "GET")
    url = req.get("url")
    if not isinstance(method, str) or not isinstance(url, str):
        raise Usage("sign needs string 'method' and 'url'")
    headers = req.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise Usage("'headers' must be an object of string values")
    body = req.get("body")
    if body is not None and not isinstance(body, str):
        raise Usage("'body' must be a string or null")
    scheme = req.get("scheme", "hwk")
    kwargs = {}
    if scheme == "jwt":
        if not isinstance(req.get("jwt"), str):
            raise Usage("scheme jwt needs 'jwt'")
        kwargs["jwt"] = req["jwt"]
    elif scheme == "jwks_uri":
        ju = req.get("jwks_uri")
        if not isinstance(ju, dict) or not all(
            isinstance(ju.get(k), str) for k in ("id", "dwk", "kid")
        ):
            raise Usage("scheme jwks_uri needs 'jwks_uri': {id, dwk, kid}")
        kwargs.update(id=ju["id"], dwk=ju["dwk"], kid=ju["kid"])
    elif scheme != "hwk":
        raise Usage("scheme must be hwk, jwks_uri or jwt")
    components = req.get("components")
    if components is not None and (
        not isinstance(components, list) or not all(isinstance(c, str) for c in components)
    ):
        raise Usage("'components' must be a list of strings")
    return dict(
        method=method,
        url=url,
        headers=dict(headers),
        body=None if body is None else body.encode("utf-8"),
        scheme=scheme,
        kwargs=kwargs,
        components=components,
        created=req.get("created"),
        key=load_private_key(req.get("private_jwk")),
    )


def run_sign(req, sign_request, clock_modules, function_name):
    """Call the library's sign_request() exactly as an agent would, then report
    the complete header set to put on the request."""
    p = parse_sign_request(req)
    lib_headers = dict(p["headers"])  # sign_request mutates this dict
    with frozen_time(clock_modules, p["created"]):
        returned = sign_request(
            p["method"],
            p["url"],
            lib_headers,
            p["body"],
            p["key"],
            sig_scheme=p["scheme"],
            additional_signature_components=p["components"],
            **p["kwargs"],
        )
    merged, dupes = lower_headers_first_wins(lib_headers)
    for k, v in returned.items():
        merged[k.lower()] = v
    input_names = {k.lower() for k in p["headers"]}
    covered, created = covered_from_signature_input(merged.get("signature-input"))
    notes = list(dupes)
    for c in p["components"] or []:
        if c not in covered:
            notes.append(f"requested component {c!r} is not covered: the library dropped it")
    return {
        "headers": merged,
        "library_added": sorted(set(merged) - input_names),
        "covered_components": covered,
        "created": created,
        "function": function_name,
        "notes": notes,
    }


def run_parse_challenge(req, mods):
    """mods: the aauth.headers.aauth_header module and aauth.agent package."""
    hh, agent = mods
    headers = req.get("headers") or {}
    if not isinstance(headers, dict):
        raise Usage("'headers' must be an object")
    raw = hh.get_challenge_header_value(headers)
    lower = {str(k).lower(): v for k, v in headers.items()}
    used = next(
        (
            n
            for n in ("aauth-requirement", "accept-signature", "signature-requirement", "aauth", "agent-auth")
            if lower.get(n)
        ),
        None,
    )
    parsed, err = None, None
    if raw:
        try:
            parsed = hh.parse_aauth_header(raw)
        except Exception as e:  # the library's own verdict on the header
            err = f"{type(e).__name__}: {e}"
    out = {
        "status": req.get("status"),
        "requirement": (parsed or {}).get("requirement"),
        "resource_token": agent.extract_resource_token(headers),
        "header_used": used,
        "parsed": parsed,
        "error": err,
        "functions": [
            "aauth.agent.extract_resource_token",
            "aauth.headers.aauth_header.get_challenge_header_value",
            "aauth.headers.aauth_header.parse_aauth_header",
        ],
    }
    se = lower.get("signature-error")
    if se:
        out["signature_error"] = hh.parse_signature_error(se)
    return out


def verify_inputs(req):
    method = req.get("method", "GET")
    url = req.get("url")
    headers = req.get("headers") or {}
    if not isinstance(url, str) or not isinstance(headers, dict):
        raise Usage("verify needs 'url' and 'headers'")
    sig_input = ci_get(headers, "signature-input")
    sig = ci_get(headers, "signature")
    sig_key = ci_get(headers, "signature-key")
    if not (sig_input and sig and sig_key):
        raise Usage("headers must include signature-input, signature and signature-key")
    body = req.get("body")
    return method, url, headers, None if body is None else body.encode("utf-8"), sig_input, sig, sig_key


def make_fetcher(req, calls):
    """A jwks_fetcher that returns the request's 'jwks' (no network) and logs
    how the library called it."""
    jwks = req.get("jwks")

    def fetcher(*args):
        calls.append(list(args))
        return jwks

    return fetcher


def with_capabilities(req, build):
    """The `sign` input with `aauth-capabilities` set to the library's `build(capabilities)`
    when the input names `capabilities` (no library sends the header by itself)."""
    caps = req.get("capabilities")
    if caps is None:
        return req
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise Usage("'capabilities' must be a list of strings")
    req = dict(req, headers=dict(req.get("headers") or {}))
    req["headers"]["aauth-capabilities"] = build(caps)
    return req


def scripted_response(spec, method, url):
    """A scripted `{status, headers, body}` as the `httpx.Response` the libraries read."""
    import httpx

    if not isinstance(spec, dict) or not isinstance(spec.get("status"), int):
        raise Usage("a response is {status, headers, body}")
    return httpx.Response(
        spec["status"],
        headers=spec.get("headers") or {},
        content=(spec.get("body") or "").encode("utf-8"),
        request=httpx.Request(method, url),
    )


def main(peer_label, expected_versions, handlers):
    sub = sys.argv[1] if len(sys.argv) > 1 else None
    try:
        if sub not in handlers:
            raise Usage(f"subcommand must be one of {sorted(handlers)}")
        if sub != "version":
            check_versions(expected_versions)
        text = sys.stdin.read() if not sys.stdin.isatty() else ""
        if text.strip():
            try:
                req = json.loads(text)
            except ValueError as e:
                raise Usage(f"stdin is not JSON: {e}")
        else:
            req = {}
        if not isinstance(req, dict):
            raise Usage("stdin must hold one JSON object")
        out, code = handlers[sub](req), 0
    except Usage as e:
        out, code = {"error": str(e), "error_type": "usage"}, 2
    except Unsupported as e:
        out, code = {"unsupported": str(e)}, 0
    except Exception as e:
        out = {"error": str(e), "error_type": type(e).__name__}
        cause = e.__cause__
        if cause is not None:
            out["cause"] = f"{type(cause).__name__}: {cause}"
        out["traceback"] = traceback.format_exc(limit=4)
        code = 1
    out.setdefault("peer", peer_label)
    sys.stdout.write(json.dumps(out, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
    return code


def version_info(peer_label, dists):
    return {
        "peer": peer_label,
        "packages": versions(dists),
        "python": platform.python_version(),
    }
