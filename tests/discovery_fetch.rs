//! The default guarded fetcher (reqwest) against a real HTTP server on 127.0.0.1, in
//! development mode (http on literal loopback origins only).

mod support;

use std::time::{Duration, Instant};

use support::discovery::{Canned, IssuerServer};
use tower_aauth::discovery::{Fetch, FetchError, FetchPolicy, ReqwestFetch};

const CAP: usize = 4096;

fn json_of_len(len: usize) -> String {
    // `{"p":"xxxx"}` is 8 bytes of framing.
    format!(r#"{{"p":"{}"}}"#, "x".repeat(len - 8))
}

#[tokio::test]
async fn a_body_at_the_cap_passes_and_one_byte_more_fails() {
    let server = IssuerServer::start().await;
    let fetch = ReqwestFetch::allowing_http_loopback();
    server.set("/at", Canned::raw("application/json", json_of_len(CAP)));
    server.set("/over", Canned::raw("application/json", json_of_len(CAP + 1)));
    let document = fetch.get(&server.url("/at"), CAP).await.unwrap();
    assert_eq!(document.body.len(), CAP);
    assert_eq!(
        fetch.get(&server.url("/over"), CAP).await.unwrap_err(),
        FetchError::TooLarge
    );
}

#[tokio::test]
async fn a_chunked_body_without_length_is_capped_while_streaming() {
    let server = IssuerServer::start().await;
    let fetch = ReqwestFetch::allowing_http_loopback();
    server.set("/at", Canned::raw("application/json", json_of_len(CAP)).chunked(1000));
    server.set(
        "/over",
        Canned::raw("application/json", json_of_len(CAP + 1)).chunked(1000),
    );
    server.set(
        "/huge",
        Canned::raw("application/json", json_of_len(10 << 20)).chunked(64 * 1024),
    );
    assert_eq!(fetch.get(&server.url("/at"), CAP).await.unwrap().body.len(), CAP);
    assert_eq!(
        fetch.get(&server.url("/over"), CAP).await.unwrap_err(),
        FetchError::TooLarge
    );
    assert_eq!(
        fetch.get(&server.url("/huge"), CAP).await.unwrap_err(),
        FetchError::TooLarge
    );
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let server = IssuerServer::start().await;
    let fetch = ReqwestFetch::allowing_http_loopback();
    server.set("/target", Canned::json(&serde_json::json!({ "keys": [] })));
    for status in [301, 302, 303, 307, 308] {
        let path = format!("/redirect-{status}");
        server.set(&path, Canned::status(status).header("location", &server.url("/target")));
        assert_eq!(
            fetch.get(&server.url(&path), CAP).await.unwrap_err(),
            FetchError::Status(status)
        );
        assert_eq!(server.hits(&path), 1, "exactly one request");
    }
    assert_eq!(server.hits("/target"), 0, "no redirect was followed");
}

#[tokio::test]
async fn only_json_content_types_are_accepted() {
    let server = IssuerServer::start().await;
    let fetch = ReqwestFetch::allowing_http_loopback();
    let body = r#"{"keys":[]}"#;
    for (i, content_type) in [
        "application/json",
        "application/jwk-set+json",
        "application/json; charset=utf-8",
    ]
    .into_iter()
    .enumerate()
    {
        server.set(&format!("/ok{i}"), Canned::raw(content_type, body));
        assert!(
            fetch.get(&server.url(&format!("/ok{i}")), CAP).await.is_ok(),
            "{content_type}"
        );
    }
    for (i, content_type) in ["text/html", "text/plain", "application/octet-stream", "text/json+html"]
        .into_iter()
        .enumerate()
    {
        server.set(&format!("/bad{i}"), Canned::raw(content_type, body));
        assert_eq!(
            fetch.get(&server.url(&format!("/bad{i}")), CAP).await.unwrap_err(),
            FetchError::ContentType,
            "{content_type}"
        );
    }
    server.set("/none", Canned::status(200));
    assert_eq!(
        fetch.get(&server.url("/none"), CAP).await.unwrap_err(),
        FetchError::ContentType
    );
}

#[tokio::test]
async fn compressed_bodies_are_refused_not_decompressed() {
    let server = IssuerServer::start().await;
    let fetch = ReqwestFetch::allowing_http_loopback();
    server.set(
        "/gzip",
        Canned::raw("application/json", vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0]).header("content-encoding", "gzip"),
    );
    assert_eq!(
        fetch.get(&server.url("/gzip"), CAP).await.unwrap_err(),
        FetchError::ContentType
    );
}

#[tokio::test]
async fn error_statuses_fail() {
    let server = IssuerServer::start().await;
    let fetch = ReqwestFetch::allowing_http_loopback();
    server.set("/500", Canned::status(500));
    assert_eq!(
        fetch.get(&server.url("/500"), CAP).await.unwrap_err(),
        FetchError::Status(500)
    );
    assert_eq!(
        fetch.get(&server.url("/missing"), CAP).await.unwrap_err(),
        FetchError::Status(404)
    );
}

#[tokio::test]
async fn a_stalled_server_hits_the_total_timeout() {
    let server = IssuerServer::start().await;
    let fetch = ReqwestFetch::with_policy({
        let mut policy = FetchPolicy::default();
        policy.allow_http_loopback = true;
        policy.timeout = Duration::from_millis(300);
        policy
    });
    server.set(
        "/slow",
        Canned::json(&serde_json::json!({})).delayed(Duration::from_secs(5)),
    );
    let started = Instant::now();
    assert_eq!(
        fetch.get(&server.url("/slow"), CAP).await.unwrap_err(),
        FetchError::Timeout
    );
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn cache_control_max_age_is_reported() {
    let server = IssuerServer::start().await;
    let fetch = ReqwestFetch::allowing_http_loopback();
    server.set(
        "/c",
        Canned::json(&serde_json::json!({})).header("cache-control", "public, max-age=120"),
    );
    assert_eq!(fetch.get(&server.url("/c"), CAP).await.unwrap().max_age, Some(120));
}

#[tokio::test]
async fn the_strict_fetcher_refuses_the_loopback_server_without_contacting_it() {
    let server = IssuerServer::start().await;
    server.set("/k", Canned::json(&serde_json::json!({})));
    let fetch = ReqwestFetch::new();
    assert_eq!(
        fetch.get(&server.url("/k"), CAP).await.unwrap_err(),
        FetchError::Refused
    );
    let https_loopback = format!("https://127.0.0.1:{}/k", server.addr.port());
    assert_eq!(fetch.get(&https_loopback, CAP).await.unwrap_err(), FetchError::Refused);
    assert_eq!(server.total_hits(), 0);
}
