"""Real-peer driver for PyPI `regent-httpsig` 0.7.3: its Web Bot Auth signer
(`EgressSigner.sign`) and verifier (`HttpsigVerifier.verify_detailed`).

    target/interop/bin/peer-wba-py SUBCOMMAND < request.json
    (or: target/interop/venv-wba/bin/python tests/interop/py/peer_wba.py SUBCOMMAND)

Subcommands: version, sign, verify. Contract in tests/interop/README.md ("Web Bot
Auth peers"). No signing or verification code lives here:

* `sign` is `EgressSigner(seed=…, signature_agent=…, ttl_minutes=…).sign(method,
  url, headers[, covered=…])`. The signer takes no `created`; it reads
  `datetime.now()`, so the driver pins that clock inside `regent_httpsig.sign`
  to the input's `created` (the library then signs `expires = created + ttl`).
* `verify` is `HttpsigVerifier(HttpsigConfig(insecure_hosts={host})).verify_detailed(
  method, url, headers)`: the library parses `Signature-Agent` itself and fetches
  `{origin}/.well-known/http-message-signatures-directory` with its own SSRF-guarded
  httpx client. The only host exempted from its public-address rule is the one
  named in the input's `loopback_host` (the test's 127.0.0.1 directory). `now` pins
  the clock of `http_message_signatures` (created/expires checks).
"""

import asyncio
import datetime as real_datetime
import logging
import sys
import types

from _peer_common import Usage, b64url_decode, main, version_info

PEER = "regent-httpsig 0.7.3"
EXPECTED = {"regent-httpsig": "0.7.3", "http-message-signatures": "2.0.1"}
DISTS = ["regent-httpsig", "http-message-signatures", "cryptography", "httpx"]


def _integer(req, name):
    value = req.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Usage(f"'{name}' must be an integer (unix seconds)")
    return value


def _pinned_datetime_module(now):
    """A stand-in for the `datetime` module whose `datetime.now()` is `now`."""

    class PinnedDatetime(real_datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return real_datetime.datetime.fromtimestamp(now, tz)

    shim = types.SimpleNamespace(
        **{k: getattr(real_datetime, k) for k in dir(real_datetime) if not k.startswith("_")}
    )
    shim.datetime = PinnedDatetime
    return shim, PinnedDatetime


def cmd_version(_req):
    return version_info(PEER, DISTS)


def cmd_sign(req):
    import regent_httpsig.sign as sign_module
    from regent_httpsig import EgressSigner

    url = req.get("url")
    if not isinstance(url, str):
        raise Usage("sign needs 'url'")
    jwk = req.get("private_jwk")
    if not isinstance(jwk, dict) or not isinstance(jwk.get("d"), str):
        raise Usage("sign needs 'private_jwk' with 'd' (the Ed25519 seed)")
    origin = req.get("signature_agent")
    if not isinstance(origin, str):
        raise Usage("sign needs 'signature_agent' (the directory origin)")
    created, expires = _integer(req, "created"), _integer(req, "expires")
    if (expires - created) % 60 or expires <= created:
        raise Usage("the signer takes a lifetime in whole minutes: expires - created must be a positive multiple of 60")
    headers = req.get("headers") or {}
    if not isinstance(headers, dict):
        raise Usage("'headers' must be an object")
    kwargs = {}
    covered = req.get("components")
    if covered is not None:
        if not isinstance(covered, list) or not all(isinstance(c, str) for c in covered):
            raise Usage("'components' must be a list of strings")
        kwargs["covered"] = tuple(covered)
    if len(b64url_decode(jwk["d"])) != 32:
        raise Usage("private_jwk 'd' must be a 32-byte seed")
    signer = EgressSigner(seed=jwk["d"], signature_agent=origin, ttl_minutes=(expires - created) // 60)
    shim, _ = _pinned_datetime_module(created)
    saved = sign_module.datetime
    sign_module.datetime = shim.datetime
    try:
        signed = signer.sign(req.get("method") or "GET", url, dict(headers), **kwargs)
    finally:
        sign_module.datetime = saved
    return {
        "headers": {k.lower(): v for k, v in signed.items()},
        "keyid": signer.keyid,
        "directory": signer.directory(),
        "function": "regent_httpsig.EgressSigner(seed, signature_agent, ttl_minutes).sign(method, url, headers)",
    }


def cmd_verify(req):
    import http_message_signatures.signatures as hms_signatures
    from regent_httpsig import HttpsigConfig, HttpsigVerifier, VerifiedSignature

    url = req.get("url")
    if not isinstance(url, str):
        raise Usage("verify needs 'url'")
    headers = req.get("headers")
    if not isinstance(headers, dict):
        raise Usage("verify needs 'headers'")
    loopback = req.get("loopback_host")
    if loopback not in (None, "127.0.0.1"):
        raise Usage("'loopback_host' may only be 127.0.0.1")
    config = HttpsigConfig(insecure_hosts=frozenset({loopback}) if loopback else frozenset())
    now = req.get("now")

    async def run():
        verifier = HttpsigVerifier(config)
        try:
            return await verifier.verify_detailed(req.get("method") or "GET", url, headers)
        finally:
            await verifier.aclose()

    # The verifier's reasons for a Web Bot Auth refusal go only to its logger.
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("regent_httpsig")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    saved = hms_signatures.datetime
    if now is not None:
        hms_signatures.datetime, _ = _pinned_datetime_module(_integer(req, "now"))
    try:
        result = asyncio.run(run())
    finally:
        hms_signatures.datetime = saved
        logger.removeHandler(handler)
    if isinstance(result, VerifiedSignature):
        return {
            "verified": True,
            "scheme": result.scheme,
            "agent": result.agent,
            "keyid": result.keyid,
            "label": result.label,
            "function": "regent_httpsig.HttpsigVerifier.verify_detailed",
        }
    if result is None:
        return {"verified": False, "error": "no Signature header", "log": records}
    return {"verified": False, "error": result.code, "detail": result.detail, "log": records}


if __name__ == "__main__":
    sys.exit(main(PEER, EXPECTED, {"version": cmd_version, "sign": cmd_sign, "verify": cmd_verify}))
