//! The configuration file: one TOML document, read with `deny_unknown_fields` everywhere,
//! then checked as a whole before anything listens. Every error names the line of the value
//! at fault (toml's byte span turned into a line number), so that an operator fixes the
//! file without guessing.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde::Deserialize;
use toml::Spanned;
use tower_aauth::guard::Requirement;

/// A configuration that cannot be used, with the line it is about (when it is about one).
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line in the file, when the error is about a value.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// How the gateway is deployed (see docs/gateway.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Verifies and forwards to `upstream`.
    ReverseProxy,
    /// Answers nginx `auth_request` subrequests at `auth_request_path`.
    AuthRequest,
    /// Answers Envoy `ext_authz` gRPC `Check` calls.
    ExtAuthz,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    resource: Spanned<String>,
    mode: Mode,
    listen: Spanned<String>,
    well_known_listen: Option<Spanned<String>>,
    upstream: Option<Spanned<String>>,
    auth_request_path: Option<Spanned<String>>,
    signing_keys: Spanned<String>,
    metrics: Option<Spanned<String>>,
    redis_url: Option<Spanned<String>>,
    require_query_coverage: Option<bool>,
    workers: Option<Spanned<u64>>,
    batch_verification: Option<Spanned<String>>,
    #[serde(default)]
    trust: RawTrust,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    web_bot_auth: RawWebBotAuth,
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
    /// Scope name → the description the resource metadata publishes.
    #[serde(default)]
    scopes: std::collections::BTreeMap<String, Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    access_server: Option<Spanned<String>>,
    #[serde(default)]
    person_servers: Vec<Spanned<String>>,
    #[serde(default)]
    agent_providers: Vec<Spanned<String>>,
    #[serde(default)]
    allow_http_loopback: bool,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body_bytes: Option<Spanned<u64>>,
    upstream_timeout_ms: Option<Spanned<u64>>,
    connect_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebBotAuth {
    #[serde(default)]
    enabled: bool,
    max_lifetime_secs: Option<Spanned<u64>>,
    require_nonce: Option<Spanned<bool>>,
}

/// `bots = true` (any verified bot) or `bots = ["https://origin", ...]`.
#[derive(Deserialize)]
#[serde(untagged, expecting = "bots = true or bots = [\"https://origin\", ...]")]
enum RawBots {
    Any(bool),
    From(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: Spanned<String>,
    methods: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    scopes: Vec<Spanned<String>>,
    #[serde(default)]
    agent: bool,
    #[serde(default)]
    person: bool,
    #[serde(default)]
    signature: bool,
    #[serde(default)]
    public: bool,
    bots: Option<Spanned<RawBots>>,
}

/// Who the resource trusts.
#[derive(Debug, Clone)]
pub struct Trust {
    pub access_server: Option<String>,
    pub person_servers: Vec<String>,
    pub agent_providers: Vec<String>,
    pub allow_http_loopback: bool,
}

/// Web Bot Auth verification (`[web_bot_auth]`, off unless `enabled = true`).
#[derive(Debug, Clone, Copy)]
pub struct WebBotAuth {
    /// The longest `expires - created` accepted.
    pub max_lifetime: Duration,
    /// Whether a bot signature must carry a `nonce`.
    pub require_nonce: bool,
}

/// Longest signature lifetime a configuration may allow: a day.
const MAX_BOT_LIFETIME_SECS: u64 = 24 * 60 * 60;

/// Which verified bots a route admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bots {
    /// Every verified bot.
    Any,
    /// Bots whose key directory is on one of these origins.
    From(Vec<String>),
}

/// Caps and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub upstream_timeout: Duration,
    pub connect_timeout: Duration,
}

/// Default body cap: 1 MiB, the layer's own default for digest-covered bodies.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Largest body cap accepted (a gateway buffers a digest-covered body whole).
const MAX_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// Which paths a route matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// Exactly this path.
    Exact(String),
    /// This path and everything below it (`/api/*`: `/api` and `/api/…`).
    Prefix(String),
}

impl PathPattern {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(exact) => path == exact,
            PathPattern::Prefix(prefix) => {
                path == prefix
                    || (path.starts_with(prefix.as_str()) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
                    || (prefix == "/" && path.starts_with('/'))
            }
        }
    }

    fn overlaps(&self, other: &PathPattern) -> bool {
        match (self, other) {
            (PathPattern::Exact(a), PathPattern::Exact(b)) => a == b,
            (PathPattern::Prefix(p), PathPattern::Exact(e)) | (PathPattern::Exact(e), PathPattern::Prefix(p)) => {
                PathPattern::Prefix(p.clone()).matches(e)
            }
            (PathPattern::Prefix(a), PathPattern::Prefix(b)) => {
                PathPattern::Prefix(a.clone()).matches(b) || PathPattern::Prefix(b.clone()).matches(a)
            }
        }
    }
}

/// One route: where, which methods, and what it needs.
#[derive(Debug, Clone)]
pub struct Route {
    pub path: PathPattern,
    /// `None`: every method.
    pub methods: Option<Vec<Method>>,
    /// `None`: public (forwarded unsigned; identity headers when signed) or a bot route.
    pub requirement: Option<Requirement>,
    /// `Some`: a bot route (no AAuth requirement: a verified bot is never an agent).
    pub bots: Option<Bots>,
    /// The configured line, for logs.
    pub line: usize,
}

impl Route {
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        self.path.matches(path) && self.methods.as_ref().is_none_or(|methods| methods.contains(method))
    }
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub resource: String,
    pub mode: Mode,
    pub listen: SocketAddr,
    pub well_known_listen: Option<SocketAddr>,
    pub upstream: Option<url::Url>,
    pub auth_request_path: String,
    pub signing_keys: PathBuf,
    pub metrics: Option<SocketAddr>,
    pub redis_url: Option<String>,
    /// A request with a query must cover `@query` (default on: the upstream cannot tell
    /// a signed query from one added on the way).
    pub require_query_coverage: bool,
    /// Runtime threads (`None`: one per core; `1`: a single-threaded runtime).
    pub workers: Option<usize>,
    /// Whether and when requests' signatures are verified in one batch equation
    /// (`AAuthBuilder::batch_verification`; default [`DEFAULT_BATCH_VERIFICATION`]).
    pub batch_verification: Batching,
    pub trust: Trust,
    pub limits: Limits,
    /// `None`: Web Bot Auth signatures are not verified (a bot is an unsigned request).
    pub web_bot_auth: Option<WebBotAuth>,
    pub routes: Arc<[Route]>,
    /// Every scope a route requires, with its description (the name when none is given).
    pub scopes: Vec<(String, String)>,
}

/// `batch_verification`: when Ed25519 signatures are verified together (see
/// docs/gateway.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// Every signature verified on its own (`verify_strict`).
    Off,
    /// A signature arriving while another verification is in flight joins a batch; at an
    /// idle gateway it is verified at once (`BatchOptions::new()`).
    Concurrent,
    /// Every signature joins a batch and waits one scheduling round for others
    /// (`BatchOptions::new().join_when_idle(true)`).
    Eager,
}

impl Batching {
    pub fn as_str(self) -> &'static str {
        match self {
            Batching::Off => "off",
            Batching::Concurrent => "concurrent",
            Batching::Eager => "eager",
        }
    }
}

/// Batch verification when the file does not say (docs/gateway.md gives the
/// measurements behind it).
pub const DEFAULT_BATCH_VERIFICATION: Batching = Batching::Eager;

/// Where nginx sends its subrequests by default.
pub const DEFAULT_AUTH_REQUEST_PATH: &str = "/aauth/auth-request";

/// Turns byte offsets into line numbers.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.0.len());
        self.0.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn error<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            line: Some(self.line(spanned.span())),
            message: message.into(),
        }
    }
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            line: None,
            message: format!("cannot read {}: {error}", path.display()),
        })?;
        Config::parse(&text)
    }

    /// Parses and checks a whole configuration document.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let lines = Lines(text);
        let raw: RawConfig = toml::from_str(text).map_err(|error| ConfigError {
            line: error.span().map(|span| lines.line(span)),
            message: error.message().trim_end().to_owned(),
        })?;
        check(raw, &lines)
    }
}

fn http_url(lines: &Lines<'_>, value: &Spanned<String>, what: &str) -> Result<url::Url, ConfigError> {
    let url = url::Url::parse(value.get_ref()).map_err(|error| lines.error(value, format!("{what}: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(lines.error(value, format!("{what} must be an http(s) URL with a host")));
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(lines.error(value, format!("{what} must not carry credentials or a fragment")));
    }
    Ok(url)
}

fn socket_addr(lines: &Lines<'_>, value: &Spanned<String>, what: &str) -> Result<SocketAddr, ConfigError> {
    value.get_ref().parse().map_err(|_| {
        lines.error(
            value,
            format!("{what} must be an IP address and port, like 127.0.0.1:8080"),
        )
    })
}

fn check(raw: RawConfig, lines: &Lines<'_>) -> Result<Config, ConfigError> {
    let resource = http_url(lines, &raw.resource, "resource")?;
    if resource.path() != "/" || resource.query().is_some() {
        return Err(lines.error(
            &raw.resource,
            "resource must be an origin (scheme, host, port), without a path",
        ));
    }
    let listen = socket_addr(lines, &raw.listen, "listen")?;
    let well_known_listen = match &raw.well_known_listen {
        Some(value) if raw.mode != Mode::ExtAuthz => {
            return Err(lines.error(
                value,
                "well_known_listen is for mode = \"ext-authz\" only (the other modes serve the documents on listen)",
            ));
        }
        Some(value) => Some(socket_addr(lines, value, "well_known_listen")?),
        None => None,
    };
    let upstream = match (&raw.upstream, raw.mode) {
        (Some(value), Mode::ReverseProxy) => {
            let url = http_url(lines, value, "upstream")?;
            if url.scheme() != "http" {
                return Err(lines.error(
                    value,
                    "upstream must be a plain http URL (TLS to the upstream is not supported)",
                ));
            }
            if url.query().is_some() {
                return Err(lines.error(value, "upstream must not carry a query"));
            }
            Some(url)
        }
        (None, Mode::ReverseProxy) => {
            return Err(ConfigError {
                line: None,
                message: "mode = \"reverse-proxy\" needs upstream".to_owned(),
            });
        }
        (Some(value), _) => return Err(lines.error(value, "upstream is for mode = \"reverse-proxy\" only")),
        (None, _) => None,
    };
    let auth_request_path = match (&raw.auth_request_path, raw.mode) {
        (Some(value), Mode::AuthRequest) => {
            let path = value.get_ref();
            if !path.starts_with('/') || path.contains(['?', '#', '*']) || path.starts_with("/.well-known/") {
                return Err(lines.error(
                    value,
                    "auth_request_path must be a plain absolute path outside /.well-known/",
                ));
            }
            path.clone()
        }
        (Some(value), _) => return Err(lines.error(value, "auth_request_path is for mode = \"auth-request\" only")),
        (None, _) => DEFAULT_AUTH_REQUEST_PATH.to_owned(),
    };
    let signing_keys = PathBuf::from(raw.signing_keys.get_ref());
    if !signing_keys.is_dir() {
        return Err(lines.error(
            &raw.signing_keys,
            format!("signing_keys: {} is not a directory", signing_keys.display()),
        ));
    }
    let metrics = raw
        .metrics
        .as_ref()
        .map(|value| socket_addr(lines, value, "metrics"))
        .transpose()?;
    let redis_url = match &raw.redis_url {
        None => None,
        Some(value) => {
            let url =
                url::Url::parse(value.get_ref()).map_err(|error| lines.error(value, format!("redis_url: {error}")))?;
            if !matches!(url.scheme(), "redis" | "rediss" | "redis+unix") {
                return Err(lines.error(value, "redis_url must be a redis:// URL"));
            }
            if cfg!(not(feature = "redis")) {
                return Err(lines.error(value, "redis_url needs a gateway built with --features redis"));
            }
            Some(value.get_ref().clone())
        }
    };
    let workers = match &raw.workers {
        None => None,
        Some(value) if (1..=256).contains(value.get_ref()) => usize::try_from(*value.get_ref()).ok(),
        Some(value) => return Err(lines.error(value, "workers must be 1 to 256")),
    };
    let batch_verification = match &raw.batch_verification {
        None => DEFAULT_BATCH_VERIFICATION,
        Some(value) => match value.get_ref().as_str() {
            "off" => Batching::Off,
            "concurrent" => Batching::Concurrent,
            "eager" => Batching::Eager,
            _ => {
                return Err(lines.error(value, "batch_verification must be \"off\", \"concurrent\" or \"eager\""));
            }
        },
    };
    let trust = check_trust(raw.trust, lines)?;
    let limits = check_limits(raw.limits, lines)?;
    let mut scopes: Vec<(String, String)> = Vec::new();
    for route in &raw.routes {
        for scope in &route.scopes {
            let name = scope.get_ref();
            if !scopes.iter().any(|(known, _)| known == name) {
                let description = raw
                    .scopes
                    .get(name)
                    .map_or_else(|| name.clone(), |d| d.get_ref().clone());
                scopes.push((name.clone(), description));
            }
        }
    }
    if let Some((name, description)) = raw
        .scopes
        .iter()
        .find(|(name, _)| !scopes.iter().any(|(known, _)| known == *name))
    {
        return Err(lines.error(
            description,
            format!("scopes.{name} is described but no route requires it"),
        ));
    }
    let web_bot_auth = check_web_bot_auth(&raw.web_bot_auth, lines)?;
    let routes = check_routes(raw.routes, lines, web_bot_auth.is_some(), trust.allow_http_loopback)?;
    Ok(Config {
        resource: resource.as_str().trim_end_matches('/').to_owned(),
        mode: raw.mode,
        listen,
        well_known_listen,
        upstream,
        auth_request_path,
        signing_keys,
        metrics,
        redis_url,
        require_query_coverage: raw.require_query_coverage.unwrap_or(true),
        workers,
        batch_verification,
        trust,
        limits,
        web_bot_auth,
        routes: routes.into(),
        scopes,
    })
}

fn check_trust(raw: RawTrust, lines: &Lines<'_>) -> Result<Trust, ConfigError> {
    let issuer = |value: &Spanned<String>, what: &str| -> Result<String, ConfigError> {
        http_url(lines, value, what)?;
        Ok(value.get_ref().trim_end_matches('/').to_owned())
    };
    let access_server = raw
        .access_server
        .as_ref()
        .map(|value| issuer(value, "trust.access_server"))
        .transpose()?;
    let person_servers = raw
        .person_servers
        .iter()
        .map(|value| issuer(value, "trust.person_servers"))
        .collect::<Result<Vec<_>, _>>()?;
    if access_server.is_none() && person_servers.is_empty() {
        return Err(ConfigError {
            line: None,
            message: "[trust] needs access_server (four-party) or person_servers (three-party: the person \
                      servers whose grants are honoured)"
                .to_owned(),
        });
    }
    let agent_providers = raw
        .agent_providers
        .iter()
        .map(|value| issuer(value, "trust.agent_providers"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Trust {
        access_server,
        person_servers,
        agent_providers,
        allow_http_loopback: raw.allow_http_loopback,
    })
}

fn check_limits(raw: RawLimits, lines: &Lines<'_>) -> Result<Limits, ConfigError> {
    let max_body_bytes = match &raw.max_body_bytes {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(value) if (1..=MAX_MAX_BODY_BYTES).contains(value.get_ref()) => *value.get_ref(),
        Some(value) => {
            return Err(lines.error(
                value,
                format!("limits.max_body_bytes must be 1 to {MAX_MAX_BODY_BYTES}"),
            ));
        }
    };
    let millis = |value: &Option<Spanned<u64>>, default: u64, what: &str| -> Result<Duration, ConfigError> {
        match value {
            None => Ok(Duration::from_millis(default)),
            Some(value) if (1..=600_000).contains(value.get_ref()) => Ok(Duration::from_millis(*value.get_ref())),
            Some(value) => Err(lines.error(value, format!("limits.{what} must be 1 to 600000 (ms)"))),
        }
    };
    Ok(Limits {
        max_body_bytes,
        upstream_timeout: millis(&raw.upstream_timeout_ms, 30_000, "upstream_timeout_ms")?,
        connect_timeout: millis(&raw.connect_timeout_ms, 2_000, "connect_timeout_ms")?,
    })
}

fn check_web_bot_auth(raw: &RawWebBotAuth, lines: &Lines<'_>) -> Result<Option<WebBotAuth>, ConfigError> {
    if !raw.enabled {
        if let Some(value) = &raw.max_lifetime_secs {
            return Err(lines.error(
                value,
                "web_bot_auth.max_lifetime_secs has no effect without enabled = true",
            ));
        }
        if let Some(value) = &raw.require_nonce {
            return Err(lines.error(value, "web_bot_auth.require_nonce has no effect without enabled = true"));
        }
        return Ok(None);
    }
    let max_lifetime = match &raw.max_lifetime_secs {
        None => Duration::from_secs(60 * 60),
        Some(value) if (1..=MAX_BOT_LIFETIME_SECS).contains(value.get_ref()) => Duration::from_secs(*value.get_ref()),
        Some(value) => {
            return Err(lines.error(
                value,
                format!("web_bot_auth.max_lifetime_secs must be 1 to {MAX_BOT_LIFETIME_SECS}"),
            ));
        }
    };
    Ok(Some(WebBotAuth {
        max_lifetime,
        require_nonce: raw.require_nonce.as_ref().is_some_and(|value| *value.get_ref()),
    }))
}

/// A `bots = [...]` entry: an origin as a bot's `Signature-Agent` names its directory
/// (`https`, a host, no path, query or userinfo; `http` on loopback only under
/// `allow_http_loopback`), in its serialized form.
fn bot_origin(text: &str, allow_http_loopback: bool) -> Option<String> {
    let url = url::Url::parse(text).ok()?;
    let loopback = matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && allow_http_loopback && loopback);
    let plain = url.path() == "/"
        && !text.ends_with('/')
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    (scheme_ok && plain && url.host().is_some()).then(|| url.origin().ascii_serialization())
}

fn check_bots(
    spanned: &Spanned<RawBots>,
    lines: &Lines<'_>,
    web_bot_auth: bool,
    allow_http_loopback: bool,
) -> Result<Option<Bots>, ConfigError> {
    let bots = match spanned.get_ref() {
        RawBots::Any(false) => return Ok(None),
        RawBots::Any(true) => Bots::Any,
        RawBots::From(origins) if origins.is_empty() => {
            return Err(lines.error(spanned, "bots = [] admits nobody: list origins or write bots = true"));
        }
        RawBots::From(origins) => Bots::From(
            origins
                .iter()
                .map(|origin| {
                    bot_origin(origin, allow_http_loopback).ok_or_else(|| {
                        lines.error(
                            spanned,
                            "bots lists origins such as \"https://bots.example\" (https, no path, no trailing /)",
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    if !web_bot_auth {
        return Err(lines.error(spanned, "bots needs [web_bot_auth] enabled = true"));
    }
    Ok(Some(bots))
}

fn check_routes(
    raw: Vec<RawRoute>,
    lines: &Lines<'_>,
    web_bot_auth: bool,
    allow_http_loopback: bool,
) -> Result<Vec<Route>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError {
            line: None,
            message: "no [[route]]: every request would be refused".to_owned(),
        });
    }
    let mut routes: Vec<Route> = Vec::with_capacity(raw.len());
    for route in &raw {
        let line = lines.line(route.path.span());
        let path = route.path.get_ref();
        let bad_path = || {
            lines.error(
                &route.path,
                "route path must be /exact or /prefix/* (no query, no dot segments, no other *)",
            )
        };
        if !path.starts_with('/') || path.contains(['?', '#', '%', '\\']) || path.contains("//") {
            return Err(bad_path());
        }
        let pattern = match path.strip_suffix("/*") {
            Some(prefix) => PathPattern::Prefix(if prefix.is_empty() {
                "/".to_owned()
            } else {
                prefix.to_owned()
            }),
            None => PathPattern::Exact(path.clone()),
        };
        let plain = match &pattern {
            PathPattern::Exact(p) | PathPattern::Prefix(p) => p,
        };
        if plain.contains('*') || plain.split('/').any(|segment| segment == "." || segment == "..") {
            return Err(bad_path());
        }
        if plain.starts_with("/.well-known/aauth-resource.json") || plain.starts_with("/.well-known/jwks.json") {
            return Err(lines.error(&route.path, "the well-known documents are served by the gateway itself"));
        }
        let methods = match &route.methods {
            None => None,
            Some(methods) if methods.is_empty() => {
                return Err(ConfigError {
                    line: Some(line),
                    message: "methods = [] matches nothing: leave it out for every method".to_owned(),
                });
            }
            Some(methods) => Some(
                methods
                    .iter()
                    .map(|method| {
                        let name = method.get_ref();
                        match name.as_str() {
                            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => {
                                Ok(Method::from_bytes(name.as_bytes()).expect("a standard method"))
                            }
                            _ => Err(lines.error(
                                method,
                                format!("unknown method {name:?} (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)"),
                            )),
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let mut parts = Vec::new();
        if route.signature {
            parts.push(Requirement::Signature);
        }
        if route.agent {
            parts.push(Requirement::Agent);
        }
        if route.person {
            parts.push(Requirement::Person);
        }
        if !route.scopes.is_empty() {
            for scope in &route.scopes {
                let name = scope.get_ref();
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
                    return Err(lines.error(scope, "a scope is visible ASCII without quotes or backslashes"));
                }
            }
            parts.push(Requirement::scopes(route.scopes.iter().map(|s| s.get_ref().clone())));
        }
        let bots = match &route.bots {
            None => None,
            Some(spanned) => check_bots(spanned, lines, web_bot_auth, allow_http_loopback)?,
        };
        if bots.is_some() && (route.public || !parts.is_empty()) {
            return Err(lines.error(
                route.bots.as_ref().expect("bots is set"),
                "a bot route has no other requirement (a verified bot is never an agent: use two routes)",
            ));
        }
        let requirement = match (route.public || bots.is_some(), parts.len()) {
            (true, 0) => None,
            (true, _) => {
                return Err(ConfigError {
                    line: Some(line),
                    message: "a public route has no other requirement".to_owned(),
                });
            }
            (false, 0) => {
                return Err(ConfigError {
                    line: Some(line),
                    message: "a route needs a requirement (scopes, agent, person, signature, bots) or public = true"
                        .to_owned(),
                });
            }
            (false, 1) => parts.pop(),
            (false, _) => Some(Requirement::All(parts.into())),
        };
        let candidate = Route {
            path: pattern,
            methods,
            requirement,
            bots,
            line,
        };
        if let Some(earlier) = routes.iter().find(|earlier| {
            earlier.path.overlaps(&candidate.path)
                && match (&earlier.methods, &candidate.methods) {
                    (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
                    _ => true,
                }
        }) {
            return Err(ConfigError {
                line: Some(line),
                message: format!(
                    "route {path:?} overlaps the route of line {} (a request must match one route only)",
                    earlier.line
                ),
            });
        }
        routes.push(candidate);
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_dir() -> String {
        std::env::temp_dir().display().to_string()
    }

    fn document(extra_top: &str, routes: &str) -> String {
        format!(
            "resource = \"https://api.example\"\nmode = \"reverse-proxy\"\nlisten = \"127.0.0.1:8080\"\n\
             upstream = \"http://127.0.0.1:3000\"\nsigning_keys = \"{}\"\n{extra_top}\n\
             [trust]\naccess_server = \"https://as.example\"\n\n{routes}",
            keys_dir()
        )
    }

    const ROUTE: &str = "[[route]]\npath = \"/data\"\nscopes = [\"data.read\"]\n";

    #[test]
    fn a_complete_configuration_is_accepted() {
        let config = Config::parse(&document(
            "metrics = \"127.0.0.1:9090\"\nworkers = 1\n[limits]\nmax_body_bytes = 4096\nupstream_timeout_ms = 500\n",
            &format!("{ROUTE}[[route]]\npath = \"/api/*\"\nmethods = [\"POST\"]\nagent = true\nperson = true\n"),
        ))
        .unwrap();
        assert_eq!(config.resource, "https://api.example");
        assert_eq!(config.limits.max_body_bytes, 4096);
        assert_eq!(config.workers, Some(1));
        assert_eq!(config.limits.upstream_timeout, Duration::from_millis(500));
        assert_eq!(config.routes.len(), 2);
        assert_eq!(config.scopes, [("data.read".to_owned(), "data.read".to_owned())]);
        assert!(config.routes[1].matches(&Method::POST, "/api/x"));
        assert!(!config.routes[1].matches(&Method::GET, "/api/x"));
        assert!(!config.routes[1].matches(&Method::POST, "/apix"));
    }

    /// Each bad document, the line the error must name, and a word the message must say.
    #[test]
    fn bad_configurations_are_refused_naming_the_line() {
        let cases: &[(&str, String, Option<usize>, &str)] = &[
            (
                "unknown top-level key",
                document("colour = \"blue\"", ROUTE),
                Some(6),
                "unknown field",
            ),
            (
                "unknown route key",
                document("", "[[route]]\npath = \"/data\"\nscope = [\"data.read\"]\n"),
                Some(12),
                "unknown field",
            ),
            (
                "overlapping prefix and exact route",
                document("", &format!("[[route]]\npath = \"/*\"\nagent = true\n{ROUTE}")),
                Some(14),
                "overlaps the route of line 11",
            ),
            (
                "same path and method twice",
                document(
                    "",
                    "[[route]]\npath = \"/a\"\nmethods = [\"GET\"]\nagent = true\n\
                     [[route]]\npath = \"/a\"\nmethods = [\"POST\", \"GET\"]\nagent = true\n",
                ),
                Some(15),
                "overlaps",
            ),
            (
                "bad upstream URL",
                document("", ROUTE).replace("http://127.0.0.1:3000", "http//nowhere"),
                Some(4),
                "upstream",
            ),
            (
                "missing key directory",
                document("", ROUTE).replace(&keys_dir(), "/nonexistent/aauth-gateway-keys"),
                Some(5),
                "not a directory",
            ),
            (
                "a route without a requirement",
                document("", "[[route]]\npath = \"/x\"\n"),
                Some(11),
                "needs a requirement",
            ),
            (
                "a dot segment in a route",
                document("", "[[route]]\npath = \"/a/../b\"\nagent = true\n"),
                Some(11),
                "route path",
            ),
            (
                "bad body cap",
                document("[limits]\nmax_body_bytes = 0", ROUTE),
                Some(7),
                "max_body_bytes",
            ),
            (
                "a wrong type",
                document("metrics = 9090", ROUTE),
                Some(6),
                "invalid type",
            ),
            (
                "an unknown batch_verification value",
                document("batch_verification = \"yes\"", ROUTE),
                Some(6),
                "batch_verification must be \"off\", \"concurrent\" or \"eager\"",
            ),
            (
                "a boolean batch_verification",
                document("batch_verification = true", ROUTE),
                Some(6),
                "invalid type",
            ),
        ];
        for (what, text, line, needle) in cases {
            let error = Config::parse(text).expect_err(what);
            assert_eq!(error.line, *line, "{what}: {error}");
            assert!(error.message.contains(needle), "{what}: {error}");
        }
    }

    const BOTS_ON: &str = "[web_bot_auth]\nenabled = true\nmax_lifetime_secs = 600\nrequire_nonce = true\n";

    #[test]
    fn bot_routes_admit_any_bot_or_listed_origins() {
        let config = Config::parse(&document(
            BOTS_ON,
            "[[route]]\npath = \"/crawl/*\"\nbots = true\n\
             [[route]]\npath = \"/partners/*\"\nbots = [\"https://Bots.Example\", \"https://b.example:8443\"]\n\
             [[route]]\npath = \"/agents\"\nagent = true\nbots = false\n",
        ))
        .unwrap();
        let bots = config.web_bot_auth.expect("enabled");
        assert_eq!(bots.max_lifetime, Duration::from_secs(600));
        assert!(bots.require_nonce);
        assert_eq!(config.routes[0].bots, Some(Bots::Any));
        assert!(config.routes[0].requirement.is_none());
        assert_eq!(
            config.routes[1].bots,
            Some(Bots::From(vec![
                "https://bots.example".to_owned(),
                "https://b.example:8443".to_owned()
            ]))
        );
        assert_eq!(config.routes[2].bots, None);
        assert!(config.routes[2].requirement.is_some());
    }

    #[test]
    fn batch_verification_is_read_and_defaults_to_the_documented_value() {
        for (line, expected) in [
            ("batch_verification = \"off\"", Batching::Off),
            ("batch_verification = \"concurrent\"", Batching::Concurrent),
            ("batch_verification = \"eager\"", Batching::Eager),
            ("", DEFAULT_BATCH_VERIFICATION),
        ] {
            let config = Config::parse(&document(line, ROUTE)).unwrap();
            assert_eq!(config.batch_verification, expected, "{line:?}");
        }
    }

    #[test]
    fn web_bot_auth_is_off_unless_enabled() {
        let config = Config::parse(&document("", ROUTE)).unwrap();
        assert!(config.web_bot_auth.is_none());
        assert!(config.routes.iter().all(|route| route.bots.is_none()));
    }

    /// Each bad bot configuration, the line the error must name, and a word the message must say.
    #[test]
    fn bad_bot_configurations_are_refused_naming_the_line() {
        let route = |body: &str| format!("[[route]]\npath = \"/crawl\"\n{body}\n");
        let cases: &[(&str, String, usize, &str)] = &[
            (
                "bots without web_bot_auth",
                document("", &route("bots = true")),
                12,
                "[web_bot_auth] enabled = true",
            ),
            (
                "bots with an agent requirement",
                document(BOTS_ON, &route("agent = true\nbots = true")),
                17,
                "a bot route has no other requirement",
            ),
            (
                "bots with scopes",
                document(BOTS_ON, &route("bots = [\"https://bots.example\"]\nscopes = [\"a\"]")),
                16,
                "a bot route has no other requirement",
            ),
            (
                "bots on a public route",
                document(BOTS_ON, &route("public = true\nbots = true")),
                17,
                "a bot route has no other requirement",
            ),
            (
                "an empty origin list",
                document(BOTS_ON, &route("bots = []")),
                16,
                "admits nobody",
            ),
            (
                "an origin with a path",
                document(BOTS_ON, &route("bots = [\"https://bots.example/x\"]")),
                16,
                "bots lists origins",
            ),
            (
                "a plain http origin",
                document(BOTS_ON, &route("bots = [\"http://bots.example\"]")),
                16,
                "bots lists origins",
            ),
            (
                "a wrong bots type",
                document(BOTS_ON, &route("bots = \"yes\"")),
                16,
                "bots = true or bots = [",
            ),
            (
                "a lifetime of zero",
                document("[web_bot_auth]\nenabled = true\nmax_lifetime_secs = 0", ROUTE),
                8,
                "max_lifetime_secs must be",
            ),
            (
                "options without enabled",
                document("[web_bot_auth]\nrequire_nonce = true", ROUTE),
                7,
                "without enabled = true",
            ),
            (
                "an unknown web_bot_auth key",
                document("[web_bot_auth]\nenabled = true\nnonce = true", ROUTE),
                8,
                "unknown field",
            ),
        ];
        for (what, text, line, needle) in cases {
            let error = Config::parse(text).expect_err(what);
            assert_eq!(error.line, Some(*line), "{what}: {error}");
            assert!(error.message.contains(needle), "{what}: {error}");
        }
    }

    #[test]
    fn unmatched_paths_and_other_methods_match_no_route() {
        let config = Config::parse(&document("", ROUTE)).unwrap();
        assert!(config.routes[0].matches(&Method::GET, "/data"));
        assert!(!config.routes[0].matches(&Method::GET, "/data/x"));
        assert!(!config.routes[0].matches(&Method::GET, "/other"));
    }

    #[test]
    fn no_trusted_issuer_is_refused() {
        let text = document("", ROUTE).replace("access_server = \"https://as.example\"", "");
        let error = Config::parse(&text).unwrap_err();
        assert!(error.message.contains("[trust] needs"), "{error}");
    }

    #[test]
    fn mode_specific_keys_are_refused_in_other_modes() {
        let text = document("", ROUTE).replace("reverse-proxy", "auth-request");
        let error = Config::parse(&text).unwrap_err();
        assert_eq!(error.line, Some(4), "{error}");
        assert!(error.message.contains("reverse-proxy"), "{error}");
    }
}
