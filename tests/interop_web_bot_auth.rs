//! Interop with the real Web Bot Auth implementations: Cloudflare's Rust crate
//! `web-bot-auth` 0.7.0 (in process), npm `web-bot-auth` 0.1.3 (over `http-message-sig`
//! 0.2.0) and PyPI `regent-httpsig` 0.7.3.
//!
//! What each signer puts on the wire is pinned first (the facts of
//! `tests/interop/README.md`, "Web Bot Auth peers"). Then, against our layer with Web Bot
//! Auth enabled and a test-kit `BotDirectory` on loopback (admitted by
//! `dangerous().allow_http_loopback()`): each peer's signature is served as a
//! `VerifiedBot` naming the directory's origin and the key's thumbprint (computed by the
//! crate, not by us); tampered, expired, wrong-origin and unknown-key variants are refused
//! with the exact code before the handler runs. And the other direction: what the test
//! kit's `BotSigner` signs is verified by each peer's verifier, and refused tampered.
//!
//! Needs `bash tests/interop/setup.sh` for the npm and PyPI peers (without it their tests
//! are reported ignored, and fail under `CI=true`: see `build.rs`); the Rust crate is a
//! dev-dependency.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use support::bot_peers::{
    AGENT_MEMBER, AgentForm, BOT_SEED, BotKey, LIFETIME, Peer, STRANGER_SEED, copy, crate_components, crate_sign,
    crate_verify, js_sign, js_verify, py_sign, py_verify, request_from,
};
use support::harness::body_json;
use support::peers::{signed_request, with_flipped_signature};
use tower::ServiceExt;
use tower_aauth::bot::{VerifiedBot, WebBotAuthOptions};
use tower_aauth::testing::{BotDirectory, BotSignOptions, BotSigner, DirectoryFault, ManualClock};
use tower_aauth::{AAuth, VerifiedRequest};

const BOT: BotKey = BotKey::new(BOT_SEED);
/// A directory origin for the tests that only read what a signer sends (nothing fetches it).
const ORIGIN: &str = "http://127.0.0.1:9";
const URL: &str = "https://resource.example/data?x=1";
const CREATED: u64 = 1_730_217_600;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn header(request: &Request<Body>, name: &str) -> String {
    request.headers()[name].to_str().expect("ASCII").to_owned()
}

/// `;name=<integer>` of a `Signature-Input` value.
fn integer_param(input: &str, name: &str) -> u64 {
    let start = input
        .find(&format!(";{name}="))
        .unwrap_or_else(|| panic!("{name} in {input}"))
        + name.len()
        + 2;
    let digits: String = input[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("an integer")
}

#[cfg_attr(
    skip_peer_wba_js,
    ignore = "interop peer peer-wba-js (npm web-bot-auth 0.1.3) not installed: bash tests/interop/setup.sh"
)]
#[test]
fn npm_web_bot_auth_0_1_3_covers_authority_and_the_whole_signature_agent_with_a_nonce() {
    let js = Peer::WbaJs.launcher_path();
    let signed = js_sign(
        &js,
        &BOT,
        URL,
        Some(&AgentForm::Dictionary.field(ORIGIN)),
        CREATED,
        None,
    );
    let request = request_from(URL, &signed);
    let input = header(&request, "signature-input");
    let prefix = format!(
        r#"sig1=("@authority" "signature-agent");created={CREATED};keyid="{}";alg="ed25519";expires={};nonce=""#,
        BOT.thumbprint(),
        CREATED + LIFETIME
    );
    assert!(input.starts_with(&prefix), "{input}");
    // 64 random bytes in standard base64 (88 characters with padding), then the tag.
    let nonce = &input[prefix.len()..input.len() - r#"";tag="web-bot-auth""#.len()];
    assert_eq!(nonce.len(), 88, "{input}");
    assert!(input.ends_with(r#"";tag="web-bot-auth""#), "{input}");
    // The library takes Signature-Agent as given and covers it whole, without `;key=`.
    assert_eq!(
        header(&request, "signature-agent"),
        format!(r#"{AGENT_MEMBER}="{ORIGIN}""#)
    );
    assert!(header(&request, "signature").starts_with("sig1=:"));
}

#[cfg_attr(
    skip_peer_wba_py,
    ignore = "interop peer peer-wba-py (PyPI regent-httpsig 0.7.3) not installed: bash tests/interop/setup.sh"
)]
#[test]
fn regent_httpsig_0_7_3_sends_the_legacy_bare_string_and_no_nonce() {
    let py = Peer::WbaPy.launcher_path();
    let signed = py_sign(&py, "GET", &BOT, URL, ORIGIN, CREATED);
    let request = request_from(URL, &signed);
    assert_eq!(header(&request, "signature-agent"), format!(r#""{ORIGIN}""#));
    assert_eq!(
        header(&request, "signature-input"),
        format!(
            r#"sig1=("@method" "@authority" "@path" "signature-agent");created={CREATED};keyid="{}";alg="ed25519";expires={};tag="web-bot-auth""#,
            BOT.thumbprint(),
            CREATED + LIFETIME
        )
    );
    // The directory it tells its operator to publish: the key under its thumbprint, `alg` EdDSA.
    let key = &signed["directory"]["keys"][0];
    assert_eq!(key["kid"], BOT.thumbprint().as_str());
    assert_eq!(key["x"], BOT.x().as_str());
    assert_eq!(key["alg"], "EdDSA");
}

#[test]
fn the_web_bot_auth_crate_0_7_0_signs_with_the_clock_it_reads_and_the_nonce_it_is_given() {
    let mut request = Request::get(URL)
        .header("signature-agent", AgentForm::Dictionary.field(ORIGIN))
        .body(Body::empty())
        .unwrap();
    let before = unix_now();
    crate_sign(
        &mut request,
        &BOT,
        crate_components(Some(AGENT_MEMBER)),
        "nonce-1",
        Duration::from_secs(LIFETIME),
    );
    let input = header(&request, "signature-input");
    let created = integer_param(&input, "created");
    assert!(
        (before..=unix_now()).contains(&created),
        "created is the system clock: {input}"
    );
    assert_eq!(
        input,
        format!(
            r#"sig1=("@authority" "signature-agent";key="{AGENT_MEMBER}");keyid="{}";nonce="nonce-1";tag="web-bot-auth";alg="ed25519";created={created};expires={}"#,
            BOT.thumbprint(),
            created + LIFETIME
        )
    );
}

// --- the world: our layer with Web Bot Auth on, a loopback key directory --------------

/// The resource's URL every signer signs (its authority is the resource's own).
const TARGET: &str = "https://resource.example/data";
/// A URL of another resource.
const ELSEWHERE: &str = "https://other.example/data";
const STRANGER: BotKey = BotKey::new(STRANGER_SEED);
/// The problem detail of a signature that does not verify over the rebuilt base.
const DOES_NOT_VERIFY: &str = "the signature does not verify";

/// Our layer (Web Bot Auth on, loopback directories admitted) in front of a handler that
/// counts its calls and reports the principal it was handed; the bot's directory; another
/// directory on loopback (holding the stranger's key); one clock for all three, at the
/// system time (the crate signs with the system clock).
struct World {
    now: u64,
    clock: ManualClock,
    directory: BotDirectory,
    other: BotDirectory,
    aauth: AAuth,
    calls: Arc<AtomicUsize>,
}

impl World {
    async fn new() -> World {
        World::with(WebBotAuthOptions::new()).await
    }

    /// A world whose layer verifies Web Bot Auth with `options`.
    async fn with(options: WebBotAuthOptions) -> World {
        let now = unix_now();
        let clock = ManualClock::new(now);
        let directory = BotDirectory::spawn_with_clock(BOT_SEED, Arc::new(clock.clone()))
            .await
            .expect("a loopback directory");
        let other = BotDirectory::spawn_with_clock(STRANGER_SEED, Arc::new(clock.clone()))
            .await
            .expect("a loopback directory");
        let aauth = AAuth::builder("https://resource.example")
            .clock(clock.clone())
            .web_bot_auth(options)
            .dangerous()
            .allow_http_loopback()
            .build()
            .expect("valid configuration");
        World {
            now,
            clock,
            directory,
            other,
            aauth,
            calls: Arc::default(),
        }
    }

    fn router(&self) -> Router {
        let calls = self.calls.clone();
        Router::new()
            .fallback(any(move |request: Request<Body>| {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let bot = request
                        .extensions()
                        .get::<VerifiedBot>()
                        .map(|bot| json!({ "origin": bot.directory_origin(), "thumbprint": bot.thumbprint() }));
                    let agent = request.extensions().get::<VerifiedRequest>().is_some();
                    axum::Json(json!({ "bot": bot, "agent": agent }))
                }
            }))
            .layer(self.aauth.layer())
    }

    async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.router().oneshot(request).await.expect("infallible")
    }

    /// `request` is served as a bot of this world's directory with the bot's key, never as
    /// an agent.
    async fn assert_bot(&self, request: Request<Body>) {
        self.assert_bot_case("", request).await;
    }

    /// [`World::assert_bot`] for the table row `case`, which every failure message names.
    async fn assert_bot_case(&self, case: &str, request: Request<Body>) {
        let response = self.send(request).await;
        let status = response.status();
        let headers = format!("{:?}", response.headers());
        let body = body_json(response).await;
        assert_eq!(status, StatusCode::OK, "{case}: {headers} {body}");
        assert_eq!(self.calls.load(Ordering::SeqCst), 1, "{case}: the handler ran once");
        assert_eq!(body["bot"]["origin"], self.directory.origin(), "{case}: {body}");
        assert_eq!(body["bot"]["thumbprint"], BOT.thumbprint().as_str(), "{case}: {body}");
        assert_eq!(body["agent"], false, "{case}: a bot is never an agent");
    }

    /// `request` is refused `401` with exactly one `Signature-Error: error=<code>` and a
    /// problem body whose fixed `detail` names the check that refused, and the handler did
    /// not run.
    async fn assert_refused(&self, case: &str, request: Request<Body>, code: &str, detail: &str) {
        let response = self.send(request).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        let errors: Vec<_> = response.headers().get_all("signature-error").iter().collect();
        assert_eq!(errors.len(), 1, "{case}: exactly one Signature-Error");
        assert_eq!(errors[0].to_str().unwrap(), format!("error={code}"), "{case}");
        assert_eq!(self.calls.load(Ordering::SeqCst), 0, "{case}: the handler must not run");
        let body = body_json(response).await;
        assert_eq!(body["error"], code, "{case}");
        assert_eq!(body["detail"], detail, "{case}: refused by the wrong check");
    }

    /// The bot's directory's keys, as a verifier given them would hold them.
    fn keys(&self) -> Value {
        json!([BOT.public_jwk()])
    }

    /// The directory document the bot's directory serves, fetched over loopback.
    async fn directory_document(&self) -> Value {
        reqwest::get(format!(
            "{}/.well-known/http-message-signatures-directory",
            self.directory.origin()
        ))
        .await
        .expect("the loopback directory answers")
        .bytes()
        .await
        .map(|body| serde_json::from_slice(&body).expect("a JSON directory"))
        .expect("the directory's body")
    }
}

/// The request with its URI replaced (every header kept).
fn sent_to(request: Request<Body>, uri: &str) -> Request<Body> {
    let (mut parts, body) = request.into_parts();
    parts.uri = uri.parse().expect("a valid URI");
    Request::from_parts(parts, body)
}

/// The request with its `Signature-Agent` replaced.
fn with_agent(mut request: Request<Body>, field: &str) -> Request<Body> {
    request
        .headers_mut()
        .insert("signature-agent", field.parse().expect("a header value"));
    request
}

/// A nonce the crate's signer is given: unique per request.
fn fresh_nonce() -> String {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    format!("crate-nonce-{}-{}", unix_now(), COUNT.fetch_add(1, Ordering::SeqCst))
}

/// One of the three real signers, as configured to send what our layer accepts.
#[derive(Debug, Clone, Copy)]
enum Signer {
    /// The `web-bot-auth` crate with `Signature-Agent` in this form.
    Crate(AgentForm),
    /// npm `web-bot-auth` with the legacy bare String (its Dictionary form: see
    /// `npm_web_bot_auth_dictionary_covered_whole_is_refused_since_the_draft_covers_the_member`
    /// and `npm_web_bot_auth_member_coverage_signs_the_whole_field_and_is_refused`).
    Js,
    /// regent-httpsig (which only sends the legacy bare String).
    Py,
}

impl Signer {
    /// `GET url` signed with `key`, naming the directory at `origin`, created at `created`
    /// (the crate: at the system time).
    fn sign(self, key: &BotKey, url: &str, origin: &str, created: u64) -> Request<Body> {
        match self {
            Signer::Crate(form) => {
                let mut request = Request::get(url)
                    .header("signature-agent", form.field(origin))
                    .body(Body::empty())
                    .unwrap();
                let member = (form == AgentForm::Dictionary).then_some(AGENT_MEMBER);
                crate_sign(
                    &mut request,
                    key,
                    crate_components(member),
                    &fresh_nonce(),
                    Duration::from_secs(LIFETIME),
                );
                request
            }
            Signer::Js => {
                let js = Peer::WbaJs.launcher_path();
                let signed = js_sign(&js, key, url, Some(&AgentForm::Legacy.field(origin)), created, None);
                request_from(url, &signed)
            }
            Signer::Py => request_from(
                url,
                &py_sign(&Peer::WbaPy.launcher_path(), "GET", key, url, origin, created),
            ),
        }
    }
}

/// A request signed by `signer` with the bot's key for this world's directory is served
/// as that bot.
async fn accepted(signer: Signer) {
    let world = World::new().await;
    let request = signer.sign(&BOT, TARGET, world.directory.origin(), world.now);
    world.assert_bot(request).await;
}

/// Tampered, expired, wrong-origin and unknown-key variants of `signer`'s requests are
/// refused with the exact code before the handler runs.
async fn variants_refused(signer: Signer) {
    const NO_KEY: &str = "the bot's directory publishes no key with that thumbprint";
    let cases: [(&str, &str, &str); 6] = [
        ("signature bytes changed", "invalid_signature", DOES_NOT_VERIFY),
        ("signed for another resource", "invalid_signature", DOES_NOT_VERIFY),
        (
            "presented after it expired",
            "invalid_signature",
            "the signature has expired",
        ),
        ("naming a directory that does not hold the key", "unknown_key", NO_KEY),
        (
            "Signature-Agent swapped for a directory listing the key it cannot sign for",
            "unknown_key",
            NO_KEY,
        ),
        ("signed with a key the directory does not hold", "unknown_key", NO_KEY),
    ];
    for (case, code, detail) in cases {
        let world = World::new().await;
        let origin = world.directory.origin().to_owned();
        let request = match case {
            "signature bytes changed" => with_flipped_signature(signer.sign(&BOT, TARGET, &origin, world.now)),
            "signed for another resource" => sent_to(signer.sign(&BOT, ELSEWHERE, &origin, world.now), TARGET),
            "presented after it expired" => {
                let request = signer.sign(&BOT, TARGET, &origin, world.now);
                // A second after its `expires` (the crate's `created` is its own reading of
                // the clock, so `expires` is read back rather than computed).
                world
                    .clock
                    .set(integer_param(&header(&request, "signature-input"), "expires") + 1);
                request
            }
            "naming a directory that does not hold the key" => {
                signer.sign(&BOT, TARGET, world.other.origin(), world.now)
            }
            "Signature-Agent swapped for a directory listing the key it cannot sign for" => {
                world
                    .other
                    .list_foreign_key(BotSigner::new(BOT_SEED, origin.clone()).public_jwk());
                let request = signer.sign(&BOT, TARGET, &origin, world.now);
                let form = if request.headers()["signature-agent"].to_str().unwrap().starts_with('"') {
                    AgentForm::Legacy
                } else {
                    AgentForm::Dictionary
                };
                with_agent(request, &form.field(world.other.origin()))
            }
            "signed with a key the directory does not hold" => signer.sign(&STRANGER, TARGET, &origin, world.now),
            _ => unreachable!("{case}"),
        };
        world
            .assert_refused(&format!("{signer:?}: {case}"), request, code, detail)
            .await;
    }
}

#[tokio::test]
async fn web_bot_auth_crate_signature_over_the_dictionary_member_is_accepted_as_a_bot() {
    accepted(Signer::Crate(AgentForm::Dictionary)).await;
}

#[tokio::test]
async fn web_bot_auth_crate_signature_over_the_legacy_string_is_accepted_as_a_bot() {
    accepted(Signer::Crate(AgentForm::Legacy)).await;
}

#[tokio::test]
async fn web_bot_auth_crate_signatures_in_other_shapes_the_draft_allows_are_accepted_as_a_bot() {
    use web_bot_auth::components::{CoveredComponent, DerivedComponent};
    let derived = |component| CoveredComponent::Derived(component);
    let cases: [(&str, &str, Vec<CoveredComponent>); 4] = [
        (
            "the member keyed to the signature label, as the draft's example",
            r#"sig1="{origin}""#,
            crate_components(Some("sig1")),
        ),
        (
            "another member before the covered one",
            r#"agent0="https://elsewhere.example", agent1="{origin}""#,
            crate_components(Some(AGENT_MEMBER)),
        ),
        (
            "@target-uri in place of @authority",
            r#"agent1="{origin}""#,
            vec![
                derived(DerivedComponent::TargetUri { req: false }),
                crate_components(Some(AGENT_MEMBER)).remove(1),
            ],
        ),
        (
            "@method, @path and @query covered too",
            r#"agent1="{origin}""#,
            [
                crate_components(Some(AGENT_MEMBER)),
                vec![
                    derived(DerivedComponent::Method { req: false }),
                    derived(DerivedComponent::Path { req: false }),
                    derived(DerivedComponent::Query { req: false }),
                ],
            ]
            .concat(),
        ),
    ];
    for (case, field, cover) in cases {
        let world = World::new().await;
        let mut request = Request::get(format!("{TARGET}?page=2"))
            .header("signature-agent", field.replace("{origin}", world.directory.origin()))
            .body(Body::empty())
            .unwrap();
        crate_sign(&mut request, &BOT, cover, &fresh_nonce(), Duration::from_secs(LIFETIME));
        world.assert_bot_case(case, request).await;
    }
}

#[tokio::test]
async fn web_bot_auth_crate_tampered_expired_wrong_origin_and_unknown_key_variants_are_refused() {
    variants_refused(Signer::Crate(AgentForm::Dictionary)).await;
}

#[cfg_attr(
    skip_peer_wba_js,
    ignore = "interop peer peer-wba-js (npm web-bot-auth 0.1.3) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn npm_web_bot_auth_signature_over_the_legacy_string_is_accepted_as_a_bot() {
    accepted(Signer::Js).await;
}

#[cfg_attr(
    skip_peer_wba_js,
    ignore = "interop peer peer-wba-js (npm web-bot-auth 0.1.3) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn npm_web_bot_auth_tampered_expired_wrong_origin_and_unknown_key_variants_are_refused() {
    variants_refused(Signer::Js).await;
}

#[cfg_attr(
    skip_peer_wba_py,
    ignore = "interop peer peer-wba-py (PyPI regent-httpsig 0.7.3) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn regent_httpsig_signature_is_accepted_as_a_bot() {
    accepted(Signer::Py).await;
}

#[cfg_attr(
    skip_peer_wba_py,
    ignore = "interop peer peer-wba-py (PyPI regent-httpsig 0.7.3) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn regent_httpsig_tampered_expired_wrong_origin_and_unknown_key_variants_are_refused() {
    variants_refused(Signer::Py).await;
}

// --- reuse: the peers' nonces, or the signature itself, in the replay store -------------

/// `request` is served once; the same request again is `429 signature_reused` and the
/// handler does not run a second time.
async fn served_once(world: &World, request: Request<Body>) {
    let again = copy(&request);
    world.assert_bot(request).await;
    let response = world.send(again).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(body_json(response).await["error"], "signature_reused");
    assert_eq!(world.calls.load(Ordering::SeqCst), 1, "the handler ran once");
}

#[tokio::test]
async fn web_bot_auth_crate_request_presented_twice_is_refused_as_reused() {
    let world = World::new().await;
    let request = Signer::Crate(AgentForm::Dictionary).sign(&BOT, TARGET, world.directory.origin(), world.now);
    served_once(&world, request).await;
}

#[cfg_attr(
    skip_peer_wba_js,
    ignore = "interop peer peer-wba-js (npm web-bot-auth 0.1.3) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn npm_web_bot_auth_request_presented_twice_is_refused_as_reused_by_its_nonce() {
    let world = World::new().await;
    let request = Signer::Js.sign(&BOT, TARGET, world.directory.origin(), world.now);
    assert!(header(&request, "signature-input").contains(";nonce="));
    served_once(&world, request).await;
}

#[cfg_attr(
    skip_peer_wba_py,
    ignore = "interop peer peer-wba-py (PyPI regent-httpsig 0.7.3) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn regent_httpsig_post_presented_twice_is_refused_as_reused_without_a_nonce() {
    // regent-httpsig sends no nonce: on a replay-checked method the signature itself is
    // remembered.
    let world = World::new().await;
    let py = Peer::WbaPy.launcher_path();
    let signed = py_sign(&py, "POST", &BOT, TARGET, world.directory.origin(), world.now);
    let request = signed_request("POST", TARGET, &signed["headers"], None);
    assert!(!header(&request, "signature-input").contains(";nonce="));
    served_once(&world, request).await;
}

#[cfg_attr(
    skip_peer_wba_py,
    ignore = "interop peer peer-wba-py (PyPI regent-httpsig 0.7.3) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn a_resource_requiring_nonces_refuses_regent_httpsig_and_serves_the_crate_with_its_nonce() {
    let world = World::with(WebBotAuthOptions::new().require_nonce(true)).await;
    let request = Signer::Py.sign(&BOT, TARGET, world.directory.origin(), world.now);
    world
        .assert_refused(
            "regent-httpsig, no nonce",
            request,
            "invalid_signature",
            "the signature has no nonce",
        )
        .await;
    let world = World::with(WebBotAuthOptions::new().require_nonce(true)).await;
    let request = Signer::Crate(AgentForm::Dictionary).sign(&BOT, TARGET, world.directory.origin(), world.now);
    world.assert_bot(request).await;
}

// --- npm web-bot-auth and the Dictionary form -----------------------------------------

#[cfg_attr(
    skip_peer_wba_js,
    ignore = "interop peer peer-wba-js (npm web-bot-auth 0.1.3) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn npm_web_bot_auth_dictionary_covered_whole_is_refused_since_the_draft_covers_the_member() {
    // Given a Dictionary `Signature-Agent`, the library covers the whole field
    // (`"signature-agent"`, no `;key=`); the draft signs "its member keyed to the signature
    // label". The whole field is then read as the legacy bare String, which it is not.
    let world = World::new().await;
    let js = Peer::WbaJs.launcher_path();
    let field = AgentForm::Dictionary.field(world.directory.origin());
    let request = request_from(TARGET, &js_sign(&js, &BOT, TARGET, Some(&field), world.now, None));
    assert!(header(&request, "signature-input").starts_with(r#"sig1=("@authority" "signature-agent");"#));
    world
        .assert_refused(
            "dictionary covered whole",
            request,
            "invalid_signature",
            "the Signature-Agent member is not a String",
        )
        .await;
}

#[cfg_attr(
    skip_peer_wba_js,
    ignore = "interop peer peer-wba-js (npm web-bot-auth 0.1.3) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn npm_web_bot_auth_member_coverage_signs_the_whole_field_and_is_refused() {
    // Asked to cover `"signature-agent";key="agent1"`, http-message-sig 0.2.0 writes the
    // parameter but signs the whole field value, where RFC 9421 §2.1.2 signs the member.
    let world = World::new().await;
    let js = Peer::WbaJs.launcher_path();
    let field = AgentForm::Dictionary.field(world.directory.origin());
    let components = json!(["@authority", { "name": "signature-agent", "key": AGENT_MEMBER }]);
    let signed = js_sign(&js, &BOT, TARGET, Some(&field), world.now, Some(components));
    let request = request_from(TARGET, &signed);
    assert!(header(&request, "signature-input").starts_with(&format!(
        r#"sig1=("@authority" "signature-agent";key="{AGENT_MEMBER}");"#
    )));
    world
        .assert_refused(
            "member covered, field signed",
            request,
            "invalid_signature",
            DOES_NOT_VERIFY,
        )
        .await;
    // The crate, handed the member as RFC 9421 defines it, cannot verify it either.
    let verdict = crate_verify(&request_from(TARGET, &signed), &json!({ "keys": world.keys() }));
    assert!(verdict.verified.is_err(), "{verdict:?}");
}

// --- the other direction: what our BotSigner signs, verified by the peers --------------

/// The test kit's signer for this world's directory, in `form`.
fn bot_signer(world: &World, form: AgentForm) -> BotSigner {
    let signer = world.directory.signer();
    match form {
        AgentForm::Dictionary => signer,
        AgentForm::Legacy => signer.legacy_agent_form(),
    }
}

fn bot_signed(world: &World, form: AgentForm) -> Request<Body> {
    let mut request = Request::get(TARGET).body(Body::empty()).unwrap();
    bot_signer(world, form).sign(&mut request, world.now);
    request
}

#[tokio::test]
async fn the_web_bot_auth_crate_verifies_bot_signer_requests_in_both_forms() {
    let world = World::new().await;
    let directory = world.directory_document().await;
    for form in [AgentForm::Dictionary, AgentForm::Legacy] {
        let verdict = crate_verify(&bot_signed(&world, form), &directory);
        assert_eq!(verdict.agents, [world.directory.origin()], "{form:?}");
        assert_eq!(verdict.keyid.as_deref(), Some(BOT.thumbprint().as_str()), "{form:?}");
        assert_eq!(verdict.expired, Some(false), "{form:?}");
        assert!(verdict.verified.is_ok(), "{form:?}: {verdict:?}");
    }
}

#[tokio::test]
async fn the_web_bot_auth_crate_0_7_0_verifies_an_expired_signature_and_only_advises_its_expiry() {
    // 0.7.0's `verify` checks the signature alone; expiry is `possibly_insecure`'s advice,
    // which an application must act on itself.
    let world = World::new().await;
    let directory = world.directory_document().await;
    let mut request = Request::get(TARGET).body(Body::empty()).unwrap();
    bot_signer(&world, AgentForm::Dictionary).sign(&mut request, world.now - 2 * LIFETIME);
    let verdict = crate_verify(&request, &directory);
    assert_eq!(verdict.expired, Some(true), "{verdict:?}");
    assert!(verdict.verified.is_ok(), "{verdict:?}");
}

#[tokio::test]
async fn the_web_bot_auth_crate_refuses_a_tampered_bot_signer_request() {
    let world = World::new().await;
    let directory = world.directory_document().await;
    let verdict = crate_verify(
        &with_flipped_signature(bot_signed(&world, AgentForm::Dictionary)),
        &directory,
    );
    assert!(verdict.verified.is_err(), "{verdict:?}");
}

#[cfg_attr(
    skip_peer_wba_js,
    ignore = "interop peer peer-wba-js (npm web-bot-auth 0.1.3) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn npm_web_bot_auth_verifies_bot_signer_requests_in_the_legacy_form_and_refuses_them_tampered() {
    let world = World::new().await;
    let js = Peer::WbaJs.launcher_path();
    let request = bot_signed(&world, AgentForm::Legacy);
    let verdict = js_verify(&js, &request, world.keys(), world.now);
    assert_eq!(verdict["verified"], true, "{verdict}");
    assert_eq!(verdict["keyid"], BOT.thumbprint().as_str());
    let verdict = js_verify(&js, &with_flipped_signature(request), world.keys(), world.now);
    assert_eq!(verdict["verified"], false, "{verdict}");
}

#[cfg_attr(
    skip_peer_wba_js,
    ignore = "interop peer peer-wba-js (npm web-bot-auth 0.1.3) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn npm_web_bot_auth_refuses_bot_signer_dictionary_member_coverage_it_cannot_rebuild() {
    // The library rebuilds `"signature-agent";key="agent1"` from the whole field (see
    // `npm_web_bot_auth_member_coverage_signs_the_whole_field_and_is_refused`), so the
    // draft's form fails its verification; regent-httpsig and the crate verify it.
    let world = World::new().await;
    let js = Peer::WbaJs.launcher_path();
    let verdict = js_verify(&js, &bot_signed(&world, AgentForm::Dictionary), world.keys(), world.now);
    assert_eq!(verdict["verified"], false, "{verdict}");
    assert_eq!(verdict["error"], "Error: invalid signature", "{verdict}");
}

/// regent-httpsig's verdict on `request`; it fetches the directory over loopback from this
/// test's runtime, so it runs off the runtime's threads.
async fn py_verdict(world: &World, request: &Request<Body>) -> Value {
    let py = Peer::WbaPy.launcher_path();
    let now = world.now;
    let request = copy(request);
    tokio::task::spawn_blocking(move || py_verify(&py, &request, now))
        .await
        .expect("the driver ran")
}

#[cfg_attr(
    skip_peer_wba_py,
    ignore = "interop peer peer-wba-py (PyPI regent-httpsig 0.7.3) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regent_httpsig_verifies_bot_signer_requests_in_both_forms_from_the_loopback_directory() {
    let world = World::new().await;
    for form in [AgentForm::Dictionary, AgentForm::Legacy] {
        let verdict = py_verdict(&world, &bot_signed(&world, form)).await;
        assert_eq!(verdict["verified"], true, "{form:?}: {verdict}");
        assert_eq!(verdict["scheme"], "web-bot-auth", "{form:?}");
        assert_eq!(verdict["agent"], world.directory.origin(), "{form:?}");
        assert_eq!(verdict["keyid"], BOT.thumbprint().as_str(), "{form:?}");
    }
    assert!(world.directory.requests() >= 1, "regent-httpsig fetched the directory");
}

#[cfg_attr(
    skip_peer_wba_py,
    ignore = "interop peer peer-wba-py (PyPI regent-httpsig 0.7.3) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regent_httpsig_refuses_a_tampered_bot_signer_request() {
    let world = World::new().await;
    let request = with_flipped_signature(bot_signed(&world, AgentForm::Dictionary));
    let verdict = py_verdict(&world, &request).await;
    assert_eq!(verdict["verified"], false, "{verdict}");
    assert_eq!(verdict["error"], "invalid_signature", "{verdict}");
}

#[cfg_attr(
    skip_peer_wba_py,
    ignore = "interop peer peer-wba-py (PyPI regent-httpsig 0.7.3) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_unsigned_or_of_another_type_is_refused_by_our_layer_and_used_by_regent_httpsig() {
    // regent-httpsig checks neither the directory's media type nor its response signature
    // (tests/interop/README.md); our layer requires both.
    let cases = [
        (
            DirectoryFault::Unsigned,
            "the key directory carries no key it signed for itself",
        ),
        (
            DirectoryFault::ContentType("application/json".to_owned()),
            "the key directory is not of its media type",
        ),
    ];
    for (fault, detail) in cases {
        let world = World::new().await;
        world.directory.set_fault(fault.clone());
        let py = Peer::WbaPy.launcher_path();
        let signed = py_sign(&py, "GET", &BOT, TARGET, world.directory.origin(), world.now);
        world
            .assert_refused(
                &format!("{fault:?}"),
                request_from(TARGET, &signed),
                "invalid_key",
                detail,
            )
            .await;
        let verdict = py_verdict(&world, &bot_signed(&world, AgentForm::Dictionary)).await;
        assert_eq!(verdict["verified"], true, "{fault:?}: {verdict}");
    }
}

#[cfg_attr(
    skip_peer_wba_py,
    ignore = "interop peer peer-wba-py (PyPI regent-httpsig 0.7.3) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regent_httpsig_reads_the_first_signature_agent_member_where_our_layer_reads_the_covered_one() {
    // `agent0` (another directory, uncovered) before `agent1` (the bot's, covered): the draft
    // attributes a signature only to the member it covers. Our layer serves the bot of
    // `agent1`; regent-httpsig fetches `agent0`'s directory, finds no key and refuses.
    let world = World::new().await;
    let field = format!(
        r#"agent0="{}", {AGENT_MEMBER}="{}""#,
        world.other.origin(),
        world.directory.origin()
    );
    let mut options = BotSignOptions::default();
    options.signature_agent = Some(field);
    let mut request = Request::get(TARGET).body(Body::empty()).unwrap();
    world.directory.signer().sign_with(&mut request, world.now, &options);
    let verdict = py_verdict(&world, &request).await;
    assert_eq!(verdict["verified"], false, "{verdict}");
    assert_eq!(verdict["error"], "invalid_signature", "{verdict}");
    assert_eq!(
        world.other.requests(),
        1,
        "regent-httpsig fetched the uncovered member's directory"
    );
    assert_eq!(world.directory.requests(), 0, "and not the covered one's");
    world.assert_bot(request).await;
    assert_eq!(
        world.other.requests(),
        1,
        "our layer fetched only the covered member's directory"
    );
}
