#!/usr/bin/env python3
"""Self-check of the real-peer drivers.

    target/interop/venv-v05/bin/python tests/interop/py/selfcheck.py [DIR]

(DIR defaults to target/interop; run tests/interop/setup.sh first.) Prints a
report and writes DIR/selfcheck.json.

For every peer x scheme x request shape it asks the peer to `sign` (fixed key,
fixed `created`), then checks the produced headers three ways:

  1. independent: an RFC 9421 signature base rebuilt here from the request
     (strict RFC rules: lowercase @authority, @query with leading "?", the
     raw Signature-Input member as @signature-params) and Ed25519-verified with
     `cryptography`; the Signature byte sequence is parsed strictly (RFC 8941
     via http_sfv) and, when that fails, leniently (base64url, unpadded);
     content-digest, when covered, is recomputed from the body;
  2. the peer's own verifier (`verify` subcommand, clock pinned to `created`);
  3. every other peer's verifier (cross matrix).

Nothing in here signs a request: the only private-key operation is minting the
two fixture JWTs (an agent token with alg Ed25519, and one with alg EdDSA)
that the jwt scheme carries.
"""

import sys

sys.dont_write_bytecode = True

import base64
import hashlib
import json
import os
import subprocess
import sys
from urllib.parse import urlsplit

import http_sfv
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))

CREATED = 1700000000
# RFC 9421 Appendix B.1.4 test key (test-key-ed25519)
KEY = {
    "kty": "OKP",
    "crv": "Ed25519",
    "x": "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs",
    "d": "n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU",
}
AGENT_JWKS = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": KEY["x"], "kid": "key-1", "alg": "Ed25519"}]}
JWKS_URI = {"id": "https://agent.test", "dwk": "aauth-agent.json", "kid": "key-1"}

# Fixture issuer key for the JWTs the jwt scheme carries (seed = 32 x 0x11).
ISSUER = Ed25519PrivateKey.from_private_bytes(b"\x11" * 32)


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64u_dec(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


ISSUER_X = b64u(ISSUER.public_key().public_bytes_raw())
ISSUER_JWKS = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ISSUER_X, "kid": "issuer-key-1", "alg": "Ed25519"}]}


def mint_jwt(alg):
    header = {"alg": alg, "typ": "aa-agent+jwt", "kid": "issuer-key-1"}
    payload = {
        "iss": "https://agent.test",
        "dwk": "aauth-agent.json",
        "sub": "aauth:agent-1@agent.test",
        "jti": "agent-token-1",
        "iat": CREATED - 10,
        "exp": 4102444800,
        "cnf": {"jwk": {"kty": "OKP", "crv": "Ed25519", "x": KEY["x"], "alg": "Ed25519"}},
    }
    enc = lambda o: b64u(json.dumps(o, separators=(",", ":")).encode())  # noqa: E731
    si = f"{enc(header)}.{enc(payload)}"
    return f"{si}.{b64u(ISSUER.sign(si.encode()))}"


JWT_ED25519 = mint_jwt("Ed25519")
JWT_EDDSA = mint_jwt("EdDSA")

SCHEMES = {
    "hwk": ({"scheme": "hwk"}, None),
    "jwks_uri": ({"scheme": "jwks_uri", "jwks_uri": JWKS_URI}, AGENT_JWKS),
    "jwt(Ed25519 token)": ({"scheme": "jwt", "jwt": JWT_ED25519}, ISSUER_JWKS),
    "jwt(EdDSA token)": ({"scheme": "jwt", "jwt": JWT_EDDSA}, ISSUER_JWKS),
}
SHAPES = {
    "GET ?x=1": {"method": "GET", "url": "https://resource.test/data?x=1", "headers": {}, "body": None},
    "GET ?x=1 +[@query]": {"method": "GET", "url": "https://resource.test/data?x=1", "headers": {},
                           "body": None, "components": ["@query"]},
    "POST body +[content-type,content-digest]": {
        "method": "POST",
        "url": "https://resource.test/data",
        "headers": {"content-type": "application/json"},
        "body": '{"hello":"world"}',
        "components": ["content-type", "content-digest"],
    },
}
PEERS = ["peer-v05", "peer-v03", "peer-js"]

RESOURCE = Ed25519PrivateKey.from_private_bytes(b"\x22" * 32)
RESOURCE_JWKS = {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "resource-key-1", "alg": "Ed25519",
                           "x": b64u(RESOURCE.public_key().public_bytes_raw())}]}
AGENT_JKT = b64u(hashlib.sha256(json.dumps(
    {"crv": "Ed25519", "kty": "OKP", "x": KEY["x"]}, separators=(",", ":"), sort_keys=True).encode()).digest())


def mint_rt(alg, claims):
    header = {"alg": alg, "typ": "aa-resource+jwt", "kid": "resource-key-1"}
    enc = lambda o: b64u(json.dumps(o, separators=(",", ":")).encode())  # noqa: E731
    si = f"{enc(header)}.{enc(claims)}"
    return f"{si}.{b64u(RESOURCE.sign(si.encode()))}"


RT_COMMON = {"iss": "https://resource.test", "dwk": "aauth-resource.json", "jti": "rt-1",
             "iat": CREATED, "exp": 4102444800, "agent_jkt": AGENT_JKT, "scope": "data.read"}
RT_11 = dict(RT_COMMON, aud="https://ps.test", ps="https://ps.test", sub="user-1", presented_jti="auth-token-1")
RT_DEMO = dict(RT_COMMON, aud="https://as.test", agent="https://agent.test")
RESOURCE_TOKENS = {
    "draft-11 claims, alg Ed25519": mint_rt("Ed25519", RT_11),
    "draft-11 claims, alg EdDSA": mint_rt("EdDSA", RT_11),
    "demo claims, alg EdDSA": mint_rt("EdDSA", RT_DEMO),
    "demo claims, alg Ed25519": mint_rt("Ed25519", RT_DEMO),
    "draft-11+demo claims, alg Ed25519": mint_rt("Ed25519", dict(RT_11, agent="https://agent.test")),
}
RT = RESOURCE_TOKENS["draft-11 claims, alg Ed25519"]
CHALLENGES = {
    "param form": {"aauth-requirement": f'requirement=auth-token; resource-token="{RT}"'},
    "param form, no space": {"aauth-requirement": f'requirement=auth-token;resource-token="{RT}"'},
    "dictionary-member form": {"aauth-requirement": f'requirement=auth-token, resource-token="{RT}"'},
    "legacy AAuth header": {"aauth": f'require=auth-token; resource-token="{RT}"; auth-server="https://as.test"'},
    "agent-token": {"aauth-requirement": "requirement=agent-token"},
    "requirement as string (invalid)": {"aauth-requirement": f'requirement="auth-token"; resource-token="{RT}"'},
}


def call(bindir, peer, sub, req):
    p = subprocess.run(
        [os.path.join(bindir, peer), sub],
        input=json.dumps(req),
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        out = json.loads(p.stdout)
    except ValueError:
        out = {"error": f"non-JSON output (rc={p.returncode}): {p.stdout!r} {p.stderr!r}"}
    out["_rc"] = p.returncode
    return out


def independent_verify(req, headers, jwks):
    """Strict RFC 9421 reconstruction. Returns dict of findings."""
    f = {}
    si_raw = headers["signature-input"]
    d = http_sfv.Dictionary()
    d.parse(si_raw.encode())
    (label, member), = d.items()
    comps = [i.value for i in member]
    sig_params = si_raw.split("=", 1)[1]  # raw member value (single-member field)
    # Signature byte sequence: strict RFC 8941, then lenient base64url.
    sig_raw = headers["signature"]
    try:
        sd = http_sfv.Dictionary()
        sd.parse(sig_raw.encode())
        sig = sd[label].value
        f["signature_alphabet"] = "standard base64 (valid RFC 8941 byte sequence)"
    except Exception:
        inner = sig_raw.split("=:", 1)[1].rstrip(":")
        sig = b64u_dec(inner)
        f["signature_alphabet"] = "base64url, no padding (NOT a valid RFC 8941 byte sequence)"
    # Signing key
    sk = headers["signature-key"]
    kd = http_sfv.Dictionary()
    kd.parse(sk.encode())
    item = kd[label]
    scheme = str(item.value)
    params = dict(item.params)
    if scheme == "hwk":
        x = params["x"]
    elif scheme == "jwks_uri":
        x = next(k["x"] for k in jwks["keys"] if k["kid"] == params["kid"])
    else:
        x = json.loads(b64u_dec(params["jwt"].split(".")[1]))["cnf"]["jwk"]["x"]
    pub = Ed25519PublicKey.from_public_bytes(b64u_dec(x))

    u = urlsplit(req["url"])
    host = u.hostname.lower() + (f":{u.port}" if u.port and u.port != 443 else "")
    lower = {k.lower(): v for k, v in headers.items()}

    def base(query_prefix):
        lines = []
        for c in comps:
            if c == "@method":
                v = req["method"].upper()
            elif c == "@authority":
                v = host
            elif c == "@path":
                v = u.path or "/"
            elif c == "@query":
                v = query_prefix + u.query
            else:
                v = lower[c].strip()
            lines.append(f'"{c}": {v}')
        lines.append(f'"@signature-params": {sig_params}')
        return "\n".join(lines).encode()

    def ok(b):
        try:
            pub.verify(sig, b)
            return True
        except Exception:
            return False

    f["strict_rfc9421"] = ok(base("?"))
    if not f["strict_rfc9421"] and "@query" in comps:
        f["query_without_question_mark"] = ok(base(""))
    if "content-digest" in comps:
        want = "sha-256=:" + base64.b64encode(hashlib.sha256(req["body"].encode()).digest()).decode() + ":"
        f["content_digest_matches_body"] = lower["content-digest"] == want
    f["covered"] = comps
    f["scheme"] = scheme
    f["signature_key_params"] = sorted(params)
    return f


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "target/interop"
    d = d if os.path.isabs(d) else os.path.join(ROOT, d)
    bindir = os.path.join(d, "bin")
    results, samples = [], {}
    for peer in PEERS:
        for sname, (sreq, jwks) in SCHEMES.items():
            for shape, base_req in SHAPES.items():
                req = dict(base_req, private_jwk=KEY, created=CREATED, **sreq)
                signed = call(bindir, peer, "sign", req)
                row = {"signer": peer, "scheme": sname, "shape": shape}
                if "headers" not in signed:
                    row["sign_error"] = signed
                    results.append(row)
                    continue
                if shape == "GET ?x=1":
                    samples.setdefault(peer, {})[sname] = {
                        "request": {k: v for k, v in req.items() if k != "private_jwk"},
                        "output": {k: v for k, v in signed.items() if not k.startswith("_")},
                    }
                row["headers"] = signed["headers"]
                row["independent"] = independent_verify(req, signed["headers"], jwks)
                vreq = {
                    "method": req["method"],
                    "url": req["url"],
                    "headers": signed["headers"],
                    "body": req["body"],
                    "jwks": jwks,
                    "now": CREATED,
                }
                row["verifiers"] = {}
                for v in PEERS:
                    r = call(bindir, v, "verify", vreq)
                    row["verifiers"][v] = {
                        "verified": r.get("verified"),
                        "error": r.get("error"),
                        "error_code": r.get("error_code"),
                    }
                results.append(row)

    challenges = {}
    for cname, hdrs in CHALLENGES.items():
        for peer in PEERS:
            r = call(bindir, peer, "parse-challenge", {"status": 401, "headers": hdrs})
            challenges.setdefault(cname, {})[peer] = {
                "requirement": r.get("requirement"),
                "resource_token": ("<RT>" if r.get("resource_token") == RT else r.get("resource_token")),
                "error": r.get("error") or r.get("unsupported"),
            }
    rts = {}
    for tname, tok in RESOURCE_TOKENS.items():
        for peer in PEERS:
            r = call(bindir, peer, "verify-resource-token",
                     {"token": tok, "jwks": RESOURCE_JWKS, "expected": {}})
            rts.setdefault(tname, {})[peer] = {
                "valid": r.get("valid"), "error": r.get("error") or r.get("unsupported"),
                "function": r.get("function"), "fetcher_calls": r.get("fetcher_calls"),
            }

    with open(os.path.join(d, "selfcheck.json"), "w") as fh:
        json.dump({"results": results, "samples": samples, "challenges": challenges,
                   "resource_tokens": rts,
                   "fixtures": {"jwt_ed25519": JWT_ED25519, "jwt_eddsa": JWT_EDDSA,
                                "issuer_jwks": ISSUER_JWKS, "agent_jwks": AGENT_JWKS}},
                  fh, indent=2, sort_keys=True)

    # Report
    print("| signer | scheme | request | strict RFC 9421 (independent) | signature alphabet | "
          + " | ".join(f"verify: {v}" for v in PEERS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(PEERS))
    fails = 0
    for r in results:
        if "sign_error" in r:
            print(f"| {r['signer']} | {r['scheme']} | {r['shape']} | SIGN FAILED: {r['sign_error'].get('error')} | | "
                  + " | " * (len(PEERS) - 1) + " |")
            fails += 1
            continue
        ind = r["independent"]
        s = "PASS" if ind["strict_rfc9421"] else "FAIL"
        if not ind["strict_rfc9421"]:
            fails += 1
            if ind.get("query_without_question_mark"):
                s += " (passes only with @query value lacking '?')"
        if "content_digest_matches_body" in ind:
            s += ", digest " + ("ok" if ind["content_digest_matches_body"] else "WRONG")
        alpha = "base64url" if ind["signature_alphabet"].startswith("base64url") else "base64"
        cells = []
        for v in PEERS:
            vr = r["verifiers"][v]
            cells.append("yes" if vr["verified"] else f"no ({(vr['error'] or '')[:70]})")
        print(f"| {r['signer']} | {r['scheme']} | {r['shape']} | {s} | {alpha} | " + " | ".join(cells) + " |")
    print("\n| challenge | " + " | ".join(PEERS) + " |")
    print("|---|" + "---|" * len(PEERS))
    for cname, per in challenges.items():
        cells = []
        for p in PEERS:
            c = per[p]
            cell = f"requirement={c['requirement']}, resource_token={'found' if c['resource_token'] == '<RT>' else c['resource_token']}"
            if c["error"]:
                cell += f" (error: {c['error'][:60]})"
            cells.append(cell)
        print(f"| {cname} | " + " | ".join(cells) + " |")
    print("\n| resource token | " + " | ".join(PEERS) + " |")
    print("|---|" + "---|" * len(PEERS))
    for tname, per in rts.items():
        cells = []
        for p in PEERS:
            c = per[p]
            if c["valid"]:
                cells.append("valid")
            elif c["valid"] is None:
                cells.append("unsupported")
            else:
                cells.append(f"invalid ({(c['error'] or '')[:70]})")
        print(f"| {tname} | " + " | ".join(cells) + " |")
    print(f"\nindependent strict-RFC failures: {fails}; details in {os.path.relpath(os.path.join(d, 'selfcheck.json'), ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
