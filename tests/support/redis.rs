//! A `redis-server` child process on a free loopback port (tests/replay_redis.rs).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process on a loopback port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server. A test that calls this carries
    /// `#[cfg_attr(skip_redis, ignore = "…")]`, so it runs only when `build.rs` found
    /// `redis-server` on `PATH`, or under `CI=true`, where a missing one fails it here.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = RedisServer { port, child: None };
        server.spawn();
        server
    }

    pub fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server is not on PATH: apt-get install redis-server (.ci/run does); \
                 only under CI=true does its absence fail the tests instead of ignoring them",
            );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs one command against `redis` as `redis-cli` would (a fresh connection, the RESP
/// request) and returns the reply rendered as text (`(error) …` for an error, `(nil)` for
/// nil, array members joined by newlines).
pub fn cli(redis: &RedisServer, args: &[&str]) -> String {
    use std::io::{BufReader, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut command = format!("*{}\r\n", args.len());
    for arg in args {
        command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(command.as_bytes()).unwrap();
    read_reply(&mut BufReader::new(stream))
}

fn read_reply(reader: &mut std::io::BufReader<TcpStream>) -> String {
    use std::io::{BufRead, Read};
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let line = line.trim_end();
    let (kind, rest) = line.split_at(1);
    match kind {
        "+" | ":" => rest.to_owned(),
        "-" => format!("(error) {rest}"),
        "$" => {
            let Ok(len) = rest.parse::<usize>() else {
                return "(nil)".to_owned();
            };
            let mut data = vec![0; len + 2];
            reader.read_exact(&mut data).unwrap();
            String::from_utf8(data[..len].to_vec()).unwrap()
        }
        "*" => {
            let count: i64 = rest.parse().unwrap();
            (0..count.max(0))
                .map(|_| read_reply(reader))
                .collect::<Vec<_>>()
                .join("\n")
        }
        other => panic!("unexpected RESP reply {other}{rest}"),
    }
}
