//! RFC 9421 HTTP Message Signatures, the part a verifier needs.
//!
//! * [`SignatureHeaders::read`] pulls `Signature-Input`, `Signature` and `Signature-Key`
//!   out of a request, size-capped, multi-line fields joined with `", "`.
//! * [`ParsedInput::parse`] parses the selected `Signature-Input` member with `sfv`
//!   (RFC 9651): covered components, their parameters, and the signature parameters. The
//!   canonical shape agents send takes a hand-written fast path that yields exactly what
//!   `sfv` would (see `fast_input`).
//! * [`SignatureBase`] rebuilds the signature base exactly as [RFC 9421
//!   §2.5](https://www.rfc-editor.org/rfc/rfc9421#section-2.5) says, into a reusable
//!   buffer.
//! * [`decode_signature`] turns the `Signature` byte sequence into raw bytes. Standard
//!   base64 is the RFC form; base64url (what PyPI `aauth` emits) is accepted unless the
//!   option refuses it, because the bytes are checked cryptographically anyway.
//!
//! The AAuth policy on top (which components are required, the `created` window, which
//! key) lives in [`crate::verifier`]; this module is the plain RFC engine, usable on its
//! own with a static key as the RFC's test vectors require.

pub mod digest;
mod fast_input;

pub(crate) use fast_input::{key_end, plain_string_end, string_member};

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use http::HeaderMap;
use http::header::{AsHeaderName, HeaderName};
use sfv::visitor::{DictionaryVisitor, EntryVisitor};
use sfv::{BareItem, Dictionary, InnerList, KeyRef, ListEntry, Parser};

use crate::error::Error;
use crate::jose::Jwk;
use crate::names;

/// Default cap on each signature-related header field (bytes, all lines together).
pub const DEFAULT_HEADER_CAP: usize = 8 * 1024;

/// Default cap on the number of covered components.
pub const DEFAULT_MAX_COMPONENTS: usize = 24;

/// The three signature fields of a request, as received (lines joined with `", "`).
#[derive(Debug, Clone)]
pub struct SignatureHeaders<'a> {
    /// `Signature-Input`.
    pub input: Cow<'a, str>,
    /// `Signature`.
    pub signature: Cow<'a, str>,
    /// `Signature-Key`.
    pub key: Cow<'a, str>,
}

impl<'a> SignatureHeaders<'a> {
    /// Reads the three fields.
    ///
    /// `Ok(None)`: none present (an unsigned request). Some but not all present, a field
    /// over `cap` bytes, or a field that is not visible ASCII: `invalid_signature`.
    pub fn read(headers: &'a HeaderMap, cap: usize) -> Result<Option<Self>, Error> {
        // Pre-built names: looking a `&str` up parses and hashes it anew on every request.
        static INPUT: HeaderName = HeaderName::from_static(names::header::SIGNATURE_INPUT);
        static SIGNATURE: HeaderName = HeaderName::from_static(names::header::SIGNATURE);
        static KEY: HeaderName = HeaderName::from_static(names::header::SIGNATURE_KEY);
        let input = field_value(headers, &INPUT, cap)?;
        let signature = field_value(headers, &SIGNATURE, cap)?;
        let key = field_value(headers, &KEY, cap)?;
        match (input, signature, key) {
            (None, None, None) => Ok(None),
            (Some(input), Some(signature), Some(key)) => Ok(Some(SignatureHeaders { input, signature, key })),
            _ => Err(Error::invalid_signature(
                "Signature-Input, Signature and Signature-Key must be sent together",
            )),
        }
    }
}

/// The canonical value of a header field per [RFC 9421
/// §2.1](https://www.rfc-editor.org/rfc/rfc9421#section-2.1): each line trimmed, lines
/// joined with `", "`. `None` when absent. Non-ASCII or control bytes are refused.
pub fn field_value<'a>(
    headers: &'a HeaderMap,
    name: impl AsHeaderName,
    cap: usize,
) -> Result<Option<Cow<'a, str>>, Error> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let first = ascii_field(first.as_bytes())?;
    let Some(second) = values.next() else {
        if first.len() > cap {
            return Err(Error::invalid_signature("a header field exceeds the size limit"));
        }
        return Ok(Some(Cow::Borrowed(first)));
    };
    let mut joined = String::with_capacity(first.len() * 2 + 2);
    joined.push_str(first);
    for value in std::iter::once(second).chain(values) {
        joined.push_str(", ");
        joined.push_str(ascii_field(value.as_bytes())?);
        if joined.len() > cap {
            return Err(Error::invalid_signature("a header field exceeds the size limit"));
        }
    }
    Ok(Some(Cow::Owned(joined)))
}

/// Whether `bytes` hold a control character (other than `allowed`) or a non-ASCII byte.
/// Written as a fold without early exit so that it compiles to vector code: header
/// values here are up to a few KiB (a JWT) and are checked on every request.
fn has_forbidden_byte(bytes: &[u8], allowed: u8) -> bool {
    bytes.iter().fold(false, |bad, &b| {
        bad | (b >= 0x7f) | ((b < 0x20) & (b != allowed) & (b != b'\t'))
    })
}

fn ascii_field(bytes: &[u8]) -> Result<&str, Error> {
    if has_forbidden_byte(bytes, b'\t') {
        return Err(Error::invalid_signature(
            "a covered field holds non-ASCII or control characters",
        ));
    }
    // Checked above: printable ASCII plus tab is UTF-8.
    let text = std::str::from_utf8(bytes).map_err(|_| Error::invalid_signature("a field is not ASCII"))?;
    // Only space and tab can be the whitespace here: every other control byte was refused.
    Ok(text.trim_ascii())
}

/// Parses an RFC 9651 Dictionary, refusing duplicate member names (RFC 9651 would keep
/// the last; an attacker-appended duplicate label must not silently win).
pub fn parse_dictionary_strict(input: &str) -> Option<Dictionary> {
    Parser::new(input)
        .parse_dictionary_with_visitor(NoDuplicates(Dictionary::new()))
        .ok()
}

struct NoDuplicates(Dictionary);

#[derive(Debug)]
struct DuplicateMember;

impl std::fmt::Display for DuplicateMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("duplicate dictionary member")
    }
}

impl std::error::Error for DuplicateMember {}

impl<'de> DictionaryVisitor<'de> for NoDuplicates {
    type Out = Dictionary;
    type Error = DuplicateMember;

    fn entry(&mut self, key: &'de KeyRef) -> Result<impl EntryVisitor<'de>, Self::Error> {
        if self.0.contains_key(key) {
            return Err(DuplicateMember);
        }
        match <Dictionary as DictionaryVisitor<'de>>::entry(&mut self.0, key) {
            Ok(entry) => Ok(entry),
            Err(never) => match never {},
        }
    }

    fn finish(self) -> Result<Dictionary, Self::Error> {
        Ok(self.0)
    }
}

/// A derived component ([RFC 9421
/// §2.2](https://www.rfc-editor.org/rfc/rfc9421#section-2.2)), request side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derived {
    /// `@method`
    Method,
    /// `@authority`
    Authority,
    /// `@path`
    Path,
    /// `@query`
    Query,
    /// `@target-uri`
    TargetUri,
    /// `@scheme`
    Scheme,
    /// `@request-target`
    RequestTarget,
}

impl Derived {
    /// The component name, `@method` and so on.
    pub const fn as_str(self) -> &'static str {
        match self {
            Derived::Method => "@method",
            Derived::Authority => "@authority",
            Derived::Path => "@path",
            Derived::Query => "@query",
            Derived::TargetUri => "@target-uri",
            Derived::Scheme => "@scheme",
            Derived::RequestTarget => "@request-target",
        }
    }

    /// Every derived component this crate builds.
    const ALL: [Derived; 7] = [
        Derived::Method,
        Derived::Authority,
        Derived::Path,
        Derived::Query,
        Derived::TargetUri,
        Derived::Scheme,
        Derived::RequestTarget,
    ];

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|derived| derived.as_str() == name)
    }
}

/// One covered component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    /// A derived component.
    Derived(Derived),
    /// An HTTP field, optionally re-serialised strictly (`;sf`) or narrowed to one
    /// Dictionary member (`;key="…"`).
    Field {
        /// Lower-case field name.
        name: Cow<'static, str>,
        /// `;sf`
        sf: bool,
        /// `;key="…"`
        key: Option<String>,
    },
}

/// A covered component together with its identifier as it appears in the base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoveredComponent {
    /// What to take the value from.
    pub component: Component,
    /// The serialized identifier, for example `"@method"` or `"example-dict";key="a"`.
    pub identifier: Cow<'static, str>,
}

/// The components agents sign on nearly every request, with their identifiers, so that
/// parsing them allocates nothing.
const KNOWN_COMPONENTS: [(&str, &str); 13] = [
    ("@method", "\"@method\""),
    ("@authority", "\"@authority\""),
    ("@path", "\"@path\""),
    ("@query", "\"@query\""),
    ("@target-uri", "\"@target-uri\""),
    ("@scheme", "\"@scheme\""),
    ("@request-target", "\"@request-target\""),
    (names::header::SIGNATURE_KEY, "\"signature-key\""),
    (names::header::CONTENT_DIGEST, "\"content-digest\""),
    ("content-type", "\"content-type\""),
    ("content-length", "\"content-length\""),
    ("authorization", "\"authorization\""),
    (names::bot::SIGNATURE_AGENT, "\"signature-agent\""),
];

/// The name and the identifier of a component covered without parameters: borrowed for
/// the usual ones, built for the rest.
fn bare_component(name: &str) -> (Cow<'static, str>, Cow<'static, str>) {
    match KNOWN_COMPONENTS.iter().find(|(known, _)| *known == name) {
        Some((known, identifier)) => (Cow::Borrowed(known), Cow::Borrowed(identifier)),
        None => (Cow::Owned(name.to_owned()), Cow::Owned(format!("\"{name}\""))),
    }
}

/// The labels agents use, so that the usual one costs no allocation.
const KNOWN_LABELS: [&str; 2] = ["sig", "sig1"];

/// A signature label, borrowed when it is a usual one.
fn label_of(label: &str) -> Cow<'static, str> {
    match KNOWN_LABELS.iter().find(|known| **known == label) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(label.to_owned()),
    }
}

impl CoveredComponent {
    /// The bare component name (`@method`, `content-digest`, …).
    pub fn name(&self) -> &str {
        match &self.component {
            Component::Derived(derived) => derived.as_str(),
            Component::Field { name, .. } => name,
        }
    }

    /// Whether this component covers `name` in full for a signature labelled `label`: a
    /// derived component by its name; a field only without parameters, or, for
    /// `Signature-Key`, as the one Dictionary member `label` selects, which is the part of
    /// the field the verifier uses ([RFC 9421
    /// §2.1.2](https://www.rfc-editor.org/rfc/rfc9421#section-2.1.2)). Another member, or
    /// the field re-serialised (`;sf`), leaves what is used open to substitution.
    pub fn covers_in_full(&self, name: &str, label: &str) -> bool {
        match &self.component {
            Component::Derived(derived) => derived.as_str() == name,
            Component::Field { name: field, sf, key } => {
                *field == name
                    && !*sf
                    && match key {
                        None => true,
                        Some(key) => name == names::header::SIGNATURE_KEY && key == label,
                    }
            }
        }
    }

    /// [`CoveredComponent::name`], borrowed for the usual components and copied for the
    /// rest.
    pub fn shared_name(&self) -> Cow<'static, str> {
        match &self.component {
            Component::Derived(derived) => Cow::Borrowed(derived.as_str()),
            Component::Field { name, .. } => name.clone(),
        }
    }
}

/// The signature parameters of `Signature-Input` ([RFC 9421
/// §2.3](https://www.rfc-editor.org/rfc/rfc9421#section-2.3)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureParams {
    /// `created`, Unix seconds.
    pub created: Option<u64>,
    /// `expires`, Unix seconds.
    pub expires: Option<u64>,
    /// `keyid`.
    pub keyid: Option<String>,
    /// `alg` (ignored for algorithm selection; AAuth takes the algorithm from the key).
    pub alg: Option<String>,
    /// `nonce`.
    pub nonce: Option<String>,
    /// `tag`.
    pub tag: Option<String>,
}

/// The selected `Signature-Input` member, parsed and checked for well-formedness.
#[derive(Debug, Clone)]
pub struct ParsedInput {
    /// The label (dictionary key).
    pub label: Cow<'static, str>,
    /// Covered components in signed order.
    pub components: Vec<CoveredComponent>,
    /// Signature parameters.
    pub params: SignatureParams,
    /// The strict re-serialisation of the member value: the `@signature-params` value.
    pub signature_params: String,
}

impl ParsedInput {
    /// Parses `Signature-Input` and selects its single member.
    ///
    /// AAuth profile: exactly one label. Everything malformed is `invalid_signature`.
    pub fn parse(field: &str, max_components: usize) -> Result<Self, Error> {
        match fast_input::parse(field, max_components) {
            Some(parsed) => parsed,
            None => parse_input_general(field, max_components),
        }
    }

    /// Builds from an already-selected member value.
    pub fn from_inner_list(label: &str, inner: InnerList, max_components: usize) -> Result<Self, Error> {
        if inner.items.len() > max_components {
            return Err(Error::invalid_signature("too many covered components"));
        }
        let mut components: Vec<CoveredComponent> = Vec::with_capacity(inner.items.len());
        for item in &inner.items {
            let component = parse_component(item)?;
            if components.iter().any(|c| c.identifier == component.identifier) {
                return Err(Error::invalid_signature("a component is covered twice"));
            }
            components.push(component);
        }
        let params = signature_params_from(inner.params.iter().map(|(name, value)| {
            let value = match value {
                BareItem::Integer(v) => ParamValue::Integer(i64::from(*v)),
                BareItem::String(v) => ParamValue::String(v.as_str()),
                _ => ParamValue::Other,
            };
            (name.as_str(), value)
        }))?;
        let mut serializer = sfv::ListSerializer::new();
        serializer.members(std::iter::once(&ListEntry::InnerList(inner)));
        let signature_params = serializer.finish().unwrap_or_default();
        Ok(ParsedInput {
            label: label_of(label),
            components,
            params,
            signature_params,
        })
    }

    /// Whether `name` (a bare component name such as `@query`) is covered in full
    /// ([`CoveredComponent::covers_in_full`]): what a coverage requirement asks for.
    pub fn covers(&self, name: &str) -> bool {
        self.components.iter().any(|c| c.covers_in_full(name, &self.label))
    }

    /// Whether `name` is covered in any form, parameters included: a covered field must
    /// be checked (`content-digest` against the body) however it was covered.
    pub fn mentions(&self, name: &str) -> bool {
        self.components.iter().any(|c| c.name() == name)
    }
}

/// The general `Signature-Input` parser (`sfv`), for every shape the fast path declines.
fn parse_input_general(field: &str, max_components: usize) -> Result<ParsedInput, Error> {
    let dict = parse_dictionary_strict(field).ok_or(Error::invalid_signature(
        "Signature-Input is not a valid structured dictionary",
    ))?;
    if dict.len() != 1 {
        return Err(Error::invalid_signature("exactly one signature label is accepted"));
    }
    let (label, entry) = dict
        .into_iter()
        .next()
        .ok_or(Error::invalid_signature("Signature-Input is empty"))?;
    let ListEntry::InnerList(inner) = entry else {
        return Err(Error::invalid_signature("Signature-Input member is not an inner list"));
    };
    ParsedInput::from_inner_list(label.as_str(), inner, max_components)
}

fn parse_component(item: &sfv::Item) -> Result<CoveredComponent, Error> {
    let BareItem::String(name) = &item.bare_item else {
        return Err(Error::invalid_signature("a component identifier is not a string"));
    };
    let name = name.as_str();
    let (bare_name, bare_identifier) = bare_component(name);
    let component = if name.starts_with('@') {
        let derived = Derived::from_name(name).ok_or(Error::invalid_signature("unknown derived component"))?;
        if !item.params.is_empty() {
            return Err(Error::invalid_signature("derived components take no parameters here"));
        }
        Component::Derived(derived)
    } else {
        check_field_name(name)?;
        let mut sf = false;
        let mut key = None;
        for (param, value) in &item.params {
            match (param.as_str(), value) {
                ("sf", BareItem::Boolean(true)) => sf = true,
                ("key", BareItem::String(k)) => key = Some(k.as_str().to_owned()),
                // bs, req, tr and anything unknown are not supported on requests.
                _ => return Err(Error::invalid_signature("unsupported component parameter")),
            }
        }
        if sf && key.is_some() {
            return Err(Error::invalid_signature("sf and key cannot be combined"));
        }
        Component::Field {
            name: bare_name,
            sf,
            key,
        }
    };
    if item.params.is_empty() {
        return Ok(CoveredComponent {
            component,
            identifier: bare_identifier,
        });
    }
    let mut identifier = String::with_capacity(name.len() + 2);
    {
        let mut serializer = sfv::ListSerializer::with_buffer(&mut identifier);
        serializer.members(std::iter::once(&ListEntry::Item(item.clone())));
        let _ = serializer.finish();
    }
    Ok(CoveredComponent {
        component,
        identifier: Cow::Owned(identifier),
    })
}

/// A field component name must be a lower-case token ([RFC 9421
/// §2.1](https://www.rfc-editor.org/rfc/rfc9421#section-2.1)).
fn check_field_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(Error::invalid_signature(
            "a component name is not a lower-case field name",
        ));
    }
    Ok(())
}

/// A signature parameter's value, as far as the known parameters care.
#[derive(Debug, Clone, Copy)]
enum ParamValue<'a> {
    Integer(i64),
    String(&'a str),
    /// Any other bare item type.
    Other,
}

fn signature_params_from<'a>(
    params: impl Iterator<Item = (&'a str, ParamValue<'a>)>,
) -> Result<SignatureParams, Error> {
    let mut out = SignatureParams::default();
    for (name, value) in params {
        match (name, value) {
            ("created", ParamValue::Integer(v)) => out.created = Some(non_negative(v)?),
            ("expires", ParamValue::Integer(v)) => out.expires = Some(non_negative(v)?),
            ("keyid", ParamValue::String(v)) => out.keyid = Some(v.to_owned()),
            ("alg", ParamValue::String(v)) => out.alg = Some(v.to_owned()),
            ("nonce", ParamValue::String(v)) => out.nonce = Some(v.to_owned()),
            ("tag", ParamValue::String(v)) => out.tag = Some(v.to_owned()),
            ("created" | "expires" | "keyid" | "alg" | "nonce" | "tag", _) => {
                return Err(Error::invalid_signature("a signature parameter has the wrong type"));
            }
            // Unknown parameters are signed as part of @signature-params; keep them there.
            _ => {}
        }
    }
    Ok(out)
}

fn non_negative(value: i64) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::invalid_signature("a signature time is negative"))
}

/// The request-side values the derived components are taken from.
///
/// `authority` and `scheme` come from configuration (the resource identifier or an
/// allow-listed authority), never from `Host` or `X-Forwarded-*` alone.
#[derive(Debug, Clone, Copy)]
pub struct RequestTarget<'a> {
    /// Method as sent (case preserved).
    pub method: &'a str,
    /// Lower-case scheme.
    pub scheme: &'a str,
    /// Canonical authority: lower-case host, default port omitted.
    pub authority: &'a str,
    /// Path as received (not decoded); empty means `/`.
    pub path: &'a str,
    /// Query without the `?`, if the target had one.
    pub query: Option<&'a str>,
}

/// A reusable buffer holding a signature base.
#[derive(Debug, Default, Clone)]
pub struct SignatureBase {
    buffer: String,
}

impl SignatureBase {
    /// An empty base with room for a typical AAuth request.
    pub fn new() -> Self {
        SignatureBase {
            buffer: String::with_capacity(1024),
        }
    }

    /// Empties the buffer, keeping its allocation.
    pub fn clear(&mut self) {
        self.buffer.clear();
    }

    /// The base bytes, as signed.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_bytes()
    }

    /// The base as text (always ASCII).
    pub fn as_str(&self) -> &str {
        &self.buffer
    }

    /// Rebuilds the base for `input` over the given request ([RFC 9421
    /// §2.5](https://www.rfc-editor.org/rfc/rfc9421#section-2.5)). The buffer is cleared
    /// first and its allocation reused.
    pub fn build(&mut self, input: &ParsedInput, target: &RequestTarget<'_>, headers: &HeaderMap) -> Result<(), Error> {
        self.build_capped(input, target, headers, usize::MAX)
    }

    /// [`SignatureBase::build`], refusing any covered field longer than `cap` bytes (all
    /// its lines together) as `invalid_signature`: what a verifier hashes is bounded.
    pub fn build_capped(
        &mut self,
        input: &ParsedInput,
        target: &RequestTarget<'_>,
        headers: &HeaderMap,
        cap: usize,
    ) -> Result<(), Error> {
        self.buffer.clear();
        for covered in &input.components {
            self.buffer.push_str(&covered.identifier);
            self.buffer.push_str(": ");
            match &covered.component {
                Component::Derived(derived) => self.push_derived(*derived, target),
                Component::Field { name, sf, key } => {
                    let value = field_value(headers, &**name, cap)?
                        .ok_or(Error::invalid_signature("a covered field is absent"))?;
                    if *sf {
                        self.buffer.push_str(&strict_reserialize(&value)?);
                    } else if let Some(key) = key {
                        push_dictionary_member(&mut self.buffer, &value, key)?;
                    } else {
                        self.buffer.push_str(&value);
                    }
                }
            }
            self.buffer.push('\n');
        }
        self.buffer.push_str("\"@signature-params\": ");
        self.buffer.push_str(&input.signature_params);
        if has_forbidden_byte(self.buffer.as_bytes(), b'\n') {
            return Err(Error::invalid_signature("the signature base is not ASCII"));
        }
        Ok(())
    }

    fn push_derived(&mut self, derived: Derived, target: &RequestTarget<'_>) {
        let path = if target.path.is_empty() { "/" } else { target.path };
        let buffer = &mut self.buffer;
        match derived {
            Derived::Method => buffer.push_str(target.method),
            Derived::Authority => buffer.push_str(target.authority),
            Derived::Path => buffer.push_str(path),
            Derived::Query => {
                buffer.push('?');
                buffer.push_str(target.query.unwrap_or_default());
            }
            Derived::Scheme => buffer.push_str(target.scheme),
            Derived::TargetUri => {
                buffer.push_str(target.scheme);
                buffer.push_str("://");
                buffer.push_str(target.authority);
                buffer.push_str(path);
                if let Some(query) = target.query {
                    buffer.push('?');
                    buffer.push_str(query);
                }
            }
            Derived::RequestTarget => {
                buffer.push_str(path);
                if let Some(query) = target.query {
                    buffer.push('?');
                    buffer.push_str(query);
                }
            }
        }
    }
}

/// `;sf`: strict re-serialisation. The field's type is not known in general, so the
/// first of Dictionary, List, Item that parses is used (the order RFC 9421's examples need).
fn strict_reserialize(value: &str) -> Result<String, Error> {
    use sfv::FieldType;
    if let Some(serialized) = parse_dictionary_strict(value).and_then(|dict| dict.serialize()) {
        return Ok(serialized);
    }
    if let Some(serialized) = Parser::new(value)
        .parse::<sfv::List>()
        .ok()
        .and_then(|list| list.serialize())
    {
        return Ok(serialized);
    }
    if let Ok(item) = Parser::new(value).parse::<sfv::Item>() {
        return Ok(item.serialize());
    }
    Err(Error::invalid_signature(
        "a field covered with ;sf is not a structured field",
    ))
}

/// `;key="…"`: one Dictionary member, strictly serialised ([RFC 9421
/// §2.1.2](https://www.rfc-editor.org/rfc/rfc9421#section-2.1.2)).
fn push_dictionary_member(buffer: &mut String, value: &str, key: &str) -> Result<(), Error> {
    const ABSENT: Error = Error::invalid_signature("a dictionary member covered with ;key is absent");
    match fast_input::string_member(value, key) {
        // A plain String serialises as itself between quotes.
        Some(Some(member)) => {
            buffer.push('"');
            buffer.push_str(member);
            buffer.push('"');
            return Ok(());
        }
        Some(None) => return Err(ABSENT),
        None => {}
    }
    let dict = parse_dictionary_strict(value).ok_or(Error::invalid_signature(
        "a field covered with ;key is not a dictionary",
    ))?;
    let member = dict
        .iter()
        .find(|(k, _)| k.as_str() == key)
        .map(|(_, v)| v)
        .ok_or(ABSENT)?;
    let mut serializer = sfv::ListSerializer::new();
    serializer.members(std::iter::once(member));
    buffer.push_str(&serializer.finish().unwrap_or_default());
    Ok(())
}

/// Which alphabets a `Signature` byte sequence may arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlphabet {
    /// Standard base64 (RFC 9651) or base64url, padded or not (the default: PyPI
    /// `aauth` sends base64url, and the bytes are verified cryptographically anyway).
    Lenient,
    /// Standard base64 only, as RFC 9651 requires.
    StandardOnly,
}

/// Extracts the raw signature bytes for `label` from the `Signature` field.
///
/// The field must hold exactly one member, `label`, whose value is a byte sequence.
pub fn decode_signature(field: &str, label: &str, alphabet: SignatureAlphabet) -> Result<Vec<u8>, Error> {
    if let Some(bytes) = decode_common_signature(field, label) {
        return Ok(bytes);
    }
    let dict = match parse_dictionary_strict(field) {
        Some(dict) => dict,
        None if alphabet == SignatureAlphabet::Lenient => {
            return decode_lenient_signature(field, label);
        }
        None => {
            return Err(Error::invalid_signature(
                "Signature is not a valid structured dictionary",
            ));
        }
    };
    if dict.len() != 1 {
        return Err(Error::invalid_signature(
            "Signature must hold exactly the one signed label",
        ));
    }
    match dict.get(label) {
        Some(ListEntry::Item(sfv::Item {
            bare_item: BareItem::ByteSequence(bytes),
            ..
        })) => Ok(bytes.clone()),
        Some(_) => Err(Error::invalid_signature("the Signature member is not a byte sequence")),
        None => Err(Error::invalid_signature("Signature has no member for the signed label")),
    }
}

/// RFC 9651's byte-sequence decoder, configured exactly as `sfv` 0.16 configures it.
const SF_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// The shape every signer sends, `label=:<standard base64>:` and nothing else, decoded
/// without building a Dictionary. For such a field `sfv` yields a one-member Dictionary
/// whose member is `label` holding a byte sequence decoded by the same engine, so the
/// result is the one the general path would give. `None`: take the general path.
fn decode_common_signature(field: &str, label: &str) -> Option<Vec<u8>> {
    let encoded = field.strip_prefix(label)?.strip_prefix("=:")?.strip_suffix(':')?;
    if !encoded
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
    {
        return None;
    }
    SF_BASE64.decode(encoded).ok()
}

/// Fallback for base64url byte sequences: `label=:<base64url>:` with optional parameters.
fn decode_lenient_signature(field: &str, label: &str) -> Result<Vec<u8>, Error> {
    let rest = field
        .strip_prefix(label)
        .and_then(|rest| rest.strip_prefix("=:"))
        .ok_or(Error::invalid_signature(
            "Signature is not a valid structured dictionary",
        ))?;
    let end = rest
        .find(':')
        .ok_or(Error::invalid_signature("Signature byte sequence is not terminated"))?;
    let (encoded, tail) = (&rest[..end], &rest[end + 1..]);
    // Nothing but parameters may follow; a second member would be a second signature.
    if tail.contains(',') {
        return Err(Error::invalid_signature(
            "Signature must hold exactly the one signed label",
        ));
    }
    if !tail.is_empty() && !tail.starts_with(';') {
        return Err(Error::invalid_signature(
            "Signature is not a valid structured dictionary",
        ));
    }
    [&URL_SAFE_NO_PAD, &URL_SAFE, &STANDARD_NO_PAD, &STANDARD]
        .iter()
        .find_map(|engine| engine.decode(encoded).ok())
        .ok_or(Error::invalid_signature("Signature byte sequence is not base64"))
}

/// Verifies a signature over `base` with `key` (Ed25519, `verify_strict`).
pub fn verify_base(base: &SignatureBase, signature: &[u8], key: &Jwk) -> Result<(), Error> {
    if signature.len() != 64 {
        return Err(Error::invalid_signature("an Ed25519 signature is 64 bytes"));
    }
    if key.verify(base.as_bytes(), signature) {
        Ok(())
    } else {
        Err(Error::invalid_signature("the signature does not verify"))
    }
}

/// Standard base64 of `bytes`, as this crate always emits byte sequences.
pub fn encode_signature(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_derived_component_builds_its_rfc_9421_value() {
        let input = ParsedInput::parse(
            r#"sig=("@method" "@authority" "@path" "@query" "@target-uri" "@scheme" "@request-target");created=1"#,
            DEFAULT_MAX_COMPONENTS,
        )
        .unwrap();
        let target = RequestTarget {
            method: "POST",
            scheme: "https",
            authority: "api.example:8443",
            path: "/a/b",
            query: Some("x=1&y"),
        };
        let mut base = SignatureBase::new();
        base.build(&input, &target, &HeaderMap::new()).unwrap();
        assert_eq!(
            base.as_str(),
            "\"@method\": POST\n\
             \"@authority\": api.example:8443\n\
             \"@path\": /a/b\n\
             \"@query\": ?x=1&y\n\
             \"@target-uri\": https://api.example:8443/a/b?x=1&y\n\
             \"@scheme\": https\n\
             \"@request-target\": /a/b?x=1&y\n\
             \"@signature-params\": (\"@method\" \"@authority\" \"@path\" \"@query\" \"@target-uri\" \"@scheme\" \"@request-target\");created=1"
        );
        // Without a query, and with an empty path: `/`, no `?` (but `@query` is `?`).
        let bare = RequestTarget {
            path: "",
            query: None,
            ..target
        };
        base.build(&input, &bare, &HeaderMap::new()).unwrap();
        assert!(
            base.as_str()
                .contains("\"@path\": /\n\"@query\": ?\n\"@target-uri\": https://api.example:8443/\n")
        );
        assert!(base.as_str().contains("\"@request-target\": /\n"));
    }

    #[test]
    fn every_derived_component_name_round_trips() {
        for derived in Derived::ALL {
            assert_eq!(Derived::from_name(derived.as_str()), Some(derived));
        }
        assert_eq!(Derived::from_name("@status"), None);
        assert_eq!(Derived::from_name("@METHOD"), None);
    }

    #[test]
    fn every_precomputed_identifier_is_its_name_quoted() {
        for (name, identifier) in KNOWN_COMPONENTS {
            assert_eq!(identifier, format!("\"{name}\""));
            assert!(
                matches!(bare_component(name), (Cow::Borrowed(n), Cow::Borrowed(i)) if n == name && i == identifier)
            );
        }
        let (name, identifier) = bare_component("x-custom");
        assert_eq!((&*name, &*identifier), ("x-custom", "\"x-custom\""));
    }

    #[test]
    fn the_usual_request_parses_without_copying_names_or_label() {
        let field = r#"sig=("@method" "@authority" "@path" "signature-key");created=1"#;
        for input in [
            ParsedInput::parse(field, DEFAULT_MAX_COMPONENTS).unwrap(),
            parse_input_general(field, DEFAULT_MAX_COMPONENTS).unwrap(),
        ] {
            assert!(matches!(input.label, Cow::Borrowed("sig")));
            for covered in &input.components {
                assert!(matches!(covered.identifier, Cow::Borrowed(_)), "{covered:?}");
                assert!(matches!(covered.shared_name(), Cow::Borrowed(_)), "{covered:?}");
            }
        }
        let other = ParsedInput::parse(r#"mine=("@method" "x-custom");created=1"#, DEFAULT_MAX_COMPONENTS).unwrap();
        assert_eq!(other.label, "mine");
        assert_eq!(other.components[1].name(), "x-custom");
        assert_eq!(other.components[1].shared_name(), "x-custom");
        assert_eq!(other.components[1].identifier, "\"x-custom\"");
    }

    #[test]
    fn a_parameterised_field_keeps_its_parameters_in_the_identifier() {
        let input = ParsedInput::parse(
            r#"sig=("example-dict";key="a" "@method");created=1"#,
            DEFAULT_MAX_COMPONENTS,
        )
        .unwrap();
        assert_eq!(input.components[0].identifier, "\"example-dict\";key=\"a\"");
        assert_eq!(input.components[0].name(), "example-dict");
        assert_eq!(input.components[1].identifier, "\"@method\"");
    }

    #[test]
    fn a_required_field_is_covered_by_the_whole_field_or_by_the_signature_key_member_in_use() {
        let covers = |component: &str, name: &str| {
            let input = ParsedInput::parse(&format!(r#"sig=("@method" {component});created=1"#), 64).unwrap();
            (input.covers(name), input.mentions(name))
        };
        for (component, name, in_full) in [
            (r#""signature-key""#, "signature-key", true),
            (r#""signature-key";key="sig""#, "signature-key", true),
            (r#""signature-key";key="other""#, "signature-key", false),
            (r#""signature-key";sf"#, "signature-key", false),
            (r#""authorization""#, "authorization", true),
            (r#""authorization";key="sig""#, "authorization", false),
            (r#""authorization";sf"#, "authorization", false),
            (r#""content-digest";key="sha-256""#, "content-digest", false),
        ] {
            assert_eq!(covers(component, name), (in_full, true), "{component}");
        }
        assert_eq!(covers(r#""@path""#, "@path"), (true, true));
        assert_eq!(covers(r#""x-other""#, "signature-key"), (false, false));
    }

    #[test]
    fn an_unknown_derived_component_is_refused() {
        let input = ParsedInput::parse(r#"sig=("@status");created=1"#, DEFAULT_MAX_COMPONENTS);
        assert_eq!(
            input.unwrap_err().signature_code(),
            Some(crate::error::SignatureErrorCode::InvalidSignature)
        );
    }

    #[test]
    fn a_field_of_exactly_the_cap_is_read_and_one_byte_more_is_refused() {
        assert_eq!(DEFAULT_HEADER_CAP, 8192);
        let cap = 64;
        let mut headers = HeaderMap::new();
        headers.insert("x-one", "a".repeat(cap).parse().unwrap());
        assert_eq!(field_value(&headers, "x-one", cap).unwrap().unwrap().len(), cap);
        headers.insert("x-one", "a".repeat(cap + 1).parse().unwrap());
        assert!(field_value(&headers, "x-one", cap).is_err());
        // Two lines are joined with ", ": 30 + 2 + 32 = 64 bytes.
        headers.insert("x-two", "a".repeat(30).parse().unwrap());
        headers.append("x-two", "b".repeat(32).parse().unwrap());
        assert_eq!(field_value(&headers, "x-two", cap).unwrap().unwrap().len(), cap);
        headers.append("x-two", "c".parse().unwrap());
        assert!(field_value(&headers, "x-two", cap).is_err());
        let mut over = HeaderMap::new();
        over.insert("x-two", "a".repeat(30).parse().unwrap());
        over.append("x-two", "b".repeat(33).parse().unwrap());
        assert!(field_value(&over, "x-two", cap).is_err());
    }

    #[test]
    fn any_number_of_forbidden_bytes_is_forbidden() {
        for bytes in [
            &[0x80u8][..],
            &[0x80, 0x80],
            &[0x7f, 0xff, 0x80],
            &[0x01],
            &[0x01, 0x02],
            &[0x80, 0x01],
        ] {
            assert!(has_forbidden_byte(bytes, b'\t'), "{bytes:?}");
        }
        assert!(!has_forbidden_byte(b"plain\tascii ~", b'\t'));
        assert!(!has_forbidden_byte(b"line\nbreak", b'\n'));
        assert!(has_forbidden_byte(b"line\nbreak", b'\t'));
    }

    #[test]
    fn a_duplicate_member_error_says_so() {
        assert_eq!(DuplicateMember.to_string(), "duplicate dictionary member");
    }

    #[test]
    fn duplicate_labels_are_refused() {
        assert!(parse_dictionary_strict("sig=(\"@method\"), sig=(\"@path\")").is_none());
        assert!(parse_dictionary_strict("sig=(\"@method\"), sig2=(\"@path\")").is_some());
    }

    #[test]
    fn lenient_signature_accepts_base64url_and_standard() {
        let bytes: Vec<u8> = (0u8..64).map(|b| b.wrapping_mul(37)).collect();
        let url = URL_SAFE_NO_PAD.encode(&bytes);
        let std = STANDARD.encode(&bytes);
        assert_eq!(
            decode_signature(&format!("sig=:{url}:"), "sig", SignatureAlphabet::Lenient).unwrap(),
            bytes
        );
        assert_eq!(
            decode_signature(&format!("sig=:{std}:"), "sig", SignatureAlphabet::Lenient).unwrap(),
            bytes
        );
        assert_eq!(
            decode_signature(&format!("sig=:{std}:"), "sig", SignatureAlphabet::StandardOnly).unwrap(),
            bytes
        );
        if url != std {
            assert!(decode_signature(&format!("sig=:{url}:"), "sig", SignatureAlphabet::StandardOnly).is_err());
        }
    }

    #[test]
    fn common_signature_shape_decodes_as_the_dictionary_path_does() {
        for len in [0usize, 1, 2, 3, 63, 64, 65] {
            let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(91).wrapping_add(7)).collect();
            let padded = STANDARD.encode(&bytes);
            for encoded in [padded.clone(), padded.trim_end_matches('=').to_owned()] {
                let field = format!("sig=:{encoded}:");
                let general = parse_dictionary_strict(&field).and_then(|dict| match dict.get("sig") {
                    Some(ListEntry::Item(sfv::Item {
                        bare_item: BareItem::ByteSequence(b),
                        ..
                    })) => Some(b.clone()),
                    _ => None,
                });
                assert_eq!(decode_common_signature(&field, "sig"), general, "{field}");
            }
        }
    }

    #[test]
    fn the_common_signature_shape_takes_every_standard_base64_character() {
        assert_eq!(
            decode_common_signature("sig=:+/+/:", "sig"),
            Some(vec![0xfb, 0xff, 0xbf])
        );
        assert_eq!(decode_common_signature("sig=:+w==:", "sig"), Some(vec![0xfb]));
        assert_eq!(decode_common_signature("sig=:aGk=:", "sig"), Some(b"hi".to_vec()));
        assert_eq!(decode_common_signature("sig=:MDk5:", "sig"), Some(b"099".to_vec()));
        assert_eq!(decode_common_signature("sig=:-_-_:", "sig"), None);
    }

    #[test]
    fn a_base64url_signature_may_carry_parameters_but_nothing_else() {
        let url = URL_SAFE_NO_PAD.encode([0xfbu8; 64]);
        assert_eq!(
            decode_signature(&format!("sig=:{url}:;alg=\"x\""), "sig", SignatureAlphabet::Lenient).unwrap(),
            vec![0xfb; 64]
        );
        for field in [
            format!("sig=:{url}:junk"),
            format!("sig=:{url}"),
            format!("other=:{url}:"),
        ] {
            assert!(decode_lenient_signature(&field, "sig").is_err(), "{field}");
        }
    }

    #[test]
    fn a_key_parameter_selects_its_own_dictionary_member() {
        let member = |value: &str, key: &str| {
            let mut buffer = String::new();
            push_dictionary_member(&mut buffer, value, key).map(|()| buffer)
        };
        assert_eq!(member("a=1, b=(x y);p, c=?0", "b").unwrap(), "(x y);p");
        assert_eq!(member("a=1, b=2", "a").unwrap(), "1");
        assert!(member("a=1, b=2", "c").is_err());
        assert!(member("a=1, =", "a").is_err());
        // The canonical String form, read without the general parser, serialises the same.
        assert_eq!(
            member(r#"a="x", b="https://b.example""#, "b").unwrap(),
            r#""https://b.example""#
        );
        assert_eq!(member(r#"a="x",b="y""#, "b").unwrap(), r#""y""#);
        assert!(member(r#"a="x", b="y""#, "c").is_err());
    }

    #[test]
    fn every_known_signature_parameter_is_read_from_either_parser() {
        // The first shape takes the fast parser, the second (a parameter on a component)
        // the general one.
        for field in [
            r#"sig=("@method");created=1;expires=2;keyid="k";alg="ed25519";nonce="n-1";tag="aauth""#,
            r#"sig=("@method" "content-type";sf);created=1;expires=2;keyid="k";alg="ed25519";nonce="n-1";tag="aauth""#,
        ] {
            let params = ParsedInput::parse(field, DEFAULT_MAX_COMPONENTS).unwrap().params;
            assert_eq!((params.created, params.expires), (Some(1), Some(2)), "{field}");
            assert_eq!(params.keyid.as_deref(), Some("k"));
            assert_eq!(params.alg.as_deref(), Some("ed25519"));
            assert_eq!(params.nonce.as_deref(), Some("n-1"));
            assert_eq!(params.tag.as_deref(), Some("aauth"));
        }
        for wrong in [
            "nonce=1",
            "tag=1",
            "keyid=1",
            "alg=?1",
            "created=\"1\"",
            "expires=\"2\"",
        ] {
            let field = format!("sig=(\"@method\");{wrong}");
            assert!(ParsedInput::parse(&field, DEFAULT_MAX_COMPONENTS).is_err(), "{field}");
        }
    }

    #[test]
    fn uncommon_signature_shapes_take_the_general_path() {
        let std = STANDARD.encode([1u8; 64]);
        for field in [
            format!("sig=:{std}:;p=1"),
            format!("sig=:{std}: "),
            format!("other=:{std}:"),
            format!("sig=:{}:", URL_SAFE_NO_PAD.encode([0xfbu8; 64])),
        ] {
            assert_eq!(decode_common_signature(&field, "sig"), None, "{field}");
        }
    }

    #[test]
    fn control_and_non_ascii_bytes_are_found_anywhere() {
        assert!(!has_forbidden_byte(b"a\tb c~", b'\t'));
        assert!(has_forbidden_byte(b"abc\x7f", b'\t'));
        assert!(has_forbidden_byte(
            &[b'a'; 100].iter().copied().chain([0x80]).collect::<Vec<_>>(),
            b'\t'
        ));
        assert!(has_forbidden_byte(b"a\nb", b'\t'));
        assert!(!has_forbidden_byte(b"a\nb", b'\n'));
        assert!(has_forbidden_byte(b"a\rb", b'\n'));
    }

    #[test]
    fn second_signature_member_is_refused() {
        let std = STANDARD.encode([1u8; 64]);
        let field = format!("sig=:{std}:, sig2=:{std}:");
        assert!(decode_signature(&field, "sig", SignatureAlphabet::Lenient).is_err());
    }
}
