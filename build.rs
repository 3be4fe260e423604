//! Tells the integration tests which of their external peers this machine has, so that a
//! test whose peer is absent is reported `ignored` with the reason instead of passing
//! without having run.
//!
//! It only emits `--cfg` flags and one environment variable; it never fails a build (it
//! also runs for users who build the published crate, where none of this matters).
//!
//! * `skip_redis`: `redis-server` is not on `PATH` (tests/replay_redis.rs);
//! * `skip_haproxy`: `haproxy` is not on `PATH` (tests/fleet.rs, which also needs
//!   `redis-server`);
//! * `skip_chromium`: `chromium` or `chromedriver` is not on `PATH` (tests/browser.rs,
//!   tests/session_browser.rs);
//! * `skip_peer_v05`, `skip_peer_v03`, `skip_peer_js`, `skip_peer_introspection`,
//!   `skip_peer_wba_py`, `skip_peer_wba_js`: the launcher `bin/<peer>` written by
//!   `tests/interop/setup.sh` is missing from the peer directory (the tests/interop_*.rs
//!   files and one test of tests/resource_token.rs);
//! * `AAUTH_TEST_PEER_DIR` (compile-time environment): the peer directory the tests run the
//!   launchers from: `$AAUTH_INTEROP_DIR`, else `$CARGO_TARGET_DIR/interop`, else
//!   `target/interop` under the package root (where `tests/interop/setup.sh` installs them).
//!
//! Under `CI=true` no `skip_*` flag is emitted: a test whose peer is missing then runs and
//! fails saying what is missing (`.ci/run` installs every peer first), so nothing passes
//! untested in CI.
//!
//! The script re-runs when `PATH`, `CI`, `AAUTH_INTEROP_DIR` or `CARGO_TARGET_DIR` change,
//! when the peer directory's `bin/` changes, and when `tests/interop/` changes
//! (`setup.sh` touches that directory when it finishes, so peers installed after a build
//! are noticed). A `redis-server` installed later into a directory already on `PATH` is
//! not noticed: `touch build.rs`, or change `PATH`.

use std::env;
use std::path::{Path, PathBuf};

/// The launchers of `tests/interop/setup.sh` and the cfg that ignores their tests.
const PEERS: [(&str, &str); 6] = [
    ("peer-v05", "skip_peer_v05"),
    ("peer-v03", "skip_peer_v03"),
    ("peer-js", "skip_peer_js"),
    ("introspection-server", "skip_peer_introspection"),
    ("peer-wba-py", "skip_peer_wba_py"),
    ("peer-wba-js", "skip_peer_wba_js"),
];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(skip_redis)");
    println!("cargo::rustc-check-cfg=cfg(skip_haproxy)");
    println!("cargo::rustc-check-cfg=cfg(skip_chromium)");
    for (_, cfg) in PEERS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    for var in ["PATH", "CI", "AAUTH_INTEROP_DIR", "CARGO_TARGET_DIR"] {
        println!("cargo::rerun-if-env-changed={var}");
    }

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by Cargo"));
    // Only CI must have every peer; everywhere else an absent peer ignores its tests.
    let ci = env::var("CI").is_ok_and(|value| value == "true");

    if !ci && !on_path("redis-server") {
        println!("cargo::rustc-cfg=skip_redis");
    }
    if !ci && !on_path("haproxy") {
        println!("cargo::rustc-cfg=skip_haproxy");
    }
    let browser = on_path("chromium") && on_path("chromedriver");
    if !ci && !browser {
        println!("cargo::rustc-cfg=skip_chromium");
    }

    let peer_dir = peer_dir(&manifest_dir);
    println!("cargo::rustc-env=AAUTH_TEST_PEER_DIR={}", peer_dir.display());
    let bin = peer_dir.join("bin");
    for (launcher, cfg) in PEERS {
        if !ci && !bin.join(launcher).is_file() {
            println!("cargo::rustc-cfg={cfg}");
        }
    }

    // Watch only paths that exist: a missing one would re-run this script (and rebuild the
    // crate) on every build.
    for watched in [bin, manifest_dir.join("tests/interop")] {
        if watched.is_dir() {
            println!("cargo::rerun-if-changed={}", watched.display());
        }
    }
    println!("cargo::rerun-if-changed=build.rs");
}

/// Where `tests/interop/setup.sh` puts the peers (it follows the same rule).
fn peer_dir(manifest_dir: &Path) -> PathBuf {
    let relative_to_package = |dir: PathBuf| {
        if dir.is_absolute() { dir } else { manifest_dir.join(dir) }
    };
    if let Some(dir) = env::var_os("AAUTH_INTEROP_DIR").filter(|dir| !dir.is_empty()) {
        return relative_to_package(PathBuf::from(dir));
    }
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        return relative_to_package(PathBuf::from(dir)).join("interop");
    }
    manifest_dir.join("target/interop")
}

/// Whether an executable file `program` is in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    let Some(path) = env::var_os("PATH") else {
        return false;
    };
    env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file() || path.with_extension("exe").is_file()
}
