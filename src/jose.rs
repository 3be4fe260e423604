//! JOSE, as much as AAuth needs and no more: Ed25519 JWKs, RFC 7638 thumbprints, and a
//! strict compact-JWS verifier and signer over `ed25519-dalek`.
//!
//! # Why not `jsonwebtoken`
//!
//! Draft -11 requires `"alg":"Ed25519"` (RFC 9864), which `jsonwebtoken` cannot parse; it
//! does not check `typ`; and it applies a 60 s `exp` leeway by default. A compact JWS is
//! three base64url segments, so a verifier that checks `typ` first, takes the algorithm
//! from configuration and the key, and calls `verify_strict` is both simpler and faster.
//!
//! # Strictness
//!
//! * Only the compact serialization, exactly three non-empty segments, characters
//!   `[A-Za-z0-9_-]` and `.` only, canonical unpadded base64url (trailing bits must be zero).
//! * Header and payload must be UTF-8 JSON objects without duplicate member names and at
//!   most [`MAX_JSON_DEPTH`] deep.
//! * `crit`, `jku`, `jwk`, `x5u`, `x5c`, `enc`, `zip`, `b64` and `cty` headers are refused:
//!   keys come only from the issuer's published JWKS.
//! * `alg` must be `Ed25519` (the legacy profile also allows `EdDSA` with an Ed25519 key).

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, SignatureErrorCode};
use crate::names;

/// The deepest JSON nesting accepted in a JWT, JWK or metadata document.
pub const MAX_JSON_DEPTH: usize = 16;

/// Largest compact JWT accepted (bytes), checked before any decoding.
pub const MAX_JWT_LEN: usize = 8 * 1024;

/// Public keys parsed recently ([`Jwk::parse_cached`]): `hwk` keys by their exact
/// parameters and token confirmation keys by their exact JSON. Parsing is a pure function
/// of those, so a hit is exactly what parsing would give.
///
/// Keys enter before any signature made with them has verified, so the bound is in bytes,
/// not entries: a flood of unsigned requests with padded keys can only evict, never pin
/// memory beyond [`PARSED_KEY_CACHE_BYTES`].
static PARSED_KEYS: std::sync::LazyLock<moka::sync::Cache<String, Jwk>> = std::sync::LazyLock::new(|| {
    moka::sync::Cache::builder()
        .max_capacity(PARSED_KEY_CACHE_BYTES)
        .weigher(|text: &String, key: &Jwk| {
            u32::try_from(PARSED_KEY_OVERHEAD + text.len() + key.heap_bytes()).unwrap_or(u32::MAX)
        })
        .build()
});

/// Bytes [`PARSED_KEYS`] may hold: about 4 000 keys of the usual size.
pub(crate) const PARSED_KEY_CACHE_BYTES: u64 = 2 * 1024 * 1024;

/// Longest key text cached. An Ed25519 JWK with `kid`, `alg` and `use` is about 150 bytes
/// of JSON, a P-256 one about 200; the rest leaves room for a long `kid`. Anything longer
/// carries members no key needs: it is parsed every time rather than kept.
const MAX_CACHED_KEY_TEXT: usize = 512;

/// What an entry costs besides its text and the key's strings: the `Jwk` itself (the
/// decompressed point included), the `Arc` of its thumbprint and moka's node.
const PARSED_KEY_OVERHEAD: usize = 320;

/// What [`PARSED_KEYS`] holds, in bytes, added up from its entries after pending
/// evictions (so it does not take the weigher's word for it).
#[cfg(feature = "test-util")]
pub(crate) fn parsed_key_cache_bytes() -> u64 {
    PARSED_KEYS.run_pending_tasks();
    PARSED_KEYS
        .iter()
        .map(|(text, key)| (PARSED_KEY_OVERHEAD + text.len() + key.heap_bytes()) as u64)
        .sum()
}

/// Encodes bytes as unpadded base64url.
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes canonical unpadded base64url (no `=`, no `+`/`/`, zero trailing bits).
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Which spellings of the Ed25519 algorithm a key or token may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlgPolicy {
    /// Draft -11: `alg` present and exactly `Ed25519`.
    #[default]
    Strict,
    /// Demo generation: `Ed25519`, `EdDSA`, or (on JWKs) no `alg` at all, always with an
    /// OKP/Ed25519 key.
    Legacy,
}

/// An Ed25519 public key in JWK form (`kty` `OKP`, `crv` `Ed25519`).
#[derive(Clone, PartialEq, Eq)]
pub struct Jwk {
    key: VerifyingKey,
    x: String,
    /// RFC 7638 thumbprint, computed once: every request signed with this key needs it
    /// (keyid check, `VerifiedRequest`, revocation by key), often more than once.
    thumbprint: Arc<str>,
    kid: Option<String>,
    alg: Option<String>,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("thumbprint", &self.thumbprint())
            .finish()
    }
}

impl Jwk {
    /// The JWK of a verifying key, with `alg` `Ed25519`.
    pub fn from_verifying_key(key: VerifyingKey, kid: Option<String>) -> Self {
        let x = b64url(key.as_bytes());
        Jwk {
            thumbprint: thumbprint_of_x(&x).into(),
            x,
            key,
            kid,
            alg: Some(names::alg::ED25519.to_owned()),
        }
    }

    /// Parses a public Ed25519 JWK from a JSON object.
    ///
    /// Refuses private members, other key types, non-canonical `x`, weak (small-order)
    /// keys, and an `alg` the policy does not allow. A missing or polymorphic `alg` is
    /// `unsupported_algorithm` in the strict profile; a key of another type is
    /// `unsupported_algorithm`; everything structurally wrong is `invalid_key`.
    pub fn from_json(object: &Map<String, Value>, policy: AlgPolicy) -> Result<Self, Error> {
        const PRIVATE: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "k", "oth"];
        if PRIVATE.iter().any(|m| object.contains_key(*m)) {
            return Err(Error::invalid_key("a public key must not carry private members"));
        }
        let kty = str_member(object, "kty").ok_or(Error::invalid_key("the key has no kty"))?;
        let alg = match object.get("alg") {
            None => None,
            Some(Value::String(alg)) => Some(alg.as_str()),
            Some(_) => return Err(Error::invalid_key("the key's alg is not a string")),
        };
        if kty != "OKP" {
            return Err(match kty {
                "EC" | "RSA" | "AKP" => Error::signature(
                    SignatureErrorCode::UnsupportedAlgorithm,
                    "only Ed25519 keys are supported",
                ),
                _ => Error::invalid_key("unsupported or invalid key type"),
            });
        }
        let crv = str_member(object, "crv").ok_or(Error::invalid_key("the key has no crv"))?;
        if crv != "Ed25519" {
            return Err(if crv == "Ed448" {
                Error::signature(
                    SignatureErrorCode::UnsupportedAlgorithm,
                    "only Ed25519 keys are supported",
                )
            } else {
                Error::invalid_key("the key's crv is not an Edwards curve")
            });
        }
        check_alg(alg, policy)?;
        let x = str_member(object, "x").ok_or(Error::invalid_key("the key has no x"))?;
        let key = decode_public_key(x)?;
        let kid = match object.get("kid") {
            None => None,
            Some(Value::String(kid)) if is_opaque_id(kid) => Some(kid.clone()),
            Some(_) => return Err(Error::invalid_key("the key's kid is not a printable string")),
        };
        Ok(Jwk {
            key,
            thumbprint: thumbprint_of_x(x).into(),
            x: x.to_owned(),
            kid,
            alg: alg.map(str::to_owned),
        })
    }

    /// [`Jwk::from_json`] through the process-wide cache of recently parsed keys.
    ///
    /// Agents present the same confirmation key (`cnf.jwk`) in every token they are
    /// issued; a token seen for the first time is usually not a key seen for the first
    /// time, so the point decompression and thumbprint (an eighth of a verification) are
    /// paid once per key rather than once per token. The cache key is the policy and the
    /// object's serialization, which together determine the result; keys from tokens not
    /// yet verified enter the cache too, which lets a flood evict entries but never
    /// change what a given input parses to.
    pub(crate) fn from_json_cached(object: &Map<String, Value>, policy: AlgPolicy) -> Result<Self, Error> {
        let mut cache_key = String::with_capacity(128);
        cache_key.push_str(match policy {
            AlgPolicy::Strict => "jwk-strict\0",
            AlgPolicy::Legacy => "jwk-legacy\0",
        });
        // A map of JSON values always serializes; were it ever not to, parse uncached
        // rather than share one cache key between different keys.
        let Ok(json) = serde_json::to_string(object) else {
            return Self::from_json(object, policy);
        };
        cache_key.push_str(&json);
        Self::parse_cached(cache_key, || Self::from_json(object, policy))
    }

    /// Looks `cache_key` up in the parsed-key cache, or runs `parse` and caches its key.
    /// `cache_key` must determine `parse`'s result exactly; failures are not cached, so
    /// a refused key costs its parse every time but never occupies the cache.
    pub(crate) fn parse_cached(cache_key: String, parse: impl FnOnce() -> Result<Self, Error>) -> Result<Self, Error> {
        if cache_key.len() > MAX_CACHED_KEY_TEXT {
            return parse();
        }
        if let Some(key) = PARSED_KEYS.get(&cache_key) {
            return Ok(key);
        }
        let key = parse()?;
        PARSED_KEYS.insert(cache_key, key.clone());
        Ok(key)
    }

    /// Heap bytes owned by this key's strings.
    fn heap_bytes(&self) -> usize {
        self.x.len()
            + self.thumbprint.len()
            + self.kid.as_ref().map_or(0, String::len)
            + self.alg.as_ref().map_or(0, String::len)
    }

    /// The `ed25519-dalek` verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `alg`, if any.
    pub fn alg(&self) -> Option<&str> {
        self.alg.as_deref()
    }

    /// The base64url `x` member.
    pub fn x(&self) -> &str {
        &self.x
    }

    /// RFC 7638 SHA-256 thumbprint, base64url without padding.
    pub fn thumbprint(&self) -> String {
        self.thumbprint.as_ref().to_owned()
    }

    /// The RFC 7638 thumbprint, shared: computed once when the key was parsed.
    pub fn thumbprint_shared(&self) -> &Arc<str> {
        &self.thumbprint
    }

    /// The public JWK as JSON, with `kid`, `alg` and `use` when known.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("kty".into(), "OKP".into());
        object.insert("crv".into(), "Ed25519".into());
        object.insert("x".into(), self.x.clone().into());
        if let Some(kid) = &self.kid {
            object.insert("kid".into(), kid.clone().into());
        }
        if let Some(alg) = &self.alg {
            object.insert("alg".into(), alg.clone().into());
        }
        Value::Object(object)
    }

    /// Verifies an Ed25519 signature over `message`, accepting exactly what
    /// `verify_strict` accepts (it refuses small-order components and non-canonical
    /// encodings), at about 0.91 of its cost: the recomputed `R` is compared as a point
    /// instead of being encoded again.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        crate::batch::verify_like_strict(&self.key, message, signature)
    }
}

/// Whether `text` holds only the characters of a compact JWS: the base64url alphabet
/// and `.`. Written as a fold without early exit, with range tests instead of a table,
/// so that it compiles to vector code: a token is scanned on every `jwt` request, cache
/// hits included, and at ~900 bytes a byte-at-a-time scan cost ~1 % of an Ed25519
/// verification.
pub(crate) fn is_compact_jws_text(text: &str) -> bool {
    text.bytes().fold(true, |ok, b| {
        // `| 0x20` maps A–Z onto a–z and no other byte into a–z.
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        let digit = b.wrapping_sub(b'0') < 10;
        ok & (letter | digit | (b == b'-') | (b == b'_') | (b == b'.'))
    })
}

/// Whether two thumbprints (or other hash encodings) are equal, in time independent of
/// where they first differ: key thumbprints select what an agent may collect, so their
/// comparison should not hint at how much of a guess was right.
pub fn thumbprints_match(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// RFC 7638 thumbprint of an Ed25519 key given by its canonical base64url `x`.
pub fn thumbprint_of_x(x: &str) -> String {
    // Members in lexicographic order, no whitespace (RFC 7638 §3.2).
    let mut hasher = Sha256::new();
    hasher.update(br#"{"crv":"Ed25519","kty":"OKP","x":""#);
    hasher.update(x.as_bytes());
    hasher.update(br#""}"#);
    b64url(hasher.finalize())
}

fn str_member<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    object.get(name).and_then(Value::as_str)
}

fn check_alg(alg: Option<&str>, policy: AlgPolicy) -> Result<(), Error> {
    match (alg, policy) {
        (Some(names::alg::ED25519), _) => Ok(()),
        (Some(names::alg::EDDSA) | None, AlgPolicy::Legacy) => Ok(()),
        (None, AlgPolicy::Strict) => Err(Error::signature(
            SignatureErrorCode::UnsupportedAlgorithm,
            "the key has no fully specified alg",
        )),
        (Some(names::alg::EDDSA), AlgPolicy::Strict) => Err(Error::signature(
            SignatureErrorCode::UnsupportedAlgorithm,
            "the polymorphic EdDSA algorithm is not accepted; use Ed25519",
        )),
        (Some(_), _) => Err(Error::invalid_key("the key's alg does not match its key type")),
    }
}

/// Decodes a canonical 32-byte Ed25519 public key and refuses weak keys.
pub(crate) fn decode_public_key(x: &str) -> Result<VerifyingKey, Error> {
    if x.len() != 43 {
        return Err(Error::invalid_key("the key's x is not 32 bytes"));
    }
    let bytes = b64url_decode(x).ok_or(Error::invalid_key("the key's x is not canonical base64url"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| Error::invalid_key("the key's x is not 32 bytes"))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| Error::invalid_key("the key's x is not a curve point"))?;
    if key.is_weak() {
        return Err(Error::invalid_key("the key is a small-order point"));
    }
    Ok(key)
}

/// An opaque identifier (`kid`, `jti`, `sub`): 1–256 bytes of visible ASCII.
pub(crate) fn is_opaque_id(value: &str) -> bool {
    !value.is_empty() && value.len() <= 256 && value.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// A compact JWS whose structure and header were checked but whose signature was not.
#[derive(Debug, Clone)]
pub struct UnverifiedJws<'a> {
    signing_input: &'a str,
    header: Map<String, Value>,
    // Shared so that a verified token keeps its claims without copying them.
    payload: Arc<Map<String, Value>>,
    signature: [u8; 64],
}

impl<'a> UnverifiedJws<'a> {
    /// Parses a compact JWS strictly (see the module docs). Every failure is `invalid_jwt`.
    pub fn parse(token: &'a str, policy: AlgPolicy) -> Result<Self, Error> {
        if token.len() > MAX_JWT_LEN {
            return Err(Error::invalid_jwt("the token exceeds the size limit"));
        }
        if !is_compact_jws_text(token) {
            return Err(Error::invalid_jwt("the token is not a compact JWS"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(Error::invalid_jwt("the token does not have three segments"));
        };
        if h.is_empty() || p.is_empty() || s.is_empty() {
            return Err(Error::invalid_jwt("the token has an empty segment"));
        }
        let header = decode_json_segment(h)?;
        check_header(&header, policy)?;
        let signature = b64url_decode(s)
            .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
            .ok_or(Error::invalid_jwt("the token's signature is not 64 bytes of base64url"))?;
        let payload = Arc::new(decode_json_segment(p)?);
        Ok(UnverifiedJws {
            signing_input: &token[..h.len() + 1 + p.len()],
            header,
            payload,
            signature,
        })
    }

    /// The protected header.
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The `typ` header.
    pub fn typ(&self) -> Option<&str> {
        str_member(&self.header, "typ")
    }

    /// The `kid` header.
    pub fn kid(&self) -> Option<&str> {
        str_member(&self.header, "kid")
    }

    /// The `alg` header (already checked against the policy).
    pub fn alg(&self) -> &str {
        str_member(&self.header, "alg").unwrap_or_default()
    }

    /// The claims.
    pub fn payload(&self) -> &Map<String, Value> {
        &self.payload
    }

    /// The claims, shared: what a verified token keeps without copying them.
    pub fn payload_shared(&self) -> &Arc<Map<String, Value>> {
        &self.payload
    }

    /// Consumes the token, returning its claims.
    pub fn into_payload(self) -> Map<String, Value> {
        Arc::unwrap_or_clone(self.payload)
    }

    /// The signing input and the signature, for a verification done elsewhere (a batch).
    pub(crate) fn signed_parts(&self) -> (&[u8], &[u8; 64]) {
        (self.signing_input.as_bytes(), &self.signature)
    }

    /// Verifies the signature with `key`. There is no `alg` to reconcile: the header's
    /// and the key's are each `Ed25519` or its legacy spelling `EdDSA` by the time they
    /// get here (both parsers refuse every other value), so the signature alone decides.
    pub fn verify_with(&self, key: &Jwk) -> Result<(), Error> {
        if key.verify(self.signing_input.as_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(Error::invalid_jwt("the token's signature does not verify"))
        }
    }
}

fn check_header(header: &Map<String, Value>, policy: AlgPolicy) -> Result<(), Error> {
    const REFUSED: [&str; 9] = ["crit", "jku", "jwk", "x5u", "x5c", "enc", "zip", "b64", "cty"];
    if REFUSED.iter().any(|name| header.contains_key(*name)) {
        return Err(Error::invalid_jwt("the token carries a header this verifier refuses"));
    }
    match (str_member(header, "alg"), policy) {
        (Some(names::alg::ED25519), _) | (Some(names::alg::EDDSA), AlgPolicy::Legacy) => {}
        _ => return Err(Error::invalid_jwt("the token's alg is not accepted")),
    }
    match header.get("typ") {
        Some(Value::String(_)) => {}
        _ => return Err(Error::invalid_jwt("the token has no typ")),
    }
    match header.get("kid") {
        None => {}
        Some(Value::String(kid)) if is_opaque_id(kid) => {}
        Some(_) => return Err(Error::invalid_jwt("the token's kid is not a printable string")),
    }
    Ok(())
}

fn decode_json_segment(segment: &str) -> Result<Map<String, Value>, Error> {
    let bytes = b64url_decode(segment).ok_or(Error::invalid_jwt("a token segment is not canonical base64url"))?;
    parse_json_object(&bytes).ok_or(Error::invalid_jwt("a token segment is not a strict JSON object"))
}

/// Parses a UTF-8 JSON object, refusing duplicate member names at any depth and nesting
/// deeper than [`MAX_JSON_DEPTH`].
pub fn parse_json_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue { depth: 0 }.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    match value {
        Value::Object(object) => Some(object),
        _ => None,
    }
}

struct StrictValue {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Implements what `serde_json`'s slice deserializer calls: it hands every string over as
/// a `&str` (borrowed, or unescaped into its scratch buffer), never as a `String`.
impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.depth >= MAX_JSON_DEPTH {
            return Err(de::Error::custom("nesting too deep"));
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue { depth: self.depth + 1 })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        if self.depth >= MAX_JSON_DEPTH {
            return Err(de::Error::custom("nesting too deep"));
        }
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(StrictValue { depth: self.depth + 1 })?;
            if object.insert(key, value).is_some() {
                return Err(de::Error::custom("duplicate member"));
            }
        }
        Ok(Value::Object(object))
    }
}

/// An Ed25519 signing key with its `kid`; what the resource signs resource tokens with.
///
/// `Debug` never prints key material, and the secret is zeroized on drop.
#[derive(Clone)]
pub struct ResourceKey {
    signing: SigningKey,
    kid: String,
}

impl fmt::Debug for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceKey")
            .field("kid", &self.kid)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ResourceKey {
    /// A fresh key from the operating system's CSPRNG; `kid` is its thumbprint.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system has no usable random source");
        Self::from_seed(seed)
    }

    /// A key from a 32-byte seed; `kid` is its thumbprint.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let kid = thumbprint_of_x(&b64url(signing.verifying_key().as_bytes()));
        ResourceKey { signing, kid }
    }

    /// A key from an unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) holding an
    /// Ed25519 key, as OpenSSL makes one:
    ///
    /// ```sh
    /// openssl genpkey -algorithm ed25519 -out resource-key.pem
    /// ```
    ///
    /// A refusal names what the PEM holds instead (an encrypted key, a public key, an
    /// OpenSSH, SEC1 or PKCS#1 key, a PKCS#8 key of another algorithm) and never quotes
    /// key material.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, crate::error::ConfigError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let signing = SigningKey::from_pkcs8_pem(pem).map_err(|error| crate::diagnose::refused_pem(pem, &error))?;
        let kid = thumbprint_of_x(&b64url(signing.verifying_key().as_bytes()));
        Ok(ResourceKey { signing, kid })
    }

    /// Replaces the derived `kid`.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = kid.into();
        self
    }

    /// The `kid` published in the JWKS and put in token headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK (`kid`, `alg` `Ed25519`).
    pub fn public_jwk(&self) -> Jwk {
        Jwk::from_verifying_key(self.signing.verifying_key(), Some(self.kid.clone()))
    }

    /// Signs raw bytes (for example an RFC 9421 signature base).
    pub fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Signs a compact JWS with header `{"alg":<alg>,"typ":<typ>,"kid":<kid>}`.
    pub fn sign_jwt(&self, typ: &str, alg: &str, claims: &Value) -> String {
        let header = serde_json::json!({ "alg": alg, "typ": typ, "kid": self.kid });
        let mut token = b64url(serde_json::to_vec(&header).unwrap_or_default());
        token.push('.');
        token.push_str(&b64url(serde_json::to_vec(claims).unwrap_or_default()));
        let signature = self.signing.sign(token.as_bytes());
        token.push('.');
        token.push_str(&b64url(signature.to_bytes()));
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC9421_X: &str = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs";

    fn signed_token(header: &Value, payload: &Value, key: &ResourceKey) -> String {
        let input = format!("{}.{}", b64url(header.to_string()), b64url(payload.to_string()));
        let signature = key.sign_bytes(input.as_bytes());
        format!("{input}.{}", b64url(signature))
    }

    #[test]
    fn a_token_of_exactly_the_cap_is_parsed_and_one_byte_more_is_refused() {
        assert_eq!(MAX_JWT_LEN, 8192);
        let key = ResourceKey::from_seed([3; 32]).with_kid("k");
        // A base64url segment grows in steps of 4/3, so one filler cannot hit every length:
        // a filler in the header (kid) and one in the payload together can.
        let token = (0..4)
            .flat_map(|h| (6000..6200).map(move |p| (h, p)))
            .map(|(h, p)| {
                let header = serde_json::json!({"alg": "Ed25519", "typ": "aa-auth+jwt", "kid": "k".repeat(h + 1)});
                signed_token(&header, &serde_json::json!({ "p": "a".repeat(p) }), &key)
            })
            .find(|token| token.len() == MAX_JWT_LEN)
            .expect("a token of exactly the cap");
        assert!(UnverifiedJws::parse(&token, AlgPolicy::Strict).is_ok());
        let over = format!("{token}A");
        let err = UnverifiedJws::parse(&over, AlgPolicy::Strict).unwrap_err();
        assert_eq!(err.signature_code(), Some(SignatureErrorCode::InvalidJwt));
        assert_eq!(err.detail(), "the token exceeds the size limit");
    }

    #[test]
    fn compact_jws_text_is_exactly_base64url_and_dots() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-_.".contains(&b);
            let text = [b'a', b, b'z'];
            assert_eq!(
                std::str::from_utf8(&text).map(is_compact_jws_text).unwrap_or(false),
                expected,
                "{b:#04x}"
            );
        }
        assert!(is_compact_jws_text(""));
        assert!(!is_compact_jws_text("a\u{e9}b"));
    }

    #[test]
    fn thumbprints_match_only_when_equal() {
        let a = thumbprint_of_x(RFC9421_X);
        assert!(thumbprints_match(&a, &a.clone()));
        let mut b = a.clone().into_bytes();
        b[42] ^= 1;
        assert!(!thumbprints_match(&a, std::str::from_utf8(&b).unwrap()));
        assert!(!thumbprints_match(&a, &a[..42]));
        assert!(!thumbprints_match(&a, ""));
    }

    #[test]
    fn header_and_payload_accessors_return_what_was_parsed() {
        let key = ResourceKey::from_seed([3; 32]).with_kid("k");
        let header = serde_json::json!({"alg": "Ed25519", "typ": "aa-auth+jwt", "kid": "k"});
        let token = signed_token(&header, &serde_json::json!({"sub": "s"}), &key);
        let jws = UnverifiedJws::parse(&token, AlgPolicy::Strict).unwrap();
        assert_eq!(jws.header()["typ"], "aa-auth+jwt");
        assert_eq!(jws.payload()["sub"], "s");
        assert_eq!(jws.into_payload()["sub"], "s");
    }

    #[test]
    fn a_kid_that_is_not_an_opaque_id_is_refused_in_tokens_and_keys() {
        let key = ResourceKey::from_seed([3; 32]).with_kid("k");
        for kid in ["a b", "", "a\u{7f}", &"k".repeat(257)] {
            let header = serde_json::json!({"alg": "Ed25519", "typ": "aa-auth+jwt", "kid": kid});
            let token = signed_token(&header, &serde_json::json!({}), &key);
            assert!(UnverifiedJws::parse(&token, AlgPolicy::Strict).is_err(), "{kid:?}");
            assert!(
                jwk(serde_json::json!({"kty":"OKP","crv":"Ed25519","x":RFC9421_X,"alg":"Ed25519","kid":kid})).is_err(),
                "{kid:?}"
            );
        }
        assert!(is_opaque_id(&"k".repeat(256)));
        assert!(is_opaque_id("!~"));
        assert!(!is_opaque_id("a\u{20}"));
    }

    #[test]
    fn ed448_is_an_unsupported_algorithm_and_other_curves_are_invalid_keys() {
        let ed448 = jwk(serde_json::json!({"kty":"OKP","crv":"Ed448","x":RFC9421_X,"alg":"Ed25519"})).unwrap_err();
        assert_eq!(ed448.signature_code(), Some(SignatureErrorCode::UnsupportedAlgorithm));
        let x25519 = jwk(serde_json::json!({"kty":"OKP","crv":"X25519","x":RFC9421_X,"alg":"Ed25519"})).unwrap_err();
        assert_eq!(x25519.signature_code(), Some(SignatureErrorCode::InvalidKey));
    }

    #[test]
    fn a_cached_key_parse_is_reused_and_keyed_by_the_exact_json_and_policy() {
        let json = serde_json::json!({"kty":"OKP","crv":"Ed25519","x":RFC9421_X,"kid":"cached-1"});
        let object = json.as_object().unwrap();
        let parsed = Jwk::from_json_cached(object, AlgPolicy::Legacy).unwrap();
        assert_eq!(parsed, Jwk::from_json(object, AlgPolicy::Legacy).unwrap());
        let cache_key = format!("jwk-legacy\0{}", serde_json::to_string(object).unwrap());
        assert_eq!(PARSED_KEYS.get(&cache_key), Some(parsed.clone()));
        // The same JSON under the strict policy (which needs `alg`) is not a hit.
        let strict = Jwk::from_json_cached(object, AlgPolicy::Strict).unwrap_err();
        assert_eq!(strict.signature_code(), Some(SignatureErrorCode::UnsupportedAlgorithm));
        // A hit does not parse again.
        let again = Jwk::parse_cached(cache_key, || panic!("a cached key is parsed again")).unwrap();
        assert_eq!(again, parsed);
    }

    #[test]
    fn a_refused_key_is_not_cached() {
        let json = serde_json::json!({"kty":"OKP","crv":"Ed25519","x":"AAAA","alg":"Ed25519"});
        let object = json.as_object().unwrap();
        let refused = Jwk::from_json_cached(object, AlgPolicy::Strict).unwrap_err();
        assert_eq!(refused.signature_code(), Some(SignatureErrorCode::InvalidKey));
        let cache_key = format!("jwk-strict\0{}", serde_json::to_string(object).unwrap());
        assert!(PARSED_KEYS.get(&cache_key).is_none());
    }

    #[test]
    fn a_key_text_longer_than_any_real_key_is_parsed_but_not_cached() {
        let padding = "p".repeat(MAX_CACHED_KEY_TEXT);
        let json = serde_json::json!({"kty":"OKP","crv":"Ed25519","x":RFC9421_X,"alg":"Ed25519","padding":padding});
        let object = json.as_object().unwrap();
        let parsed = Jwk::from_json_cached(object, AlgPolicy::Strict).unwrap();
        assert_eq!(parsed, Jwk::from_json(object, AlgPolicy::Strict).unwrap());
        let cache_key = format!("jwk-strict\0{}", serde_json::to_string(object).unwrap());
        assert!(PARSED_KEYS.get(&cache_key).is_none());
    }

    #[test]
    fn jwk_debug_names_the_key_by_thumbprint_material_only() {
        let key =
            jwk(serde_json::json!({"kty":"OKP","crv":"Ed25519","x":RFC9421_X,"alg":"Ed25519","kid":"k1"})).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.starts_with("Jwk"), "{debug}");
        assert!(debug.contains("k1"), "{debug}");
    }

    #[test]
    fn verify_with_accepts_either_spelling_on_either_side_and_decides_by_the_signature() {
        let signer = ResourceKey::from_seed([3; 32]).with_kid("k");
        let x = signer.public_jwk().x().to_owned();
        let key_with = |alg: Option<&str>| {
            let mut json = serde_json::json!({"kty":"OKP","crv":"Ed25519","x":x});
            if let Some(alg) = alg {
                json["alg"] = Value::from(alg);
            }
            Jwk::from_json(json.as_object().unwrap(), AlgPolicy::Legacy).unwrap()
        };
        let token = |alg: &str| {
            let header = serde_json::json!({"alg": alg, "typ": "aa-auth+jwt", "kid": "k"});
            signed_token(&header, &serde_json::json!({}), &signer)
        };
        let verify = |token_alg: &str, key_alg: Option<&str>| {
            UnverifiedJws::parse(&token(token_alg), AlgPolicy::Legacy)
                .unwrap()
                .verify_with(&key_with(key_alg))
                .is_ok()
        };
        assert!(verify("Ed25519", Some("Ed25519")));
        assert!(verify("Ed25519", Some("EdDSA")));
        assert!(verify("EdDSA", Some("Ed25519")));
        assert!(verify("EdDSA", Some("EdDSA")));
        assert!(verify("Ed25519", None));
        assert!(verify("EdDSA", None));
        // A wrong signature never verifies, whatever the algorithms.
        let mut forged = token("Ed25519").into_bytes();
        let at = forged.len() - 10;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let jws = UnverifiedJws::parse(&forged, AlgPolicy::Legacy).unwrap();
        assert!(jws.verify_with(&key_with(Some("Ed25519"))).is_err());
        assert!(jws.verify_with(&key_with(None)).is_err());
    }

    #[test]
    fn strict_json_keeps_every_scalar_type_and_counts_depth_exactly() {
        let text =
            r#"{"b":true,"f":false,"i":-5,"u":7,"x":1.5,"s":"t","e":"a\"\u00e9","n":null,"a":[1,"2"],"o":{"k":"v"}}"#;
        let parsed = parse_json_object(text.as_bytes()).unwrap();
        let expected: Map<String, Value> = serde_json::from_str(text).unwrap();
        assert_eq!(parsed, expected);
        let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        // The object itself is one level.
        assert!(parse_json_object(format!("{{\"a\":{}}}", nested(MAX_JSON_DEPTH - 1)).as_bytes()).is_some());
        assert!(parse_json_object(format!("{{\"a\":{}}}", nested(MAX_JSON_DEPTH)).as_bytes()).is_none());
        let objects = |depth: usize| format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert!(parse_json_object(objects(MAX_JSON_DEPTH).as_bytes()).is_some());
        assert!(parse_json_object(objects(MAX_JSON_DEPTH + 1).as_bytes()).is_none());
    }

    fn jwk(json: Value) -> Result<Jwk, Error> {
        Jwk::from_json(json.as_object().unwrap(), AlgPolicy::Strict)
    }

    #[test]
    fn thumbprint_matches_rfc8037_a3() {
        assert_eq!(
            thumbprint_of_x("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn thumbprint_matches_rfc9421_test_key_and_ignores_alg_and_kid() {
        let key =
            jwk(serde_json::json!({"kty":"OKP","crv":"Ed25519","x":RFC9421_X,"alg":"Ed25519","kid":"k"})).unwrap();
        assert_eq!(key.thumbprint(), "poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U");
    }

    #[test]
    fn non_canonical_x_is_invalid_key() {
        let err = jwk(serde_json::json!({"kty":"OKP","crv":"Ed25519","x":"JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bt","alg":"Ed25519"})).unwrap_err();
        assert_eq!(err.signature_code(), Some(SignatureErrorCode::InvalidKey));
    }

    #[test]
    fn strict_policy_requires_alg() {
        let err = jwk(serde_json::json!({"kty":"OKP","crv":"Ed25519","x":RFC9421_X})).unwrap_err();
        assert_eq!(err.signature_code(), Some(SignatureErrorCode::UnsupportedAlgorithm));
        let err = jwk(serde_json::json!({"kty":"OKP","crv":"Ed25519","x":RFC9421_X,"alg":"EdDSA"})).unwrap_err();
        assert_eq!(err.signature_code(), Some(SignatureErrorCode::UnsupportedAlgorithm));
    }

    #[test]
    fn legacy_policy_infers_ed25519() {
        let object = serde_json::json!({"kty":"OKP","crv":"Ed25519","x":RFC9421_X});
        assert!(Jwk::from_json(object.as_object().unwrap(), AlgPolicy::Legacy).is_ok());
    }

    #[test]
    fn private_members_are_refused() {
        let err = jwk(serde_json::json!({"kty":"OKP","crv":"Ed25519","x":RFC9421_X,"alg":"Ed25519","d":"n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU"})).unwrap_err();
        assert_eq!(err.signature_code(), Some(SignatureErrorCode::InvalidKey));
    }

    #[test]
    fn identity_point_is_a_weak_key() {
        let err = jwk(serde_json::json!({"kty":"OKP","crv":"Ed25519","x":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","alg":"Ed25519"})).unwrap_err();
        assert_eq!(err.signature_code(), Some(SignatureErrorCode::InvalidKey));
    }

    #[test]
    fn sign_then_parse_and_verify() {
        let key = ResourceKey::from_seed([7; 32]);
        let token = key.sign_jwt(
            "aa-resource+jwt",
            "Ed25519",
            &serde_json::json!({"iss":"https://r.example"}),
        );
        let jws = UnverifiedJws::parse(&token, AlgPolicy::Strict).unwrap();
        assert_eq!(jws.typ(), Some("aa-resource+jwt"));
        jws.verify_with(&key.public_jwk()).unwrap();
        let other = ResourceKey::from_seed([8; 32]);
        assert!(jws.verify_with(&other.public_jwk()).is_err());
    }

    #[test]
    fn duplicate_members_and_deep_nesting_are_refused() {
        assert!(parse_json_object(br#"{"alg":"Ed25519","alg":"none"}"#).is_none());
        assert!(parse_json_object(br#"{"a":{"b":1,"b":2}}"#).is_none());
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        assert!(parse_json_object(deep.as_bytes()).is_none());
        assert!(parse_json_object(br#"[1]"#).is_none());
    }

    #[test]
    fn refused_headers_and_algs() {
        let key = ResourceKey::from_seed([7; 32]);
        for alg in ["none", "None", "HS256", "EdDSA", "ed25519", "ES256"] {
            let token = key.sign_jwt("aa-auth+jwt", alg, &serde_json::json!({}));
            assert!(UnverifiedJws::parse(&token, AlgPolicy::Strict).is_err(), "{alg}");
        }
        let token = key.sign_jwt("aa-auth+jwt", "EdDSA", &serde_json::json!({}));
        assert!(UnverifiedJws::parse(&token, AlgPolicy::Legacy).is_ok());
    }

    #[test]
    fn debug_redacts_signing_key() {
        let key = ResourceKey::from_seed([9; 32]);
        let printed = format!("{key:?}");
        assert!(printed.contains("redacted"));
        assert!(!printed.contains(&b64url([9u8; 32])));
    }
}
