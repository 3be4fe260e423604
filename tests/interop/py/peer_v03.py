#!/usr/bin/env python3
"""Real-peer driver for PyPI aauth 0.3.4 + aauth-signing 0.1.2 (demo generation).

Run with the venv made by tests/interop/setup.sh:
    target/interop/bin/peer-v03 SUBCOMMAND < request.json
Subcommands: version, sign, parse-challenge, verify-resource-token, verify,
follow-pending.
The JSON contract is documented in tests/interop/README.md.
"""

import os
import sys

sys.dont_write_bytecode = True  # keep tests/interop free of __pycache__

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _peer_common as pc  # noqa: E402

EXPECTED = {"aauth": "0.3.4", "aauth-signing": "0.1.2"}
DISTS = ["aauth", "aauth-signing", "cryptography", "PyJWT", "http_sfv"]


def label():
    v = pc.versions(["aauth", "aauth-signing"])
    return f"aauth {v['aauth']} / aauth-signing {v['aauth-signing']}"


def cmd_version(req):
    return pc.version_info(label(), DISTS)


def cmd_sign(req):
    import aauth_signing
    import aauth_signing.signer
    from aauth.headers.aauth_header import build_aauth_capabilities_header

    req = pc.with_capabilities(req, build_aauth_capabilities_header)
    return pc.run_sign(
        req,
        aauth_signing.sign_request,
        [aauth_signing.signer],
        "aauth_signing.sign_request (== aauth.signing.sign_request)",
    )


def cmd_parse_challenge(req):
    import aauth.agent
    import aauth.headers.aauth_header as hh

    return pc.run_parse_challenge(req, (hh, aauth.agent))


def cmd_verify_resource_token(req):
    import aauth.tokens.resource_token as rt

    token = req.get("token")
    if not isinstance(token, str):
        raise pc.Usage("verify-resource-token needs 'token'")
    exp = req.get("expected") or {}
    calls = []
    out = {"valid": False, "claims": None, "error": None, "error_code": None,
           "function": "aauth.tokens.resource_token.verify_resource_token"}
    with pc.frozen_time([rt], req.get("now")):
        try:
            claims = rt.verify_resource_token(
                token,
                pc.make_fetcher(req, calls),  # called as fetcher(iss)
                expected_aud=exp.get("aud"),
                expected_agent=exp.get("agent"),
                expected_agent_jkt=exp.get("agent_jkt"),
            )
            out.update(valid=True, claims=claims)
        except Exception as e:
            out["error"] = f"{type(e).__name__}: {e}"
            out["error_code"] = getattr(e, "error_code", None)
    out["fetcher_calls"] = calls
    return out


def cmd_verify(req):
    """Run the library's own RFC 9421 verifier on a signed request."""
    import aauth_signing
    import aauth_signing.verifier as vm

    method, url, headers, body, si, s, sk = pc.verify_inputs(req)
    calls = []
    out = {"verified": False, "error": None, "error_code": None,
           "function": "aauth_signing.verify_signature"}
    with pc.frozen_time([vm], req.get("now")):
        try:
            out["verified"] = bool(
                aauth_signing.verify_signature(
                    method, url, headers, body, si, s, sk,
                    jwks_fetcher=pc.make_fetcher(req, calls),
                )
            )
            if not out["verified"]:
                out["error"] = "verify_signature returned False"
        except Exception as e:
            out["error"] = f"{type(e).__name__}: {e}"
            out["error_code"] = getattr(e, "error_code", None)
    out["fetcher_calls"] = calls
    return out


def cmd_follow_pending(req):
    """Replay polling through the library's own poller.

    `aauth.agent.poller.poll_pending_url` (0.3.4 has no `initial_response`: it starts by
    polling `pending_url`, the 202's Location); each GET it asks for is signed by
    `aauth_signing.sign_request` (jwt scheme) and answered from `responses` in order; when
    they run out the signed GET is recorded and the poller stops (`done: false`). Sleeps
    are recorded, not slept.
    """
    import types

    import aauth.agent.poller as poller
    import aauth_signing
    import aauth_signing.signer

    url = req.get("pending_url")
    if not isinstance(url, str) or not isinstance(req.get("jwt"), str):
        raise pc.Usage("follow-pending needs 'pending_url' and 'jwt'")
    key = pc.load_private_key(req.get("private_jwk"))
    remaining = list(req.get("responses") or [])
    interactions, sleeps, gets, exhausted = [], [], [], []

    def get(pending):
        headers = aauth_signing.sign_request(
            "GET", pending, {}, None, key, sig_scheme="jwt", jwt=req["jwt"]
        )
        gets.append({"url": pending, "headers": {k.lower(): v for k, v in headers.items()}})
        if not remaining:
            exhausted.append(pending)
            raise RuntimeError("no scripted response left")
        return pc.scripted_response(remaining.pop(0), "GET", pending)

    saved = poller.time
    poller.time = types.SimpleNamespace(sleep=sleeps.append)
    try:
        with pc.frozen_time([aauth_signing.signer], req.get("created")):
            result = poller.poll_pending_url(
                url, get, on_interaction=lambda u, c: interactions.append([u, c])
            )
    finally:
        poller.time = saved
    return {
        "done": not exhausted,
        "interactions": interactions,
        "sleeps": sleeps,
        "gets": gets,
        "success": result.success,
        "status_code": result.status_code,
        "error": result.error,
        "response_body": result.response_body,
        "function": "aauth.agent.poller.poll_pending_url",
    }


if __name__ == "__main__":
    sys.exit(
        pc.main(
            label() if pc.versions(["aauth"])["aauth"] else "aauth (not installed)",
            EXPECTED,
            {
                "version": cmd_version,
                "sign": cmd_sign,
                "parse-challenge": cmd_parse_challenge,
                "verify-resource-token": cmd_verify_resource_token,
                "verify": cmd_verify,
                "follow-pending": cmd_follow_pending,
            },
        )
    )
