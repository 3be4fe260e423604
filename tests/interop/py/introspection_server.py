"""Hosts one real, unmodified introspection-aauth 0.1.0 server (its Person Server
or its Access Server) on 127.0.0.1, for tests/interop_four_party.rs.

    introspection_server.py person|access   (config on stdin, see below)
    introspection_server.py version         (the pinned versions, as JSON)

The package is a library: it names no web framework, no store and no HTTP
client, and leaves three things to its host, which this script is:

* **Where the servers are.** AAuth identifiers are `https://host` with no port
  (the package's `is_identifier`), so every server is named by a `.test` host
  and the `httpx2` client the package is given routes each such host to its
  loopback port over plain http. A host not in the map is refused: nothing
  leaves 127.0.0.1. Requests are still verified "as their signer addressed
  them" (the package's own rule), so every signature covers `ps.test`, not a
  port.
* **The person.** `PersonServer.decide` is how a host's approval app records a
  person's answer; `POST /_host/decide` here is that app, and the test plays
  the person by calling it.
* **The Access Server's policy.** It allows every request it is asked, after
  the package has verified the Person Server's signature and all three tokens;
  with `"grant_budget"` in its configuration it grants that budget (the
  package checks it is at most what was asked).
* **Revocation.** The package has no revocation of its own (no
  `revocation_endpoint` in its metadata, nothing that POSTs one): `POST
  /_host/revoke {"url", "jti", "exp"}` is the host asking the server to revoke
  a token it issued. The body is the draft's `{"jti","exp"}`; the signature is
  the package's own server signature (`Identity.signed`, `sig=jwks_uri` with
  its `dwk`), sent with the package's client; the answer comes back as
  `{"status", "headers", "body"}`, with the headers the package signed as `signed`.

Protocol (one JSON object per line):

1. stdin: the server's configuration. Person Server: `{"issuer":
   "https://ps.test", "tenant": "acme", "agent_providers": [...]}`; Access
   Server: `{"issuer": "https://as.test", "resources": [...],
   "person_servers": [...], "agent_providers": [...]}`.
2. stdout: `{"port": N, "peer": "introspection-aauth 0.1.0"}` once the socket
   is bound (port 0: the kernel picks a free one, so nothing races for it).
3. stdin: `{"hosts": {"ps.test": N, "as.test": M, ...}}`: where each `.test`
   host listens. The servers need each other's ports, so they learn them here,
   before the first request is served.
4. stdin EOF (the test ended or died): the server exits.
"""

import asyncio
import importlib.metadata as md
import json
import socket
import sys

PINNED = "0.1.0"


def fail(message: str) -> None:
    print(json.dumps({"error": message}), flush=True)
    sys.exit(2)


try:
    installed = md.version("introspection-aauth")
except md.PackageNotFoundError:
    installed = None
if installed != PINNED:
    fail(f"introspection-aauth {installed} installed, {PINNED} pinned")

import httpx2  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from introspection_aauth.access_server import (  # noqa: E402
    AccessRequest,
    AccessServer,
    Verdict,
)
from introspection_aauth.fastapi import (  # noqa: E402
    access_server_router,
    person_server_router,
)
from introspection_aauth.person_server import (  # noqa: E402
    ApprovalStatus,
    MemoryStore,
    PersonServer,
)
from introspection_aauth.protocol import Budget, SigningKey  # noqa: E402


class LoopbackHosts(httpx2.AsyncBaseTransport):
    """`https://NAME/...` → `http://127.0.0.1:PORT/...` for the named hosts
    only; the `Host` header keeps NAME."""

    def __init__(self) -> None:
        self.ports: dict[str, int] = {}
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(
        self, request: httpx2.Request
    ) -> httpx2.Response:
        port = self.ports.get(request.url.host)
        if request.url.scheme != "https" or port is None:
            raise httpx2.ConnectError(
                f"{request.url.host} is not a loopback test host",
                request=request,
            )
        request.url = request.url.copy_with(
            scheme="http", host="127.0.0.1", port=port
        )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def person_app(config: dict, http: httpx2.AsyncClient) -> FastAPI:
    issuer = config["issuer"]
    server = PersonServer(
        issuer,
        SigningKey.generate(),
        MemoryStore(),
        subject_secret=b"interop-four-party-subject-secret",
        agent_providers=config["agent_providers"],
        http=http,
        endpoint_base=f"{issuer}/aauth",
        default_tenant=config["tenant"],
        retry_after=1,
    )
    app = FastAPI()
    app.include_router(person_server_router(server))

    @app.post("/_host/decide")
    async def decide(request: Request) -> JSONResponse:
        # The host's approval app: the person's answer, as the package takes it.
        body = await request.json()
        extra = {}
        if body.get("budget") is not None:
            # The mission's budget, as the person sets it on approving a mission.
            extra["budget"] = Budget.model_validate(body["budget"])
        decided = await server.decide(
            body["tenant"],
            body["approval_id"],
            ApprovalStatus(body["status"]),
            decided_by=body["decided_by"],
            **extra,
        )
        if decided is None:
            return JSONResponse({"error": "no such approval"}, 404)
        return JSONResponse(
            {"kind": decided.kind.value, "status": decided.status.value}
        )

    revoke_route(app, server)
    return app


def revoke_route(app: FastAPI, server) -> None:
    @app.post("/_host/revoke")
    async def revoke(request: Request) -> JSONResponse:
        asked = await request.json()
        body = json.dumps(
            {"jti": asked["jti"], "exp": asked["exp"]}, separators=(",", ":")
        ).encode()
        headers = server.identity.signed("POST", asked["url"], body, server.clock())
        answer = await server.http.post(asked["url"], headers=headers, content=body)
        return JSONResponse(
            {
                "status": answer.status_code,
                "headers": dict(answer.headers),
                "body": answer.text,
                "signed": headers,
            }
        )


def access_app(config: dict, http: httpx2.AsyncClient) -> FastAPI:
    grant = config.get("grant_budget")
    granted = None if grant is None else Budget.model_validate(grant)

    def policy(request: AccessRequest) -> Verdict:
        return Verdict.allow(budget=granted)

    server = AccessServer(
        config["issuer"],
        SigningKey.generate(),
        policy,
        resources=config["resources"],
        person_servers=config["person_servers"],
        agent_providers=config["agent_providers"],
        http=http,
        endpoint_base=f"{config['issuer']}/aauth",
        retry_after=1,
    )
    app = FastAPI()
    app.include_router(access_server_router(server))
    revoke_route(app, server)
    return app


async def main(role: str) -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin
    )

    async def line() -> dict | None:
        raw = await stdin.readline()
        return json.loads(raw) if raw.strip() else None

    config = await line()
    if config is None:
        fail("no configuration on stdin")
    transport = LoopbackHosts()
    http = httpx2.AsyncClient(transport=transport, trust_env=False)
    app = (person_app if role == "person" else access_app)(config, http)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    # Listening now: a connection made before uvicorn runs waits in the backlog.
    sock.listen(128)
    print(
        json.dumps(
            {
                "port": sock.getsockname()[1],
                "peer": f"introspection-aauth {installed}",
            }
        ),
        flush=True,
    )
    hosts = await line()
    if hosts is None:
        return
    transport.ports = {k: int(v) for k, v in hosts["hosts"].items()}

    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    # Anything more on stdin, or its end, stops the server.
    await stdin.read()
    server.should_exit = True
    await serving
    await http.aclose()


def version() -> None:
    names = ("introspection-aauth", "fastapi", "uvicorn", "httpx2", "cryptography")
    print(
        json.dumps(
            {
                "peer": f"introspection-aauth {installed}",
                "packages": {n: md.version(n) for n in names},
                "python": sys.version.split()[0],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("person", "access", "version"):
        fail("usage: introspection_server.py person|access|version")
    if sys.argv[1] == "version":
        version()
    else:
        asyncio.run(main(sys.argv[1]))
