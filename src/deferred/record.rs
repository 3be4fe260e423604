//! A pending record as pure data: the held request, the poll state, the stored result,
//! and their byte encodings for a shared store. Nothing here runs a request; decoding is
//! strict and bounded, so a record that does not decode is refused, never served.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use serde::{Deserialize, Serialize};

use crate::challenge::Challenge;

/// Bytes of method, URI and kept headers a held request may take; a request with a larger
/// head is not held (it gets the plain `401`, like a body over
/// [`DeferredOptions::max_body_bytes`](crate::DeferredOptions::max_body_bytes)).
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Bytes of status and headers a stored result may take besides its body.
pub(crate) const MAX_RESULT_HEAD_BYTES: usize = 16 * 1024;
/// Bytes counted for a record besides its encoded request or result.
pub(crate) const RECORD_OVERHEAD: usize = 1024;

/// Headers a held request does not keep: its signature was verified and consumed when it
/// was held, and the identity it runs with is the poll's.
const DROPPED: [&str; 3] = [
    crate::names::header::SIGNATURE,
    crate::names::header::SIGNATURE_INPUT,
    crate::names::header::SIGNATURE_KEY,
];

/// The request a poll re-dispatches: method, URI (as the agent sent it), the headers that
/// matter (all but the signature's) and the body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeldRequest {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl HeldRequest {
    /// The request to hold, or `None` when its head is over [`MAX_HEAD_BYTES`].
    pub(crate) fn new(method: Method, uri: Uri, headers: &HeaderMap, body: Bytes) -> Option<Self> {
        let mut kept = HeaderMap::new();
        for (name, value) in headers {
            if !DROPPED.contains(&name.as_str()) {
                kept.append(name.clone(), value.clone());
            }
        }
        let held = HeldRequest {
            method,
            uri,
            headers: kept,
            body,
        };
        (held.head_bytes() <= MAX_HEAD_BYTES).then_some(held)
    }

    fn head_bytes(&self) -> usize {
        self.method.as_str().len() + self.uri.to_string().len() + header_bytes(&self.headers)
    }

    /// Bytes counted against the capacity.
    pub(crate) fn weight(&self) -> u64 {
        (self.head_bytes() + self.body.len() + RECORD_OVERHEAD) as u64
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head_bytes() + self.body.len() + 64);
        out.extend_from_slice(REQUEST_MAGIC);
        put(&mut out, self.method.as_str().as_bytes());
        put(&mut out, self.uri.to_string().as_bytes());
        put_headers(&mut out, &self.headers);
        put(&mut out, &self.body);
        out
    }

    /// Strict decoding: every length within the bounds, nothing left over.
    pub(crate) fn decode(bytes: &[u8], max_body: usize) -> Result<Self, Corrupt> {
        let mut reader = Reader::new(bytes, REQUEST_MAGIC)?;
        let method = Method::from_bytes(reader.take(MAX_HEAD_BYTES)?).map_err(|_| Corrupt("method"))?;
        let uri = Uri::try_from(reader.take(MAX_HEAD_BYTES)?).map_err(|_| Corrupt("uri"))?;
        let headers = reader.headers(MAX_HEAD_BYTES)?;
        let body = Bytes::copy_from_slice(reader.take(max_body)?);
        reader.end()?;
        let held = HeldRequest {
            method,
            uri,
            headers,
            body,
        };
        if held.head_bytes() > MAX_HEAD_BYTES {
            return Err(Corrupt("head over its bound"));
        }
        Ok(held)
    }
}

/// The response of an executed held request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stored {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Stored {
    /// `None` when its headers are over [`MAX_RESULT_HEAD_BYTES`].
    pub(crate) fn new(status: StatusCode, headers: HeaderMap, body: Bytes) -> Option<Self> {
        (header_bytes(&headers) <= MAX_RESULT_HEAD_BYTES).then_some(Stored { status, headers, body })
    }

    pub(crate) fn weight(&self) -> u64 {
        (header_bytes(&self.headers) + self.body.len() + RECORD_OVERHEAD) as u64
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(header_bytes(&self.headers) + self.body.len() + 64);
        out.extend_from_slice(RESULT_MAGIC);
        out.extend_from_slice(&self.status.as_u16().to_be_bytes());
        put_headers(&mut out, &self.headers);
        put(&mut out, &self.body);
        out
    }

    pub(crate) fn decode(bytes: &[u8], max_body: usize) -> Result<Self, Corrupt> {
        let mut reader = Reader::new(bytes, RESULT_MAGIC)?;
        let status = reader.fixed::<2>()?;
        let status = StatusCode::from_u16(u16::from_be_bytes(status)).map_err(|_| Corrupt("status"))?;
        let headers = reader.headers(MAX_RESULT_HEAD_BYTES)?;
        let body = Bytes::copy_from_slice(reader.take(max_body)?);
        reader.end()?;
        Ok(Stored { status, headers, body })
    }
}

/// Where a pending request is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "p", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum Phase {
    /// Held, waiting for a sufficient auth token.
    Waiting,
    /// A poll took it (at `since`, clock seconds) and re-dispatched it.
    Running { since: u64 },
    /// Executed; polls with the auth token `jti` get the stored result until `until`.
    Done { jti: Option<String>, until: u64 },
    /// A terminal answer was given.
    Gone,
}

/// The `auth-token` challenge a record carries (the only kind deferred).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeldChallenge {
    pub(crate) resource_token: String,
    pub(crate) audience: String,
}

impl HeldChallenge {
    pub(crate) fn of(challenge: &Challenge) -> Option<Self> {
        match challenge {
            Challenge::AuthToken {
                resource_token,
                audience,
            } => Some(HeldChallenge {
                resource_token: resource_token.clone(),
                audience: audience.clone(),
            }),
            _ => None,
        }
    }

    pub(crate) fn challenge(&self) -> Challenge {
        Challenge::AuthToken {
            resource_token: self.resource_token.clone(),
            audience: self.audience.clone(),
        }
    }
}

/// The small, changing part of a record (every time in [`Clock`](crate::Clock) seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Status {
    /// The thumbprint of the key that made the request: the only key that may poll.
    pub(crate) agent_jkt: String,
    pub(crate) challenge: HeldChallenge,
    /// When the challenge's resource token expires.
    pub(crate) challenge_until: u64,
    /// The end of the pending lifetime.
    pub(crate) expires_at: u64,
    /// The polling interval (`Retry-After`), grown by `slow_down`.
    pub(crate) interval: u64,
    pub(crate) last_answer: u64,
    pub(crate) phase: Phase,
}

/// Bytes the status of a record may take encoded (it holds one resource token).
pub(crate) const MAX_STATUS_BYTES: usize = 16 * 1024;

impl Status {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Corrupt> {
        if bytes.len() > MAX_STATUS_BYTES {
            return Err(Corrupt("status over its bound"));
        }
        serde_json::from_slice(bytes).map_err(|_| Corrupt("status"))
    }
}

/// A new record: its status and the request it holds.
pub(crate) struct NewRecord {
    pub(crate) status: Status,
    pub(crate) request: Arc<HeldRequest>,
}

/// A record (or a store's reply) that does not decode; what part, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) &'static str);

const REQUEST_MAGIC: &[u8] = b"AAQ1";

const RESULT_MAGIC: &[u8] = b"AAR1";

fn header_bytes(headers: &HeaderMap) -> usize {
    headers.iter().map(|(n, v)| n.as_str().len() + v.len()).sum()
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every field is bounded far below 4 GiB before it is encoded.
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    out.extend_from_slice(&u32::try_from(headers.len()).unwrap_or(u32::MAX).to_be_bytes());
    for (name, value) in headers {
        put(out, name.as_str().as_bytes());
        put(out, value.as_bytes());
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], magic: &[u8]) -> Result<Self, Corrupt> {
        match bytes.strip_prefix(magic) {
            Some(rest) => Ok(Reader { rest }),
            None => Err(Corrupt("unknown encoding")),
        }
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Corrupt> {
        let (head, rest) = self.rest.split_first_chunk::<N>().ok_or(Corrupt("truncated"))?;
        self.rest = rest;
        Ok(*head)
    }

    fn take(&mut self, max: usize) -> Result<&'a [u8], Corrupt> {
        let len = u32::from_be_bytes(self.fixed::<4>()?) as usize;
        if len > max {
            return Err(Corrupt("field over its bound"));
        }
        if len > self.rest.len() {
            return Err(Corrupt("truncated"));
        }
        let (field, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(field)
    }

    fn headers(&mut self, max: usize) -> Result<HeaderMap, Corrupt> {
        let count = u32::from_be_bytes(self.fixed::<4>()?) as usize;
        // Each header takes at least 8 bytes of lengths.
        if count > self.rest.len() / 8 {
            return Err(Corrupt("header count"));
        }
        let mut headers = HeaderMap::with_capacity(count);
        let mut total = 0usize;
        for _ in 0..count {
            let name = HeaderName::from_bytes(self.take(max)?).map_err(|_| Corrupt("header name"))?;
            let value = HeaderValue::from_bytes(self.take(max)?).map_err(|_| Corrupt("header value"))?;
            total += name.as_str().len() + value.len();
            if total > max {
                return Err(Corrupt("headers over their bound"));
            }
            headers.append(name, value);
        }
        Ok(headers)
    }

    fn end(&self) -> Result<(), Corrupt> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Corrupt("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> HeldRequest {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-many", HeaderValue::from_static("1"));
        headers.append("x-many", HeaderValue::from_static("2"));
        headers.insert("signature", HeaderValue::from_static("sig=:AAAA:"));
        HeldRequest::new(
            Method::POST,
            Uri::from_static("https://resource.example/report?q=1"),
            &headers,
            Bytes::from_static(b"{\"title\":\"q3\"}"),
        )
        .unwrap()
    }

    #[test]
    fn a_held_request_keeps_all_but_the_signature_headers_and_round_trips() {
        let held = request();
        assert!(held.headers.get("signature").is_none());
        assert_eq!(held.headers.get_all("x-many").iter().count(), 2);
        assert_eq!(HeldRequest::decode(&held.encode(), 1024), Ok(held));
    }

    #[test]
    fn a_result_round_trips() {
        let mut headers = HeaderMap::new();
        headers.insert("x-handler", HeaderValue::from_static("ran"));
        let stored = Stored::new(StatusCode::CREATED, headers, Bytes::from_static(b"done")).unwrap();
        assert_eq!(Stored::decode(&stored.encode(), 1024), Ok(stored));
    }

    #[test]
    fn every_truncation_and_every_flipped_length_is_refused() {
        let encoded = request().encode();
        for len in 0..encoded.len() {
            assert!(HeldRequest::decode(&encoded[..len], 1024).is_err(), "{len}");
        }
        let mut longer = encoded.clone();
        longer.push(0);
        assert_eq!(HeldRequest::decode(&longer, 1024), Err(Corrupt("trailing bytes")));
        // The body's length beyond the bound given at decoding.
        assert_eq!(HeldRequest::decode(&encoded, 4), Err(Corrupt("field over its bound")));
        // A header count claiming more than the bytes could hold.
        let mut lying = encoded.clone();
        let at = 4 + 4 + 4 + 4 + "https://resource.example/report?q=1".len();
        lying[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(HeldRequest::decode(&lying, 1024).is_err());
        // Another encoding's bytes.
        assert_eq!(HeldRequest::decode(b"AAR1", 1024), Err(Corrupt("unknown encoding")));
        let result = Stored::new(StatusCode::OK, HeaderMap::new(), Bytes::new()).unwrap();
        assert!(HeldRequest::decode(&result.encode(), 1024).is_err());
    }

    #[test]
    fn an_invalid_method_uri_or_header_is_refused() {
        let mut bytes = REQUEST_MAGIC.to_vec();
        put(&mut bytes, b"PO ST");
        put(&mut bytes, b"/report");
        bytes.extend_from_slice(&0u32.to_be_bytes());
        put(&mut bytes, b"");
        assert_eq!(HeldRequest::decode(&bytes, 1024), Err(Corrupt("method")));
        let mut bytes = REQUEST_MAGIC.to_vec();
        put(&mut bytes, b"POST");
        put(&mut bytes, b"/report");
        bytes.extend_from_slice(&1u32.to_be_bytes());
        put(&mut bytes, b"bad name");
        put(&mut bytes, b"v");
        put(&mut bytes, b"");
        assert_eq!(HeldRequest::decode(&bytes, 1024), Err(Corrupt("header name")));
    }

    #[test]
    fn a_head_over_its_bound_is_not_held() {
        let mut headers = HeaderMap::new();
        headers.insert("x-big", HeaderValue::from_str(&"a".repeat(MAX_HEAD_BYTES)).unwrap());
        assert!(HeldRequest::new(Method::GET, Uri::from_static("/data"), &headers, Bytes::new()).is_none());
    }

    #[test]
    fn a_status_round_trips_and_anything_else_is_refused() {
        let status = Status {
            agent_jkt: "jkt".into(),
            challenge: HeldChallenge {
                resource_token: "rt".into(),
                audience: "https://as.example".into(),
            },
            challenge_until: 10,
            expires_at: 20,
            interval: 5,
            last_answer: 1,
            phase: Phase::Done {
                jti: Some("at-1".into()),
                until: 30,
            },
        };
        assert_eq!(Status::decode(&status.encode()), Ok(status));
        for bad in [&b""[..], b"{}", b"[1]", b"{\"agent_jkt\":1}", &[0xff; 4]] {
            assert_eq!(Status::decode(bad), Err(Corrupt("status")));
        }
    }
}
