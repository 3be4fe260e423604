//! The wire generations: which the layer accepts ([`Profile`]) and which a request spoke
//! ([`Generation`]). Every other module decides its wire forms from these two.

/// Which generations of the wire format the layer accepts, and in which it answers.
///
/// See [`crate::legacy`] for every form the demo generation adds and why each is safe to
/// accept only when asked.
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
    /// answered in the generation it was spoken in ([`VerifiedRequest::generation`]).
    /// Unsigned requests carry no evidence and are answered in draft -11.
    ///
    /// [`VerifiedRequest::generation`]: crate::VerifiedRequest::generation
    Both,
}

impl Profile {
    /// Whether demo-generation forms are accepted at all.
    pub const fn accepts_legacy(self) -> bool {
        !matches!(self, Profile::Draft11)
    }

    /// The generation to answer in, given whether the request used any demo-generation
    /// form (`spoke_legacy`).
    pub const fn answer_in(self, spoke_legacy: bool) -> Generation {
        match self {
            Profile::Draft11 => Generation::Draft11,
            Profile::Legacy => Generation::Legacy,
            Profile::Both if spoke_legacy => Generation::Legacy,
            Profile::Both => Generation::Draft11,
        }
    }

    /// The generation an unsigned request (or one refused before its generation was
    /// known) is answered in.
    pub const fn default_generation(self) -> Generation {
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
    /// editor's copies through draft-hardt-oauth-aauth-protocol-10; see [`crate::legacy`]).
    Legacy,
}
