//! The signing-key ring read from a directory that every replica mounts (a Kubernetes
//! secret, a shared volume): the file format, the schedule that decides which key signs
//! and which keys are published, and the watch that reloads the directory.
//!
//! # Design
//!
//! Replicas cannot tell each other when they saw a key, so everything that must agree
//! across the fleet is read from the files, and the clocks (which agree within seconds)
//! do the rest:
//!
//! * **Which key signs** is stated by the file *name*: `NAME.signs-from-SECONDS.pem`
//!   (or `.jwk`, `.json`) signs from that Unix time on; a name without `signs-from-`
//!   signs from time 0. Of the keys whose time has come, the latest signs. Times must be
//!   distinct, and at least one must have come, or the directory is refused. A name is
//!   what survives every tool that copies secrets (a Kubernetes secret's keys, `cp`,
//!   `kubectl create secret --from-file`); file times do not: an atomic secret update
//!   rewrites every file's mtime, so an mtime rule would reorder keys that did not change.
//! * **Publication before signing.** Every key file is published as soon as a reload sees
//!   it. A key that appears while the replica runs signs no sooner than
//!   [`PUBLISH_BEFORE_SIGNING`] (the discovery floor, 60 s) after this replica first
//!   published it, whatever its name says: a `signs-from-` time set too early delays the
//!   key instead of making verifiers that cached the JWKS refuse its tokens. Keys present
//!   at start-up are taken as published by the fleet already (a restarted replica must
//!   sign as its peers do). The exception: when no other key may sign, the new one signs
//!   at once, and the reload logs a warning.
//! * **Retirement** is removing the file. A replica keeps publishing a removed key for
//!   the longest resource-token lifetime (300 s) after the reload that noticed the
//!   removal; it cannot have signed with it after that reload, so every token it signed
//!   with it has expired when it disappears. A key whose file stays is published forever,
//!   superseded or not.
//! * **The warm path** (minting a resource token) reads one immutable [`Schedule`] and
//!   the clock: no file system, no lock held while signing. Activation and expiry happen
//!   at the second they are due, not at the next reload.
//! * **Reloading** (see [`watch`]): the directory's listing with each file's size and
//!   modification time is compared every [`POLL`] (a `readdir` and one `stat` per file:
//!   microseconds, measured below), and SIGHUP forces a reload. Polling needs no new
//!   dependency and works on every mount (inotify sees neither NFS changes nor the
//!   symlink swap of a Kubernetes secret update). A directory that fails to load (a
//!   malformed or half-written file, a rule broken) leaves the ring in force; the watch
//!   logs why (a `tracing` warning at target `tower_aauth`) and retries at the next
//!   change or SIGHUP.
//!
//! Polling cost, measured: one poll of a directory of 4 key files (`read_dir`, a `stat`
//! each, the sort) takes 16 to 19 µs on Linux (ext4, warm cache, optimised build), that
//! is 0.002 % of one core at one poll a second, plus a hop to tokio's blocking pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::ConfigError;
use crate::jose::{ResourceKey, b64url_decode, parse_json_object};

/// How long a key is published before it may sign: the spec's once-a-minute JWKS refetch
/// floor ([AAuth draft -11, "JWKS Discovery and Caching"][draft-11]).
///
/// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
pub(crate) const PUBLISH_BEFORE_SIGNING: u64 = 60;

/// How often [`watch`] looks at the directory.
pub(crate) const POLL: Duration = Duration::from_secs(1);

/// A key file is a few hundred bytes; anything larger is not one (and is not read whole).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The marker of an activation time in a file name.
const SIGNS_FROM: &str = "signs-from-";

/// One key of the ring and its place in the schedule.
#[derive(Debug, Clone)]
struct Entry {
    key: ResourceKey,
    /// The file it was read from (for messages).
    file: String,
    /// The time its name says it signs from.
    signs_from: u64,
    /// When this replica first published it; `None` for keys present at start-up.
    seen_at: Option<u64>,
    /// When a reload found its file gone.
    removed_at: Option<u64>,
}

impl Entry {
    /// When this replica may sign with it: its stated time, and at least
    /// [`PUBLISH_BEFORE_SIGNING`] after it was first published here.
    fn settled_at(&self) -> u64 {
        match self.seen_at {
            Some(seen) => self.signs_from.max(seen.saturating_add(PUBLISH_BEFORE_SIGNING)),
            None => self.signs_from,
        }
    }

    fn order(&self) -> (u64, &str) {
        (self.signs_from, self.key.kid())
    }
}

/// The ring at one reload: every key with its times. Immutable; a reload makes a new one.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    entries: Vec<Entry>,
    /// How long a removed key stays published.
    grace: u64,
}

impl Schedule {
    fn present(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.removed_at.is_none())
    }

    fn active_entry(&self, now: u64) -> &Entry {
        let due = || self.present().filter(|e| e.signs_from <= now);
        due()
            .filter(|e| e.settled_at() <= now)
            .max_by(|a, b| a.order().cmp(&b.order()))
            .or_else(|| due().max_by(|a, b| a.order().cmp(&b.order())))
            // Only if the clock went back past every stated time: the earliest key.
            .or_else(|| self.present().min_by(|a, b| a.order().cmp(&b.order())))
            .unwrap_or(&self.entries[0])
    }

    /// The key that signs at `now`.
    pub(crate) fn active(&self, now: u64) -> &ResourceKey {
        &self.active_entry(now).key
    }

    /// The keys published at `now`: the active key, the other files' keys (latest
    /// `signs-from` first), then removed keys still in their grace period.
    pub(crate) fn published(&self, now: u64) -> Vec<&ResourceKey> {
        let active = self.active_entry(now);
        let mut present: Vec<&Entry> = self.present().filter(|e| e.key.kid() != active.key.kid()).collect();
        present.sort_by(|a, b| b.order().cmp(&a.order()));
        let mut removed: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.removed_at.is_some_and(|at| at.saturating_add(self.grace) > now))
            .collect();
        removed.sort_by(|a, b| (b.removed_at, b.key.kid()).cmp(&(a.removed_at, a.key.kid())));
        std::iter::once(&active.key)
            .chain(present.into_iter().chain(removed).map(|e| &e.key))
            .collect()
    }
}

/// A key file as read, before the schedule places it.
struct KeyFile {
    file: String,
    key: ResourceKey,
    signs_from: u64,
}

/// The directory a ring is read from, and the ring last read from it.
pub(crate) struct KeyDirectory {
    dir: PathBuf,
    grace: u64,
    current: Option<Arc<Schedule>>,
}

impl KeyDirectory {
    /// A directory not read yet; removed keys stay published `grace` seconds.
    pub(crate) fn new(dir: PathBuf, grace: u64) -> Self {
        KeyDirectory {
            dir,
            grace,
            current: None,
        }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// Reads the directory at `now` and returns the new schedule, which becomes the
    /// current one; on error the current one stays.
    ///
    /// # Errors
    ///
    /// A file that is not a key of the ring, or a directory breaking a rule of the
    /// schedule; the message names the directory, the file and the reason, never key
    /// material.
    pub(crate) fn load(&mut self, now: u64) -> Result<Arc<Schedule>, ConfigError> {
        let files = read_directory(&self.dir)?;
        let next = Arc::new(self.place(files, now).map_err(|reason| self.refused(&reason))?);
        self.current = Some(next.clone());
        Ok(next)
    }

    fn refused(&self, reason: &str) -> ConfigError {
        refused(&self.dir, reason)
    }

    /// The schedule of `files` at `now`, given what this replica published before.
    fn place(&self, files: Vec<KeyFile>, now: u64) -> Result<Schedule, String> {
        let Some(first) = files.first() else {
            return Err(format!(
                "holds no key file (NAME.pem or NAME.jwk, optionally NAME.{SIGNS_FROM}SECONDS.pem)"
            ));
        };
        let mut by_kid: HashMap<&str, &KeyFile> = HashMap::new();
        let mut by_time: HashMap<u64, &KeyFile> = HashMap::new();
        for file in &files {
            if let Some(other) = by_kid.insert(file.key.kid(), file) {
                return Err(format!(
                    "{:?} and {:?} hold keys with the same kid {:?}: each key once, each kid for one key",
                    other.file,
                    file.file,
                    file.key.kid()
                ));
            }
            if let Some(other) = by_time.insert(file.signs_from, file) {
                return Err(format!(
                    "{:?} and {:?} both sign from {}: which one signs would be ambiguous; give the \
                     newer key a later time (NAME.{SIGNS_FROM}SECONDS.pem)",
                    other.file, file.file, file.signs_from
                ));
            }
        }
        let earliest = files.iter().min_by_key(|f| f.signs_from).unwrap_or(first);
        if earliest.signs_from > now {
            return Err(format!(
                "has no key that may sign yet: the earliest, {:?}, signs from {} ({} s from now)",
                earliest.file,
                earliest.signs_from,
                earliest.signs_from - now
            ));
        }
        let previous: &[Entry] = self.current.as_deref().map_or(&[], |s| &s.entries);
        let starting = self.current.is_none();
        let mut entries = Vec::with_capacity(files.len());
        for file in files {
            let before = previous.iter().find(|e| e.key.kid() == file.key.kid());
            if let Some(before) = before
                && before.key.public_jwk().x() != file.key.public_jwk().x()
            {
                return Err(format!(
                    "{:?} holds other key material under the kid {:?}, which this ring publishes \
                     already: a kid is never reused for another key",
                    file.file,
                    file.key.kid()
                ));
            }
            let seen_at = match before {
                Some(before) => before.seen_at,
                None if starting => None,
                None => Some(now),
            };
            entries.push(Entry {
                key: file.key,
                file: file.file,
                signs_from: file.signs_from,
                seen_at,
                removed_at: None,
            });
        }
        for gone in previous {
            if entries.iter().any(|e| e.key.kid() == gone.key.kid()) {
                continue;
            }
            let removed_at = gone.removed_at.unwrap_or(now);
            if removed_at.saturating_add(self.grace) > now {
                entries.push(Entry {
                    removed_at: Some(removed_at),
                    ..gone.clone()
                });
            }
        }
        let schedule = Schedule {
            entries,
            grace: self.grace,
        };
        let active = schedule.active_entry(now);
        if active.settled_at() > now {
            tracing::warn!(
                target: "tower_aauth",
                directory = %self.dir.display(),
                file = %active.file,
                kid = %active.key.kid(),
                "signing with a key published less than {PUBLISH_BEFORE_SIGNING} s ago, because no \
                 other key in the directory may sign: verifiers that cached the JWKS before it may \
                 refuse its resource tokens until they refetch"
            );
        }
        Ok(schedule)
    }
}

fn refused(dir: &Path, reason: &str) -> ConfigError {
    ConfigError::new(format!(
        "the signing-key directory {:?} {reason}",
        dir.display().to_string()
    ))
}

fn refused_file(dir: &Path, file: &str, reason: &str) -> ConfigError {
    refused(dir, &format!("holds {file:?}, which {reason}"))
}

/// Whether the directory entry `name` is skipped: hidden names (a Kubernetes secret's
/// `..data` and `..2024_…` entries among them).
fn hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// The key files of `dir`, sorted by name.
fn read_directory(dir: &Path) -> Result<Vec<KeyFile>, ConfigError> {
    let listing = std::fs::read_dir(dir).map_err(|e| refused(dir, &format!("cannot be listed: {e}")))?;
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| refused(dir, &format!("cannot be listed: {e}")))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(refused(dir, "holds a file whose name is not UTF-8"));
        };
        if !hidden(&name) {
            names.push(name);
        }
    }
    names.sort();
    let mut files = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let metadata =
            std::fs::metadata(&path).map_err(|e| refused_file(dir, &name, &format!("cannot be read: {e}")))?;
        if metadata.is_dir() {
            continue;
        }
        let (signs_from, format) = parse_name(&name).map_err(|reason| refused_file(dir, &name, &reason))?;
        if !metadata.is_file() {
            return Err(refused_file(dir, &name, "is not a regular file"));
        }
        if metadata.len() > MAX_FILE_BYTES {
            return Err(refused_file(dir, &name, "is larger than 64 KiB: not a key file"));
        }
        let mut bytes = std::fs::read(&path).map_err(|e| refused_file(dir, &name, &format!("cannot be read: {e}")))?;
        let key = match format {
            Format::Pem => match std::str::from_utf8(&bytes) {
                Ok(pem) => ResourceKey::from_pkcs8_pem(pem).map_err(|e| pem_reason(&e)),
                Err(_) => Err("is not text, so not a PEM".to_owned()),
            },
            Format::Jwk => key_from_jwk(&bytes),
        };
        forget(&mut bytes);
        let key = key.map_err(|reason| refused_file(dir, &name, &reason))?;
        files.push(KeyFile {
            file: name,
            key,
            signs_from,
        });
    }
    Ok(files)
}

/// Overwrites a buffer that held key material before it is freed.
fn forget(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(bytes);
}

/// The reason [`ResourceKey::from_pkcs8_pem`] gives, as a clause about the file.
fn pem_reason(error: &ConfigError) -> String {
    let text = error.to_string();
    let reason = text.split_once(": ").map_or(text.as_str(), |(_, reason)| reason);
    reason.strip_prefix("the signing key PEM ").unwrap_or(reason).to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Pem,
    Jwk,
}

/// The activation time and format a key file's name states.
fn parse_name(name: &str) -> Result<(u64, Format), String> {
    let (stem, format) = if let Some(stem) = name.strip_suffix(".pem") {
        (stem, Format::Pem)
    } else if let Some(stem) = name.strip_suffix(".jwk").or_else(|| name.strip_suffix(".json")) {
        (stem, Format::Jwk)
    } else {
        return Err(
            "is not a key file: the directory holds only NAME.pem (PKCS#8) and NAME.jwk or NAME.json (JWK) \
             files, optionally named NAME.signs-from-SECONDS.pem, and hidden entries"
                .to_owned(),
        );
    };
    let (label, last) = stem.rsplit_once('.').unwrap_or(("", stem));
    let Some(digits) = last.strip_prefix(SIGNS_FROM) else {
        return Ok((0, format));
    };
    if label.is_empty() {
        return Err(format!(
            "states a time but no name before it: the name is NAME.{SIGNS_FROM}SECONDS.pem"
        ));
    }
    let signs_from = (!digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| {
            format!("has no time after {SIGNS_FROM:?}: the name states whole seconds since 1970 (date +%s)")
        })?;
    Ok((signs_from, format))
}

/// A private Ed25519 key from a JWK (RFC 8037): `kty` `OKP`, `crv` `Ed25519`, `d`; `x`,
/// `kid`, `alg`, `use` and `key_ops` checked when present. No message quotes a member's
/// value except the `kid`.
fn key_from_jwk(bytes: &[u8]) -> Result<ResourceKey, String> {
    let object = parse_json_object(bytes)
        .ok_or("is not a JWK: not a JSON object (or it repeats a member, or nests too deep)")?;
    let text = |name: &str| -> Result<Option<&str>, String> {
        match object.get(name) {
            None => Ok(None),
            Some(serde_json::Value::String(value)) => Ok(Some(value)),
            Some(_) => Err(format!("is a JWK whose {name:?} is not a string")),
        }
    };
    if text("kty")? != Some("OKP") {
        return Err("is a JWK whose \"kty\" is not \"OKP\": the ring holds Ed25519 keys only".to_owned());
    }
    if text("crv")? != Some("Ed25519") {
        return Err("is a JWK whose \"crv\" is not \"Ed25519\": the ring holds Ed25519 keys only".to_owned());
    }
    if text("alg")?.is_some_and(|alg| alg != "Ed25519" && alg != "EdDSA") {
        return Err("is a JWK whose \"alg\" is neither \"Ed25519\" nor \"EdDSA\"".to_owned());
    }
    if text("use")?.is_some_and(|u| u != "sig") {
        return Err("is a JWK whose \"use\" is not \"sig\"".to_owned());
    }
    if let Some(ops) = object.get("key_ops")
        && !ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("sign")))
    {
        return Err("is a JWK whose \"key_ops\" does not list \"sign\"".to_owned());
    }
    let d = text("d")?
        .ok_or("is a public JWK (no \"d\"): the resource signs resource tokens, so it needs the private key")?;
    let mut seed_bytes = b64url_decode(d).unwrap_or_default();
    let seed: Option<[u8; 32]> = seed_bytes.as_slice().try_into().ok();
    forget(&mut seed_bytes);
    let Some(mut seed) = seed else {
        return Err("is a JWK whose \"d\" is not 32 bytes of unpadded base64url".to_owned());
    };
    let key = ResourceKey::from_seed(seed);
    forget(&mut seed);
    if let Some(x) = text("x")?
        && x != key.public_jwk().x()
    {
        return Err("is a JWK whose \"x\" is not the public key of its \"d\"".to_owned());
    }
    match text("kid")? {
        None => Ok(key),
        Some(kid) if is_kid(kid) => Ok(key.with_kid(kid)),
        Some(_) => {
            Err("is a JWK whose \"kid\" is not 1 to 256 visible ASCII characters without '\"' and '\\'".to_owned())
        }
    }
}

/// A `kid` that can go into a header and a JWKS as it is.
fn is_kid(kid: &str) -> bool {
    (1..=256).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// What the watch compares between polls: each visible entry's name, size and
/// modification time (`None` when it cannot be read).
type Fingerprint = Vec<(String, Option<(u64, SystemTime)>)>;

fn fingerprint(dir: &Path) -> Option<Fingerprint> {
    let mut listing: Fingerprint = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if hidden(&name) {
                return None;
            }
            let stat = std::fs::metadata(entry.path())
                .ok()
                .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
            Some((name, stat))
        })
        .collect();
    listing.sort();
    Some(listing)
}

/// Calls `reload` when the listing of `dir` changes (looked at every [`POLL`], the first
/// time at once) and on each SIGHUP (unix), until `alive` answers `false` (the ring's
/// owner is gone). File-system work runs on tokio's blocking pool. A refusal is logged as
/// a warning and retried at the next change or SIGHUP.
pub(crate) async fn watch<A, R>(dir: PathBuf, alive: A, reload: R)
where
    A: Fn() -> bool + Send + 'static,
    R: Fn() -> Result<(), ConfigError> + Send + Sync + 'static,
{
    let reload = Arc::new(reload);
    let dir = Arc::new(dir);
    let mut hangup = hangup_signal();
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last: Option<Option<Fingerprint>> = None;
    loop {
        let forced = tokio::select! {
            _ = ticks.tick() => false,
            received = next_hangup(&mut hangup) => {
                if !received {
                    hangup = None;
                    continue;
                }
                true
            }
        };
        if !alive() {
            return;
        }
        let listing = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || fingerprint(&dir))
                .await
                .ok()
                .flatten()
        };
        if !forced && last.as_ref() == Some(&listing) {
            continue;
        }
        last = Some(listing);
        let call = reload.clone();
        match tokio::task::spawn_blocking(move || call()).await {
            Ok(Ok(())) => tracing::info!(
                target: "tower_aauth",
                directory = %dir.display(),
                sighup = forced,
                "signing keys reloaded"
            ),
            Ok(Err(error)) => tracing::warn!(
                target: "tower_aauth",
                directory = %dir.display(),
                "signing keys not reloaded, the ring in force stays: {error}"
            ),
            // The reload panicked: the ring in force stays, as for a refusal.
            Err(_) => {}
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<std::convert::Infallible>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(target: "tower_aauth", "SIGHUP cannot reload the signing keys: {error}");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

/// `true` at the next SIGHUP; `false` if signals can no longer arrive; never without one.
async fn next_hangup(hangup: &mut Hangup) -> bool {
    match hangup {
        #[cfg(unix)]
        Some(signal) => signal.recv().await.is_some(),
        #[cfg(not(unix))]
        Some(never) => match *never {},
        None => std::future::pending().await,
    }
}
