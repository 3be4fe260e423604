//! `batch_verification` in the gateway's configuration (`"off"`, `"concurrent"`,
//! `"eager"`): the crate's batch verifier for the verified path. With each value the seed
//! flow and every refusal behave the same, and a concurrent burst holding one tampered
//! signature refuses that request only, with the exact `Signature-Error` code, forwarding
//! the others.

mod support;

use http::{Request, StatusCode};
use support::{Parties, ReverseProxy, TempDir, bounded, config, key_directory, send};

/// The values, each with what `--check` reports for it.
const VALUES: [&str; 3] = ["off", "concurrent", "eager"];

/// A reverse proxy whose file sets `batch_verification = "{value}"`.
async fn batching(value: &str) -> ReverseProxy {
    ReverseProxy::start_with(Parties::start().await, &format!("batch_verification = \"{value}\"")).await
}

/// Flips one base64 character inside the `Signature` byte sequence.
fn tamper(request: &mut Request<Vec<u8>>) {
    let signature = request.headers()["signature"].to_str().unwrap().to_owned();
    let at = signature.find(':').unwrap() + 5;
    let mut bytes = signature.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    request
        .headers_mut()
        .insert("signature", http::HeaderValue::from_bytes(&bytes).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_each_batch_verification_value_the_seed_flow_and_every_refusal_behave() {
    bounded(async {
        for value in VALUES {
            let proxy = batching(value).await;
            proxy.front().seed_flow_and_every_refusal(StatusCode::NOT_FOUND).await;
        }
    })
    .await;
}

/// 32 honest requests and one tampered, sent at once, for each value: the tampered one is
/// `401 invalid_signature` and never forwarded, every honest one is served (with batching,
/// whatever batch the tampered one fell into).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_burst_with_one_tampered_signature_refuses_that_request_only() {
    bounded(async {
        for value in VALUES {
            let proxy = batching(value).await;
            // Warm: the agent's keys fetched and cached before the burst.
            let (status, _, echoed) = send(proxy.whoami(40)).await;
            assert_eq!(status, StatusCode::OK, "batching {value}: {echoed}");
            let mut burst = tokio::task::JoinSet::new();
            for age in 1..=33 {
                let mut request = proxy.whoami(age);
                let tampered = age == 17;
                if tampered {
                    tamper(&mut request);
                }
                burst.spawn(async move { (tampered, send(request).await) });
            }
            let mut served = 0;
            while let Some(answer) = burst.join_next().await {
                let (tampered, (status, headers, body)) = answer.unwrap();
                if tampered {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "batching {value}: {body}");
                    assert_eq!(
                        headers["signature-error"], "error=invalid_signature",
                        "batching {value}"
                    );
                } else {
                    assert_eq!(status, StatusCode::OK, "batching {value}: {body}");
                    assert_eq!(
                        body["headers"]["x-aauth-agent"],
                        serde_json::json!([proxy.parties.agent_id]),
                        "batching {value}"
                    );
                    served += 1;
                }
            }
            assert_eq!(served, 32, "batching {value}");
            assert_eq!(
                proxy.upstream.hits(),
                1 + 32,
                "batching {value}: the tampered request was not forwarded"
            );
        }
    })
    .await;
}

/// The gateway on `text` (a whole configuration file), with `--check` or started for
/// real: exit status, stdout, stderr. A gateway that keeps running past 20 s is killed
/// and reported as exit status `None`.
fn run(text: &str, check_only: bool) -> (Option<i32>, String, String) {
    let dir = TempDir::new("batch-config");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_aauth-gateway"));
    command.arg("--config").arg(&path);
    if check_only {
        command.arg("--check");
    }
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (None, String::new(), "still running".to_owned());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn check(text: &str) -> (Option<i32>, String, String) {
    run(text, true)
}

/// A configuration with `extra` as its fifth line.
fn file_with(keys: &TempDir, extra: &str) -> String {
    config(
        "reverse-proxy",
        "http://127.0.0.1:8080",
        8080,
        keys.path(),
        "http://127.0.0.1:9",
        &format!("upstream = \"http://127.0.0.1:3000\"\n{extra}"),
    )
}

#[test]
fn the_check_reports_the_batch_verification_setting_and_its_default() {
    let keys = key_directory();
    let mut cases: Vec<(String, &str)> = VALUES
        .iter()
        .map(|value| (format!("batch_verification = \"{value}\""), *value))
        .collect();
    // The shipped default (docs/gateway.md gives the measurements behind it).
    cases.push((String::new(), "eager"));
    for (extra, value) in cases {
        let expected = format!("batch verification {value})");
        let (code, stdout, stderr) = check(&file_with(&keys, &extra));
        assert_eq!(code, Some(0), "{extra:?}: {stderr}");
        assert!(stdout.contains(&expected), "{extra:?}: {stdout}");
    }
}

#[test]
fn an_unknown_batch_verification_value_stops_the_gateway_naming_its_line() {
    let keys = key_directory();
    for (value, message) in [
        (
            "\"yes\"",
            "batch_verification must be \"off\", \"concurrent\" or \"eager\"",
        ),
        ("\"Eager\"", "batch_verification must be"),
        ("\"\"", "batch_verification must be"),
        ("true", "invalid type: boolean `true`, expected a string"),
        ("1", "invalid type"),
    ] {
        let text = file_with(&keys, &format!("batch_verification = {value}"));
        for check_only in [true, false] {
            let (code, stdout, stderr) = run(&text, check_only);
            assert_eq!(code, Some(2), "{value} (--check {check_only}): {stderr}");
            assert!(stderr.contains("line 6:"), "{value}: {stderr}");
            assert!(stderr.contains(message), "{value}: {stderr}");
            assert!(stdout.is_empty(), "{value}: {stdout}");
        }
    }
}
