//! Two gateway replicas of one resource sharing a real `redis-server` (`redis_url`): a
//! signed request admitted by one is a replay at the other. Without `redis-server` on
//! the machine the test is reported ignored (`build.rs` sets `skip_redis`), except under
//! `CI=true`, where it fails.
#![cfg(feature = "redis")]

mod support;

use http::{Method, Request, StatusCode};
use support::redis::RedisServer;
use support::{Gateway, Parties, Upstream, bounded, config, free_port, key_directory, now, send};
use tower_aauth::testing::SignOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
async fn a_request_admitted_by_one_replica_is_a_replay_at_the_other() {
    bounded(async {
        let redis = RedisServer::start();
        let parties = Parties::start().await;
        let upstream = Upstream::start().await;
        let keys = key_directory();
        let (first, second) = (free_port(), free_port());
        let resource = format!("http://127.0.0.1:{first}");
        let extra = format!(
            "upstream = \"http://127.0.0.1:{}\"\nredis_url = \"{}\"",
            upstream.port,
            redis.url()
        );
        let replicas: Vec<Gateway> = [first, second]
            .into_iter()
            .map(|port| {
                Gateway::start(
                    &config(
                        "reverse-proxy",
                        &resource,
                        port,
                        keys.path(),
                        &parties.auth_origin,
                        &extra,
                    ),
                    port,
                )
            })
            .collect();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("{resource}/upload"))
            .body(b"once".to_vec())
            .unwrap();
        parties
            .agent
            .sign_with(&mut request, &parties.source(), now(), &SignOptions::default());
        let (status, _, _) = send(request.clone()).await;
        assert_eq!(status, StatusCode::OK);
        // The same bytes to the other replica (same Host: the same resource).
        let (parts, body) = request.into_parts();
        let mut again = Request::builder()
            .method(parts.method)
            .uri(format!("http://127.0.0.1:{second}/upload"))
            .body(body)
            .unwrap();
        *again.headers_mut() = parts.headers;
        again
            .headers_mut()
            .insert("host", format!("127.0.0.1:{first}").parse().unwrap());
        let (status, headers, body) = send(again).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["detail"], "the signature was already used");
        assert_eq!(headers["signature-error"], "error=invalid_signature");
        assert_eq!(upstream.hits(), 1, "the replay was not forwarded");

        // Control: a fresh signature sent the same way to the second replica is served.
        let mut fresh = Request::builder()
            .method(Method::POST)
            .uri(format!("http://127.0.0.1:{second}/upload"))
            .header("host", format!("127.0.0.1:{first}"))
            .body(b"fresh".to_vec())
            .unwrap();
        let options = SignOptions {
            authority: Some(format!("127.0.0.1:{first}")),
            ..SignOptions::default()
        };
        // Another `created`: the same second would make the very same signature.
        parties
            .agent
            .sign_with(&mut fresh, &parties.source(), now() - 2, &options);
        let (status, _, echoed) = send(fresh).await;
        assert_eq!(status, StatusCode::OK, "{echoed}");
        assert_eq!(upstream.hits(), 2);
        drop(replicas);
    })
    .await;
}
