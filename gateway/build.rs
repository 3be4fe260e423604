//! Tells the tests whether this machine has `nginx` (tests/nginx.rs) and `redis-server`
//! (tests/replicas.rs): without one its tests are reported `ignored` with the reason
//! instead of passing without having run. Under `CI=true` no
//! flag is emitted, so a missing program fails its tests saying what is missing (`.ci/run`
//! installs it first). Never fails a build.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(skip_nginx)");
    println!("cargo::rustc-check-cfg=cfg(skip_redis)");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-changed=build.rs");
    let ci = env::var("CI").is_ok_and(|value| value == "true");
    if !ci && !on_path("nginx") {
        println!("cargo::rustc-cfg=skip_nginx");
    }
    if !ci && !on_path("redis-server") {
        println!("cargo::rustc-cfg=skip_redis");
    }
}

/// Whether an executable `program` is in a directory of `PATH` (or Debian's `/usr/sbin`,
/// which a non-root `PATH` may lack).
fn on_path(program: &str) -> bool {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain([Path::new("/usr/sbin").to_path_buf()])
        .any(|dir| is_executable(&dir.join(program)))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}
