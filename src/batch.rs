//! Adaptive batch verification of Ed25519 signatures (opt-in: [`BatchOptions`]).
//!
//! # Design
//!
//! A signature that is ready to verify is verified at once, with `verify_strict`, when no
//! other verification of this [`AAuth`](crate::AAuth) is in flight (running, or batched
//! and its request not yet resumed): an idle server adds no latency and takes the layer's
//! unboxed warm path. Otherwise it joins the batch being formed and its request waits for
//! the verdict in the layer's response future (one `oneshot` per request; a first-seen
//! token's or a covered body's request takes the boxed slow path as before). The first
//! member of a batch leads it: each time its request is polled it lets the runtime run
//! the other ready requests first and poll for I/O (`tokio::task::yield_now`, which
//! resumes a task only after the runtime's next I/O poll, so a request whose bytes arrived
//! meanwhile is read and can join; a plain wake would resume the leader before any
//! socket is looked at, and half the batches of a loaded server held one signature), and
//! it runs the batch when the batch stopped growing over one such round, reached
//! [`BatchOptions::max_batch`], or is [`BatchOptions::max_wait_micros`] old. The member
//! that fills a batch runs it at once. A leader dropped before it ran its batch runs it
//! in its destructor, so no member ever waits for a request that went away. A batch
//! older than the wait bound is also run by any of its members that is polled, and by
//! the next submission, which then opens the next batch: a leader whose request is not
//! polled stalls no one past the wait bound and the next such poll or submission. The
//! layer decides every signature of a request that waits in a batch (its own and a
//! first-seen token's, polled together) before it awaits anything else, the body of a
//! request covering `content-digest` included. HTTP signatures and token (JWS)
//! signatures share the one batch.
//!
//! # Acceptance is `verify_strict`'s
//!
//! Before a signature may join a batch it passes, one by one, every check
//! `ed25519_dalek::VerifyingKey::verify_strict` makes besides its equation, in the same
//! order: `S` canonical (`S < ℓ`), `R` decompresses, neither `R` nor `A` of small order;
//! and `R` canonically encoded (`y < p`), which `verify_strict` enforces by comparing the
//! encoding of the point it recomputes with the bytes of `R`. A signature failing one is
//! refused there, as `verify_strict` refuses it. The challenge
//! `k = SHA-512(R ‖ A ‖ M) mod ℓ` is computed then too, so a batch holds no message.
//!
//! For such signatures `verify_strict` accepts exactly when `Eᵢ = Rᵢ + kᵢAᵢ − sᵢB` is the
//! identity (it compares `[s]B − [k]A` with `R`, and the encoding of a point is
//! injective). A batch checks `Σ zᵢEᵢ = 0` for coefficients `zᵢ` drawn from the
//! operating system's random source for each batch and chosen `≡ 1 (mod 8)`
//! (`zᵢ = 8wᵢ + 1`, `wᵢ` of 120 bits). This is the batch equation of
//! `ed25519_dalek::verify_batch`, which is cofactorless too, computed here with
//! `curve25519-dalek` directly so that the points decompressed for the checks above are
//! not decompressed again and the coefficients are secret and have the residue we need
//! (`verify_batch` derives them deterministically from the batch's own contents).
//!
//! The multiscalar multiplication works with scalars reduced mod `ℓ`, and members that
//! share a key share one term (a busy agent's requests often fill a batch): the
//! coefficient of a distinct key `A` is `c_A = Σ zᵢkᵢ mod ℓ` over the members signed by
//! `A`, not the integer sum of the `zᵢkᵢ`. On the prime-order subgroup that is the same;
//! on a torsion component of `A` (order dividing 8, and `ℓ` is odd) it is not. Write
//! `Eᵢ = Pᵢ + Tᵢ` (prime-order part, torsion part) and `T(X)` for the torsion component
//! of a point `X`. What a batch checks is `Σ zᵢPᵢ = 0` and
//! `Σᵢ zᵢ·T(Rᵢ) + Σ_A c_A·T(A) = 0`.
//!
//! * The prime-order parts of members `verify_strict` refuses cancel with probability
//!   about 2⁻¹²⁰ over the secret `wᵢ`: a batch with such a member fails.
//! * A member `verify_strict` accepts has `Pᵢ = 0` and `T(Rᵢ) = −kᵢ·T(Aᵢ)`. When its
//!   key is torsion-free (every key made by Ed25519 key generation is) its torsion term
//!   is 0 too. When its key has a torsion component (a "mixed-order" key, which
//!   `verify_strict` accepts), the torsion terms of that key's members add up to
//!   `(c_A − Σ zᵢkᵢ)·T(A)`, usually not 0: the batch fails.
//! * So a failed batch proves nothing about any one member. It is bisected (below) and
//!   every member of a part of one is decided by `[s]B − [k]A = R` — `verify_strict`'s
//!   own equation — whatever the bisection suggested: a strictly valid signature is
//!   never refused by batching, only checked once more.
//!
//! **The one difference** is in the other direction: a member `verify_strict` refuses with
//! `Pᵢ = 0 ≠ Tᵢ`, a signature valid under the cofactored equation only, whose `R` or
//! `A` has a torsion component (a mixed-order point; small-order points are refused by
//! the checks above). It passes a batch when the torsion terms of the batch sum to zero.
//! That never happens when its key is torsion-free and no other member of the batch has
//! a torsion component in its `R` or its key (its term is then `zᵢ·T(Rᵢ)` with
//! `zᵢ ≡ 1 mod 8`, never 0). It happens sometimes otherwise: when two or more such
//! members cancel (two with the same order-2 `T(Rᵢ)` do); when its own key has a torsion
//! component (its key's term is 0 with probability about `1/ord T(A)` over the secret
//! coefficients); and when another member's key has one, even a member whose signature
//! `verify_strict` accepts (that key's term can cancel this member's). Then it is accepted
//! where `verify_strict` refuses it.
//!
//! Making `Pᵢ = 0` means solving `[s]B = R' + [k]A'` for the prime-order parts `R'`,
//! `A'`: an ordinary Ed25519 signature under `A'` with the nonce `R'`, which needs the
//! private scalar of `A'` (or breaks Ed25519). Only the holder of the key can make such a
//! signature, over a message of its choice, which it could equally have signed in the
//! ordinary way; no one else's key or message is involved, so it is no forgery. Nor is it
//! a replay-key collision: a replay key is the key's thumbprint and the signature base,
//! never the signature bytes, so a second signature over the same base under the same
//! key meets the same entry; and a key with a torsion component is a different key
//! (other bytes, other thumbprint, another identity), which its holder could publish
//! anyway.
//!
//! # Failure never amplifies cost
//!
//! A failed batch is split in halves; a half that passes settles its members; a half
//! that fails is split again; when the left half passes, the right half is known to fail
//! and is split without being checked; a lone member is checked singly. A batch of `n`
//! with one bad member costs one or two equations per level below the first (at most
//! `n + 2·(n/2 + … + 2)` members' worth of multiscalar work) plus two single checks:
//! between about 1 and 1.5 `verify_strict` per member in all. With `b` bad members it
//! takes about `b·log₂(n/b)` equations. All members bad is the worst case: `n − 1`
//! equations over `log₂ n` levels and `n` single checks, about `1 + 0.46·log₂ n` times
//! the cost of verifying the batch singly (3.3 × for `n = 32`).
//!
//! Any batch whose batch equation fails therefore suspends batching for the next
//! [`BACKOFF_INITIAL`] submissions, even when bisection then finds every member valid
//! (valid signatures under keys with a torsion component fail it: the cost is the
//! failure's, whoever caused it), doubling with each further failure up to
//! [`BACKOFF_MAX`] and halving
//! with each passing batch: a stream mixing bad signatures into honest traffic is
//! verified singly, at once (cost `verify_strict`), but for one probing batch per backoff
//! period, whose extra cost is spread over at least [`BACKOFF_INITIAL`] requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha512};
use tokio::sync::oneshot;

/// Submissions verified singly after a first failed batch.
pub(crate) const BACKOFF_INITIAL: u64 = 1024;
/// The longest backoff, in submissions.
pub(crate) const BACKOFF_MAX: u64 = 65_536;
/// The largest batch accepted by [`BatchOptions::max_batch`].
const MAX_BATCH_CAP: usize = 256;

/// Opt-in batch verification of concurrent requests' Ed25519 signatures
/// ([`AAuthBuilder::batch_verification`](crate::AAuthBuilder::batch_verification)).
///
/// When verifications of several requests are in flight at once, the signatures of the
/// requests arriving meanwhile are verified together: a batch of 32 costs about 0.46 of
/// a single `verify_strict` per signature. A request arriving at an idle server is
/// verified at once. Acceptance is that of `verify_strict` (see the crate's performance
/// notes for the one documented corner: signatures only their key's holder can make).
/// A failed batch finds its bad members by bisection, and failures suspend batching for
/// a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchOptions {
    pub(crate) max_batch: usize,
    pub(crate) max_wait: Duration,
    pub(crate) join_when_idle: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchOptions {
    /// The default batch size bound.
    pub const DEFAULT_MAX_BATCH: usize = 32;
    /// The default wait bound, in microseconds.
    pub const DEFAULT_MAX_WAIT_MICROS: u64 = 250;

    /// Batches of at most [`Self::DEFAULT_MAX_BATCH`] signatures, run at the latest
    /// [`Self::DEFAULT_MAX_WAIT_MICROS`] µs after their first member joined.
    pub fn new() -> Self {
        BatchOptions {
            max_batch: Self::DEFAULT_MAX_BATCH,
            max_wait: Duration::from_micros(Self::DEFAULT_MAX_WAIT_MICROS),
            join_when_idle: false,
        }
    }

    /// The most signatures in one batch (clamped to 2..=256).
    pub fn max_batch(mut self, signatures: usize) -> Self {
        self.max_batch = signatures.clamp(2, MAX_BATCH_CAP);
        self
    }

    /// The longest a batch waits for more members after its first joined, in
    /// microseconds (at most one second).
    ///
    /// The bound is checked, not timed: no timer is armed. A batch is run by its leader
    /// (polled at each scheduling round while it waits), and once older than this bound
    /// also by any of its members that is polled and by the next signature submitted. A
    /// request therefore waits this long plus the verification of its batch, plus, when
    /// the runtime is too busy to poll the leader in time, until the next of those
    /// polls or submissions.
    pub fn max_wait_micros(mut self, micros: u64) -> Self {
        self.max_wait = Duration::from_micros(micros.min(1_000_000));
        self
    }

    /// Joins (or opens) a batch even when no other verification is in flight (default
    /// `false`). An idle request then waits one scheduling round before it is verified;
    /// for servers that want throughput only, and for tests that must see batches form
    /// on a single thread.
    pub fn join_when_idle(mut self, join: bool) -> Self {
        self.join_when_idle = join;
        self
    }
}

/// A signature that passed every check `verify_strict` makes besides its equation,
/// with its challenge computed.
#[derive(Clone, Copy)]
pub(crate) struct Prepared {
    r: EdwardsPoint,
    a: EdwardsPoint,
    s: Scalar,
    k: Scalar,
    /// The key's encoding: members of one key share its term of a batch equation.
    key: [u8; 32],
}

/// `verify_strict`'s checks other than its equation, in its order (see the module docs);
/// `None`: `verify_strict` refuses the signature.
pub(crate) fn prepare(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> Option<Prepared> {
    let r_bytes: [u8; 32] = signature[..32].try_into().ok()?;
    let s_bytes: [u8; 32] = signature[32..].try_into().ok()?;
    let s: Scalar = Option::from(Scalar::from_canonical_bytes(s_bytes))?;
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    if r.is_small_order() || key.is_weak() {
        return None;
    }
    // `verify_strict` compares the canonical encoding of the point it recomputes with
    // these bytes: a non-canonical `R` never matches. With `x ≠ 0` (small order excluded
    // above) the only non-canonical encodings are those with `y ≥ p`.
    if !is_canonical_y(&r_bytes) {
        return None;
    }
    let mut hash = Sha512::new();
    hash.update(r_bytes);
    hash.update(key.as_bytes());
    hash.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
    Some(Prepared {
        r,
        a: key.to_edwards(),
        s,
        k,
        key: *key.as_bytes(),
    })
}

/// Whether the 255-bit `y` of an Edwards point encoding is below `p = 2²⁵⁵ − 19`.
fn is_canonical_y(bytes: &[u8; 32]) -> bool {
    // y ≥ p exactly when y = 2²⁵⁵ − 19 + t, t ∈ 0..19: every byte but the first is 0xff
    // (the last one with the sign bit masked) and the first is ≥ 0xed.
    let top = bytes[31] & 0x7f;
    !(top == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed)
}

/// `verify_strict`'s equation for one prepared signature: `[s]B − [k]A = R`, compared
/// as points (`verify_strict` encodes the recomputed point and compares bytes: the same
/// answer for a canonically encoded `R`, which [`prepare`] requires, without the field
/// inversion an encoding costs).
pub(crate) fn verify_single(prepared: &Prepared) -> bool {
    let recomputed = EdwardsPoint::vartime_double_scalar_mul_basepoint(&prepared.k, &(-prepared.a), &prepared.s);
    recomputed == prepared.r
}

/// `Σ zᵢ(Rᵢ + kᵢAᵢ − sᵢB) = 0` over `members` with their coefficients, computed as
/// `Σ zᵢRᵢ + Σⱼ (Σ_{i: Aᵢ = Aⱼ} zᵢkᵢ) Aⱼ − (Σ zᵢsᵢ) B`: one term per distinct key.
fn equation_holds(
    members: &[Prepared],
    zs: &[Scalar],
    scalars: &mut Vec<Scalar>,
    points: &mut Vec<EdwardsPoint>,
) -> bool {
    scalars.clear();
    points.clear();
    let mut b = Scalar::ZERO;
    for (member, z) in members.iter().zip(zs) {
        b += z * member.s;
        scalars.push(*z);
        points.push(member.r);
    }
    // Each distinct key's term after the `R` terms; a batch holds at most a few
    // hundred members, so a scan finds a key's term.
    let mut keys: Vec<&[u8; 32]> = Vec::new();
    for (member, z) in members.iter().zip(zs) {
        let c = z * member.k;
        match keys.iter().position(|key| **key == member.key) {
            Some(j) => scalars[members.len() + j] += c,
            None => {
                keys.push(&member.key);
                scalars.push(c);
                points.push(member.a);
            }
        }
    }
    scalars.push(-b);
    points.push(ED25519_BASEPOINT_POINT);
    EdwardsPoint::vartime_multiscalar_mul(scalars.iter(), points.iter()).is_identity()
}

/// Fresh secret coefficients `zᵢ = 8wᵢ + 1`, `wᵢ < 2¹²⁰`.
fn coefficients(n: usize) -> Vec<Scalar> {
    let mut bytes = vec![0u8; n * 15];
    // Without a random source the coefficients could be predicted: no batching then
    // (every member is decided singly by the caller).
    if getrandom::fill(&mut bytes).is_err() {
        return Vec::new();
    }
    bytes
        .chunks_exact(15)
        .map(|chunk| {
            let mut wide = [0u8; 16];
            wide[..15].copy_from_slice(chunk);
            Scalar::from(u128::from_le_bytes(wide) * 8 + 1)
        })
        .collect()
}

/// How the members of one batch were decided.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decided {
    /// Batch equations evaluated (the whole batch and parts of it).
    pub(crate) equations: u64,
    /// Members verified singly.
    pub(crate) singles: u64,
}

/// Decides every member of a batch: `verdicts[i]` is `verify_strict`'s answer for
/// `members[i]` (up to the corner in the module docs).
pub(crate) fn decide(members: &[Prepared], verdicts: &mut [bool]) -> Decided {
    let mut decided = Decided::default();
    // A batch of one needs no coefficients (nor the random source they come from).
    let zs = if members.len() > 1 {
        coefficients(members.len())
    } else {
        Vec::new()
    };
    if zs.len() != members.len() || members.len() == 1 {
        for (member, verdict) in members.iter().zip(verdicts.iter_mut()) {
            *verdict = verify_single(member);
            decided.singles += 1;
        }
        return decided;
    }
    let mut scalars = Vec::with_capacity(2 * members.len() + 1);
    let mut points = Vec::with_capacity(2 * members.len() + 1);
    let mut scratch = Scratch {
        zs: &zs,
        scalars: &mut scalars,
        points: &mut points,
        decided: &mut decided,
    };
    scratch.bisect(members, 0, verdicts, false);
    decided
}

struct Scratch<'a> {
    zs: &'a [Scalar],
    scalars: &'a mut Vec<Scalar>,
    points: &'a mut Vec<EdwardsPoint>,
    decided: &'a mut Decided,
}

impl Scratch<'_> {
    /// Decides `members` (at `offset` in the batch); `known_bad`: the part is known to
    /// hold a bad member, so its equation is not evaluated. Returns whether all passed.
    fn bisect(&mut self, members: &[Prepared], offset: usize, verdicts: &mut [bool], known_bad: bool) -> bool {
        if let [member] = members {
            // Checked even when its part is known to fail: a member whose key has a
            // torsion component can fail a batch equation and still satisfy
            // `verify_strict`'s (see the module docs), so only the single equation
            // decides.
            self.decided.singles += 1;
            verdicts[0] = verify_single(member);
            return verdicts[0];
        }
        if !known_bad {
            self.decided.equations += 1;
            let zs = &self.zs[offset..offset + members.len()];
            if equation_holds(members, zs, self.scalars, self.points) {
                verdicts.fill(true);
                return true;
            }
        }
        let half = members.len() / 2;
        let (left, right) = members.split_at(half);
        let (left_verdicts, right_verdicts) = verdicts.split_at_mut(half);
        let left_good = self.bisect(left, offset, left_verdicts, false);
        // The whole failed: with the left half good, the right half holds a bad member.
        self.bisect(right, offset + half, right_verdicts, left_good);
        false
    }
}

/// Counters of one batch verifier (`AAuth::batch_stats`), for tests and the performance
/// notes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchStats {
    /// Signatures verified at once because no other verification was in flight.
    pub idle: u64,
    /// Signatures verified at once because batching was backing off.
    pub backed_off: u64,
    /// Signatures that joined a batch.
    pub batched: u64,
    /// Batches run.
    pub batches: u64,
    /// Batches that failed (their batch equation did not hold, or a member was bad).
    pub failed_batches: u64,
    /// Batch equations evaluated, bisection included.
    pub equations: u64,
    /// Batch members checked singly (bisection leaves and batches of one).
    pub singles: u64,
    /// Times batching was suspended after a failure.
    pub backoffs: u64,
    /// The largest batch run.
    pub largest: u64,
}

#[derive(Default)]
struct Counters {
    idle: AtomicU64,
    backed_off: AtomicU64,
    batched: AtomicU64,
    batches: AtomicU64,
    failed_batches: AtomicU64,
    equations: AtomicU64,
    singles: AtomicU64,
    backoffs: AtomicU64,
    largest: AtomicU64,
}

struct Member {
    prepared: Prepared,
    verdict: oneshot::Sender<bool>,
}

struct Forming {
    /// Bumped each time a batch is taken to be run.
    generation: u64,
    opened: Instant,
    members: Vec<Member>,
}

/// The verifier every signature of one [`AAuth`](crate::AAuth) goes through when
/// batching is on.
pub(crate) struct Batcher {
    options: BatchOptions,
    /// Verifications in flight: running at once, or in a batch whose request has not
    /// yet taken its verdict. Counting the latter until their requests resume keeps a
    /// worker that resumes the members of a batch just run from verifying its next
    /// requests one by one as if the server were idle.
    busy: AtomicUsize,
    forming: Mutex<Forming>,
    /// Submissions still to verify singly, and the current backoff length.
    backoff_left: AtomicU64,
    backoff_len: AtomicU64,
    counters: Counters,
}

/// What a submission became.
pub(crate) enum Submitted<'b> {
    /// Verify it now, singly (idle, or backing off); hold the guard while doing so.
    Now(Busy<'b>),
    /// Refused by the checks before any batch (`verify_strict` refuses it too).
    Refused,
    /// In a batch: await [`Ticket::verdict`].
    Queued(Ticket),
}

/// Marks a verification in flight while it lives.
pub(crate) struct Busy<'a>(&'a Batcher);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request's place in a batch; in flight until dropped.
pub(crate) struct Ticket {
    verdict: oneshot::Receiver<bool>,
    /// The batch it is in.
    generation: u64,
    /// Set for the batch's first member, which runs it.
    lead: Option<Lead>,
    batcher: std::sync::Arc<Batcher>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.batcher.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Lead {
    batcher: std::sync::Arc<Batcher>,
    generation: u64,
    seen: usize,
    /// The scheduling round the leader is waiting out: `tokio::task::yield_now`, which
    /// on a Tokio runtime resumes only after the runtime has polled for I/O, so requests
    /// that arrived meanwhile are read and can join.
    round: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Drop for Lead {
    fn drop(&mut self) {
        // A leader that goes away before running its batch runs it now: no member waits
        // for a request that no longer exists.
        self.batcher.take_and_run(self.generation, |_| true);
    }
}

impl Ticket {
    /// Polls for the verdict. The leader runs its batch when it is ready (see the module
    /// docs); until then it wakes itself, which puts its task behind the other ready
    /// ones, so that they may join first.
    pub(crate) fn poll_verdict(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if let Some(Lead {
            batcher,
            generation,
            seen,
            round,
        }) = &mut self.lead
        {
            if let Some(waiting) = round {
                if waiting.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                *round = None;
            }
            let options = batcher.options;
            let ran = batcher.take_and_run(*generation, |forming| {
                let size = forming.members.len();
                let ready = size >= options.max_batch || forming.opened.elapsed() >= options.max_wait || size == *seen;
                *seen = size;
                ready
            });
            if !ran {
                let mut waiting: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(tokio::task::yield_now());
                if waiting.as_mut().poll(cx).is_pending() {
                    *round = Some(waiting);
                } else {
                    cx.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
            // Run (here or by the member that filled it): nothing left to lead.
            self.lead = None;
        }
        // A dropped sender (the batch could not be run) is a refusal, never a pass.
        if let Poll::Ready(verdict) = Pin::new(&mut self.verdict).poll(cx) {
            return Poll::Ready(verdict.unwrap_or(false));
        }
        // Any member polled while its batch is overdue runs it: a leader whose request
        // is not polled stalls nobody.
        let max_wait = self.batcher.options.max_wait;
        if self
            .batcher
            .take_and_run(self.generation, |forming| forming.opened.elapsed() >= max_wait)
        {
            return Pin::new(&mut self.verdict)
                .poll(cx)
                .map(|verdict| verdict.unwrap_or(false));
        }
        Poll::Pending
    }
}

impl Batcher {
    pub(crate) fn new(options: BatchOptions) -> Self {
        Batcher {
            options,
            busy: AtomicUsize::new(0),
            forming: Mutex::new(Forming {
                generation: 0,
                opened: Instant::now(),
                members: Vec::with_capacity(options.max_batch),
            }),
            backoff_left: AtomicU64::new(0),
            backoff_len: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    /// Submits a signature (`signature` of 64 bytes).
    pub(crate) fn submit<'b>(
        self: &'b std::sync::Arc<Self>,
        key: &VerifyingKey,
        message: &[u8],
        signature: &[u8; 64],
    ) -> Submitted<'b> {
        let busy = self.busy.fetch_add(1, Ordering::AcqRel);
        if busy == 0 && !self.options.join_when_idle {
            self.counters.idle.fetch_add(1, Ordering::Relaxed);
            return Submitted::Now(Busy(self));
        }
        if self.backing_off() {
            self.counters.backed_off.fetch_add(1, Ordering::Relaxed);
            return Submitted::Now(Busy(self));
        }
        let Some(prepared) = prepare(key, message, signature) else {
            self.busy.fetch_sub(1, Ordering::AcqRel);
            return Submitted::Refused;
        };
        self.counters.batched.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        let member = Member {
            prepared,
            verdict: sender,
        };
        let mut forming = self.lock();
        // An overdue batch is run by the next submitter (after the lock is released), and
        // this one opens the next: a leader that is not polled stalls nobody.
        let overdue = (!forming.members.is_empty() && forming.opened.elapsed() >= self.options.max_wait).then(|| {
            forming.generation = forming.generation.wrapping_add(1);
            std::mem::replace(&mut forming.members, Vec::with_capacity(self.options.max_batch))
        });
        let leader = forming.members.is_empty();
        if leader {
            forming.opened = Instant::now();
        }
        forming.members.push(member);
        let generation = forming.generation;
        let full = forming.members.len() >= self.options.max_batch;
        drop(forming);
        if let Some(overdue) = overdue {
            self.run(overdue);
        }
        let lead = leader.then(|| Lead {
            batcher: self.clone(),
            generation,
            seen: 0,
            round: None,
        });
        if full {
            // The member that fills a batch runs it.
            self.take_and_run(generation, |_| true);
        }
        Submitted::Queued(Ticket {
            verdict: receiver,
            generation,
            lead,
            batcher: self.clone(),
        })
    }

    /// Whether to verify singly for now (consumes one submission of the backoff).
    fn backing_off(&self) -> bool {
        self.backoff_left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| left.checked_sub(1))
            .is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Forming> {
        // A panic while holding the lock leaves nothing half-done but a `Vec` push.
        self.forming.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs the batch of `generation` if it is still forming and `ready` says so.
    /// Returns whether that batch is no longer forming (run now or before).
    fn take_and_run(&self, generation: u64, ready: impl FnOnce(&Forming) -> bool) -> bool {
        let members = {
            let mut forming = self.lock();
            if forming.generation != generation {
                return true;
            }
            if !ready(&forming) {
                return false;
            }
            forming.generation = forming.generation.wrapping_add(1);
            let fresh = Vec::with_capacity(self.options.max_batch);
            std::mem::replace(&mut forming.members, fresh)
        };
        self.run(members);
        true
    }

    fn run(&self, members: Vec<Member>) {
        let size = members.len();
        if size == 0 {
            return;
        }
        let prepared: Vec<Prepared> = members.iter().map(|m| m.prepared).collect();
        let mut verdicts = vec![false; size];
        let decided = decide(&prepared, &mut verdicts);
        let counters = &self.counters;
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.equations.fetch_add(decided.equations, Ordering::Relaxed);
        counters.singles.fetch_add(decided.singles, Ordering::Relaxed);
        counters.largest.fetch_max(size as u64, Ordering::Relaxed);
        // A failed batch equation starts or extends the backoff even when bisection then
        // finds every member valid (keys with a torsion component fail the equation with
        // valid signatures): what is paid for is the failure, whoever caused it.
        let equation_failed = size > 1 && (decided.equations > 1 || decided.singles > 0);
        if !equation_failed && verdicts.iter().all(|v| *v) {
            let len = self.backoff_len.load(Ordering::Acquire);
            self.backoff_len.store(len / 2, Ordering::Release);
        } else {
            counters.failed_batches.fetch_add(1, Ordering::Relaxed);
            counters.backoffs.fetch_add(1, Ordering::Relaxed);
            let len = self.backoff_len.load(Ordering::Acquire);
            let next = len.saturating_mul(2).clamp(BACKOFF_INITIAL, BACKOFF_MAX);
            self.backoff_len.store(next, Ordering::Release);
            self.backoff_left.store(next, Ordering::Release);
        }
        for (member, verdict) in members.into_iter().zip(verdicts) {
            // The request may have gone away: nothing waits for its verdict then.
            let _ = member.verdict.send(verdict);
        }
    }

    /// The counters so far.
    pub(crate) fn stats(&self) -> BatchStats {
        let c = &self.counters;
        BatchStats {
            idle: c.idle.load(Ordering::Relaxed),
            backed_off: c.backed_off.load(Ordering::Relaxed),
            batched: c.batched.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            failed_batches: c.failed_batches.load(Ordering::Relaxed),
            equations: c.equations.load(Ordering::Relaxed),
            singles: c.singles.load(Ordering::Relaxed),
            backoffs: c.backoffs.load(Ordering::Relaxed),
            largest: c.largest.load(Ordering::Relaxed),
        }
    }
}

/// Verifies one signature with `verify_strict`'s checks and its equation, the recomputed
/// `R` compared as a point: what `Jwk::verify` runs. It accepts exactly what `ed25519_dalek`'s `verify_strict`
/// accepts (in the default features of that crate; its `legacy_compatibility` feature,
/// should another crate turn it on, makes `verify_strict` accept some non-canonical `S`,
/// which this still refuses).
pub fn verify_like_strict(key: &VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    let Ok(signature) = <&[u8; 64]>::try_from(signature) else {
        return false;
    };
    prepare(key, message, signature).is_some_and(|prepared| verify_single(&prepared))
}

/// Decides `signatures` (key, message, signature) as one batch, through the checks and
/// the batch equation with bisection: the engine's answer, for the conformance tests.
pub fn decide_batch(signatures: &[(VerifyingKey, &[u8], &[u8])]) -> Vec<bool> {
    let mut verdicts = vec![false; signatures.len()];
    let mut members = Vec::new();
    let mut places = Vec::new();
    for (i, (key, message, signature)) in signatures.iter().enumerate() {
        let Ok(signature) = <&[u8; 64]>::try_from(*signature) else {
            continue;
        };
        if let Some(prepared) = prepare(key, message, signature) {
            members.push(prepared);
            places.push(i);
        }
    }
    let mut decided = vec![false; members.len()];
    decide(&members, &mut decided);
    for (place, verdict) in places.into_iter().zip(decided) {
        verdicts[place] = verdict;
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn signed(count: usize) -> Vec<(VerifyingKey, Vec<u8>, [u8; 64])> {
        (0..count)
            .map(|i| {
                let key = SigningKey::from_bytes(&[i as u8 + 1; 32]);
                let message = format!("message {i}").into_bytes();
                let signature = key.sign(&message).to_bytes();
                (key.verifying_key(), message, signature)
            })
            .collect()
    }

    fn prepared(members: &[(VerifyingKey, Vec<u8>, [u8; 64])]) -> Vec<Prepared> {
        members
            .iter()
            .map(|(key, message, signature)| prepare(key, message, signature).expect("well formed"))
            .collect()
    }

    /// Signatures of `keys` distinct keys taking turns, `count` in all.
    fn signed_by(keys: usize, count: usize) -> Vec<(VerifyingKey, Vec<u8>, [u8; 64])> {
        let signers: Vec<SigningKey> = (0..keys)
            .map(|i| SigningKey::from_bytes(&[i as u8 + 200; 32]))
            .collect();
        (0..count)
            .map(|i| {
                let signer = &signers[i % keys];
                let message = format!("message {i}").into_bytes();
                (
                    signer.verifying_key(),
                    message.clone(),
                    signer.sign(&message).to_bytes(),
                )
            })
            .collect()
    }

    #[test]
    fn honest_batches_sharing_keys_pass_their_one_equation() {
        // A wrong term for a shared key would fail the equation and show as more
        // equations and single checks, with the verdicts unchanged.
        for (keys, count) in [(1, 2), (1, 32), (2, 32), (5, 32), (31, 32)] {
            let members = prepared(&signed_by(keys, count));
            let mut verdicts = vec![false; count];
            let decided = decide(&members, &mut verdicts);
            assert!(verdicts.iter().all(|v| *v), "{keys} keys");
            assert_eq!(
                decided,
                Decided {
                    equations: 1,
                    singles: 0
                },
                "{keys} keys"
            );
        }
    }

    #[test]
    fn a_bad_member_among_members_of_its_own_key_is_found() {
        for bad in [0, 9, 31] {
            let mut members = signed_by(1, 32);
            members[bad].2[40] ^= 1;
            let members = prepared(&members);
            let mut verdicts = vec![false; 32];
            decide(&members, &mut verdicts);
            for (i, verdict) in verdicts.iter().enumerate() {
                assert_eq!(*verdict, i != bad, "member {i} with {bad} bad");
            }
        }
    }

    /// The verdict of a submission: queued ones awaited, refused ones `false`.
    async fn verdict(batcher: &std::sync::Arc<Batcher>, member: &(VerifyingKey, Vec<u8>, [u8; 64])) -> bool {
        match batcher.submit(&member.0, &member.1, &member.2) {
            Submitted::Queued(mut ticket) => std::future::poll_fn(|cx| ticket.poll_verdict(cx)).await,
            Submitted::Now(_busy) => member
                .0
                .verify_strict(&member.1, &ed25519_dalek::Signature::from_bytes(&member.2))
                .is_ok(),
            Submitted::Refused => false,
        }
    }

    #[test]
    fn a_leader_lets_the_runtime_poll_for_io_so_a_request_read_meanwhile_joins_its_batch() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let batcher = std::sync::Arc::new(Batcher::new(BatchOptions::new().join_when_idle(true)));
            let members = signed(2);
            let (mut client, mut server) = tokio::net::UnixStream::pair().expect("a socket pair");
            // The second request is read from a socket, as a server reads one.
            let second = {
                let batcher = batcher.clone();
                let member = members[1].clone();
                tokio::spawn(async move {
                    let mut byte = [0u8; 1];
                    server.read_exact(&mut byte).await.expect("a byte");
                    verdict(&batcher, &member).await
                })
            };
            // It waits for its byte; the byte arrives, and only an I/O poll tells. The
            // first request leads a batch (from a task, as each connection is one).
            tokio::task::yield_now().await;
            client.write_all(b"x").await.expect("written");
            let first = {
                let batcher = batcher.clone();
                let member = members[0].clone();
                tokio::spawn(async move { verdict(&batcher, &member).await })
            };
            assert!(first.await.expect("led"));
            assert!(second.await.expect("joined"));
            let stats = batcher.stats();
            assert_eq!((stats.batches, stats.largest), (1, 2), "{stats:?}");
        });
    }

    #[test]
    fn y_at_or_above_p_is_not_canonical() {
        let mut p = [0xff; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(!is_canonical_y(&p), "p itself");
        let mut below = p;
        below[0] = 0xec;
        assert!(is_canonical_y(&below), "p − 1");
        let mut above = p;
        above[0] = 0xff;
        assert!(!is_canonical_y(&above), "2²⁵⁵ − 1");
        let mut signed = below;
        signed[31] |= 0x80;
        assert!(is_canonical_y(&signed), "the sign bit is not part of y");
    }

    #[test]
    fn an_honest_batch_takes_one_equation_and_no_single_check() {
        let members = prepared(&signed(32));
        let mut verdicts = vec![false; 32];
        let decided = decide(&members, &mut verdicts);
        assert!(verdicts.iter().all(|v| *v));
        assert_eq!(
            decided,
            Decided {
                equations: 1,
                singles: 0
            }
        );
    }

    #[test]
    fn one_bad_member_of_64_is_found_with_at_most_two_equations_per_level() {
        for bad in [0, 13, 31, 32, 63] {
            let mut members = signed(64);
            members[bad].2[40] ^= 1;
            let members = prepared(&members);
            let mut verdicts = vec![false; 64];
            let decided = decide(&members, &mut verdicts);
            for (i, verdict) in verdicts.iter().enumerate() {
                assert_eq!(*verdict, i != bad, "member {i} with {bad} bad");
            }
            // 64, then the left half of each failed part down to 2, and its right half
            // only when the left one failed too (else the right is known bad): 6 to 11
            // equations; the last pair singly.
            assert!((6..=11).contains(&decided.equations), "{decided:?} for {bad}");
            assert_eq!(decided.singles, 2, "{decided:?} for {bad}");
        }
    }

    #[test]
    fn every_bad_member_is_found_whatever_their_number() {
        for bad_count in [2, 5, 16, 64] {
            let mut members = signed(64);
            let bad: Vec<usize> = (0..bad_count).map(|i| (i * 37) % 64).collect();
            for &i in &bad {
                members[i].2[40] ^= 1;
            }
            let members = prepared(&members);
            let mut verdicts = vec![false; 64];
            let decided = decide(&members, &mut verdicts);
            for (i, verdict) in verdicts.iter().enumerate() {
                assert_eq!(*verdict, !bad.contains(&i), "member {i}, {bad_count} bad");
            }
            assert!(decided.singles <= 64, "{decided:?}");
        }
    }

    #[test]
    fn a_batch_of_one_is_checked_singly_and_of_two_by_the_batch_equation() {
        let members = prepared(&signed(2));
        let mut verdicts = vec![false; 1];
        assert_eq!(
            decide(&members[..1], &mut verdicts),
            Decided {
                equations: 0,
                singles: 1
            }
        );
        assert_eq!(verdicts, [true]);
        let mut verdicts = vec![false; 2];
        assert_eq!(
            decide(&members, &mut verdicts),
            Decided {
                equations: 1,
                singles: 0
            }
        );
        assert_eq!(verdicts, [true, true]);
    }
}
