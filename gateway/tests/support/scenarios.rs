//! The scenarios every front (the gateway as reverse proxy, nginx with the gateway's
//! `auth_request` endpoint, an Envoy-shaped front calling `ext_authz`) must pass the same
//! way: the seed flow and the refusals. Each asserts the status, the exact
//! `Signature-Error` or requirement, and whether the upstream was reached.
#![allow(dead_code)]

use http::{Method, Request, StatusCode};
use serde_json::Value;
use tower_aauth::testing::{BotDirectory, KeySource, SignOptions};

use super::{Parties, Upstream, now, send};

/// One front in front of the echoing upstream.
pub struct Front<'a> {
    pub origin: String,
    pub upstream: &'a Upstream,
    pub parties: &'a Parties,
    /// Whether the front removes every `x-aauth-*` a client sent (the gateway and Envoy),
    /// or only replaces the identity headers' names (nginx).
    pub strips_every_prefixed: bool,
    /// Whether a `403` reaches the client with the gateway's problem body (the gateway and
    /// Envoy), or as the front's own fixed body (nginx: `"error":"forbidden"`).
    pub problem_codes: bool,
}

impl Front<'_> {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// The seed flow, then every refusal the three fronts share, in one order; `unrouted`
    /// is the status a path no route matches reaches the client with.
    pub async fn seed_flow_and_every_refusal(&self, unrouted: StatusCode) {
        let token = self.seed_flow().await;
        self.unsigned_is_challenged().await;
        self.bad_signature_is_refused().await;
        self.missing_scope_is_stepped_up(&token).await;
        self.client_identity_headers_are_replaced(&token).await;
        self.public_route_is_forwarded_without_identity().await;
        self.unrouted_path_is_refused(unrouted).await;
        self.body_over_cap_is_refused().await;
        self.body_within_cap_is_forwarded().await;
    }

    /// The seed flow (`GET /data`: challenge → token from the access server → retry);
    /// returns the auth token.
    pub async fn seed_flow(&self) -> String {
        let before = self.upstream.hits();
        let outcome = self
            .parties
            .client()
            .fetch(Method::GET, &self.url("/data"), None)
            .await
            .unwrap();
        let challenge = &outcome.transcript[0];
        assert_eq!(challenge.status, StatusCode::UNAUTHORIZED, "{challenge:?}");
        let requirement = challenge.requirement().expect("an AAuth-Requirement challenge");
        assert!(requirement.starts_with("requirement=auth-token"), "{requirement}");
        let response = &outcome.response;
        assert_eq!(response.status, StatusCode::OK, "{response:?}");
        let echoed = response.json().expect("the upstream's echo");
        let headers = &echoed["headers"];
        assert_eq!(headers["x-aauth-scope"], serde_json::json!(["data.read"]));
        assert_eq!(headers["x-aauth-scheme"], serde_json::json!(["jwt"]));
        assert_eq!(headers["x-aauth-agent"], serde_json::json!([self.parties.agent_id]));
        assert_eq!(
            headers["x-aauth-key-thumbprint"],
            serde_json::json!([self.parties.agent.thumbprint()])
        );
        assert_eq!(
            self.upstream.hits(),
            before + 1,
            "only the verified retry reached the upstream"
        );
        outcome.auth_token.expect("an auth token")
    }

    fn signed(&self, method: Method, path: &str, source: &KeySource, extra: &[(&str, &str)]) -> Request<Vec<u8>> {
        let mut builder = Request::builder().method(method).uri(self.url(path));
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(Vec::new()).unwrap();
        self.parties
            .agent
            .sign_with(&mut request, source, now(), &SignOptions::default());
        request
    }

    /// A request whose signature does not verify: `401` `error=invalid_signature`, nothing
    /// forwarded.
    pub async fn bad_signature_is_refused(&self) {
        let before = self.upstream.hits();
        let mut request = self.signed(Method::GET, "/whoami", &self.parties.source(), &[]);
        let signature = request.headers()["signature"].to_str().unwrap().to_owned();
        // Flip one base64 character inside the byte sequence.
        let at = signature.find(":").unwrap() + 5;
        let mut bytes = signature.into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        request
            .headers_mut()
            .insert("signature", http::HeaderValue::from_bytes(&bytes).unwrap());
        let (status, headers, _) = send(request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers["signature-error"], "error=invalid_signature");
        assert_eq!(self.upstream.hits(), before, "nothing reached the upstream");
    }

    /// An unsigned request to a protected route: `401` with an `agent-token` challenge.
    pub async fn unsigned_is_challenged(&self) {
        let before = self.upstream.hits();
        let request = Request::builder().uri(self.url("/whoami")).body(Vec::new()).unwrap();
        let (status, headers, _) = send(request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let requirement = headers["aauth-requirement"].to_str().unwrap();
        assert!(requirement.starts_with("requirement=agent-token"), "{requirement}");
        assert_eq!(self.upstream.hits(), before);
    }

    /// An auth token without the route's scope: the step-up challenge asking for it.
    pub async fn missing_scope_is_stepped_up(&self, token: &str) {
        let before = self.upstream.hits();
        let request = self.signed(Method::GET, "/admin/users", &KeySource::Jwt(token.to_owned()), &[]);
        let (status, headers, _) = send(request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let requirement = headers["aauth-requirement"].to_str().unwrap();
        assert!(requirement.starts_with("requirement=auth-token"), "{requirement}");
        assert!(requirement.contains("resource-token="), "{requirement}");
        assert_eq!(self.upstream.hits(), before);
    }

    /// `x-aauth-*` headers sent by the client never reach the upstream; the verified ones
    /// do.
    pub async fn client_identity_headers_are_replaced(&self, token: &str) {
        let request = self.signed(
            Method::GET,
            "/data",
            &KeySource::Jwt(token.to_owned()),
            &[
                ("x-aauth-agent", "aauth:forged@evil.example"),
                ("X-AAuth-Scope", "admin.all"),
                ("x-aauth-person", "someone-else"),
                ("x-aauth-made-up", "1"),
            ],
        );
        let (status, _, echoed) = send(request).await;
        assert_eq!(status, StatusCode::OK, "{echoed}");
        let headers = echoed["headers"].as_object().unwrap();
        assert_eq!(headers["x-aauth-agent"], serde_json::json!([self.parties.agent_id]));
        assert_eq!(headers["x-aauth-scope"], serde_json::json!(["data.read"]));
        assert_eq!(
            !headers.contains_key("x-aauth-made-up"),
            self.strips_every_prefixed,
            "{echoed}"
        );
        assert_ne!(
            headers.get("x-aauth-person"),
            Some(&serde_json::json!(["someone-else"]))
        );
    }

    /// A public route is forwarded unsigned, with no identity headers at all.
    pub async fn public_route_is_forwarded_without_identity(&self) {
        let request = Request::builder()
            .uri(self.url("/public/page"))
            .header("x-aauth-agent", "aauth:forged@evil.example")
            .body(Vec::new())
            .unwrap();
        let (status, _, echoed) = send(request).await;
        assert_eq!(status, StatusCode::OK, "{echoed}");
        let headers = echoed["headers"].as_object().unwrap();
        assert!(headers.keys().all(|name| !name.starts_with("x-aauth-")), "{echoed}");
    }

    /// A path no route matches is refused, signed or not.
    pub async fn unrouted_path_is_refused(&self, expected: StatusCode) {
        let before = self.upstream.hits();
        let request = self.signed(Method::GET, "/elsewhere", &self.parties.source(), &[]);
        let (status, _, _) = send(request).await;
        assert_eq!(status, expected);
        assert_eq!(self.upstream.hits(), before);
    }

    /// A body over the cap (1 KiB) is refused with `413` and not forwarded.
    pub async fn body_over_cap_is_refused(&self) {
        let before = self.upstream.hits();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.url("/upload"))
            .body(vec![b'x'; 2000])
            .unwrap();
        self.parties
            .agent
            .sign_with(&mut request, &self.parties.source(), now(), &SignOptions::default());
        let (status, _, _) = send(request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(self.upstream.hits(), before);
    }

    /// A body within the cap, not covered by the signature, is forwarded intact.
    pub async fn body_within_cap_is_forwarded(&self) {
        let mut request = Request::builder()
            .method(Method::PUT)
            .uri(self.url("/upload"))
            .body(vec![b'y'; 1000])
            .unwrap();
        self.parties
            .agent
            .sign_with(&mut request, &self.parties.source(), now(), &SignOptions::default());
        let (status, _, echoed) = send(request).await;
        assert_eq!(status, StatusCode::OK, "{echoed}");
        assert_eq!(echoed["body"], Value::String("y".repeat(1000)));
        assert_eq!(echoed["method"], "PUT");
    }

    /// A `GET` of `path` signed by `directory`'s bot, with `extra` headers.
    fn bot_signed(&self, path: &str, directory: &BotDirectory, extra: &[(&str, &str)]) -> Request<Vec<u8>> {
        let mut builder = Request::builder().uri(self.url(path));
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(Vec::new()).unwrap();
        directory.signer().sign(&mut request, now());
        request
    }

    /// Asserts a `403` refusal with problem code `code` (as the front shows it) that did
    /// not reach the upstream.
    fn assert_forbidden(&self, status: StatusCode, body: &Value, code: &str, before: usize) {
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let shown = if self.problem_codes { code } else { "forbidden" };
        assert_eq!(body["error"], shown, "{body}");
        assert_eq!(self.upstream.hits(), before, "nothing reached the upstream");
    }

    /// A verified bot on a bot route reaches the upstream with the bot's identity
    /// (`web-bot-auth`, its directory origin and key thumbprint) and no agent, person or
    /// scope header, whatever `x-aauth-*` headers it sent itself.
    pub async fn bot_is_forwarded_with_its_identity_only(&self, directory: &BotDirectory) {
        let before = self.upstream.hits();
        let request = self.bot_signed(
            "/bots/crawl",
            directory,
            &[
                ("x-aauth-bot-origin", "https://bots.example"),
                ("x-aauth-bot-thumbprint", "forged"),
                ("x-aauth-agent", "aauth:forged@evil.example"),
                ("x-aauth-scope", "admin.all"),
                ("x-aauth-key-thumbprint", "forged"),
            ],
        );
        let (status, _, echoed) = send(request).await;
        assert_eq!(status, StatusCode::OK, "{echoed}");
        let headers = echoed["headers"].as_object().unwrap();
        let mut names: Vec<&str> = headers
            .keys()
            .map(String::as_str)
            .filter(|n| n.starts_with("x-aauth-"))
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["x-aauth-bot-origin", "x-aauth-bot-thumbprint", "x-aauth-scheme"],
            "{echoed}"
        );
        assert_eq!(headers["x-aauth-scheme"], serde_json::json!(["web-bot-auth"]));
        assert_eq!(headers["x-aauth-bot-origin"], serde_json::json!([directory.origin()]));
        assert_eq!(
            headers["x-aauth-bot-thumbprint"],
            serde_json::json!([directory.signer().thumbprint()])
        );
        assert_eq!(self.upstream.hits(), before + 1);
    }

    /// A verified bot is never an agent: on a route needing a signature it gets the
    /// unsigned request's `agent-token` challenge and nothing is forwarded.
    pub async fn bot_on_an_agent_route_is_challenged(&self, directory: &BotDirectory) {
        let before = self.upstream.hits();
        let (status, headers, _) = send(self.bot_signed("/whoami", directory, &[])).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let requirement = headers["aauth-requirement"].to_str().unwrap();
        assert!(requirement.starts_with("requirement=agent-token"), "{requirement}");
        assert!(headers.get("signature-error").is_none(), "{headers:?}");
        assert_eq!(self.upstream.hits(), before);
    }

    /// An AAuth agent, and an unsigned request, on a bot route: `403 bot_required`.
    pub async fn agent_and_unsigned_on_a_bot_route_are_refused(&self) {
        let before = self.upstream.hits();
        let agent = self.signed(Method::GET, "/bots/crawl", &self.parties.source(), &[]);
        let unsigned = Request::builder()
            .uri(self.url("/bots/crawl"))
            .body(Vec::new())
            .unwrap();
        for request in [agent, unsigned] {
            let (status, headers, body) = send(request).await;
            self.assert_forbidden(status, &body, "bot_required", before);
            if self.problem_codes {
                let accept = headers["accept-signature"].to_str().unwrap();
                assert!(accept.contains("web-bot-auth"), "{accept}");
            }
        }
    }

    /// A verified bot whose directory is not on the route's list: `403 bot_not_admitted`.
    pub async fn bot_from_an_unlisted_origin_is_refused(&self, directory: &BotDirectory) {
        let before = self.upstream.hits();
        let (status, _, body) = send(self.bot_signed("/partners/feed", directory, &[])).await;
        self.assert_forbidden(status, &body, "bot_not_admitted", before);
    }

    /// Every bot scenario above, with one directory.
    pub async fn bot_scenarios(&self, directory: &BotDirectory) {
        self.bot_is_forwarded_with_its_identity_only(directory).await;
        self.bot_on_an_agent_route_is_challenged(directory).await;
        self.agent_and_unsigned_on_a_bot_route_are_refused().await;
        self.bot_from_an_unlisted_origin_is_refused(directory).await;
    }
}
