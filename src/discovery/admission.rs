//! Egress admission: which identifiers, URLs and addresses discovery may reach.
//!
//! Everything here works on raw strings and numbers, before any URL parser or resolver
//! sees the input. URL parsers normalise (`https://2130706433` and `https://127.1` become
//! `127.0.0.1`, `\` becomes `/`, `:443` disappears), so a check made after parsing checks
//! something other than what the attacker sent. The grammar admitted is deliberately
//! narrow: `https://` + lower-case LDH DNS name, nothing else, unless the development flag
//! admits plain http on a literal loopback origin.
//!
//! Resolved addresses are checked one by one ([`is_public_address`]): a name is refused
//! if *any* of its addresses is special-purpose, so a mixed answer cannot smuggle a
//! private address in beside a public one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which identifiers may be fetched from.
#[derive(Debug, Clone, Default)]
pub struct IdentifierPolicy {
    allow_http_loopback: bool,
}

impl IdentifierPolicy {
    /// Identifiers as [AAuth draft -11, "Identifiers"][draft-11] defines them only:
    /// `https://` + lower-case DNS name, nothing else.
    ///
    /// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
    pub fn strict() -> Self {
        IdentifierPolicy::default()
    }

    /// Also admits `http://127.0.0.1:PORT`, `http://localhost:PORT` and `http://[::1]:PORT`
    /// (development only: see [`crate::builder::DangerousAAuthBuilder`]).
    pub fn allowing_http_loopback() -> Self {
        IdentifierPolicy {
            allow_http_loopback: true,
        }
    }

    /// Whether http on loopback is admitted.
    pub fn allows_http_loopback(&self) -> bool {
        self.allow_http_loopback
    }

    /// Checks a server identifier by its raw string, before any URL parser or DNS sees it.
    pub fn admits(&self, identifier: &str) -> bool {
        if let Some(host) = identifier.strip_prefix("https://")
            && is_dns_name(host)
            && host.contains('.')
        {
            return true;
        }
        self.allow_http_loopback && loopback_origin(identifier).is_some()
    }
}

/// A lower-case LDH DNS name: labels of `[a-z0-9-]`, 1–63 characters, not starting or
/// ending with `-`, total ≤ 253, no trailing dot, and a last label starting with a letter
/// (so no spelling of an IP address, such as `127.1` or `2130706433`, passes).
pub fn is_dns_name(host: &str) -> bool {
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let well_formed = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    well_formed
        && host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.as_bytes()[0].is_ascii_lowercase())
}

/// The loopback host of an `http(s)://127.0.0.1[:port]`, `http(s)://localhost[:port]`
/// or `http(s)://[::1][:port]` origin, with its explicit port (if any).
fn loopback_origin(origin: &str) -> Option<(LoopbackHost, Option<u16>)> {
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))?;
    let (host, rest) = if let Some(rest) = authority.strip_prefix("[::1]") {
        (LoopbackHost::V6, rest)
    } else if let Some(rest) = authority.strip_prefix("127.0.0.1") {
        (LoopbackHost::V4, rest)
    } else if let Some(rest) = authority.strip_prefix("localhost") {
        (LoopbackHost::Name, rest)
    } else {
        return None;
    };
    if rest.is_empty() {
        return Some((host, None));
    }
    let port = rest.strip_prefix(':')?;
    let valid = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    let port: u16 = port.parse().ok().filter(|p| valid && *p > 0)?;
    Some((host, Some(port)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoopbackHost {
    V4,
    V6,
    Name,
}

/// A URL that passed admission, split into what the fetcher needs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdmittedUrl {
    /// The host as written (a DNS name, or a loopback host in development mode).
    pub host: String,
    /// The port to connect to.
    pub port: u16,
    /// Addresses known without DNS (loopback in development mode); `None` means the host
    /// must be resolved.
    pub fixed_addresses: Option<Vec<IpAddr>>,
    /// Whether the URL is a loopback origin admitted by the development flag (then, and
    /// only then, loopback addresses are acceptable).
    pub loopback: bool,
}

/// Admits a URL to fetch by its raw string: `https://dns-name/path` (no userinfo, no
/// port, no fragment, printable ASCII only), or, with `allow_http_loopback`, a URL on a
/// literal loopback origin. Everything else, in particular every spelling of an IP
/// address, is refused before any resolver is consulted.
pub fn admit_url(url: &str, allow_http_loopback: bool) -> Option<AdmittedUrl> {
    if !url.bytes().all(|b| (0x21..0x7f).contains(&b)) || url.contains(['\\', '#']) {
        return None;
    }
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if !(path.is_empty() || path.starts_with('/')) {
        return None;
    }
    if scheme == "https" && is_dns_name(authority) && authority.contains('.') {
        return Some(AdmittedUrl {
            host: authority.to_owned(),
            port: 443,
            fixed_addresses: None,
            loopback: false,
        });
    }
    if !allow_http_loopback || !(scheme == "http" || scheme == "https") {
        return None;
    }
    let (host, port) = loopback_origin(&format!("{scheme}://{authority}"))?;
    let default_port = if scheme == "https" { 443 } else { 80 };
    let (name, addresses) = match host {
        LoopbackHost::V4 => ("127.0.0.1", vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
        LoopbackHost::V6 => ("[::1]", vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]),
        // `localhost` is never sent to DNS: it means this machine, whatever a resolver says.
        LoopbackHost::Name => ("localhost", vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
    };
    Some(AdmittedUrl {
        host: name.to_owned(),
        port: port.unwrap_or(default_port),
        fixed_addresses: Some(addresses),
        loopback: true,
    })
}

/// Whether `address` is an ordinary public unicast address. Refuses every RFC 6890
/// special-purpose range that could reach this machine, its network or nobody:
/// unspecified, loopback, private, shared (CGNAT), link-local, multicast, broadcast,
/// reserved, documentation, benchmarking, IETF protocol assignments, unique-local and
/// site-local IPv6; IPv4-mapped, IPv4-compatible, NAT64 (`64:ff9b::/96`) and 6to4
/// (`2002::/16`) addresses are judged by the IPv4 address they embed.
pub fn is_public_address(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    let refused = a == 0                                   // "this network", 0.0.0.0
        || a == 10                                         // private
        || (a == 100 && (64..128).contains(&b))            // shared address space (CGNAT)
        || a == 127                                        // loopback
        || (a == 169 && b == 254)                          // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))             // private
        || (a == 192 && b == 0 && c == 0)                  // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                  // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)                // 6to4 relay anycast
        || (a == 192 && b == 168)                          // private
        || (a == 198 && (b == 18 || b == 19))              // benchmarking
        || (a == 198 && b == 51 && c == 100)               // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)                // TEST-NET-3
        || a >= 224; // multicast, reserved, broadcast
    !refused
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    let segments = address.segments();
    let embedded = |high: u16, low: u16| Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8);
    // `Ipv6Addr::is_loopback` is false for `::ffff:127.0.0.1`: unwrap embedded IPv4 first.
    if let Some(v4) = address.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if segments[..6] == [0; 6] {
        // `::`, `::1` and the deprecated IPv4-compatible `::a.b.c.d`.
        return segments[6] != 0 && is_public_v4(embedded(segments[6], segments[7]));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return is_public_v4(embedded(segments[1], segments[2]));
    }
    let first = segments[0];
    let global_unicast = (0x2000..0x4000).contains(&first);
    // 2001::/23 (IETF protocol assignments, Teredo, benchmarking, ORCHID) and
    // 2001:db8::/32 (documentation).
    let ietf = first == 0x2001 && (segments[1] < 0x0200 || segments[1] == 0x0db8);
    // 3fff::/20 (documentation, RFC 9637).
    let documentation = first == 0x3fff && segments[1] < 0x1000;
    let refused = ietf || documentation;
    global_unicast && !refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_special_purpose_range_is_refused_and_its_neighbours_are_not() {
        let refused = [
            "0.1.2.3",
            "10.1.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::a00:1",
            "::ffff:10.0.0.1",
            "64:ff9b::cb00:7101",
            "2002:a00:1::1",
            "2001:1ff::1",
            "2001::1",
            "2001:db8::1",
            "3fff:fff::1",
            "fe80::1",
            "fc00::1",
            "ff02::1",
        ];
        let public = [
            "1.0.0.1",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.0",
            "101.64.0.1",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.0.1",
            "170.254.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "173.16.0.1",
            "192.1.0.1",
            "193.0.0.1",
            "192.0.1.1",
            "192.0.3.1",
            "192.1.2.1",
            "193.0.2.1",
            "192.88.98.1",
            "192.89.99.1",
            "193.88.99.1",
            "192.0.99.1",
            "192.167.0.1",
            "193.168.0.1",
            "198.17.0.1",
            "198.20.0.1",
            "199.18.0.1",
            "198.51.99.1",
            "198.52.100.1",
            "199.51.100.1",
            "198.1.100.1",
            "203.0.112.1",
            "203.1.113.1",
            "204.0.113.1",
            "223.255.255.255",
            "::808:808",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "64:ff9b::cb00:7001",
            "2002:808:808::1",
            "2001:200::1",
            "2001:db9::1",
            "2003:100::1",
            "3fff:1000::1",
            "2400:100::1",
            "3ffe::1",
        ];
        for address in refused {
            assert!(
                !is_public_address(address.parse().unwrap()),
                "{address} must be refused"
            );
        }
        for address in public {
            assert!(
                is_public_address(address.parse().unwrap()),
                "{address} must be admitted"
            );
        }
    }

    #[test]
    fn only_the_development_policy_allows_http_loopback() {
        assert!(!IdentifierPolicy::strict().allows_http_loopback());
        assert!(!IdentifierPolicy::default().allows_http_loopback());
        assert!(IdentifierPolicy::allowing_http_loopback().allows_http_loopback());
    }

    #[test]
    fn a_dns_name_may_be_253_bytes_and_no_more() {
        // Three 63-byte labels and a last one of `last` bytes: 192 + `last` in all.
        let name = |last: usize| format!("{0}.{0}.{0}.{1}", "a".repeat(63), "a".repeat(last));
        assert_eq!(name(61).len(), 253);
        assert!(is_dns_name(&name(61)));
        assert!(!is_dns_name(&name(62)));
        assert!(!is_dns_name(""));
    }

    #[test]
    fn a_loopback_port_is_one_to_five_plain_digits() {
        let admitted = |url: &str| admit_url(url, true).map(|u| u.port);
        assert_eq!(admitted("http://127.0.0.1:8080/jwks"), Some(8080));
        assert_eq!(admitted("http://127.0.0.1:65535/jwks"), Some(65535));
        for bad in [
            "http://127.0.0.1:+80/jwks",
            "http://127.0.0.1:000080/jwks",
            "http://127.0.0.1:/jwks",
            "http://127.0.0.1:0/jwks",
            "http://127.0.0.1:65536/jwks",
            "http://127.0.0.1:8o/jwks",
        ] {
            assert_eq!(admitted(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_loopback_url_without_a_port_uses_its_schemes_default() {
        let http = admit_url("http://localhost/jwks", true).unwrap();
        assert_eq!((http.host.as_str(), http.port, http.loopback), ("localhost", 80, true));
        let https = admit_url("https://[::1]/jwks", true).unwrap();
        assert_eq!((https.host.as_str(), https.port, https.loopback), ("[::1]", 443, true));
        let https_port = admit_url("https://127.0.0.1:8443/jwks", true).unwrap();
        assert_eq!(https_port.port, 8443);
        assert_eq!(https_port.fixed_addresses, Some(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]));
        assert_eq!(admit_url("ftp://127.0.0.1:21/jwks", true), None);
        assert_eq!(admit_url("https://127.0.0.1:8443/jwks", false), None);
    }

    #[test]
    fn identifiers_by_raw_string() {
        let strict = IdentifierPolicy::strict();
        assert!(strict.admits("https://agent.example"));
        for bad in [
            "http://agent.example",
            "https://agent.example/",
            "https://agent.example:443",
            "https://Agent.example",
            "https://agent.example.",
            "https://127.0.0.1",
            "https://2130706433",
            "https://127.1",
            "https://0x7f.1",
            "https://[::1]",
            "https://u:p@agent.example",
            "https://agent.example\\@evil.example",
            "https://localhost",
            "http://127.0.0.1:8080",
        ] {
            assert!(!strict.admits(bad), "{bad}");
        }
        let dev = IdentifierPolicy::allowing_http_loopback();
        assert!(dev.admits("http://127.0.0.1:8080"));
        assert!(dev.admits("http://localhost:3000"));
        assert!(dev.admits("http://[::1]:9"));
        assert!(!dev.admits("http://127.0.0.2:8080"));
        assert!(!dev.admits("http://127.0.0.1:8080/"));
        assert!(!dev.admits("http://127.0.0.1:0"));
        assert!(!dev.admits("http://127.0.0.1:65536"));
        assert!(!dev.admits("http://127.0.0.1.evil.example"));
        assert!(!dev.admits("http://10.0.0.1:80"));
    }

    #[test]
    fn urls_split_after_admission() {
        let admitted = admit_url("https://a.example/.well-known/jwks.json", false).unwrap();
        assert_eq!(
            (admitted.host.as_str(), admitted.port, admitted.loopback),
            ("a.example", 443, false)
        );
        assert!(admitted.fixed_addresses.is_none());
        let local = admit_url("http://127.0.0.1:8080/jwks", true).unwrap();
        assert_eq!(local.port, 8080);
        assert_eq!(local.fixed_addresses, Some(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]));
        assert!(admit_url("http://127.0.0.1:8080/jwks", false).is_none());
        assert!(admit_url("http://127.0.0.1@evil.example/jwks", true).is_none());
    }

    #[test]
    fn public_addresses_pass() {
        for ok in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:2800:220:1::1",
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
        ] {
            assert!(is_public_address(ok.parse().unwrap()), "{ok}");
        }
    }
}
