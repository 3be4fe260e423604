//! The wire generations: which the layer accepts ([`Profile`]) and which a request spoke
//! ([`Generation`]). Every other module decides its wire forms from these two.

/// Which generations of the wire format the layer accepts, and in which it answers.
///
/// # The demo generation
///
///
/// Earlier agents (PyPI `aauth` 0.3.x, [Christian Posta's AAuth demo][aauth-demo] of March
/// 2026, and libraries written against the March 2026 editor's copies of the AAuth draft
/// through draft-hardt-oauth-aauth-protocol-10) speak an older wire format. Under the
/// legacy profiles the layer also accepts, and under the strict [`Profile::Draft11`] it
/// refuses:
///
/// | form | strict answer | why it is safe to accept on request |
/// |---|---|---|
/// | `Signature-Key: sig=(scheme=jwks_uri id="…" kid="…")`, `(scheme=jwt jwt="…")`, `(scheme=hwk kty="OKP" crv="Ed25519" x="…")` — not RFC 9651 | `invalid_key` | parsed leniently only after the strict parse failed; the signature base still covers the raw field bytes, so nothing the parser tolerates escapes the signature |
/// | `jwks_uri` without `dwk` | `invalid_key` | resolved as `aauth-agent.json`, the only document the demo's agents published |
/// | JWT `alg` `EdDSA` | `invalid_jwt` | every key this crate uses is OKP/Ed25519, where `EdDSA` can only mean Ed25519 |
/// | JWK (`cnf.jwk`, JWKS entry) without `alg` | `unsupported_algorithm` (`unknown_key` for a JWKS entry, which is skipped) | Ed25519 is inferred from `kty` `OKP` + `crv` `Ed25519`; other key types stay refused |
/// | `typ` `agent+jwt` / `auth+jwt`, no `dwk` claim | `invalid_jwt` | mapped to the agent/auth kinds with the same issuer trust rules (`auth+jwt` only from a configured auth server, metadata `aauth-issuer.json`) |
/// | auth tokens without `ps` (draft-hardt-aauth-protocol-01 through draft-hardt-oauth-aauth-protocol-10), with `agent`/`act` | `invalid_jwt` (no `ps`) | `aud`, `exp`, `cnf.jwk` and one of `sub`/`scope` are still required |
/// | `created` in the future | `clock_skew` | answered `invalid_signature`, the only code that era knew (the window itself is unchanged) |
///
/// `hwk` without `alg` is accepted in every profile (PyPI `aauth` 0.3.4 sends it and the
/// key type is explicit), but counts as evidence of the demo generation.
///
/// # Answering in the peer's generation
///
/// A single challenge cannot satisfy both generations (`typ`s and required claims of the
/// resource token differ), so every verified request records the generation it should be
/// answered in ([`VerifiedRequest::generation`](crate::VerifiedRequest::generation)): under [`Profile::Legacy`] always the
/// demo generation, under [`Profile::Both`] the demo generation as soon as the request
/// used any form in the table above, draft -11 otherwise. Unsigned requests are answered by
///
/// Strictness that stays on in every profile: the signature alphabet rules, covered
/// components, the `created` window length, `exp` without leeway, `aud`, issuer trust,
/// `cnf` binding, and every refusal of keys that are not Ed25519.
///
///
/// [aauth-demo]: https://github.com/christian-posta/aauth-full-demo
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Profile {
    /// draft-hardt-oauth-aauth-protocol-11 with Signature-Key -09 only (the default).
    /// Every demo-generation form is refused.
    #[default]
    Draft11,
    /// The demo generation (the wire format of the March 2026 AAuth demo): its forms are
    /// accepted as well as draft -11's, and every request is answered in the demo
    /// generation (`AAuth: require=…` challenges). For a resource that serves only demo-era
    /// agents.
    Legacy,
    /// Both generations side by side: the forms of both are accepted, and each request is
    /// answered in the generation it was spoken in ([`VerifiedRequest::generation`](crate::VerifiedRequest::generation)).
    /// Unsigned requests carry no evidence and are answered in draft -11.
    ///
    /// [`VerifiedRequest::generation`]: crate::VerifiedRequest::generation
    Both,
}

impl Profile {
    /// Whether demo-generation forms are accepted at all.
    pub(crate) const fn accepts_legacy(self) -> bool {
        !matches!(self, Profile::Draft11)
    }

    /// The generation to answer in, given whether the request used any demo-generation
    /// form (`spoke_legacy`).
    pub(crate) const fn answer_in(self, spoke_legacy: bool) -> Generation {
        match self {
            Profile::Draft11 => Generation::Draft11,
            Profile::Legacy => Generation::Legacy,
            Profile::Both if spoke_legacy => Generation::Legacy,
            Profile::Both => Generation::Draft11,
        }
    }

    /// The generation an unsigned request (or one refused before its generation was
    /// known) is answered in.
    pub(crate) const fn default_generation(self) -> Generation {
        self.answer_in(false)
    }
}

/// A generation of the AAuth wire format, as detected on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Generation {
    /// draft-hardt-oauth-aauth-protocol-11 / Signature-Key -09.
    #[default]
    Draft11,
    /// The demo generation (the March 2026 demo and the token forms of the March 2026
    /// editor's copies through draft-hardt-oauth-aauth-protocol-10; see [`Profile`]).
    Legacy,
}
