//! The signing-key ring read from a directory the replicas share
//! (`AAuthBuilder::signing_keys_from`): the file formats, the schedule their names state
//! (publish before signing, keep publishing after retiring), reloads on a file change and
//! on SIGHUP, every refusal, and two replicas that verify each other's tokens.
//!
//! Unix only: the tests make symlinks and FIFOs and send SIGHUP.
#![cfg(unix)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use support::app::*;
use tower_aauth::engine::{AlgPolicy, UnverifiedJws, b64url};
use tower_aauth::{AAuth, Jwk, ResourceKey};

/// A fresh directory under the system's temporary directory, removed on drop.
struct KeyDir(PathBuf);

impl KeyDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("tower-aauth-key-ring-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        KeyDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) {
        std::fs::write(self.0.join(name), contents).unwrap();
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.0.join(name)).unwrap();
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The PKCS#8 PEM of the Ed25519 key `seed`, byte for byte what `openssl genpkey
/// -algorithm ed25519` writes.
fn pem(seed: [u8; 32]) -> String {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    der.extend_from_slice(&seed);
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
}

/// The private JWK of the Ed25519 key `seed`.
fn jwk(seed: [u8; 32]) -> Value {
    json!({
        "kty": "OKP", "crv": "Ed25519",
        "d": b64url(seed),
        "x": ResourceKey::from_seed(seed).public_jwk().x(),
    })
}

/// The `kid` of a PEM key: its thumbprint.
fn kid(seed: [u8; 32]) -> String {
    ResourceKey::from_seed(seed).kid().to_owned()
}

fn app(dir: &KeyDir) -> App {
    App::with(|b| b.person_server(PS).signing_keys_from(dir.path()))
}

fn build(dir: &KeyDir) -> Result<AAuth, tower_aauth::ConfigError> {
    AAuth::builder(RESOURCE)
        .clock(tower_aauth::testing::ManualClock::new(NOW))
        .key_resolver(tower_aauth::discovery::StaticResolver::new())
        .signing_keys_from(dir.path())
        .build()
}

fn published(aauth: &AAuth) -> Vec<String> {
    aauth
        .public_keys()
        .iter()
        .map(|k| k.kid().unwrap().to_owned())
        .collect()
}

/// A resource token minted by `app` at its clock's time, and the `kid` that signed it.
async fn mint(app: &App) -> (String, String) {
    let mut request = get_request("/data");
    app.agent.sign(
        &mut request,
        &jwt(app.person_token()),
        tower_aauth::Clock::now(&app.clock),
    );
    let response = app.send(request).await;
    let (token, header, _) = assert_auth_challenge(app, &response);
    (token, header["kid"].as_str().unwrap().to_owned())
}

/// Whether `token` verifies against a key of the JWKS document `jwks`.
fn verifies(token: &str, jwks: &Value) -> bool {
    let jws = UnverifiedJws::parse(token, AlgPolicy::Strict).unwrap();
    jwks["keys"].as_array().unwrap().iter().any(|key| {
        key["kid"].as_str() == jws.kid()
            && jws
                .verify_with(&Jwk::from_json(key.as_object().unwrap(), AlgPolicy::Strict).unwrap())
                .is_ok()
    })
}

/// Polls `check` every 50 ms for up to `seconds`.
async fn eventually(seconds: u64, check: impl Fn() -> bool) -> bool {
    for _ in 0..seconds * 20 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

#[tokio::test]
async fn a_directory_holding_one_pem_key_is_a_ring_with_that_key_active() {
    let dir = KeyDir::new("single");
    dir.write("resource.pem", pem([1; 32]));
    let app = app(&dir);
    assert_eq!(app.aauth.active_kid(), kid([1; 32]));
    assert_eq!(published(&app.aauth), [kid([1; 32])]);
    let (token, signed_by) = mint(&app).await;
    assert_eq!(signed_by, kid([1; 32]));
    assert!(verifies(&token, &app.aauth.jwks()));
    // The check can fail: another key's JWKS does not verify it.
    let other = json!({ "keys": [ResourceKey::from_seed([2; 32]).with_kid(kid([1; 32])).public_jwk().to_json()] });
    assert!(!verifies(&token, &other));
}

#[tokio::test]
async fn pem_and_jwk_files_both_load_and_a_jwk_kid_is_kept() {
    let dir = KeyDir::new("formats");
    dir.write("a.pem", pem([1; 32]));
    let mut named = jwk([2; 32]);
    named["kid"] = "named-key".into();
    named["alg"] = "Ed25519".into();
    named["use"] = "sig".into();
    named["key_ops"] = json!(["sign"]);
    dir.write(&format!("b.signs-from-{}.jwk", NOW + 10), named.to_string());
    dir.write(&format!("c.signs-from-{}.json", NOW + 20), jwk([3; 32]).to_string());
    let aauth = build(&dir).unwrap();
    assert_eq!(aauth.active_kid(), kid([1; 32]));
    assert_eq!(published(&aauth), [kid([1; 32]), kid([3; 32]), "named-key".to_owned()]);
}

#[tokio::test]
async fn the_latest_key_whose_time_has_come_signs_and_every_key_is_published() {
    let dir = KeyDir::new("schedule");
    dir.write("2026-01.pem", pem([1; 32]));
    dir.write(&format!("2026-04.signs-from-{}.pem", NOW + 600), pem([2; 32]));
    dir.write(
        &format!("2026-07.signs-from-{}.jwk", NOW + 1200),
        jwk([3; 32]).to_string(),
    );
    let app = app(&dir);
    assert_eq!(published(&app.aauth), [kid([1; 32]), kid([3; 32]), kid([2; 32])]);
    assert_eq!(mint(&app).await.1, kid([1; 32]));

    app.clock.advance(599);
    assert_eq!(mint(&app).await.1, kid([1; 32]), "a second early");
    app.clock.advance(1);
    assert_eq!(mint(&app).await.1, kid([2; 32]), "at its time, without a reload");
    assert_eq!(published(&app.aauth), [kid([2; 32]), kid([3; 32]), kid([1; 32])]);
    app.clock.advance(600);
    assert_eq!(mint(&app).await.1, kid([3; 32]));
    assert_eq!(
        app.aauth.public_keys().len(),
        3,
        "superseded keys whose files stay are published"
    );
}

#[tokio::test]
async fn a_key_added_while_running_is_published_60_s_before_it_signs() {
    let dir = KeyDir::new("floor");
    dir.write("old.pem", pem([1; 32]));
    let app = app(&dir);
    // Its name says it signs now: too early for verifiers that cached the JWKS.
    dir.write(&format!("new.signs-from-{NOW}.pem"), pem([2; 32]));
    app.aauth.reload_signing_keys().unwrap();
    assert_eq!(published(&app.aauth), [kid([1; 32]), kid([2; 32])], "published at once");
    assert_eq!(mint(&app).await.1, kid([1; 32]));
    app.clock.advance(59);
    assert_eq!(mint(&app).await.1, kid([1; 32]), "published 59 s: not yet");
    app.clock.advance(1);
    let (token, signed_by) = mint(&app).await;
    assert_eq!(signed_by, kid([2; 32]), "published 60 s: signs");
    assert!(verifies(&token, &app.aauth.jwks()));

    // A key whose time is further ahead signs at its time.
    dir.write(&format!("next.signs-from-{}.pem", NOW + 60 + 120), pem([3; 32]));
    app.aauth.reload_signing_keys().unwrap();
    app.clock.advance(119);
    assert_eq!(mint(&app).await.1, kid([2; 32]));
    app.clock.advance(1);
    assert_eq!(mint(&app).await.1, kid([3; 32]));
}

#[tokio::test]
async fn keys_present_at_start_sign_as_their_names_say() {
    // A replica restarting after a rotation signs with the current key at once, as its
    // peers do: keys it finds at start are taken as published by the fleet already.
    let dir = KeyDir::new("restart");
    dir.write("old.pem", pem([1; 32]));
    dir.write(&format!("new.signs-from-{}.pem", NOW - 5), pem([2; 32]));
    let app = app(&dir);
    assert_eq!(mint(&app).await.1, kid([2; 32]));
}

#[tokio::test]
async fn the_only_key_that_may_sign_signs_even_if_just_published() {
    let dir = KeyDir::new("replace");
    dir.write("old.pem", pem([1; 32]));
    let app = app(&dir);
    dir.remove("old.pem");
    dir.write("new.pem", pem([2; 32]));
    app.aauth.reload_signing_keys().unwrap();
    assert_eq!(mint(&app).await.1, kid([2; 32]), "a removed key never signs again");
    assert_eq!(published(&app.aauth), [kid([2; 32]), kid([1; 32])]);
}

#[tokio::test]
async fn a_retired_key_stays_published_300_s_after_its_last_use_then_goes() {
    let dir = KeyDir::new("retire");
    dir.write("old.pem", pem([1; 32]));
    dir.write(&format!("new.signs-from-{}.pem", NOW + 100), pem([2; 32]));
    let app = app(&dir);
    app.clock.advance(99);
    let (last, signed_by) = mint(&app).await;
    assert_eq!(signed_by, kid([1; 32]), "the old key's last use");
    app.clock.advance(1);
    assert_eq!(mint(&app).await.1, kid([2; 32]));
    dir.remove("old.pem");
    app.aauth.reload_signing_keys().unwrap();
    assert_eq!(published(&app.aauth), [kid([2; 32]), kid([1; 32])]);
    app.clock.advance(299);
    assert!(verifies(&last, &app.aauth.jwks()), "299 s after its removal");
    app.clock.advance(1);
    assert_eq!(published(&app.aauth), [kid([2; 32])], "300 s after: gone");
    assert!(!verifies(&last, &app.aauth.jwks()));
    // And gone for good: a reload does not bring it back.
    app.aauth.reload_signing_keys().unwrap();
    assert_eq!(published(&app.aauth), [kid([2; 32])]);
}

#[tokio::test]
async fn two_replicas_on_one_directory_verify_each_others_tokens_across_a_rotation() {
    let dir = KeyDir::new("replicas");
    dir.write("old.pem", pem([1; 32]));
    let (a, b) = (app(&dir), app(&dir));
    let (token, _) = mint(&a).await;
    assert!(verifies(&token, &b.aauth.jwks()));
    assert_eq!(a.aauth.jwks(), b.aauth.jwks());

    let at = NOW + 600;
    dir.write(&format!("new.signs-from-{at}.pem"), pem([2; 32]));
    a.aauth.reload_signing_keys().unwrap();
    b.aauth.reload_signing_keys().unwrap();
    assert_eq!(
        a.aauth.jwks(),
        b.aauth.jwks(),
        "both publish the new key before it signs"
    );
    for replica in [&a, &b] {
        replica.clock.set(at);
    }
    let (new_token, signed_by) = mint(&a).await;
    assert_eq!(signed_by, kid([2; 32]));
    assert_eq!(mint(&b).await.1, kid([2; 32]), "both switch at the stated time");
    assert!(verifies(&new_token, &b.aauth.jwks()));
    assert!(verifies(&token, &b.aauth.jwks()), "the old key is still published");

    // A replica built from another directory does not verify them: the check can fail.
    let elsewhere = KeyDir::new("replicas-elsewhere");
    elsewhere.write("other.pem", pem([3; 32]));
    assert!(!verifies(&new_token, &app(&elsewhere).aauth.jwks()));
}

/// A `tracing` writer collecting what is logged.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_malformed_file_leaves_the_ring_in_force_and_the_watch_logs_why() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let dir = KeyDir::new("malformed");
    dir.write("old.pem", pem([1; 32]));
    let app = app(&dir);
    let watch = tokio::spawn(app.aauth.watch_signing_keys());

    // Half a PEM, as a copy in progress leaves it.
    let half = pem([2; 32]);
    dir.write("new.pem", &half[..40]);
    let error = app.aauth.reload_signing_keys().unwrap_err().to_string();
    assert!(error.contains("\"new.pem\""), "{error}");
    assert!(
        eventually(5, || logs.text().contains("\"new.pem\"")).await,
        "{}",
        logs.text()
    );
    let logged = logs.text();
    assert!(
        logged.contains("WARN") && logged.contains("ring in force stays"),
        "{logged}"
    );
    assert_eq!(published(&app.aauth), [kid([1; 32])], "the ring in force stays");
    assert_eq!(mint(&app).await.1, kid([1; 32]));

    // Completed, the file is picked up by the watch without a call.
    dir.write(&format!("new.signs-from-{}.pem", NOW + 300), &half);
    dir.remove("new.pem");
    assert!(eventually(5, || published(&app.aauth).len() == 2).await);
    assert_eq!(published(&app.aauth), [kid([1; 32]), kid([2; 32])]);
    watch.abort();
}

#[tokio::test]
async fn the_watch_reloads_on_a_file_change_and_ends_with_its_aauth() {
    let dir = KeyDir::new("watch");
    dir.write("old.pem", pem([1; 32]));
    let app = app(&dir);
    let watch = tokio::spawn(app.aauth.watch_signing_keys());
    dir.write(&format!("new.signs-from-{}.pem", NOW + 600), pem([2; 32]));
    assert!(eventually(5, || published(&app.aauth).len() == 2).await, "added");
    dir.remove("old.pem");
    app.clock.advance(600);
    assert!(
        eventually(5, || app.aauth.active_kid() == kid([2; 32])).await,
        "removed: the new key signs"
    );
    drop(app);
    tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the watch ends when its AAuth is dropped")
        .unwrap();
}

#[tokio::test]
async fn sighup_reloads_what_the_poll_cannot_see() {
    let dir = KeyDir::new("sighup");
    dir.write("resource.pem", pem([1; 32]));
    let app = app(&dir);
    let watch = tokio::spawn(app.aauth.watch_signing_keys());
    // Let the watch start (and take over SIGHUP) and read the directory once.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Another key of the same size under the same name with the same modification time
    // (written to a hidden file, dated, then renamed over it in one step): the listing the
    // poll compares is unchanged.
    let path = dir.path().join("resource.pem");
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let staging = dir.path().join(".resource.pem.new");
    std::fs::write(&staging, pem([2; 32])).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&staging)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    std::fs::rename(&staging, &path).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(app.aauth.active_kid(), kid([1; 32]), "the poll saw no change");

    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        eventually(5, || app.aauth.active_kid() == kid([2; 32])).await,
        "SIGHUP reloaded"
    );
    assert_eq!(
        published(&app.aauth),
        [kid([2; 32]), kid([1; 32])],
        "the replaced key stays published"
    );
    watch.abort();
}

/// The refusal of a directory whose only other file is `name` holding `contents`.
fn refusal(name: &str, contents: impl AsRef<[u8]>) -> String {
    let dir = KeyDir::new(&format!("refuse-{}", name.replace('/', "_")));
    dir.write("good.pem", pem([1; 32]));
    dir.write(name, contents);
    let error = build(&dir).unwrap_err().to_string();
    assert!(error.contains(&format!("{name:?}")), "names the file: {error}");
    assert!(!error.contains(&b64url([9; 32])), "quotes no key material: {error}");
    assert!(
        !error.contains(ResourceKey::from_seed([9; 32]).public_jwk().x()),
        "{error}"
    );
    error
}

#[test]
fn every_malformed_file_is_refused_naming_the_file_and_the_reason() {
    let mut public = jwk([9; 32]);
    public.as_object_mut().unwrap().remove("d");
    let with = |member: &str, value: Value| {
        let mut key = jwk([9; 32]);
        key[member] = value;
        key.to_string()
    };
    let pem9 = pem([9; 32]);
    let pem_body = pem9.lines().nth(1).unwrap().to_owned();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("notes.txt", b"hello".to_vec(), "is not a key file"),
        ("key.pem.bak", pem([9; 32]).into_bytes(), "is not a key file"),
        ("k.signs-from-soon.pem", pem([9; 32]).into_bytes(), "has no time after"),
        ("k.signs-from-.pem", pem([9; 32]).into_bytes(), "has no time after"),
        (
            "k.signs-from-99999999999999999999.pem",
            pem([9; 32]).into_bytes(),
            "has no time after",
        ),
        ("signs-from-5.pem", pem([9; 32]).into_bytes(), "no name before it"),
        ("k.pem", b"not a pem".to_vec(), "is not PEM"),
        ("k.pem", vec![0xff, 0xfe, 0x00], "is not text"),
        ("k.pem", pem([9; 32]).as_bytes()[..40].to_vec(), "PKCS#8"),
        (
            "k.pem",
            format!("-----BEGIN ENCRYPTED PRIVATE KEY-----\n{pem_body}\n-----END ENCRYPTED PRIVATE KEY-----\n")
                .into_bytes(),
            "is encrypted",
        ),
        (
            "k.pem",
            format!("-----BEGIN PUBLIC KEY-----\n{pem_body}\n-----END PUBLIC KEY-----\n").into_bytes(),
            "needs the private key",
        ),
        ("k.jwk", b"[1, 2]".to_vec(), "not a JSON object"),
        ("k.jwk", br#"{"kty":"OKP","kty":"OKP"}"#.to_vec(), "not a JSON object"),
        (
            "k.jwk",
            with("kty", "RSA".into()).into_bytes(),
            "\"kty\" is not \"OKP\"",
        ),
        ("k.jwk", with("kty", 1.into()).into_bytes(), "\"kty\" is not a string"),
        (
            "k.jwk",
            with("crv", "X25519".into()).into_bytes(),
            "\"crv\" is not \"Ed25519\"",
        ),
        ("k.jwk", with("alg", "ES256".into()).into_bytes(), "\"alg\" is neither"),
        (
            "k.jwk",
            with("use", "enc".into()).into_bytes(),
            "\"use\" is not \"sig\"",
        ),
        (
            "k.jwk",
            with("key_ops", json!(["verify"])).into_bytes(),
            "does not list \"sign\"",
        ),
        (
            "k.jwk",
            with("key_ops", "sign".into()).into_bytes(),
            "does not list \"sign\"",
        ),
        ("k.jwk", public.to_string().into_bytes(), "is a public JWK"),
        ("k.jwk", with("d", b64url([9; 31]).into()).into_bytes(), "not 32 bytes"),
        ("k.jwk", with("d", "!!".into()).into_bytes(), "not 32 bytes"),
        (
            "k.jwk",
            with("x", ResourceKey::from_seed([8; 32]).public_jwk().x().into()).into_bytes(),
            "not the public key of its \"d\"",
        ),
        ("k.json", with("kid", "a\"b".into()).into_bytes(), "\"kid\" is not"),
        ("k.json", with("kid", "".into()).into_bytes(), "\"kid\" is not"),
        ("big.pem", vec![b'A'; 64 * 1024 + 1], "larger than 64 KiB"),
    ];
    for (name, contents, reason) in cases {
        let error = refusal(name, contents);
        assert!(error.contains(reason), "{name}: expected {reason:?} in {error}");
    }
}

#[test]
fn a_directory_breaking_a_rule_of_the_schedule_is_refused() {
    let refused = |setup: &dyn Fn(&KeyDir), expected: &[&str]| {
        let dir = KeyDir::new(&format!("rule-{}", expected[0].len()));
        setup(&dir);
        let error = build(&dir).unwrap_err().to_string();
        for part in expected {
            assert!(error.contains(part), "expected {part:?} in {error}");
        }
    };
    refused(&|_| {}, &["holds no key file"]);
    refused(
        &|d| {
            d.write("a.pem", pem([1; 32]));
            d.write("b.pem", pem([2; 32]));
        },
        &["\"a.pem\" and \"b.pem\" both sign from 0"],
    );
    refused(
        &|d| {
            d.write("a.pem", pem([1; 32]));
            d.write(&format!("a-again.signs-from-{NOW}.jwk"), jwk([1; 32]).to_string());
        },
        &["\"a-again.signs-from-", "same kid"],
    );
    refused(
        &|d| d.write(&format!("later.signs-from-{}.pem", NOW + 60), pem([1; 32])),
        &["has no key that may sign yet", "\"later.signs-from-", "60 s from now"],
    );
    let missing = KeyDir::new("missing");
    std::fs::remove_dir(missing.path()).unwrap();
    let error = build(&missing).unwrap_err().to_string();
    assert!(error.contains("cannot be listed"), "{error}");
}

#[test]
fn entries_that_are_not_regular_files_are_refused_and_hidden_ones_skipped() {
    use std::os::unix::ffi::OsStrExt;
    let dir = KeyDir::new("entries");
    dir.write("good.pem", pem([1; 32]));
    // A Kubernetes secret's bookkeeping and a subdirectory are skipped.
    std::fs::create_dir(dir.path().join("..2026_01_01_00_00_00.1")).unwrap();
    dir.write("..data", "not a key");
    std::fs::create_dir(dir.path().join("lost+found")).unwrap();
    assert_eq!(published(&build(&dir).unwrap()), [kid([1; 32])]);

    std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join("dangling.pem")).unwrap();
    let error = build(&dir).unwrap_err().to_string();
    assert!(
        error.contains("\"dangling.pem\"") && error.contains("cannot be read"),
        "{error}"
    );
    dir.remove("dangling.pem");

    let status = std::process::Command::new("mkfifo")
        .arg(dir.path().join("fifo.pem"))
        .status()
        .unwrap();
    assert!(status.success());
    let error = build(&dir).unwrap_err().to_string();
    assert!(
        error.contains("\"fifo.pem\"") && error.contains("not a regular file"),
        "{error}"
    );
    dir.remove("fifo.pem");

    let name = std::ffi::OsStr::from_bytes(b"k\xff.pem");
    std::fs::write(dir.path().join(name), pem([2; 32])).unwrap();
    let error = build(&dir).unwrap_err().to_string();
    assert!(error.contains("not UTF-8"), "{error}");
}

#[test]
fn a_kid_is_never_reused_for_another_key_across_reloads() {
    let dir = KeyDir::new("kid-reuse");
    dir.write("a.pem", pem([1; 32]));
    let mut named = jwk([2; 32]);
    named["kid"] = "k".into();
    dir.write(&format!("b.signs-from-{}.jwk", NOW + 600), named.to_string());
    let aauth = build(&dir).unwrap();
    let mut other = jwk([3; 32]);
    other["kid"] = "k".into();
    dir.write(&format!("b.signs-from-{}.jwk", NOW + 600), other.to_string());
    let error = aauth.reload_signing_keys().unwrap_err().to_string();
    assert!(error.contains("other key material under the kid \"k\""), "{error}");
    assert_eq!(
        aauth.public_keys()[1].x(),
        ResourceKey::from_seed([2; 32]).public_jwk().x()
    );
}

#[tokio::test]
async fn a_ring_read_from_a_directory_changes_only_with_the_directory() {
    let dir = KeyDir::new("manual");
    dir.write("a.pem", pem([1; 32]));
    let aauth = build(&dir).unwrap();
    let key = ResourceKey::from_seed([2; 32]);
    assert!(!aauth.stage_signing_key(key.clone()));
    assert!(!aauth.rotate(key));
    assert!(!aauth.retire_key(&kid([1; 32])));
    assert_eq!(published(&aauth), [kid([1; 32])]);

    // A ring set by hand has no directory to reload or watch.
    let fixed = AAuth::builder(RESOURCE)
        .key_resolver(tower_aauth::discovery::StaticResolver::new())
        .signing_keys_from(dir.path())
        .signing_key(ResourceKey::from_seed([3; 32]))
        .build()
        .unwrap();
    assert_eq!(fixed.active_kid(), kid([3; 32]), "signing_key replaces the directory");
    let error = fixed.reload_signing_keys().unwrap_err().to_string();
    assert!(error.contains("not read from a directory"), "{error}");
    tokio::time::timeout(Duration::from_secs(1), fixed.watch_signing_keys())
        .await
        .expect("nothing to watch: the future ends at once");
}
