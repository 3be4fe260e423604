//! [`WebBotAuthOptions`]: what turns Web Bot Auth verification on, and its limits.

use std::time::Duration;

/// Web Bot Auth verification ([`crate::bot`]), enabled with
/// [`AAuthBuilder::web_bot_auth`](crate::AAuthBuilder::web_bot_auth); off by default.
///
/// ```
/// use std::time::Duration;
/// use tower_aauth::bot::WebBotAuthOptions;
///
/// let options = WebBotAuthOptions::new().max_lifetime(Duration::from_secs(300)).require_nonce(true);
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebBotAuthOptions {
    pub(crate) max_lifetime: Duration,
    pub(crate) require_nonce: bool,
    pub(crate) legacy_agent_form: bool,
    pub(crate) nonce_capacity: u64,
    pub(crate) shared_nonces: bool,
}

impl WebBotAuthOptions {
    /// The defaults: signatures valid for at most one hour (`expires - created`), `nonce`
    /// optional (remembered in the replay store when sent), the legacy bare-String
    /// `Signature-Agent` accepted, up to 50 000 nonces remembered on methods the replay
    /// protection does not cover.
    pub fn new() -> Self {
        WebBotAuthOptions {
            max_lifetime: Duration::from_secs(3600),
            require_nonce: false,
            legacy_agent_form: true,
            nonce_capacity: 50_000,
            shared_nonces: false,
        }
    }

    /// The longest `expires - created` accepted (default one hour; the Web Bot Auth
    /// libraries sign for five minutes). Rounded down to whole seconds.
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Whether a signature without `nonce` is refused (default: no).
    pub fn require_nonce(mut self, required: bool) -> Self {
        self.require_nonce = required;
        self
    }

    /// Whether the legacy form of `Signature-Agent`, one bare String covered as the whole
    /// field (`"signature-agent"`), is accepted besides the Dictionary form (default: yes,
    /// since a large provider still sends it).
    pub fn legacy_agent_form(mut self, accepted: bool) -> Self {
        self.legacy_agent_form = accepted;
        self
    }
}

impl WebBotAuthOptions {
    /// How many bot nonces this process remembers at once, each until its signature
    /// expires (default 50 000, at least 1). Every bot nonce goes to this store of the
    /// bots' own, whatever the method, so that a signature that covers neither `@method`
    /// nor `@path` (the Web Bot Auth libraries' default) is used once, not once per
    /// method; a nonce on a replay-protected method also goes to the layer's replay
    /// store. Bots cannot fill the store AAuth requests use. When this one is full, a
    /// bot's new nonce on a method the layer does not protect is answered `503` with
    /// `Retry-After`, while nonce-less bots, AAuth requests and bots on protected methods
    /// (judged by the layer's store) are served. An entry takes at most 64 bytes; size
    /// it for the bot requests per second times the signatures' lifetime plus the
    /// allowed clock skew.
    pub fn nonce_capacity(mut self, entries: u64) -> Self {
        self.nonce_capacity = entries.max(1);
        self
    }
}

impl WebBotAuthOptions {
    /// Whether a nonce on a method the layer does not protect (`GET` by default) also
    /// goes to the layer's replay store (default: no). Behind a load balancer with a
    /// shared store (`RedisReplayStore`), turn it on: otherwise a nonce first used on a
    /// `GET` is known only to the replica that served it, and another replica would serve
    /// the same signature once as a `POST`. It costs a store round trip and a shared
    /// entry per bot request with a nonce.
    pub fn shared_nonces(mut self, shared: bool) -> Self {
        self.shared_nonces = shared;
        self
    }
}

impl Default for WebBotAuthOptions {
    fn default() -> Self {
        Self::new()
    }
}
