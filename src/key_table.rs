//! Per-key tables that make a key's later verifications cheaper than `verify_strict`.
//!
//! # Design
//!
//! An Ed25519 verification computes `[s]B − [k]A` by interleaving two scalar
//! multiplications. `verify_strict` reads multiples of the base point `B` from a table
//! built into `curve25519-dalek` (width-8 non-adjacent form) and builds a small table of
//! multiples of the key `A` on every call (width 5): about a fifth more point additions
//! for `A` than for `B`, plus the table itself. A resource server verifies the same few
//! keys again and again (an agent's confirmation key, a bot's directory key), so a key
//! that has verified [`TABLE_AFTER`] signatures gets its own width-8 table of `B` and
//! `−A` (`curve25519-dalek`'s `VartimeEdwardsPrecomputation`): every later verification
//! with it costs about 0.87 of a `verify_strict`, for a one-time cost below one
//! verification and about 20 KiB while the key is held (two tables of 64 points).
//!
//! # Acceptance is `verify_strict`'s
//!
//! A verification through a table makes the checks `verify_strict` makes besides its
//! equation, in its order (`S < ℓ`, `R` decompresses and is canonically encoded, neither
//! `R` nor `A` of small order: the batch verifier's `prepare`), then checks its equation,
//! `[s]B − [k]A = R`, with the same scalars; only the order of the point additions
//! differs, and the group law does not care. Tests compare the two on valid, tampered,
//! small-order, non-canonical and mixed-order inputs.
//!
//! # Bounded
//!
//! Only signatures that verified count toward [`TABLE_AFTER`], so a flood of forgeries
//! builds nothing. At most [`MAX_TABLES`] tables exist in the process at once (about
//! 10 MiB: the tables' memory is bounded whatever the caches holding keys weigh); a table
//! is freed with the last copy of its key (when the caches holding the key drop it), and
//! a key that finds the bound reached verifies with `verify_strict` and asks again every
//! [`RETRY_EVERY`] verifications. Someone with many keys of their own can hold tables up
//! to the bound; everyone else then verifies at `verify_strict`'s cost, which is what
//! every verification cost before tables.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{EdwardsPoint, VartimeEdwardsPrecomputation};
use curve25519_dalek::traits::VartimePrecomputedMultiscalarMul;
use ed25519_dalek::{Signature, VerifyingKey};

use crate::batch;

/// Signatures a key verifies with `verify_strict` before it gets a table: a key seen
/// once or twice (a one-off `hwk` agent) never pays for one.
pub(crate) const TABLE_AFTER: u32 = 4;

/// Verifications between two attempts of a key that found [`MAX_TABLES`] reached.
pub(crate) const RETRY_EVERY: u32 = 1024;

/// Tables alive in the process at most.
pub(crate) const MAX_TABLES: usize = 512;

/// How many tables may be alive at once, and how many are.
pub(crate) struct TableBudget {
    alive: AtomicUsize,
    max: usize,
}

impl TableBudget {
    pub(crate) const fn new(max: usize) -> Self {
        TableBudget {
            alive: AtomicUsize::new(0),
            max,
        }
    }

    fn reserve(&self) -> bool {
        self.alive
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .is_ok()
    }

    fn release(&self) {
        self.alive.fetch_sub(1, Ordering::AcqRel);
    }

    /// Tables alive now.
    #[cfg(test)]
    pub(crate) fn alive(&self) -> usize {
        self.alive.load(Ordering::Acquire)
    }
}

/// The process's budget.
static TABLES: TableBudget = TableBudget::new(MAX_TABLES);

/// The table state of one key, shared by every copy of it (`Arc`).
pub(crate) struct KeyTable {
    /// Signatures verified with `verify_strict` so far (saturating).
    verified: AtomicU32,
    table: OnceLock<VartimeEdwardsPrecomputation>,
    budget: &'static TableBudget,
}

impl Default for KeyTable {
    fn default() -> Self {
        Self::with_budget(&TABLES)
    }
}

impl Drop for KeyTable {
    fn drop(&mut self) {
        if self.table.get().is_some() {
            self.budget.release();
        }
    }
}

impl KeyTable {
    /// A key without a table yet, whose table counts against `budget`.
    pub(crate) fn with_budget(budget: &'static TableBudget) -> Self {
        KeyTable {
            verified: AtomicU32::new(0),
            table: OnceLock::new(),
            budget,
        }
    }

    /// Verifies `signature` over `message` with `key`, accepting exactly what
    /// `verify_strict` accepts; through the key's table once it has one.
    pub(crate) fn verify(&self, key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> bool {
        if let Some(table) = self.table.get() {
            return batch::prepare(key, message, signature).is_some_and(|prepared| prepared.equation_holds_with(table));
        }
        let valid = key.verify_strict(message, &Signature::from_bytes(signature)).is_ok();
        if valid {
            self.count_verified(&key.to_edwards());
        }
        valid
    }

    /// The table, once built.
    pub(crate) fn built(&self) -> Option<&VartimeEdwardsPrecomputation> {
        self.table.get()
    }

    /// Whether this key verifies through a table.
    #[cfg(test)]
    pub(crate) fn is_built(&self) -> bool {
        self.table.get().is_some()
    }

    /// Counts one signature verified with the key `a` (outside [`KeyTable::verify`]: in
    /// a batch), building the table when it is due.
    pub(crate) fn count_verified(&self, a: &EdwardsPoint) {
        let before = self
            .verified
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
            .unwrap_or(u32::MAX);
        let count = before.saturating_add(1);
        // One caller sees each count, so at most one builds at a time for a key.
        let due = count == TABLE_AFTER || (count > TABLE_AFTER && (count - TABLE_AFTER).is_multiple_of(RETRY_EVERY));
        if due {
            self.build(a);
        }
    }

    /// Builds the table now, within the budget.
    fn build(&self, a: &EdwardsPoint) {
        if !self.budget.reserve() {
            return;
        }
        let table = VartimeEdwardsPrecomputation::new([ED25519_BASEPOINT_POINT, -a]);
        if self.table.set(table).is_err() {
            self.budget.release();
        }
    }
}

/// A key table built at once, within no budget: for the conformance tests, which must
/// reach the table paths whatever the process's budget holds.
pub(crate) fn built_without_budget(a: &EdwardsPoint) -> KeyTable {
    static UNBOUNDED: TableBudget = TableBudget::new(usize::MAX);
    let table = KeyTable::with_budget(&UNBOUNDED);
    table.build(a);
    table
}

/// Verifies through a table built for `key` at once (within no budget): the table path
/// alone, for the conformance tests. `None` when no table could be built.
pub fn verify_through_table(key: &VerifyingKey, message: &[u8], signature: &[u8]) -> Option<bool> {
    let table = built_without_budget(&key.to_edwards());
    table.built()?;
    let Ok(signature) = <&[u8; 64]>::try_from(signature) else {
        return Some(false);
    };
    Some(table.verify(key, message, signature))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    fn signer(seed: u8) -> (SigningKey, VerifyingKey) {
        let signing = SigningKey::from_bytes(&[seed; 32]);
        let verifying = signing.verifying_key();
        (signing, verifying)
    }

    fn verify(table: &KeyTable, key: &VerifyingKey, message: &[u8], signature: ed25519_dalek::Signature) -> bool {
        table.verify(key, message, &signature.to_bytes())
    }

    #[test]
    fn a_key_gets_its_table_when_it_has_verified_table_after_signatures() {
        static BUDGET: TableBudget = TableBudget::new(8);
        let (signing, key) = signer(1);
        let table = KeyTable::with_budget(&BUDGET);
        for n in 1..=TABLE_AFTER {
            assert!(!table.is_built(), "no table before verification {n}");
            assert!(verify(&table, &key, b"m", signing.sign(b"m")));
        }
        assert!(table.is_built());
        assert_eq!(BUDGET.alive(), 1);
        // Through the table: valid accepted, others refused.
        assert!(verify(&table, &key, b"other", signing.sign(b"other")));
        assert!(!verify(&table, &key, b"tampered", signing.sign(b"other")));
        drop(table);
        assert_eq!(BUDGET.alive(), 0, "the table's place is freed with its key");
    }

    #[test]
    fn refused_signatures_never_count_toward_a_table() {
        static BUDGET: TableBudget = TableBudget::new(8);
        let (signing, key) = signer(2);
        let table = KeyTable::with_budget(&BUDGET);
        let forged = signing.sign(b"something else");
        for _ in 0..(4 * TABLE_AFTER) {
            assert!(!verify(&table, &key, b"m", forged));
        }
        assert!(!table.is_built());
        assert_eq!(BUDGET.alive(), 0);
    }

    #[test]
    fn beyond_the_budget_keys_verify_without_a_table_until_a_place_is_freed() {
        static BUDGET: TableBudget = TableBudget::new(1);
        let (first_signing, first) = signer(3);
        let (second_signing, second) = signer(4);
        let first_table = KeyTable::with_budget(&BUDGET);
        let second_table = KeyTable::with_budget(&BUDGET);
        for _ in 0..TABLE_AFTER {
            assert!(verify(&first_table, &first, b"m", first_signing.sign(b"m")));
            assert!(verify(&second_table, &second, b"m", second_signing.sign(b"m")));
        }
        assert!(first_table.is_built());
        assert!(!second_table.is_built(), "the budget of one is spent");
        drop(first_table);
        assert_eq!(BUDGET.alive(), 0);
        let signature = second_signing.sign(b"m");
        for n in 1..RETRY_EVERY {
            assert!(verify(&second_table, &second, b"m", signature));
            assert!(!second_table.is_built(), "asks again only after {RETRY_EVERY} ({n})");
        }
        assert!(verify(&second_table, &second, b"m", signature));
        assert!(second_table.is_built(), "the freed place is taken on the next attempt");
        assert_eq!(BUDGET.alive(), 1);
    }
}
