//! Lists of addresses and CIDR ranges, IPv4 and IPv6, as APISIX's
//! `ip_def` accepts them (`ip-restriction`, `real-ip`).

use std::net::IpAddr;

use ipnet::IpNet;
use weir_plugin::ConfigError;

/// A list of addresses and ranges.
#[derive(Debug, Clone, Default)]
pub struct IpList {
    nets: Vec<IpNet>,
}

impl IpList {
    /// Parses `items`; errors name `field[i]` and quote the item as APISIX
    /// does (`invalid ip address: ...`).
    pub fn parse(field: &str, items: &[String]) -> Result<IpList, ConfigError> {
        if items.is_empty() {
            return Err(ConfigError::at(field, "must not be empty"));
        }
        let nets = items
            .iter()
            .enumerate()
            .map(|(i, s)| {
                parse_one(s).ok_or_else(|| {
                    ConfigError::at(format!("{field}[{i}]"), format!("invalid ip address: {s}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(IpList { nets })
    }

    /// True when `ip` is one of the addresses or in one of the ranges. An
    /// IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, a dual-stack socket's
    /// view of an IPv4 client) matches as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

/// An address (`192.0.2.1`, `2001:db8::1`) or a range (`10.0.0.0/8`,
/// `2001:db8::/32`; host bits may be set, as nginx allows).
fn parse_one(s: &str) -> Option<IpNet> {
    match s.split_once('/') {
        None => s.parse::<IpAddr>().ok().map(IpNet::from),
        Some((addr, prefix)) => {
            let addr: IpAddr = addr.parse().ok()?;
            if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            IpNet::new(addr, prefix.parse().ok()?).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> IpList {
        let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        IpList::parse("whitelist", &items).unwrap()
    }

    #[test]
    fn addresses_and_ranges() {
        let l = list(&["192.0.2.1", "10.1.2.3/8", "2001:db8::/32", "::1"]);
        for yes in [
            "192.0.2.1",
            "10.200.0.1",
            "2001:db8::5",
            "::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(l.contains(yes.parse().unwrap()), "{yes}");
        }
        for no in ["192.0.2.2", "11.0.0.1", "2001:db9::1", "::2"] {
            assert!(!l.contains(no.parse().unwrap()), "{no}");
        }
        assert!(list(&["0.0.0.0/0"]).contains("203.0.113.9".parse().unwrap()));
        for bad in [
            "1.2.3",
            "1.2.3.4/33",
            "::/129",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "example.com",
        ] {
            let e = IpList::parse("blacklist", &[bad.to_string()]).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("blacklist[0]: invalid ip address: {bad}")
            );
        }
        assert!(IpList::parse("whitelist", &[]).is_err());
    }
}
