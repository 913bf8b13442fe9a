//! IPv4/IPv6 addresses and CIDR blocks, as APISIX's `remote_addr(s)` and the
//! `ipmatch` operator of `vars` accept them.
//!
//! ```
//! use weir_config::ip_match::IpMatcher;
//! let m = IpMatcher::parse(["10.0.0.0/8", "::1"]).unwrap();
//! assert!(m.contains("10.1.2.3".parse().unwrap()));
//! assert!(m.contains("::1".parse().unwrap()));
//! assert!(!m.contains("192.168.0.1".parse().unwrap()));
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One address (`10.0.0.1`, `::1`) or CIDR block (`10.0.0.0/8`, `fe80::/10`).
///
/// Host bits below the prefix are cleared (`10.0.0.1/8` is `10.0.0.0/8`), as
/// APISIX's matcher does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpCidr {
    addr: IpAddr,
    prefix: u8,
}

impl IpCidr {
    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length: 32 / 128 for a single address.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside the block. An IPv4-mapped IPv6 client address
    /// (`::ffff:10.0.0.1`, seen on dual-stack listeners) matches IPv4 blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, unmap(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask_v4(self.prefix);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask_v6(self.prefix);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn mask_v4(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn mask_v6(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

impl FromStr for IpCidr {
    type Err = String;

    fn from_str(s: &str) -> Result<IpCidr, String> {
        let bad = || format!("{s:?} is not an IPv4/IPv6 address or CIDR block");
        let (addr, prefix) = match s.split_once('/') {
            None => (s, None),
            Some((a, p)) => (a, Some(p)),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                let valid = !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
                match p.parse::<u8>() {
                    Ok(n) if valid && n <= max => n,
                    _ => return Err(format!("{s:?}: the prefix length must be 0..{max}")),
                }
            }
        };
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(prefix))),
        };
        Ok(IpCidr { addr, prefix })
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == full {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl Serialize for IpCidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpCidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CidrVisitor;
        impl Visitor<'_> for CidrVisitor {
            type Value = IpCidr;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an IPv4/IPv6 address or CIDR block")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IpCidr, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(CidrVisitor)
    }
}

/// A set of addresses and CIDR blocks; matches when any of them does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpMatcher {
    blocks: Vec<IpCidr>,
}

impl IpMatcher {
    /// A matcher over `blocks`.
    pub fn new(blocks: Vec<IpCidr>) -> IpMatcher {
        IpMatcher { blocks }
    }

    /// Parses every item; the error names the first one that is invalid.
    pub fn parse<I, S>(items: I) -> Result<IpMatcher, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let blocks = items
            .into_iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(IpMatcher { blocks })
    }

    /// Whether `ip` is in one of the blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.blocks.iter().any(|b| b.contains(ip))
    }

    /// The blocks, as configured.
    pub fn blocks(&self) -> &[IpCidr] {
        &self.blocks
    }

    /// True when no block is listed (matches nothing).
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_blocks() {
        let c: IpCidr = "10.0.0.1/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains(ip("10.255.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.1.1")), "IPv4-mapped client");
        let one: IpCidr = "192.168.1.7".parse().unwrap();
        assert_eq!(one.prefix(), 32);
        assert!(one.contains(ip("192.168.1.7")));
        assert!(!one.contains(ip("192.168.1.8")));
        let v6: IpCidr = "fe80::1/10".parse().unwrap();
        assert_eq!(v6.to_string(), "fe80::/10");
        assert!(v6.contains(ip("febf::1")));
        assert!(!v6.contains(ip("fec0::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: IpCidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!("::/0"
            .parse::<IpCidr>()
            .unwrap()
            .contains(ip("2001:db8::1")));
    }

    #[test]
    fn invalid_forms_are_named() {
        for bad in [
            "",
            "10.0.0",
            "10.0.0.1/33",
            "::1/129",
            "10.0.0.1/",
            "10.0.0.1/+8",
            "[::1]",
            "host",
            "1.2.3.4/8/9",
        ] {
            let e = bad.parse::<IpCidr>().unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn matcher_any() {
        let m = IpMatcher::parse(["127.0.0.1", "2001:db8::/32"]).unwrap();
        assert!(m.contains(ip("127.0.0.1")));
        assert!(m.contains(ip("2001:db8:1::5")));
        assert!(!m.contains(ip("127.0.0.2")));
        assert!(IpMatcher::parse(["nope"]).is_err());
        assert!(!IpMatcher::default().contains(ip("127.0.0.1")));
    }
}
