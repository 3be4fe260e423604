//! RFC 9530 `Content-Digest`: the signature protects only the header, so when it is
//! covered the body actually received is hashed and compared.
//!
//! Accepted algorithms are `sha-256` and `sha-512`. Every accepted algorithm present must
//! match (no downgrade by adding a wrong strong digest beside a right one); at least one
//! must be present; members with other algorithms are ignored.

use sfv::{BareItem, ListEntry};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::parse_dictionary_strict;
use crate::error::Error;

/// Checks `field` (the `Content-Digest` value) against `body`.
pub fn verify_content_digest(field: &str, body: &[u8]) -> Result<(), Error> {
    let dict =
        parse_dictionary_strict(field).ok_or(Error::invalid_signature("Content-Digest is not a valid dictionary"))?;
    let mut checked_any = false;
    for (algorithm, entry) in &dict {
        let expected = match entry {
            ListEntry::Item(sfv::Item {
                bare_item: BareItem::ByteSequence(bytes),
                ..
            }) => bytes,
            _ => {
                return Err(Error::invalid_signature(
                    "a Content-Digest member is not a byte sequence",
                ));
            }
        };
        let matches = match algorithm.as_str() {
            "sha-256" => bool::from(Sha256::digest(body).as_slice().ct_eq(expected)),
            "sha-512" => bool::from(Sha512::digest(body).as_slice().ct_eq(expected)),
            _ => continue,
        };
        if !matches {
            return Err(Error::invalid_signature("the body does not match Content-Digest"));
        }
        checked_any = true;
    }
    if !checked_any {
        return Err(Error::invalid_signature(
            "Content-Digest has no sha-256 or sha-512 member",
        ));
    }
    Ok(())
}

/// `sha-256=:<base64>:` for `body`, as a signer would send it.
pub fn content_digest_sha256(body: &[u8]) -> String {
    format!("sha-256=:{}:", super::encode_signature(&Sha256::digest(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"hello": "world"}"#;

    #[test]
    fn rfc9530_appendix_d_digests_verify() {
        verify_content_digest("sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:", BODY).unwrap();
        verify_content_digest(
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
            BODY,
        )
        .unwrap();
    }

    #[test]
    fn a_changed_body_fails() {
        assert!(verify_content_digest("sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:", b"{}").is_err());
    }

    #[test]
    fn a_wrong_strong_digest_beside_a_right_one_fails() {
        let field = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, sha-512=:AAAA:";
        assert!(verify_content_digest(field, BODY).is_err());
    }

    #[test]
    fn weak_algorithms_alone_fail() {
        assert!(verify_content_digest("md5=:AAAA:, crc32c=:AAAA:", BODY).is_err());
    }

    #[test]
    fn duplicate_members_fail() {
        let field = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, sha-256=:AAAA:";
        assert!(verify_content_digest(field, BODY).is_err());
    }

    #[test]
    fn emitted_digest_round_trips() {
        verify_content_digest(&content_digest_sha256(BODY), BODY).unwrap();
    }
}
