//! The Web Bot Auth pipeline: selection, the synchronous head, the fetching tail.

use std::sync::Arc;

use http::HeaderMap;

use super::agent::{AgentDirectory, signature_agent_directory};
use super::directory::DirectoryCache;
use super::options::WebBotAuthOptions;
use super::principal::VerifiedBot;
use crate::discovery::admission::IdentifierPolicy;
use crate::error::{Error, SignatureErrorCode};
use crate::httpsig::{
    Component, ParsedInput, RequestTarget, SignatureAlphabet, SignatureBase, field_value, verify_base,
};
use crate::jose::Jwk;
use crate::names;
use crate::replay::key::{LocalSecret, ReplayKey};

thread_local! {
    /// The base of the request being verified: reused, so that the usual request
    /// allocates none.
    static BASE: std::cell::RefCell<SignatureBase> = std::cell::RefCell::new(SignatureBase::new());
}

const SIGNATURE_KEY: http::HeaderName = http::HeaderName::from_static(names::header::SIGNATURE_KEY);
const SIGNATURE_INPUT: http::HeaderName = http::HeaderName::from_static(names::header::SIGNATURE_INPUT);
const SIGNATURE: http::HeaderName = http::HeaderName::from_static(names::header::SIGNATURE);
const SIGNATURE_AGENT: http::HeaderName = http::HeaderName::from_static(names::bot::SIGNATURE_AGENT);
const CONTENT_DIGEST: http::HeaderName = http::HeaderName::from_static(names::header::CONTENT_DIGEST);

/// The refusal of a signature or nonce presented again.
pub(crate) const REUSED: Error = Error(crate::error::Kind::Reused {
    detail: "the Web Bot Auth signature was already used",
});

/// The components a Web Bot Auth signature must cover, as `invalid_input` names them.
const REQUIRED: [&str; 2] = ["@authority", names::bot::SIGNATURE_AGENT];

/// What a signature without `nonce` must cover on a replay-protected method.
const BOUND: [&str; 2] = ["@method", "@path"];

/// Whether the signature names the request it was made for: `@method`, and `@path` or
/// `@target-uri`.
fn binds_request(input: &ParsedInput) -> bool {
    input.covers("@method") && (input.covers("@path") || input.covers("@target-uri"))
}

/// Web Bot Auth as the layer runs it, built by the builder when enabled.
#[derive(Debug)]
pub(crate) struct Bots {
    pub(crate) options: WebBotAuthOptions,
    pub(crate) cache: DirectoryCache,
    pub(crate) identifiers: IdentifierPolicy,
    /// Keys the nonces kept in this process's own store.
    pub(crate) nonce_secret: LocalSecret,
}

/// A request whose one signature is tagged `web-bot-auth` and that has no
/// `Signature-Key`: the bot path's.
pub(crate) struct Selected {
    input: ParsedInput,
    signature: String,
}

/// Whether the request goes to the bot path: `Signature-Input` and `Signature`, no
/// `Signature-Key`, and its signature tagged `web-bot-auth`; of several signatures, the
/// one member tagged `web-bot-auth` when exactly one is (a CDN or proxy may have added
/// its own). Anything else (a malformed field, two members tagged `web-bot-auth`
/// included) stays on the AAuth path, which answers it as before.
pub(crate) fn select(headers: &HeaderMap, cap: usize, max_components: usize) -> Option<Selected> {
    if headers.contains_key(&SIGNATURE_KEY) {
        return None;
    }
    let input = field_value(headers, &SIGNATURE_INPUT, cap).ok()??;
    let signature = field_value(headers, &SIGNATURE, cap).ok()??;
    let (input, signature) = match ParsedInput::parse(&input, max_components) {
        Ok(input) => (input, signature.into_owned()),
        Err(_) => {
            let (input, signature) = tagged_member(&input, &signature)?;
            (ParsedInput::parse(&input, max_components).ok()?, signature)
        }
    };
    (input.params.tag.as_deref() == Some(names::bot::TAG)).then_some(Selected { input, signature })
}

/// Of several signatures, the `Signature-Input` and `Signature` members of the one tagged
/// `web-bot-auth`, each serialized as a one-member Dictionary; `None` unless exactly one
/// member carries the tag and `Signature` has a member of its label.
fn tagged_member(input: &str, signature: &str) -> Option<(String, String)> {
    let inputs = crate::httpsig::parse_dictionary_strict(input)?;
    let signatures = crate::httpsig::parse_dictionary_strict(signature)?;
    let mut tagged = inputs.iter().filter(|(_, entry)| match entry {
        sfv::ListEntry::InnerList(inner) => inner.params.iter().any(|(name, value)| {
            name.as_str() == "tag" && matches!(value, sfv::BareItem::String(tag) if tag.as_str() == names::bot::TAG)
        }),
        sfv::ListEntry::Item(_) => false,
    });
    let (Some((label, entry)), None) = (tagged.next(), tagged.next()) else {
        return None;
    };
    let signed = signatures.get(label)?;
    let one = |entry: &sfv::ListEntry| {
        let mut serializer = sfv::DictSerializer::new();
        serializer.members(std::iter::once((label, entry)));
        serializer.finish()
    };
    Some((one(entry)?, one(signed)?))
}

/// What the head needs besides the request: the configuration of the layer.
pub(crate) struct Limits {
    pub(crate) now: u64,
    pub(crate) max_skew: u64,
    pub(crate) header_cap: usize,
    pub(crate) alphabet: SignatureAlphabet,
    /// Whether the method is replay-checked (a signature without nonce is remembered).
    pub(crate) protect: bool,
}

/// The head's outcome.
pub(crate) enum BotStep {
    /// Verified from memory, with the replay key to remember.
    Done(VerifiedBot, Option<ReplayKey>),
    /// The directory must be fetched first.
    Fetch(Box<BotPending>),
}

/// What the tail needs to finish after the fetch.
pub(crate) struct BotPending {
    directory: AgentDirectory,
    keyid: String,
    base: SignatureBase,
    signature: Vec<u8>,
    nonce: Option<String>,
    expires: u64,
    protect: bool,
    share_nonce: bool,
    /// The `Content-Digest` field to check against the body, when covered.
    digest: Option<String>,
}

impl Bots {
    /// Every check that needs no I/O, cheapest first; the signature itself when the key is
    /// cached.
    pub(crate) fn head(
        &self,
        selected: Selected,
        target: &RequestTarget<'_>,
        headers: &HeaderMap,
        limits: &Limits,
    ) -> Result<BotStep, Error> {
        let Selected { input, signature } = selected;
        let member = self.check_coverage(&input)?;
        if limits.protect && input.params.nonce.is_none() && !binds_request(&input) {
            // Without a nonce and without the method and path, a signature captured on
            // one request could be replayed as another method on another path of this
            // resource within its lifetime.
            return Err(Error::invalid_input(BOUND));
        }
        self.check_lifetime(&input, limits)?;
        if input
            .params
            .alg
            .as_deref()
            .is_some_and(|alg| alg != names::bot::ED25519)
        {
            return Err(Error::signature(
                SignatureErrorCode::UnsupportedAlgorithm,
                "Web Bot Auth signatures are verified with Ed25519 only",
            ));
        }
        let keyid = input
            .params
            .keyid
            .as_deref()
            .filter(|k| is_thumbprint(k))
            .ok_or(Error::invalid_signature(
                "keyid is not a base64url JWK SHA-256 thumbprint",
            ))?;
        if self.options.require_nonce && input.params.nonce.is_none() {
            return Err(Error::invalid_signature("the signature has no nonce"));
        }
        let field = field_value(headers, &SIGNATURE_AGENT, limits.header_cap)?.ok_or(Error::invalid_input(REQUIRED))?;
        let directory = signature_agent_directory(&field, member, &self.identifiers)?;
        let signature = crate::httpsig::decode_signature(&signature, &input.label, limits.alphabet)?;
        if signature.len() != 64 {
            return Err(Error::invalid_signature("an Ed25519 signature is 64 bytes"));
        }
        let run = |base: &mut SignatureBase| -> Result<BotStep, Error> {
            base.build_capped(&input, target, headers, limits.header_cap)?;
            // As on the AAuth path: a covered `Content-Digest` is checked against the body
            // the layer reads, never taken on trust.
            let digest = if input.mentions(names::header::CONTENT_DIGEST) {
                let field = field_value(headers, &CONTENT_DIGEST, limits.header_cap)?
                    .ok_or(Error::invalid_signature("a covered field is absent"))?;
                Some(field.into_owned())
            } else {
                None
            };
            let signed = Signed {
                keyid,
                base,
                signature: &signature,
                nonce: input.params.nonce.as_deref(),
                origin: &directory.origin,
                expires: input.params.expires.unwrap_or_default(),
                protect: limits.protect,
                share_nonce: self.options.shared_nonces,
            };
            // The usual case: no body to read and the key in memory, finished here
            // without copying the request's parts.
            if digest.is_none()
                && let Some(key) = self.cache.cached(&directory.url, keyid, limits.now)
            {
                let (bot, replay) = signed.verify(&*key?, &self.nonce_secret)?;
                return Ok(BotStep::Done(bot, replay));
            }
            Ok(BotStep::Fetch(Box::new(BotPending {
                keyid: keyid.to_owned(),
                base: base.clone(),
                signature: signature.clone(),
                nonce: input.params.nonce.clone(),
                expires: signed.expires,
                protect: limits.protect,
                share_nonce: signed.share_nonce,
                digest,
                directory: directory.clone(),
            })))
        };
        // The per-thread buffer, emptied after use so that no covered value outlives the
        // request; a fresh one where it is unavailable (in use, or the thread exiting).
        let reused = BASE.try_with(|cell| {
            let mut base = cell.try_borrow_mut().ok()?;
            let step = run(&mut base);
            base.clear();
            Some(step)
        });
        match reused {
            Ok(Some(step)) => step,
            _ => run(&mut SignatureBase::new()),
        }
    }

    /// `@authority` (or `@target-uri`) covered, and `Signature-Agent` covered exactly once:
    /// as one Dictionary member (`;key`), or whole in the legacy form. Returns the member.
    fn check_coverage<'a>(&self, input: &'a ParsedInput) -> Result<Option<&'a str>, Error> {
        if !(input.covers("@authority") || input.covers("@target-uri")) {
            return Err(Error::invalid_input(REQUIRED));
        }
        let mut agents = input
            .components
            .iter()
            .filter(|c| c.name() == names::bot::SIGNATURE_AGENT);
        let (Some(agent), None) = (agents.next(), agents.next()) else {
            return Err(Error::invalid_input(REQUIRED));
        };
        match &agent.component {
            Component::Field {
                sf: false,
                key: Some(key),
                ..
            } => Ok(Some(key)),
            Component::Field {
                sf: false, key: None, ..
            } if self.options.legacy_agent_form => Ok(None),
            _ => Err(Error::invalid_input(REQUIRED)),
        }
    }

    /// `created` and `expires` both present, `created` not in the future, `expires` not
    /// passed and at most the configured lifetime after `created`.
    fn check_lifetime(&self, input: &ParsedInput, limits: &Limits) -> Result<(), Error> {
        let (Some(created), Some(expires)) = (input.params.created, input.params.expires) else {
            return Err(Error::invalid_signature(
                "a Web Bot Auth signature needs created and expires",
            ));
        };
        if created > limits.now.saturating_add(limits.max_skew) {
            return Err(Error::signature(
                SignatureErrorCode::ClockSkew,
                "the signature was created in the future",
            ));
        }
        if expires <= limits.now || expires < created {
            return Err(Error::invalid_signature("the signature has expired"));
        }
        if expires - created > self.options.max_lifetime.as_secs() {
            return Err(Error::invalid_signature(
                "the signature's lifetime exceeds the accepted maximum",
            ));
        }
        Ok(())
    }
}

impl BotPending {
    /// Whether the signature covers `Content-Digest`, so that the tail needs the body.
    pub(crate) fn needs_body(&self) -> bool {
        self.digest.is_some()
    }

    /// The tail: the key (from memory, else fetched), the signature, then the body against
    /// a covered `Content-Digest` (`body` is the request's, read when [`Self::needs_body`]).
    pub(crate) async fn finish(
        mut self,
        bots: &Bots,
        body: Option<&[u8]>,
    ) -> Result<(VerifiedBot, Option<ReplayKey>), Error> {
        let digest = self.digest.take();
        let key = match bots.cache.cached(&self.directory.url, &self.keyid, bots.cache.now()) {
            Some(key) => key?,
            None => {
                bots.cache
                    .resolve(
                        &self.directory.url,
                        directory_authority(&self.directory.origin),
                        &self.keyid,
                    )
                    .await?
            }
        };
        let done = match self.verify_with(&key, &bots.nonce_secret)? {
            BotStep::Done(bot, replay) => (bot, replay),
            BotStep::Fetch(_) => return Err(super::directory::UNKNOWN_KEY),
        };
        if let Some(field) = digest {
            let body = body.ok_or(Error::invalid_signature("the body could not be read"))?;
            crate::httpsig::digest::verify_content_digest(&field, body)?;
        }
        Ok(done)
    }

    fn verify_with(self, key: &Jwk, nonce_secret: &LocalSecret) -> Result<BotStep, Error> {
        let signed = Signed {
            keyid: &self.keyid,
            base: &self.base,
            signature: &self.signature,
            nonce: self.nonce.as_deref(),
            origin: &self.directory.origin,
            expires: self.expires,
            protect: self.protect,
            share_nonce: self.share_nonce,
        };
        let (bot, replay) = signed.verify(key, nonce_secret)?;
        Ok(BotStep::Done(bot, replay))
    }
}

/// A bot signature ready to verify: what both the head (key in memory) and the tail
/// (key fetched) check.
struct Signed<'a> {
    keyid: &'a str,
    base: &'a SignatureBase,
    signature: &'a [u8],
    nonce: Option<&'a str>,
    origin: &'a str,
    expires: u64,
    protect: bool,
    /// Whether a nonce on a method the layer does not protect goes to its store too.
    share_nonce: bool,
}

impl Signed<'_> {
    fn verify(&self, key: &Jwk, nonce_secret: &LocalSecret) -> Result<(VerifiedBot, Option<ReplayKey>), Error> {
        // The directory keys by thumbprint, so this holds by construction; checked again
        // because the identity handed on is this string.
        if !crate::jose::thumbprints_match(key.thumbprint_shared(), self.keyid) {
            return Err(super::directory::UNKNOWN_KEY);
        }
        verify_base(self.base, self.signature, key)?;
        let thumbprint = key.thumbprint_shared().clone();
        // Every nonce goes to this process's own nonce store, whatever the method, so that
        // a signature that does not cover the method cannot be used once per store; on a
        // method the layer protects it also goes to the layer's replay store, which
        // replicas may share.
        let local = self
            .nonce
            .map(|nonce| ReplayKey::local_bot_nonce(nonce_secret, &thumbprint, nonce));
        let to_layer = self.protect || self.share_nonce;
        let (replay, local) = match self.nonce {
            Some(nonce) if to_layer => (Some(ReplayKey::bot_nonce(&thumbprint, nonce)), local),
            Some(_) => (local, None),
            None => (
                self.protect
                    .then(|| ReplayKey::signature(&thumbprint, self.base.as_bytes())),
                None,
            ),
        };
        let bot = VerifiedBot {
            origin: Arc::from(self.origin),
            thumbprint,
            replay,
            expires: self.expires,
            unprotected: !(self.protect || (self.share_nonce && self.nonce.is_some())),
            local,
        };
        Ok((bot, replay))
    }
}

/// The authority of a directory origin (`https://host` → `host`): what its response
/// signatures cover as `"@authority";req`.
fn directory_authority(origin: &str) -> &str {
    origin.split_once("://").map_or(origin, |(_, authority)| authority)
}

/// A base64url SHA-256 digest without padding: 43 characters of the URL-safe alphabet.
pub fn is_thumbprint(keyid: &str) -> bool {
    keyid.len() == 43
        && keyid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
