//! The signature-base builder: a `Signature-Input` line, then request headers
//! (`name: value` lines), then the request target. An accepted base is always ASCII.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_aauth::engine::{ParsedInput, RequestTarget, SignatureBase};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.split('\n');
    let Some(input) = lines.next() else { return };
    let Ok(input) = ParsedInput::parse(input, 64) else {
        return;
    };
    let path_and_query = lines.next().unwrap_or("/");
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) else {
            continue;
        };
        headers.append(name, value);
    }
    let target = RequestTarget {
        method: "POST",
        scheme: "https",
        authority: "resource.example",
        path,
        query,
    };
    let mut base = SignatureBase::new();
    if base.build(&input, &target, &headers).is_ok() {
        assert!(
            base.as_bytes()
                .iter()
                .all(|b| *b == b'\n' || *b == b'\t' || (0x20..0x7f).contains(b))
        );
        assert!(base.as_str().ends_with(&input.signature_params));
    }
});
