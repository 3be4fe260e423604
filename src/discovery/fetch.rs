//! The HTTP side of discovery.

use std::time::Duration;

use bytes::Bytes;

use super::BoxFuture;
use crate::error::Error;

/// A fetched document.
#[derive(Debug, Clone)]
pub struct FetchedDocument {
    /// The body, at most the requested number of bytes.
    pub body: Bytes,
    /// `Cache-Control: max-age`, when the server sent one.
    pub max_age: Option<u64>,
}

impl FetchedDocument {
    /// A document with no caching hint.
    pub fn new(body: impl Into<Bytes>) -> Self {
        FetchedDocument {
            body: body.into(),
            max_age: None,
        }
    }
}

/// Why a fetch failed. Never shown to clients: every variant becomes the same
/// `invalid_key` answer, so failures cannot be told apart from outside (no port-scanning
/// oracle).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL or the address it resolved to is not admitted.
    #[error("destination refused by egress policy")]
    Refused,
    /// Connection, TLS or protocol failure.
    #[error("transport failure")]
    Transport,
    /// The total time limit passed.
    #[error("timed out")]
    Timeout,
    /// A status other than 200 (redirects included: they are never followed).
    #[error("unexpected status {0}")]
    Status(u16),
    /// The body exceeded the cap.
    #[error("response too large")]
    TooLarge,
    /// The content type is not JSON.
    #[error("unexpected content type")]
    ContentType,
}

impl FetchError {
    /// The client-facing error: one generic `invalid_key` for every cause.
    pub fn into_error(self) -> Error {
        Error::invalid_key("the signer's keys could not be fetched")
    }
}

/// Parses `max-age` out of a `Cache-Control` value.
pub(crate) fn max_age(cache_control: &str) -> Option<u64> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        name.eq_ignore_ascii_case("max-age")
            .then(|| value.trim_matches('"').parse().ok())?
    })
}

/// The default fetcher: `reqwest` with rustls, no redirects, no proxies from the
/// environment, a total timeout, a streamed body cap and a JSON content-type check.
#[cfg(feature = "reqwest")]
#[derive(Debug, Clone)]
pub struct ReqwestFetch {
    client: reqwest::Client,
}

#[cfg(feature = "reqwest")]
impl ReqwestFetch {
    /// Default limits: 2 s to connect, 5 s in total, https only.
    pub fn new() -> Self {
        Self::build(false, Duration::from_secs(5))
    }

    /// Also allows plain http (for loopback development servers; the identifier policy
    /// decides which hosts are reachable at all).
    pub fn allowing_http() -> Self {
        Self::build(true, Duration::from_secs(5))
    }

    /// With a different total timeout.
    pub fn with_timeout(http: bool, timeout: Duration) -> Self {
        Self::build(http, timeout)
    }

    fn build(http: bool, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(!http)
            .connect_timeout(Duration::from_secs(2).min(timeout))
            .timeout(timeout)
            .user_agent(concat!("tower-aauth/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        ReqwestFetch { client }
    }
}

#[cfg(feature = "reqwest")]
impl Default for ReqwestFetch {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "reqwest")]
impl super::Fetch for ReqwestFetch {
    fn get<'a>(&'a self, url: &'a str, max_bytes: usize) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        Box::pin(async move {
            let mut response = self
                .client
                .get(url)
                .header(http::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| {
                    if e.is_timeout() {
                        FetchError::Timeout
                    } else {
                        FetchError::Transport
                    }
                })?;
            if response.status() != http::StatusCode::OK {
                return Err(FetchError::Status(response.status().as_u16()));
            }
            let headers = response.headers();
            let content_type = headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let essence = content_type.split(';').next().unwrap_or_default().trim();
            if !(essence.eq_ignore_ascii_case("application/json") || essence.to_ascii_lowercase().ends_with("+json")) {
                return Err(FetchError::ContentType);
            }
            if response.content_length().is_some_and(|len| len > max_bytes as u64) {
                return Err(FetchError::TooLarge);
            }
            let max_age = headers
                .get(http::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok())
                .and_then(max_age);
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| {
                if e.is_timeout() {
                    FetchError::Timeout
                } else {
                    FetchError::Transport
                }
            })? {
                if body.len() + chunk.len() > max_bytes {
                    return Err(FetchError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(FetchedDocument {
                body: Bytes::from(body),
                max_age,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read() {
        assert_eq!(max_age("public, max-age=300"), Some(300));
        assert_eq!(max_age("no-store"), None);
    }
}
