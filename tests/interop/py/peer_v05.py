#!/usr/bin/env python3
"""Real-peer driver for PyPI aauth 0.5.0 + aauth-signing 0.2.0 (draft -11 generation).

Run with the venv made by tests/interop/setup.sh:
    target/interop/bin/peer-v05 SUBCOMMAND < request.json
Subcommands: version, sign, parse-challenge, verify-resource-token, verify,
follow-pending, sign-revocation, revocation-outcome.
The JSON contract is documented in tests/interop/README.md.
"""

import os
import sys

sys.dont_write_bytecode = True  # keep tests/interop free of __pycache__

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _peer_common as pc  # noqa: E402

EXPECTED = {"aauth": "0.5.0", "aauth-signing": "0.2.0"}
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
    import aauth_signing.tokens.common as tc
    from aauth.tokens.common import verify_token
    from aauth.tokens.resource_token import verify_resource_token

    token = req.get("token")
    if not isinstance(token, str):
        raise pc.Usage("verify-resource-token needs 'token'")
    exp = req.get("expected") or {}
    calls = []
    fetcher = pc.make_fetcher(req, calls)
    out = {"valid": False, "claims": None, "error": None, "error_code": None}
    with pc.frozen_time([tc], req.get("now")):
        try:
            if exp.get("presented_token"):
                # Full draft -11 check, including the binding to the presented
                # person/auth token (the same fetcher serves both issuers).
                out["function"] = "aauth.tokens.resource_token.verify_resource_token"
                claims = verify_resource_token(
                    token,
                    fetcher,
                    presented_token=exp["presented_token"],
                    expected_aud=exp.get("aud"),
                    expected_iss=exp.get("iss"),
                    expected_ps=exp.get("ps"),
                    expected_agent_jkt=exp.get("agent_jkt"),
                )
            else:
                # Generic AAuth JWT verification: typ, dwk, iss/aud shape,
                # signature via JWKS (kid), iat/exp, ps/sub/presented_jti/agent_jkt.
                out["function"] = "aauth.tokens.common.verify_token"
                claims = verify_token(
                    token,
                    fetcher,
                    expected_typ=exp.get("typ", "aa-resource+jwt"),
                    expected_iss=exp.get("iss"),
                    expected_aud=exp.get("aud"),
                )
            out.update(valid=True, claims=claims)
        except Exception as e:
            out["error"] = f"{type(e).__name__}: {e}"
            out["error_code"] = getattr(e, "error_code", None)
            if e.__cause__ is not None:
                out["cause"] = f"{type(e.__cause__).__name__}: {e.__cause__}"
    out["fetcher_calls"] = calls
    return out


def cmd_verify(req):
    """Run the library's own RFC 9421 verifier on a signed request."""
    import aauth_signing
    import aauth_signing.tokens.common as tc
    import aauth_signing.verifier as vm

    method, url, headers, body, si, s, sk = pc.verify_inputs(req)
    calls = []
    out = {"verified": False, "error": None, "error_code": None,
           "function": "aauth_signing.verify_signature"}
    with pc.frozen_time([vm, tc], req.get("now")):
        try:
            out["verified"] = bool(
                aauth_signing.verify_signature(
                    method, url, headers, body, si, s, sk,
                    jwks_fetcher=pc.make_fetcher(req, calls),
                    required_components=req.get("required_components"),
                    signature_window=req.get("window", 60),
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
    """Replay a deferred exchange through the library's own poller.

    `aauth.agent.poller.poll_pending_url` runs from `initial` (the resource's 202); each
    poll GET it asks for is signed by `aauth_signing.sign_request` (jwt scheme, as the
    library's own pollers sign) and answered from `responses` in order. When they run
    out the signed GET is recorded and the poller stops (`done: false`): the caller sends
    that GET and replays again with the answer appended. Sleeps are recorded, not slept.
    """
    import types

    import aauth.agent.poller as poller
    import aauth_signing
    import aauth_signing.signer

    url = req.get("request_url")
    if not isinstance(url, str) or not isinstance(req.get("jwt"), str):
        raise pc.Usage("follow-pending needs 'request_url' and 'jwt'")
    key = pc.load_private_key(req.get("private_jwk"))
    scripted = req.get("responses") or []
    if not isinstance(scripted, list):
        raise pc.Usage("'responses' must be a list")
    max_polls = req.get("max_polls", 60)
    if isinstance(max_polls, bool) or not isinstance(max_polls, int):
        raise pc.Usage("'max_polls' must be an integer")

    interactions, sleeps, gets = [], [], []
    remaining = list(scripted)
    exhausted = []

    def get(pending):
        headers = aauth_signing.sign_request(
            "GET", pending, {}, None, key, sig_scheme="jwt", jwt=req["jwt"]
        )
        gets.append({"url": pending, "headers": {k.lower(): v for k, v in headers.items()}})
        if not remaining:
            exhausted.append(pending)
            raise RuntimeError("no scripted response left")
        return pc.scripted_response(remaining.pop(0), "GET", pending)

    shim = types.SimpleNamespace(sleep=sleeps.append)
    saved = poller.time
    poller.time = shim
    try:
        with pc.frozen_time([aauth_signing.signer], req.get("created")):
            result = poller.poll_pending_url(
                url,
                get,
                max_polls=max_polls,
                on_interaction=lambda u, c: interactions.append([u, c]),
                initial_response=pc.scripted_response(req.get("initial"), "GET", url),
            )
    finally:
        poller.time = saved
    headers = result.response.headers if result.response is not None else {}
    return {
        "done": not exhausted,
        "interactions": interactions,
        "sleeps": sleeps,
        "gets": gets,
        "success": result.success,
        "status_code": result.status_code,
        "error": result.error,
        "error_description": result.error_description,
        "response_body": result.response_body,
        "aauth_access": headers.get("aauth-access"),
        "function": "aauth.agent.poller.poll_pending_url",
    }


def revocation_args(req):
    fields = ("endpoint", "jti", "issuer", "kid", "dwk")
    if not all(isinstance(req.get(k), str) for k in fields) or type(req.get("exp")) is not int:
        raise pc.Usage("needs string endpoint, jti, issuer, kid, dwk and integer exp")
    key = pc.load_private_key(req.get("private_jwk"))
    return (req["endpoint"], req["jti"], req["exp"], key, req["issuer"], req["kid"], req["dwk"])


def cmd_sign_revocation(req):
    """`aauth.revocation.sign_revocation_request`: the signed POST a PS/AS sends."""
    import aauth.revocation
    import aauth_signing.signer

    with pc.frozen_time([aauth_signing.signer], req.get("created")):
        headers, body = aauth.revocation.sign_revocation_request(*revocation_args(req))
    return {
        "headers": {k.lower(): v for k, v in headers.items()},
        "body": body.decode("utf-8"),
        "function": "aauth.revocation.sign_revocation_request",
    }


def cmd_revocation_outcome(req):
    """`aauth.revocation.send_revocation`'s verdict on the resource's answer `response`
    (its HTTP client answers from the input; nothing is sent)."""
    import asyncio

    import aauth.revocation

    spec = req.get("response")
    if not isinstance(spec, dict) or not isinstance(spec.get("status"), int):
        raise pc.Usage("'response' is {status, headers, body}")
    args = revocation_args(req)
    posts = []

    class Answer:
        async def post(self, url, headers=None, content=None):
            posts.append(url)
            return pc.scripted_response(spec, "POST", url)

        async def get(self, url, headers=None):
            raise RuntimeError("the resource never answers a revocation with 202")

    verdict = asyncio.run(aauth.revocation.send_revocation(*args, http_client=Answer()))
    return {"verdict": verdict, "posts": posts, "function": "aauth.revocation.send_revocation"}


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
                "sign-revocation": cmd_sign_revocation,
                "revocation-outcome": cmd_revocation_outcome,
            },
        )
    )
