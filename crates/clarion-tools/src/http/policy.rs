//! Which addresses an HTTP tool may connect to: the SSRF guard.
//!
//! A flow's URL template plus a model-chosen argument, or a redirect from an API the flow
//! trusts, can point a request at the machine Clarion runs on (`127.0.0.1`, a database on
//! `10.0.0.5`, the cloud metadata service at `169.254.169.254`). Such addresses are refused
//! unless the tool says `allow_private_network = true`.
//!
//! The check is on *addresses*, not names: a host name is resolved by Clarion's own resolver
//! (see `resolve`), every address it returns is checked, and the
//! connection goes only to those checked addresses — so a DNS answer cannot change between
//! the check and the connection. URLs whose host is an IP literal (including spellings such
//! as `http://2130706433/`, which URL parsing turns into `127.0.0.1`) are checked before the
//! request and before each redirect is followed.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused, or `None` for a public unicast address.
#[must_use]
pub fn refusal_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => "unspecified",
        (127, ..) => "loopback",
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => "private",
        (100, 64..=127, _) => "shared (carrier-grade NAT)",
        (169, 254, _) => "link-local",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, ..) => "multicast",
        (192, 0, 0) | (240..=255, ..) => "reserved",
        _ => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    // Addresses that carry an IPv4 address are judged by it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64
        return v4_reason(embedded(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        // 6to4
        return v4_reason(embedded(segments[1], segments[2]));
    }
    Some(match segments {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback",
        [0x100, 0, 0, 0, ..] => "discard-only",
        [0x2001, 0xdb8, ..] => "documentation",
        // IPv4-compatible (deprecated) and other addresses under ::/96, and Teredo, which
        // tunnels to an obfuscated IPv4 address.
        [0, 0, 0, 0, 0, 0, ..] | [0x2001, 0, ..] => "reserved",
        [first, ..] if first & 0xfe00 == 0xfc00 => "unique-local",
        [first, ..] if first & 0xffc0 == 0xfe80 => "link-local",
        [first, ..] if first & 0xffc0 == 0xfec0 => "site-local",
        [first, ..] if first & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

/// A request refused by the network policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The host as written in the URL.
    pub host: String,
    /// The address that was refused.
    pub address: IpAddr,
    /// What kind of address it is, e.g. `loopback`.
    pub reason: &'static str,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<IpAddr>() == Ok(self.address) {
            write!(f, "{} is a {} address", self.address, self.reason)?;
        } else {
            write!(
                f,
                "`{}` resolves to {}, a {} address",
                self.host, self.address, self.reason
            )?;
        }
        f.write_str(
            "; requests to private, loopback and link-local addresses are refused unless the \
             tool sets `allow_private_network = true`",
        )
    }
}

impl std::error::Error for Refused {}

/// Where HTTP tools may connect. The default refuses every non-public address for tools
/// without `allow_private_network = true`.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    trusted: Vec<IpAddr>,
    hosts: HashMap<String, Vec<IpAddr>>,
}

impl NetworkPolicy {
    /// The default policy.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Always allows `address`, for every tool (an internal service the deployment vouches
    /// for, or a test server).
    #[must_use]
    pub fn trust(mut self, address: IpAddr) -> Self {
        self.trusted.push(address);
        self
    }

    /// Resolves `host` to `addresses` instead of asking DNS, like an `/etc/hosts` entry of
    /// Clarion's own. The addresses are still checked.
    #[must_use]
    pub fn with_host(mut self, host: &str, addresses: &[IpAddr]) -> Self {
        self.hosts
            .insert(host.to_ascii_lowercase(), addresses.to_vec());
        self
    }

    /// The fixed addresses of `host`, if it has some.
    #[must_use]
    pub fn fixed(&self, host: &str) -> Option<&[IpAddr]> {
        self.hosts
            .get(&host.to_ascii_lowercase())
            .map(Vec::as_slice)
    }

    /// Whether a tool may connect to `address` (reached through `host`).
    pub fn check(&self, host: &str, address: IpAddr, allow_private: bool) -> Result<(), Refused> {
        if allow_private || self.trusted.contains(&address) {
            return Ok(());
        }
        match refusal_reason(address) {
            None => Ok(()),
            Some(reason) => Err(Refused {
                host: host.to_owned(),
                address,
                reason,
            }),
        }
    }

    /// Checks a URL whose host is an IP literal; names are checked when resolved.
    pub fn check_url(&self, url: &reqwest::Url, allow_private: bool) -> Result<(), Refused> {
        // URL parsing has normalized IPv4 literals to dotted quads and wrapped IPv6 ones
        // in brackets, so a host that parses as an address is one.
        let host = url.host_str().unwrap_or_default();
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<IpAddr>() {
            Ok(address) => self.check(host, address, allow_private),
            Err(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> Option<&'static str> {
        refusal_reason(text.parse().unwrap_or_else(|e| panic!("{text}: {e}")))
    }

    #[test]
    fn every_non_public_range_is_refused() {
        for (address, expected) in [
            ("0.0.0.0", "unspecified"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("169.254.169.254", "link-local"),
            ("192.0.2.1", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::127.0.0.1", "reserved"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:c0a8:0101::1", "private"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("2001::1", "reserved"),
        ] {
            assert_eq!(reason(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for address in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert_eq!(reason(address), None, "{address}");
        }
    }

    #[test]
    fn trust_and_the_flag_open_the_policy() {
        let loopback: IpAddr = Ipv4Addr::LOCALHOST.into();
        let policy = NetworkPolicy::new();
        let refused = policy
            .check("localhost", loopback, false)
            .err()
            .unwrap_or_else(|| panic!("loopback allowed"));
        assert!(
            refused
                .to_string()
                .starts_with("`localhost` resolves to 127.0.0.1, a loopback address;")
        );
        assert!(policy.check("localhost", loopback, true).is_ok());
        assert!(
            policy
                .clone()
                .trust(loopback)
                .check("x", loopback, false)
                .is_ok()
        );
        let url: reqwest::Url = "http://2130706433:8080/x"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let refused = policy
            .check_url(&url, false)
            .err()
            .unwrap_or_else(|| panic!("a decimal loopback literal passed"));
        assert!(
            refused
                .to_string()
                .starts_with("127.0.0.1 is a loopback address")
        );
        let url: reqwest::Url = "http://[::1]/".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(policy.check_url(&url, false).is_err());
        let url: reqwest::Url = "https://example.com/"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(policy.check_url(&url, false).is_ok());
    }
}
