#!/usr/bin/env python3
"""Real-peer driver for PyPI aauth 0.5.0 + aauth-signing 0.2.0 (draft -11 generation).

Run with the venv made by tests/interop/setup.sh:
    target/interop/bin/peer-v05 SUBCOMMAND < request.json
Subcommands: version, sign, parse-challenge, verify-resource-token, verify.
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
            },
        )
    )
