//! A fleet on loopback (tests/fleet.rs): `resource_server` example processes behind a real
//! `haproxy` balancing round-robin, sharing a real `redis-server` and a signing-key
//! directory. Every child is killed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound and released: another process may take it meanwhile, which
/// the callers' start-up checks would notice).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on {port}: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `resource_server` example binary `cargo test` built beside this test.
pub fn resource_server_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let binary = deps.parent().unwrap().join("examples").join("resource_server");
    assert!(
        binary.is_file(),
        "{} is missing: `cargo test` builds the examples; build it with `cargo build --example resource_server`",
        binary.display()
    );
    binary
}

/// One replica: the `resource_server` example on its own port.
pub struct Replica {
    pub port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Replica {
    /// Starts a replica listening on `port` with `env` (the `AAUTH_*` configuration).
    pub fn start(port: u16, env: &[(&str, String)]) -> Self {
        let mut replica = Replica {
            port,
            env: env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
            child: None,
        };
        replica.spawn();
        replica
    }

    pub fn spawn(&mut self) {
        let mut command = Command::new(resource_server_binary());
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AAUTH_ADDR", format!("127.0.0.1:{}", self.port))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(if std::env::var_os("FLEET_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(if std::env::var_os("FLEET_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        let mut child = command.spawn().expect("the resource_server example starts");
        wait_for_port(self.port, "resource_server", &mut child);
        self.child = Some(child);
    }

    /// Kills the process at once (SIGKILL): no graceful shutdown, in-flight requests die.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGHUP (the signal that reloads the signing keys).
    pub fn hangup(&self) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `haproxy` in front of the replicas: round-robin, health-checked on the resource
/// metadata every 200 ms, a request whose connection fails retried on another replica.
/// Each answer names the replica that gave it in `x-replica` (`r0`, `r1`, …).
pub struct Haproxy {
    pub port: u16,
    child: Child,
    _config: TempDir,
}

impl Haproxy {
    pub fn start(port: u16, backends: &[u16]) -> Self {
        let dir = TempDir::new("haproxy");
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, backend)| format!("  server r{i} 127.0.0.1:{backend} check inter 200ms fall 1 rise 1\n"))
            .collect();
        let config = format!(
            "global\n  maxconn 1024\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n  \
             retries 3\n  option redispatch\n  option http-server-close\n\
             frontend fleet\n  bind 127.0.0.1:{port}\n  default_backend replicas\n\
             backend replicas\n  balance roundrobin\n  option httpchk GET /.well-known/aauth-resource.json\n  \
             http-response set-header x-replica %s\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "haproxy is not on PATH: apt-get install haproxy (.ci/run does); only under CI=true \
                 does its absence fail the fleet tests instead of ignoring them",
            );
        wait_for_port(port, "haproxy", &mut child);
        Haproxy {
            port,
            child,
            _config: dir,
        }
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let mut random = [0u8; 8];
        getrandom_fill(&mut random);
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let path = std::env::temp_dir().join(format!("tower-aauth-{tag}-{name}"));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn getrandom_fill(out: &mut [u8]) {
    use std::hash::{BuildHasher, RandomState};
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let value = RandomState::new().hash_one((i, std::process::id(), Instant::now()));
        chunk.copy_from_slice(&value.to_le_bytes()[..chunk.len()]);
    }
}
