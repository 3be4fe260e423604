//! Batch verification (`AAuthBuilder::batch_verification`) and the single verification
//! every `Jwk::verify` runs: the same decisions as `verify_strict` on every published
//! vector and on crafted small-order and mixed-order signatures, batches formed by concurrent requests through the layer, bisection that
//! refuses exactly the bad members, backoff under failures, and no request waiting on
//! one that went away. Counters (`AAuth::batch_stats`) show what happened, not timing.

mod support;

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use http::{Request, Response, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha512};
use support::harness::*;
use tower::{Layer, Service, ServiceExt};
use tower_aauth::engine::{BatchStats, decide_batch, verify_like_strict};
use tower_aauth::testing::{KeySource, ManualClock, TestAgent, TestIssuer};
use tower_aauth::{AAuth, BatchOptions, wire};

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(format!("{}/tests/vectors/{path}", env!("CARGO_MANIFEST_DIR"))).expect(path);
    serde_json::from_str(&text).expect("vector file is JSON")
}

/// (public key, message, signature) of every RFC 8032 §7.1 and Wycheproof Ed25519 case.
fn published_vectors() -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let mut cases = Vec::new();
    for vector in load("rfc/rfc8032-7.1-ed25519.json")["vectors"].as_array().unwrap() {
        let field = |name: &str| hex(vector[name].as_str().unwrap());
        cases.push((field("public_key"), field("message"), field("signature")));
    }
    for group in load("wycheproof/ed25519_test.json")["testGroups"].as_array().unwrap() {
        let public_key = hex(group["publicKey"]["pk"].as_str().unwrap());
        for test in group["tests"].as_array().unwrap() {
            cases.push((
                public_key.clone(),
                hex(test["msg"].as_str().unwrap()),
                hex(test["sig"].as_str().unwrap()),
            ));
        }
    }
    assert_eq!(cases.len(), 5 + 151);
    cases
}

fn strict(key: &VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    key.verify_strict(message, &Signature::from_bytes(&bytes)).is_ok()
}

/// Honest members to surround a case with.
fn honest(count: usize) -> Vec<(VerifyingKey, Vec<u8>, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let key = SigningKey::from_bytes(&[i as u8 + 100; 32]);
            let message = format!("honest member {i}").into_bytes();
            let signature = key.sign(&message).to_bytes().to_vec();
            (key.verifying_key(), message, signature)
        })
        .collect()
}

/// Asserts that a batch of `members` is decided member by member as `verify_strict`
/// decides each one alone.
fn assert_batch_agrees(members: &[(VerifyingKey, Vec<u8>, Vec<u8>)], what: &str) {
    let view: Vec<(VerifyingKey, &[u8], &[u8])> = members
        .iter()
        .map(|(k, m, s)| (*k, m.as_slice(), s.as_slice()))
        .collect();
    let decided = decide_batch(&view);
    for (i, ((key, message, signature), batch)) in members.iter().zip(decided).enumerate() {
        assert_eq!(batch, strict(key, message, signature), "{what}: member {i}");
    }
}

/// Whether the signature satisfies the cofactored equation `[8](R + kA − sB) = 0`
/// (with `s` canonical): what only the key's holder can make (see src/batch.rs).
fn cofactored_valid(key: &VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    let r_bytes: [u8; 32] = bytes[..32].try_into().unwrap();
    let Some(r) = curve25519_dalek::edwards::CompressedEdwardsY(r_bytes).decompress() else {
        return false;
    };
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(bytes[32..].try_into().unwrap())) else {
        return false;
    };
    let mut hash = Sha512::new();
    hash.update(r_bytes);
    hash.update(key.as_bytes());
    hash.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
    (r + key.to_edwards() * k - ED25519_BASEPOINT_POINT * s)
        .mul_by_cofactor()
        .is_identity()
}

/// The batch decisions where exact equality is not promised: a member whose key has a
/// torsion component and that is valid under the cofactored equation only may pass a
/// batch (the documented difference). Every other member is decided as `verify_strict`
/// decides it, and no member `verify_strict` accepts is ever refused.
fn assert_batch_agrees_but_for_the_corner(members: &[(VerifyingKey, Vec<u8>, Vec<u8>)], what: &str) {
    let view: Vec<(VerifyingKey, &[u8], &[u8])> = members
        .iter()
        .map(|(k, m, s)| (*k, m.as_slice(), s.as_slice()))
        .collect();
    let decided = decide_batch(&view);
    for (i, ((key, message, signature), batch)) in members.iter().zip(decided).enumerate() {
        let strict = strict(key, message, signature);
        // A cofactored-only member may pass when its own key has a torsion component or
        // another member carries one (in its `R` or its key): the documented corner.
        let others_torsion = members
            .iter()
            .enumerate()
            .any(|(j, (key, _, signature))| j != i && has_torsion(key, signature));
        let corner = !strict
            && cofactored_valid(key, message, signature)
            && (!key.to_edwards().is_torsion_free() || others_torsion);
        if !corner {
            assert_eq!(batch, strict, "{what}: member {i}");
        }
    }
}

/// Whether a member's key or `R` has a torsion component.
fn has_torsion(key: &VerifyingKey, signature: &[u8]) -> bool {
    let r = <[u8; 32]>::try_from(&signature[..32.min(signature.len())])
        .ok()
        .and_then(|r| curve25519_dalek::edwards::CompressedEdwardsY(r).decompress());
    !key.to_edwards().is_torsion_free() || r.is_some_and(|r| !r.is_torsion_free())
}

/// The published vectors whose key decompresses (a key that does not is refused before
/// any signature check), with their index among all vectors; at least 150 of 156.
fn published_vectors_with_keys() -> Vec<(usize, VerifyingKey, Vec<u8>, Vec<u8>)> {
    let cases: Vec<_> = published_vectors()
        .into_iter()
        .enumerate()
        .filter_map(|(i, (public_key, message, signature))| {
            let key = VerifyingKey::from_bytes(&public_key.try_into().ok()?).ok()?;
            Some((i, key, message, signature))
        })
        .collect();
    assert!(
        cases.len() >= 150,
        "the keys of almost every case decompress ({})",
        cases.len()
    );
    cases
}

#[test]
fn every_published_vector_is_decided_in_a_batch_as_verify_strict_decides_it() {
    for (i, key, message, signature) in published_vectors_with_keys() {
        // Alone, first, in the middle and last of batches of honest signatures.
        for (before, after) in [(0, 0), (0, 7), (4, 3), (7, 0), (16, 15)] {
            let mut members = honest(before);
            members.push((key, message.clone(), signature.clone()));
            members.extend(honest(after));
            assert_batch_agrees(&members, &format!("vector {i} after {before}, before {after}"));
        }
    }
}

#[test]
fn all_published_vectors_in_one_batch_are_decided_as_verify_strict_decides_them() {
    let members: Vec<_> = published_vectors_with_keys()
        .into_iter()
        .map(|(_, key, message, signature)| (key, message, signature))
        .collect();
    let valid = members.iter().filter(|(k, m, s)| strict(k, m, s)).count();
    assert!(valid > 80 && valid < members.len(), "a mix of valid and invalid cases");
    assert_batch_agrees(&members, "all vectors");
}

#[test]
fn every_published_vector_is_decided_alone_as_verify_strict_decides_it() {
    for (i, key, message, signature) in published_vectors_with_keys() {
        let alone = verify_like_strict(&key, &message, &signature);
        assert_eq!(alone, strict(&key, &message, &signature), "vector {i}");
    }
}

#[test]
fn crafted_small_order_mixed_order_and_non_canonical_cases_are_decided_alone_as_verify_strict_decides_them() {
    let mut strict_accepted = 0;
    for (name, key, signature) in crafted_cases() {
        let strict = strict(&key, CRAFTED_MESSAGE, &signature);
        strict_accepted += usize::from(strict);
        assert_eq!(verify_like_strict(&key, CRAFTED_MESSAGE, &signature), strict, "{name}");
    }
    assert!(
        strict_accepted >= 7,
        "the seven strict-valid mixed-order-key signatures at least"
    );
}

/// Signatures of one key over distinct messages.
fn one_key(seed: u8, count: usize) -> Vec<(VerifyingKey, Vec<u8>, Vec<u8>)> {
    let key = SigningKey::from_bytes(&[seed; 32]);
    (0..count)
        .map(|i| {
            let message = format!("one key, message {i}").into_bytes();
            let signature = key.sign(&message).to_bytes().to_vec();
            (key.verifying_key(), message, signature)
        })
        .collect()
}

#[test]
fn a_batch_of_one_key_is_decided_as_verify_strict_decides_it_with_bad_members_anywhere() {
    // One key: a single term for the key.
    assert_batch_agrees(&one_key(60, 16), "16 honest");
    for bad in [vec![0], vec![7], vec![15], vec![3, 4, 12], (0..16).collect()] {
        let mut members = one_key(60, 16);
        for &i in &bad {
            members[i].2[40] ^= 1;
        }
        assert_batch_agrees(&members, &format!("bad {bad:?}"));
    }
    // A signature of the key over another member's message: right key, wrong term.
    let mut members = one_key(60, 8);
    members[5].1 = members[2].1.clone();
    assert_batch_agrees(&members, "a message swapped");
}

#[test]
fn keys_repeated_among_others_are_decided_as_verify_strict_decides_them() {
    let mut members: Vec<_> = (0..4u8).flat_map(|seed| one_key(70 + seed, 6)).collect();
    members.extend(honest(5));
    assert_batch_agrees(&members, "four keys six times and five others");
    for bad in [0, 6, 13, 23, 28] {
        let mut tampered = members.clone();
        tampered[bad].2[40] ^= 1;
        assert_batch_agrees(&tampered, &format!("bad {bad}"));
    }
}

#[test]
fn a_mixed_order_key_signing_a_whole_batch_is_never_refused_where_verify_strict_accepts() {
    for (i, torsion) in EIGHT_TORSION.iter().enumerate().skip(1) {
        let mixed = Crafted::new(30 + i as u8, *torsion);
        let mut members: Vec<_> = (0..6)
            .map(|n| {
                let message = format!("mixed {n}").into_bytes();
                (mixed.key(), message.clone(), mixed.sign_strictly(*torsion, &message))
            })
            .collect();
        members.push((
            mixed.key(),
            b"cofactored".to_vec(),
            mixed.sign(9, EdwardsPoint::default(), b"cofactored"),
        ));
        for _ in 0..8 {
            assert_batch_agrees_but_for_the_corner(&members, &format!("torsion #{i}"));
        }
    }
}

/// A signer whose public point may carry a torsion component: `A = [a]B + T`.
struct Crafted {
    a: Scalar,
    public: [u8; 32],
}

impl Crafted {
    fn new(seed: u8, torsion: EdwardsPoint) -> Self {
        let a = Scalar::from_bytes_mod_order([seed; 32]);
        let public = (ED25519_BASEPOINT_POINT * a + torsion).compress().to_bytes();
        Crafted { a, public }
    }

    fn key(&self) -> VerifyingKey {
        VerifyingKey::from_bytes(&self.public).expect("a curve point")
    }

    fn challenge(&self, r: &[u8; 32], message: &[u8]) -> Scalar {
        let mut hash = Sha512::new();
        hash.update(r);
        hash.update(self.public);
        hash.update(message);
        Scalar::from_bytes_mod_order_wide(&hash.finalize().into())
    }

    /// `R = [r]B + T_R`, `s = r + k·a`: valid under the cofactored equation; under the
    /// strict one only when the torsion parts cancel.
    fn sign(&self, nonce: u8, torsion_r: EdwardsPoint, message: &[u8]) -> Vec<u8> {
        let r = Scalar::from_bytes_mod_order([nonce; 32]);
        let big_r = (ED25519_BASEPOINT_POINT * r + torsion_r).compress().to_bytes();
        let k = self.challenge(&big_r, message);
        let s = r + k * self.a;
        [big_r, s.to_bytes()].concat()
    }

    /// A signature `verify_strict` accepts although `A` has a torsion component `T`:
    /// `R = [r]B − [k]T`, found by trying nonces until `k` matches the guess.
    fn sign_strictly(&self, torsion: EdwardsPoint, message: &[u8]) -> Vec<u8> {
        for nonce in 1..=255u8 {
            let r = Scalar::from_bytes_mod_order([nonce; 32]);
            for guess in 0u8..8 {
                let big_r = (ED25519_BASEPOINT_POINT * r - torsion * Scalar::from(guess))
                    .compress()
                    .to_bytes();
                let k = self.challenge(&big_r, message);
                if k.to_bytes()[0] % 8 == guess {
                    return [big_r, (r + k * self.a).to_bytes()].concat();
                }
            }
        }
        panic!("no nonce matched in 2040 tries");
    }
}

/// The message every crafted case signs.
const CRAFTED_MESSAGE: &[u8] = b"crafted";

/// Small-order, mixed-order and non-canonical signatures over [`CRAFTED_MESSAGE`], named.
fn crafted_cases() -> Vec<(String, VerifyingKey, Vec<u8>)> {
    let identity = EdwardsPoint::default();
    let message = CRAFTED_MESSAGE;
    let mut cases: Vec<(String, VerifyingKey, Vec<u8>)> = Vec::new();
    // Small-order public keys with the trivial signature (R = identity, s = 0) and with
    // R of small order.
    for (i, point) in EIGHT_TORSION.iter().enumerate() {
        let key = VerifyingKey::from_bytes(&point.compress().to_bytes()).unwrap();
        cases.push((
            format!("small-order A #{i}, trivial signature"),
            key,
            [[1u8; 1].as_slice(), &[0; 63]].concat(),
        ));
        let signature = [point.compress().to_bytes(), [0; 32]].concat();
        cases.push((format!("small-order A #{i}, small-order R"), key, signature));
    }
    let clean = Crafted::new(9, identity);
    for (i, torsion) in EIGHT_TORSION.iter().enumerate().skip(1) {
        // Small-order R with an honest key.
        let signature = [torsion.compress().to_bytes(), [0; 32]].concat();
        cases.push((format!("small-order R #{i}"), clean.key(), signature));
        // Mixed-order R, torsion-free A: cofactored-valid only.
        cases.push((
            format!("mixed-order R #{i}"),
            clean.key(),
            clean.sign(7, *torsion, message),
        ));
        // Mixed-order A: a signature verify_strict accepts, and one it refuses.
        let mixed = Crafted::new(11 + i as u8, *torsion);
        cases.push((
            format!("mixed-order A #{i}, strict-valid"),
            mixed.key(),
            mixed.sign_strictly(*torsion, message),
        ));
        cases.push((
            format!("mixed-order A #{i}, cofactored-only"),
            mixed.key(),
            mixed.sign(5, identity, message),
        ));
    }
    // Non-canonical S (s + ℓ) of an honest signature.
    let honest_key = SigningKey::from_bytes(&[42; 32]);
    let mut malleated = honest_key.sign(message).to_bytes();
    let s = Scalar::from_canonical_bytes(malleated[32..].try_into().unwrap()).unwrap();
    let l_plus = (num_add_l(s.to_bytes())).to_vec();
    malleated[32..].copy_from_slice(&l_plus);
    cases.push(("s + ℓ".into(), honest_key.verifying_key(), malleated.to_vec()));
    // Non-canonical R: y = p + t (t < 19), either sign, with an honest signature's S.
    let honest = honest_key.sign(message).to_bytes();
    for t in 0..19u8 {
        for sign in [0u8, 0x80] {
            let mut r = [0xff; 32];
            r[0] = 0xed + t;
            r[31] = 0x7f | sign;
            let signature = [r.as_slice(), &honest[32..]].concat();
            cases.push((
                format!("R with y = p + {t}, sign {sign:#x}"),
                honest_key.verifying_key(),
                signature,
            ));
        }
    }
    cases
}

#[test]
fn crafted_small_order_and_mixed_order_cases_are_decided_as_verify_strict_decides_them() {
    let message = CRAFTED_MESSAGE;
    let cases = crafted_cases();

    let mut strict_accepted = 0;
    for (name, key, signature) in &cases {
        strict_accepted += usize::from(strict(key, message, signature));
        // Alone, and each as the one crafted member of a batch of honest signatures,
        // several times (the coefficients are fresh for every batch).
        for _ in 0..8 {
            assert_batch_agrees_but_for_the_corner(&[(*key, message.to_vec(), signature.clone())], name);
            let mut members = honest(9);
            members.insert(4, (*key, message.to_vec(), signature.clone()));
            assert_batch_agrees_but_for_the_corner(&members, name);
        }
    }
    assert!(
        strict_accepted >= 7,
        "the seven strict-valid mixed-order-key signatures at least"
    );
}

/// `bytes` (a canonical scalar, little-endian) + ℓ: the same scalar, non-canonically.
fn num_add_l(bytes: [u8; 32]) -> [u8; 32] {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(bytes[i]) + u16::from(L[i]) + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

#[test]
fn two_cofactored_only_signatures_whose_torsion_cancels_pass_a_batch_as_documented() {
    // The one documented difference (src/batch.rs): members valid under the cofactored
    // equation only, made with their key's private scalar, whose torsion parts sum to
    // zero. One such member alone in a batch is always caught.
    let message = b"two of a kind".as_slice();
    let order_two = EIGHT_TORSION[4];
    let signer = Crafted::new(21, EdwardsPoint::default());
    let first = signer.sign(1, order_two, message);
    let second = signer.sign(2, order_two, message);
    let key = signer.key();
    assert!(!strict(&key, message, &first) && !strict(&key, message, &second));
    let mut members = honest(6);
    members.push((key, message.to_vec(), first.clone()));
    members.push((key, message.to_vec(), second));
    let view: Vec<(VerifyingKey, &[u8], &[u8])> = members
        .iter()
        .map(|(k, m, s)| (*k, m.as_slice(), s.as_slice()))
        .collect();
    assert!(decide_batch(&view).iter().all(|v| *v), "the batch passes as a whole");
    let alone = [(key, message, first.as_slice())];
    let mut with_honest = view[..6].to_vec();
    with_honest.push(alone[0]);
    assert_eq!(decide_batch(&with_honest), [true, true, true, true, true, true, false]);
}

#[test]
fn a_cofactored_only_signature_can_pass_beside_a_mixed_order_key_as_documented() {
    // The same corner through another member: a key with an order-2 component, signing
    // strictly validly, has a torsion term that can cancel a cofactored-only member's
    // under a torsion-free key. Both keys' holders are needed; the strict-valid member is
    // never refused.
    let message = b"beside a mixed key".as_slice();
    let order_two = EIGHT_TORSION[4];
    let clean = Crafted::new(23, EdwardsPoint::default());
    let cofactored_only = clean.sign(3, order_two, message);
    let mixed = Crafted::new(24, order_two);
    let strictly_valid = mixed.sign_strictly(order_two, message);
    assert!(!strict(&clean.key(), message, &cofactored_only));
    assert!(strict(&mixed.key(), message, &strictly_valid));
    let batch = [
        (clean.key(), message, cofactored_only.as_slice()),
        (mixed.key(), message, strictly_valid.as_slice()),
    ];
    let mut passed = 0;
    for _ in 0..64 {
        let verdicts = decide_batch(&batch);
        assert!(verdicts[1], "the strict-valid member is never refused");
        passed += usize::from(verdicts[0]);
    }
    // About half the coefficient draws cancel the two order-2 terms.
    assert!((1..64).contains(&passed), "passed {passed} of 64");
}

// --- through the layer -----------------------------------------------------------------

fn agents(count: usize) -> Vec<TestAgent> {
    (0..count).map(|i| TestAgent::from_seed([i as u8 + 10; 32])).collect()
}

/// A signed `GET /data/{i}` of each agent.
fn signed_requests(agents: &[TestAgent]) -> Vec<Request<Body>> {
    agents
        .iter()
        .enumerate()
        .map(|(i, agent)| {
            let mut request = get(&format!("/data/{i}"));
            agent.sign(&mut request, &KeySource::Hwk, NOW);
            request
        })
        .collect()
}

/// Gives `requests[bad]` the `Signature` of `requests[donor]`: well formed, and wrong.
fn spoil(requests: &mut [Request<Body>], bad: usize, donor: usize) {
    let signature = requests[donor].headers()[wire::SIGNATURE].clone();
    requests[bad].headers_mut().insert(wire::SIGNATURE, signature);
}

/// Sends every request at once on this (current-thread) runtime; the answers in order.
async fn send_concurrently(harness: &Harness, requests: Vec<Request<Body>>) -> Vec<Response<Body>> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, request) in requests.into_iter().enumerate() {
        let router = harness.router();
        tasks.spawn(async move { (i, router.oneshot(request).await.expect("infallible")) });
    }
    let mut answers: Vec<_> = tasks.join_all().await;
    answers.sort_by_key(|(i, _)| *i);
    answers.into_iter().map(|(_, response)| response).collect()
}

/// A resource batching with `options`, and a wait bound no loaded machine reaches: the
/// scheduling rounds, not the clock, close the batches here, so the counters are exact.
fn batching(options: BatchOptions) -> Harness {
    Harness::with(|builder| builder.batch_verification(options.max_wait_micros(1_000_000)))
}

fn error_code(response: &Response<Body>) -> Option<&str> {
    response.headers().get("signature-error").map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn concurrent_honest_requests_are_verified_in_batches_and_all_accepted() {
    let harness = batching(BatchOptions::new().join_when_idle(true));
    let answers = send_concurrently(&harness, signed_requests(&agents(64))).await;
    assert!(answers.iter().all(|r| r.status() == StatusCode::OK));
    assert_eq!(harness.calls(), 64);
    let stats = harness.aauth.batch_stats();
    assert_eq!(stats.batched, 64, "{stats:?}");
    assert_eq!(stats.failed_batches, 0, "{stats:?}");
    // Batches of at most 32 (the default bound): at least two, and far fewer than 64.
    assert!((2..=8).contains(&stats.batches), "{stats:?}");
    assert_eq!(stats.largest, 32, "{stats:?}");
    assert_eq!(stats.singles, 0, "{stats:?}");
}

#[tokio::test]
async fn bisection_refuses_exactly_the_bad_members_and_checks_far_fewer_than_all_singly() {
    let harness = batching(BatchOptions::new().join_when_idle(true));
    let mut requests = signed_requests(&agents(32));
    let bad = [3, 17, 30];
    for &i in &bad {
        spoil(&mut requests, i, (i + 1) % 32);
    }
    let answers = send_concurrently(&harness, requests).await;
    for (i, response) in answers.iter().enumerate() {
        if bad.contains(&i) {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "request {i}");
            assert_eq!(error_code(response), Some("error=invalid_signature"), "request {i}");
        } else {
            assert_eq!(response.status(), StatusCode::OK, "request {i}");
        }
    }
    assert_eq!(harness.calls(), 29, "the handler ran for the good requests only");
    let stats = harness.aauth.batch_stats();
    assert_eq!(
        (stats.batches, stats.failed_batches, stats.batched),
        (1, 1, 32),
        "{stats:?}"
    );
    // Each bad member's last pair singly; the parts between by their batch equations.
    assert_eq!(stats.singles, 6, "bisection, not every member again: {stats:?}");
    assert!(stats.equations <= 16, "{stats:?}");
}

#[tokio::test]
async fn a_failed_batch_suspends_batching_for_a_while_and_batching_resumes_after() {
    let harness = batching(BatchOptions::new().join_when_idle(true));
    let pool = agents(16);
    let mut requests = signed_requests(&pool);
    spoil(&mut requests, 0, 1);
    send_concurrently(&harness, requests).await;
    assert_eq!(harness.aauth.batch_stats().backoffs, 1);

    // The next 1024 signatures are verified singly, at once, however concurrent.
    let mut sent = 0;
    let mut round = 0u64;
    while sent < 1024 {
        let mut requests = Vec::new();
        for (i, agent) in pool.iter().enumerate() {
            let mut request = get(&format!("/round/{round}/{i}"));
            agent.sign(&mut request, &KeySource::Hwk, NOW);
            requests.push(request);
        }
        sent += requests.len();
        round += 1;
        let answers = send_concurrently(&harness, requests).await;
        assert!(answers.iter().all(|r| r.status() == StatusCode::OK));
    }
    let stats = harness.aauth.batch_stats();
    assert_eq!(
        (stats.backed_off, stats.batched, stats.batches),
        (1024, 16, 1),
        "{stats:?}"
    );

    // Then batching resumes.
    let answers = send_concurrently(&harness, signed_requests(&pool)).await;
    assert!(answers.iter().all(|r| r.status() == StatusCode::OK));
    let stats = harness.aauth.batch_stats();
    assert_eq!(
        (stats.batched, stats.batches, stats.failed_batches),
        (32, 2, 1),
        "{stats:?}"
    );
}

#[tokio::test]
async fn every_failure_doubles_the_backoff_of_a_flood_of_bad_signatures() {
    let harness = batching(BatchOptions::new().join_when_idle(true));
    let pool = agents(8);
    let mut honest_sent = 0;
    // Three floods of bad signatures only, each followed by honest traffic that waits out
    // the backoff it caused: 1024, then 2048, then 4096 single verifications.
    for flood in 0..3u64 {
        let mut requests = signed_requests(&pool);
        let mut donor = get("/elsewhere");
        pool[0].sign(&mut donor, &KeySource::Hwk, NOW);
        requests.push(donor);
        for bad in 0..pool.len() {
            spoil(&mut requests, bad, pool.len());
        }
        requests.pop();
        let answers = send_concurrently(&harness, requests).await;
        assert!(answers.iter().all(|r| error_code(r) == Some("error=invalid_signature")));
        for i in 0..(1024u64 << flood) {
            let mut request = get(&format!("/wait/{flood}/{i}"));
            pool[1].sign(&mut request, &KeySource::Hwk, NOW);
            assert_eq!(harness.send(request).await.status(), StatusCode::OK);
            honest_sent += 1;
        }
        let stats = harness.aauth.batch_stats();
        assert_eq!(stats.backoffs, flood + 1, "{stats:?}");
        assert_eq!(
            stats.batched,
            8 * (flood + 1),
            "every flood was one probing batch: {stats:?}"
        );
        assert_eq!(stats.backed_off, (2048u64 << flood) - 1024, "{stats:?}");
    }
    assert_eq!(
        harness.calls(),
        honest_sent,
        "only the honest requests reached the handler"
    );
}

#[tokio::test]
async fn an_idle_request_is_verified_at_once_in_the_call_without_a_batch() {
    let harness = batching(BatchOptions::new());
    let router = harness.router();
    for (i, request) in signed_requests(&agents(4)).into_iter().enumerate() {
        let mut future = pin!(router.clone().oneshot(request));
        // The first poll answers: no wait, no yield.
        let mut context = Context::from_waker(Waker::noop());
        match future.as_mut().poll(&mut context) {
            Poll::Ready(response) => assert_eq!(response.unwrap().status(), StatusCode::OK, "request {i}"),
            Poll::Pending => panic!("an idle request waited"),
        }
    }
    let stats = harness.aauth.batch_stats();
    assert_eq!((stats.idle, stats.batched, stats.batches), (4, 0, 0), "{stats:?}");
}

/// The layer around a handler that answers `200`, called directly: `call` runs the
/// verification's head.
fn service(
    harness: &Harness,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = std::convert::Infallible, Future: Unpin> + Clone {
    let handler = tower::service_fn(|_request: Request<Body>| async {
        Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
    });
    let layered = harness.aauth.layer().layer(handler);
    tower::util::MapFuture::new(layered, Box::pin)
}

#[tokio::test]
async fn a_lone_member_waits_one_scheduling_round_and_a_full_batch_runs_at_once() {
    // A wait bound no slow machine reaches: the rounds, not the clock, decide here.
    let harness = batching(
        BatchOptions::new()
            .join_when_idle(true)
            .max_batch(4)
            .max_wait_micros(1_000_000),
    );
    let mut service = service(&harness);
    let mut requests = signed_requests(&agents(5)).into_iter();
    let mut context = Context::from_waker(Waker::noop());

    // Alone: pending for one round (others may join), then verified.
    let mut lone = service.call(requests.next().unwrap());
    assert!(Pin::new(&mut lone).poll(&mut context).is_pending());
    match Pin::new(&mut lone).poll(&mut context) {
        Poll::Ready(response) => assert_eq!(response.unwrap().status(), StatusCode::OK),
        Poll::Pending => panic!("a lone member waited a second round"),
    }

    // Four at once: the fourth fills the batch and runs it in its call.
    let futures: Vec<_> = requests.map(|request| service.call(request)).collect();
    let stats = harness.aauth.batch_stats();
    assert_eq!((stats.batches, stats.largest), (2, 4), "{stats:?}");
    for mut future in futures {
        match Pin::new(&mut future).poll(&mut context) {
            Poll::Ready(response) => assert_eq!(response.unwrap().status(), StatusCode::OK),
            Poll::Pending => panic!("a member of a batch already run waited"),
        }
    }
}

#[tokio::test]
async fn members_never_wait_for_a_leader_that_went_away() {
    let harness = batching(BatchOptions::new().join_when_idle(true));
    let mut service = service(&harness);
    let mut futures: Vec<_> = signed_requests(&agents(4))
        .into_iter()
        .map(|request| service.call(request))
        .collect();
    assert_eq!(harness.aauth.batch_stats().batches, 0, "still forming");
    // The leader's request is dropped before it was ever polled.
    drop(futures.remove(0));
    assert_eq!(
        harness.aauth.batch_stats().batches,
        1,
        "the leader's drop ran the batch"
    );
    let mut context = Context::from_waker(Waker::noop());
    for mut future in futures {
        match Pin::new(&mut future).poll(&mut context) {
            Poll::Ready(response) => assert_eq!(response.unwrap().status(), StatusCode::OK),
            Poll::Pending => panic!("a member waited for a leader that went away"),
        }
    }
}

#[tokio::test]
async fn token_signatures_join_the_batch_of_the_request_signatures() {
    let harness = batching(BatchOptions::new().join_when_idle(true));
    let pool = agents(8);
    let mut requests = Vec::new();
    for (i, agent) in pool.iter().enumerate() {
        let token = harness
            .access_server
            .auth_token(RESOURCE, &agent.public_jwk(), "data.read", NOW);
        let mut request = get(&format!("/data/{i}"));
        agent.sign(&mut request, &KeySource::Jwt(token), NOW);
        requests.push(request);
    }
    // One more whose token's signature is someone else's (its request signature is good).
    let agent = &pool[0];
    let token = harness
        .access_server
        .auth_token(RESOURCE, &agent.public_jwk(), "data.read", NOW);
    let other = harness
        .access_server
        .auth_token(RESOURCE, &agent.public_jwk(), "data.write", NOW);
    let (input, _) = token.rsplit_once('.').unwrap();
    let (_, foreign) = other.rsplit_once('.').unwrap();
    let mut forged = get("/data/forged");
    agent.sign(&mut forged, &KeySource::Jwt(format!("{input}.{foreign}")), NOW);
    requests.push(forged);

    let answers = send_concurrently(&harness, requests).await;
    for response in &answers[..8] {
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(answers[8].status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&answers[8]), Some("error=invalid_jwt"));
    assert_eq!(harness.calls(), 8);
    let stats: BatchStats = harness.aauth.batch_stats();
    assert_eq!(stats.batched, 18, "two signatures per request: {stats:?}");
}

/// A `GET /vectors/{tag}` under the `hwk` key `public`, carrying `signature`.
fn hwk_request(tag: usize, public: &[u8], signature: &[u8]) -> Request<Body> {
    use base64::Engine;
    let mut request = get(&format!("/vectors/{tag}"));
    let headers = request.headers_mut();
    headers.insert(
        wire::SIGNATURE_INPUT,
        format!(r#"sig=("@method" "@authority" "@path" "signature-key");created={NOW}"#)
            .parse()
            .unwrap(),
    );
    headers.insert(
        wire::SIGNATURE_KEY,
        format!(
            r#"sig=hwk;kty="OKP";crv="Ed25519";x="{}";alg="Ed25519""#,
            tower_aauth::engine::b64url(public)
        )
        .parse()
        .unwrap(),
    );
    let signature = base64::engine::general_purpose::STANDARD.encode(signature);
    headers.insert(wire::SIGNATURE, format!("sig=:{signature}:").parse().unwrap());
    request
}

/// The signature base the layer rebuilds for `request` (as `hwk_request` makes it).
fn base_of(request: &Request<Body>) -> Vec<u8> {
    use tower_aauth::engine::{ParsedInput, RequestTarget, SignatureBase, SignatureHeaders};
    let fields = SignatureHeaders::read(request.headers(), usize::MAX).unwrap().unwrap();
    let input = ParsedInput::parse(&fields.input, 24).unwrap();
    let target = RequestTarget {
        method: "GET",
        scheme: "https",
        authority: "resource.example",
        path: request.uri().path(),
        query: None,
    };
    let mut base = SignatureBase::new();
    base.build(&input, &target, request.headers()).unwrap();
    base.as_bytes().to_vec()
}

fn copy_of(request: &Request<Body>) -> Request<Body> {
    let mut copy = get(request.uri().path());
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// Sends `requests` to a resource with batching off, one by one, and, `per_batch` at a
/// time, to a fresh one with batching on, all at once among as many honest requests (one
/// batch each, no backoff yet); asserts the same status and `Signature-Error` for each,
/// and that every honest one passed. Returns how many were accepted.
async fn assert_layer_decides_as_without_batching(mut requests: Vec<Request<Body>>, per_batch: usize) -> usize {
    let mut accepted = 0;
    while !requests.is_empty() {
        let rest = requests.split_off(requests.len().min(per_batch));
        let (chunk_accepted, stats) = decide_chunk(requests).await;
        assert_eq!((stats.batches, stats.backed_off), (1, 0), "{stats:?}");
        accepted += chunk_accepted;
        requests = rest;
    }
    accepted
}

async fn decide_chunk(requests: Vec<Request<Body>>) -> (usize, BatchStats) {
    let plain = Harness::new();
    let mut expected = Vec::new();
    for request in &requests {
        let response = plain.send(copy_of(request)).await;
        expected.push((response.status(), error_code(&response).map(str::to_owned)));
    }
    let harness = batching(BatchOptions::new().join_when_idle(true).max_batch(64));
    let count = requests.len();
    let mut mixed = Vec::new();
    let honest = signed_requests(&agents(count.max(8)));
    let mut honest = honest.into_iter();
    for request in requests {
        mixed.push(request);
        mixed.push(honest.next().unwrap());
    }
    // At least eight honest members, whatever the number of requests.
    mixed.extend(honest);
    let answers = send_concurrently(&harness, mixed).await;
    for (i, (status, code)) in expected.iter().enumerate() {
        let response = &answers[2 * i];
        assert_eq!(response.status(), *status, "request {i}");
        assert_eq!(error_code(response).map(str::to_owned), *code, "request {i}");
        assert_eq!(answers[2 * i + 1].status(), StatusCode::OK, "honest request beside {i}");
    }
    let accepted = expected.iter().filter(|(status, _)| *status == StatusCode::OK).count();
    assert_eq!(harness.calls(), count.max(8) + accepted);
    (accepted, harness.aauth.batch_stats())
}

#[tokio::test]
async fn every_published_vector_through_the_layer_is_answered_as_without_batching() {
    // The vectors sign their own messages, never our signature base: through the layer
    // each is refused, with the code the layer gives without batching (`invalid_key` for
    // a key it does not admit), while the honest requests beside them pass.
    let requests: Vec<_> = published_vectors()
        .iter()
        .enumerate()
        .map(|(i, (public, _, signature))| hwk_request(i, public, signature))
        .collect();
    assert_eq!(assert_layer_decides_as_without_batching(requests, 16).await, 0);
}

#[tokio::test]
async fn crafted_signatures_over_the_real_base_are_answered_through_the_layer_as_without_batching() {
    let mut requests = Vec::new();
    let mut tag = 1000;
    let mut next = |public: &[u8; 32], sign: &dyn Fn(&[u8]) -> Vec<u8>| {
        tag += 1;
        let unsigned = hwk_request(tag, public, &[0; 64]);
        let signature = sign(&base_of(&unsigned));
        hwk_request(tag, public, &signature)
    };
    let clean = Crafted::new(9, EdwardsPoint::default());
    // Control: an ordinary signature made the crafted way.
    requests.push(next(&clean.public, &|base| {
        clean.sign(3, EdwardsPoint::default(), base)
    }));
    for torsion in EIGHT_TORSION.iter().skip(1) {
        // Mixed-order R under a torsion-free key: refused.
        requests.push(next(&clean.public, &|base| clean.sign(7, *torsion, base)));
        // A mixed-order key: its strictly valid signature is accepted, its
        // cofactored-only one refused (or, as without batching, accepted when k ≡ 0).
        let mixed = Crafted::new(40, *torsion);
        requests.push(next(&mixed.public, &|base| mixed.sign_strictly(*torsion, base)));
        // Small-order R.
        requests.push(next(&clean.public, &|_| {
            [torsion.compress().to_bytes(), [0; 32]].concat()
        }));
    }
    // A non-canonical S.
    requests.push(next(&clean.public, &|base| {
        let mut signature = clean.sign(3, EdwardsPoint::default(), base);
        let s: [u8; 32] = signature[32..].try_into().unwrap();
        signature[32..].copy_from_slice(&num_add_l(s));
        signature
    }));
    // One crafted request per batch, among honest ones: several signatures of one key's
    // holder whose torsion parts cancel could pass one batch together (the documented
    // difference, tested on the engine above).
    let accepted = assert_layer_decides_as_without_batching(requests, 1).await;
    assert_eq!(
        accepted,
        1 + 7,
        "the control and the seven strictly valid mixed-key signatures"
    );
}

#[tokio::test]
async fn a_queued_request_signature_is_decided_before_a_token_key_refusal_as_without_batching() {
    // The request's signature waits in a batch while the token's issuer key is refused
    // (an unknown kid): a bad signature must still answer `invalid_signature`, a good
    // one the key's refusal, exactly as without batching.
    let stranger = TestIssuer::new(AS, [2; 32], "not-pinned");
    let pool = agents(8);
    let mut requests = Vec::new();
    for (i, agent) in pool.iter().enumerate() {
        let token = stranger.auth_token(RESOURCE, &agent.public_jwk(), "data.read", NOW);
        let mut request = get(&format!("/unknown-kid/{i}"));
        agent.sign(&mut request, &KeySource::Jwt(token), NOW);
        requests.push(request);
    }
    for bad in [1, 4, 6] {
        spoil(&mut requests, bad, bad + 1);
    }
    let plain = Harness::new();
    let mut codes = Vec::new();
    for request in &requests {
        let response = plain.send(copy_of(request)).await;
        codes.push(error_code(&response).map(str::to_owned));
    }
    for (i, code) in codes.iter().enumerate() {
        let expected = if [1, 4, 6].contains(&i) {
            "error=invalid_signature"
        } else {
            "error=unknown_key"
        };
        assert_eq!(code.as_deref(), Some(expected), "request {i} without batching");
    }
    assert_eq!(assert_layer_decides_as_without_batching(requests, 8).await, 0);
}

/// A resource batching (on one thread, every signature joining a batch) whose access
/// server's key is discovered through `fetch`.
fn rekeying_world(fetch: &support::discovery::MapFetch) -> (AAuth, ManualClock) {
    let clock = ManualClock::new(NOW);
    let aauth = AAuth::builder(RESOURCE)
        .clock(clock.clone())
        .auth_server(AS)
        .fetcher(fetch.clone())
        .batch_verification(BatchOptions::new().join_when_idle(true).max_wait_micros(1_000_000))
        .build()
        .unwrap();
    (aauth, clock)
}

/// `count` requests of distinct agents, each with an auth token `issuer` signed at `now`;
/// the request signatures of those in `bad` spoiled.
fn token_requests(issuer: &TestIssuer, count: usize, now: u64, bad: &[usize]) -> Vec<Request<Body>> {
    let mut requests: Vec<_> = agents(count)
        .iter()
        .enumerate()
        .map(|(i, agent)| {
            let token = issuer.auth_token(RESOURCE, &agent.public_jwk(), "data.read", now);
            let mut request = get(&format!("/rekeyed/{i}"));
            agent.sign(&mut request, &KeySource::Jwt(token), now);
            request
        })
        .collect();
    for &i in bad {
        spoil(&mut requests, i, (i + 1) % count);
    }
    requests
}

async fn send_all(aauth: &AAuth, requests: Vec<Request<Body>>) -> Vec<Response<Body>> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, request) in requests.into_iter().enumerate() {
        let router = axum::Router::new()
            .fallback(axum::routing::any(|| async { "served" }))
            .layer(aauth.layer());
        tasks.spawn(async move { (i, router.oneshot(request).await.expect("infallible")) });
    }
    let mut answers = tasks.join_all().await;
    answers.sort_by_key(|(i, _)| *i);
    answers.into_iter().map(|(_, response)| response).collect()
}

#[tokio::test]
async fn a_batched_token_failing_under_a_re_keyed_kid_is_refetched_once_and_accepted() {
    let old = TestIssuer::new(AS, [2; 32], "as-key-1");
    let new = TestIssuer::new(AS, [9; 32], "as-key-1");
    let fetch = support::discovery::MapFetch::default();
    fetch.publish(AS, tower_aauth::engine::dwk::ACCESS, &old.jwks());
    let (aauth, clock) = rekeying_world(&fetch);
    let warm = send_all(&aauth, token_requests(&old, 1, NOW, &[])).await;
    assert_eq!(warm[0].status(), StatusCode::OK);
    assert_eq!(fetch.calls(&format!("{AS}/jwks")), 1);

    fetch.publish(AS, tower_aauth::engine::dwk::ACCESS, &new.jwks());
    clock.advance(61);
    // Bad request signatures first: their tokens fail too, yet cause no refetch (the
    // request's verdict is awaited before the token's failure is acted on).
    let answers = send_all(&aauth, token_requests(&new, 8, NOW + 61, &[0, 1, 2, 3, 4, 5, 6, 7])).await;
    assert!(answers.iter().all(|r| error_code(r) == Some("error=invalid_signature")));
    assert_eq!(fetch.calls(&format!("{AS}/jwks")), 1, "no fetch for unsigned requests");
    let batched = aauth.batch_stats().batched;
    assert!(batched >= 2, "{:?}", aauth.batch_stats());

    // Wait out the backoff those failures caused, then the honest ones batch again.
    while aauth.batch_stats().backed_off < 1024 {
        let mut request = get("/wait");
        agents(1)[0].sign(&mut request, &KeySource::Hwk, NOW + 61);
        send_all(&aauth, vec![request]).await;
    }
    let answers = send_all(&aauth, token_requests(&new, 8, NOW + 61, &[])).await;
    assert!(answers.iter().all(|r| r.status() == StatusCode::OK));
    assert_eq!(fetch.calls(&format!("{AS}/jwks")), 2, "one shared refetch");
    let stats = aauth.batch_stats();
    assert_eq!(
        stats.batched,
        batched + 16,
        "request and token signatures batched: {stats:?}"
    );
}

#[tokio::test]
async fn a_leader_reading_its_body_still_runs_its_batch_so_joiners_are_answered_promptly() {
    // The first request's body never arrives: its signature, waiting in a batch, is
    // decided before the body is read, so the batch it leads runs and a request that
    // joined it is answered.
    let harness =
        Harness::with(|b| b.batch_verification(BatchOptions::new().join_when_idle(true).max_wait_micros(250)));
    let agent = TestAgent::from_seed([99; 32]);
    let body = futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
    let mut stalled = Request::post("https://resource.example/data/stalled")
        .body(Body::from_stream(body))
        .unwrap();
    agent.sign_with_body(&mut stalled, b"never sent", &KeySource::Hwk, NOW);
    let router = harness.router();
    let stalled_task = tokio::spawn(async move { router.oneshot(stalled).await });
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    let honest = signed_requests(&agents(1)).pop().unwrap();
    let answer = tokio::time::timeout(std::time::Duration::from_millis(50), harness.send(honest)).await;
    let stats = harness.aauth.batch_stats();
    assert_eq!(
        answer.expect("answered within 50 ms").status(),
        StatusCode::OK,
        "{stats:?}"
    );
    assert!(stats.batches >= 1, "{stats:?}");
    stalled_task.abort();
}

#[tokio::test]
async fn an_overdue_batch_whose_leader_is_never_polled_is_run_by_a_polled_member_or_the_next_submitter() {
    let harness = Harness::with(|b| {
        b.batch_verification(
            BatchOptions::new()
                .join_when_idle(true)
                .max_batch(8)
                .max_wait_micros(50_000),
        )
    });
    let mut service = service(&harness);
    let mut requests = signed_requests(&agents(5)).into_iter();
    let mut context = Context::from_waker(Waker::noop());

    // A polled member runs its batch once overdue.
    let _unpolled_leader = service.call(requests.next().unwrap());
    let mut member = service.call(requests.next().unwrap());
    assert!(Pin::new(&mut member).poll(&mut context).is_pending(), "not overdue yet");
    std::thread::sleep(std::time::Duration::from_millis(60));
    match Pin::new(&mut member).poll(&mut context) {
        Poll::Ready(response) => assert_eq!(response.unwrap().status(), StatusCode::OK),
        Poll::Pending => panic!("a member waited past the bound for an unpolled leader"),
    }
    assert_eq!(harness.aauth.batch_stats().batches, 1);

    // The next submitter runs an overdue batch before opening its own.
    let _unpolled_leader = service.call(requests.next().unwrap());
    let mut member = service.call(requests.next().unwrap());
    std::thread::sleep(std::time::Duration::from_millis(60));
    let _next = service.call(requests.next().unwrap());
    assert_eq!(harness.aauth.batch_stats().batches, 2, "run by the next submission");
    match Pin::new(&mut member).poll(&mut context) {
        Poll::Ready(response) => assert_eq!(response.unwrap().status(), StatusCode::OK),
        Poll::Pending => panic!("a member waited for an unpolled leader"),
    }
}

#[tokio::test]
async fn a_forged_request_with_an_oversized_covered_body_is_refused_for_its_signature_as_without_batching() {
    let body = vec![b'x'; 4096];
    let forged = || {
        let agent = TestAgent::from_seed([98; 32]);
        let mut donor = Request::post("https://resource.example/data/other")
            .body(Body::from(body.clone()))
            .unwrap();
        agent.sign_with_body(&mut donor, &body, &KeySource::Hwk, NOW);
        let mut request = Request::post("https://resource.example/data/big")
            .body(Body::from(body.clone()))
            .unwrap();
        agent.sign_with_body(&mut request, &body, &KeySource::Hwk, NOW);
        let signature = donor.headers()[wire::SIGNATURE].clone();
        request.headers_mut().insert(wire::SIGNATURE, signature);
        request
    };
    for batching_on in [false, true] {
        let harness = Harness::with(|b| {
            let b = b.max_body_bytes(1024);
            if batching_on {
                b.batch_verification(BatchOptions::new().join_when_idle(true))
            } else {
                b
            }
        });
        let response = harness.send(forged()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "batching {batching_on}");
        assert_eq!(
            error_code(&response),
            Some("error=invalid_signature"),
            "batching {batching_on}"
        );
        assert_eq!(harness.calls(), 0, "batching {batching_on}");
        if batching_on {
            assert_eq!(harness.aauth.batch_stats().batched, 1);
        }
    }
}

#[tokio::test]
async fn a_new_token_is_not_remembered_before_its_request_signature_is_decided() {
    // The request's own submission fills a failing batch, so its token's signature is
    // verified at once (backing off) while the request's verdict is still to be taken.
    let harness = batching(BatchOptions::new().join_when_idle(true).max_batch(2));
    let mut service = service(&harness);
    let mut bad = signed_requests(&agents(2));
    spoil(&mut bad, 0, 1);
    let token = harness.auth_token("data.read");
    let mut forged = get("/data/forged");
    harness.agent.sign(&mut forged, &KeySource::Jwt(token.clone()), NOW);
    let mut donor = get("/data/donor");
    harness.agent.sign(&mut donor, &KeySource::Jwt(token), NOW);
    let signature = donor.headers()[wire::SIGNATURE].clone();
    forged.headers_mut().insert(wire::SIGNATURE, signature);

    let mut leader = service.call(bad.remove(0));
    let mut filler = service.call(forged);
    let stats = harness.aauth.batch_stats();
    assert_eq!(
        (stats.batches, stats.backoffs, stats.backed_off),
        (1, 1, 1),
        "{stats:?}"
    );
    assert_eq!(
        harness.aauth.cached_tokens(),
        0,
        "remembered before the request's verdict"
    );
    let mut context = Context::from_waker(Waker::noop());
    for future in [&mut leader, &mut filler] {
        match Pin::new(future).poll(&mut context) {
            Poll::Ready(response) => {
                let response = response.unwrap();
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
                assert_eq!(error_code(&response), Some("error=invalid_signature"));
            }
            Poll::Pending => panic!("a member of a batch already run waited"),
        }
    }
    assert_eq!(
        harness.aauth.cached_tokens(),
        0,
        "a forged request's token is not remembered"
    );
}

#[tokio::test]
async fn a_failed_batch_equation_backs_off_even_when_every_member_is_valid() {
    // Valid signatures under keys with a torsion component fail the batch equation;
    // bisection finds them all valid, and batching backs off all the same.
    // The torsion parts cancel in a batch by chance (about one batch in eight: the
    // coefficients are random), so batches are sent until one fails, at most eight.
    let harness = batching(BatchOptions::new().join_when_idle(true));
    for round in 0..8usize {
        let mut requests = Vec::new();
        for i in 0..32usize {
            let mixed = Crafted::new(60 + i as u8, EIGHT_TORSION[1]);
            let unsigned = hwk_request(5000 + round * 32 + i, &mixed.public, &[0; 64]);
            let signature = mixed.sign_strictly(EIGHT_TORSION[1], &base_of(&unsigned));
            requests.push(hwk_request(5000 + round * 32 + i, &mixed.public, &signature));
        }
        let answers = send_concurrently(&harness, requests).await;
        assert!(answers.iter().all(|r| r.status() == StatusCode::OK));
        if harness.aauth.batch_stats().failed_batches > 0 {
            break;
        }
    }
    let stats = harness.aauth.batch_stats();
    assert!(stats.backoffs >= 1, "{stats:?}");
    assert!(stats.failed_batches >= 1, "{stats:?}");

    let answers = send_concurrently(&harness, signed_requests(&agents(8))).await;
    assert!(answers.iter().all(|r| r.status() == StatusCode::OK));
    let after = harness.aauth.batch_stats();
    assert_eq!(after.backed_off, stats.backed_off + 8, "{after:?}");
    assert_eq!(after.batched, stats.batched, "{after:?}");
}
