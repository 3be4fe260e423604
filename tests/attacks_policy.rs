//! Attack catalogue §1.15 — policy: whose identity, whose authority, what capacity.
//!
//! One test per row, named by its ID. Each refusal asserts the status, the exact
//! `Signature-Error` code where there is one, and that the handler did not run.

mod attack_support;

#[allow(unused_imports)]
use attack_support::*;

// === POL-01 … POL-05: identity, binding, ceilings, consent ===
// (section: identity)

// === POL-06: replay capacity ===
// (section: replay)

// === POL-07 … POL-11: exemptions, coverage, minting, caches, legacy lifetime ===
// (section: hardening)

// === POL-12: four-party resource names the person ===
// (section: four-party)
