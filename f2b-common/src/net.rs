//! IP addresses and CIDR prefixes as bans and allowlists use them.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 prefix with its host bits cleared. A plain address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    len: u8,
}

/// Why a string is not an address or prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetParseError(pub String);

impl fmt::Display for NetParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NetParseError {}

impl IpNet {
    /// Builds a prefix, clearing host bits. `len` must fit the family.
    pub fn new(addr: IpAddr, len: u8) -> Option<IpNet> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return None;
        }
        let addr = match addr {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                IpAddr::V6((bits & mask).into())
            }
        };
        Some(IpNet { addr, len })
    }

    pub fn host(addr: IpAddr) -> IpNet {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        IpNet { addr, len }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn max_len(&self) -> u8 {
        if self.addr.is_ipv4() { 32 } else { 128 }
    }

    /// True for a single address (/32 or /128).
    pub fn is_host(&self) -> bool {
        self.len == self.max_len()
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Address octets in network byte order (4 or 16 of them).
    pub fn octets(&self) -> Vec<u8> {
        match self.addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                IpNet::new(ip, self.len).map(|n| n.addr) == Some(self.addr)
            }
            _ => false,
        }
    }

    /// True when the two prefixes share at least one address.
    pub fn overlaps(&self, other: &IpNet) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

impl FromStr for IpNet {
    type Err = NetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let (a, l) = match t.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (t, None),
        };
        // Accept the bracketed IPv6 form that logs and URLs use.
        let a = a
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(a);
        let addr: IpAddr = a
            .parse()
            .map_err(|_| NetParseError(format!("{s:?} is not an IPv4/IPv6 address or CIDR")))?;
        // An IPv4-mapped IPv6 address is the IPv4 client behind a dual-stack socket.
        let addr = match addr {
            IpAddr::V6(v6) if l.is_none() => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            other => other,
        };
        match l {
            None => Ok(IpNet::host(addr)),
            Some(l) => {
                let len: u8 = l.parse().map_err(|_| {
                    NetParseError(format!("{s:?}: prefix length {l:?} is not a number"))
                })?;
                IpNet::new(addr, len).ok_or_else(|| {
                    NetParseError(format!(
                        "{s:?}: prefix length /{len} is too long for {}",
                        if addr.is_ipv4() {
                            "IPv4 (max /32)"
                        } else {
                            "IPv6 (max /128)"
                        }
                    ))
                })
            }
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

#[cfg(feature = "std")]
impl serde::Serialize for IpNet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "std")]
impl<'de> serde::Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn parses_hosts_and_prefixes() {
        assert_eq!(n("198.18.0.7").to_string(), "198.18.0.7");
        assert!(n("198.18.0.7").is_host());
        assert_eq!(n("198.18.0.7/24").to_string(), "198.18.0.0/24");
        assert_eq!(n("198.18.0.7/32").to_string(), "198.18.0.7");
        assert_eq!(n("fd00:f2b::1").to_string(), "fd00:f2b::1");
        assert_eq!(n("fd00:f2b::1/64").to_string(), "fd00:f2b::/64");
        assert_eq!(n("[fd00:f2b::9]").to_string(), "fd00:f2b::9");
        assert_eq!(n("::ffff:198.18.0.9").to_string(), "198.18.0.9");
        assert_eq!(n("0.0.0.0/0").prefix_len(), 0);
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "nope",
            "1.2.3",
            "1.2.3.4/33",
            "fd00::/129",
            "1.2.3.4/x",
            "1.2.3.4/-1",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn containment() {
        assert!(n("198.18.0.0/15").contains("198.19.255.1".parse().unwrap()));
        assert!(!n("198.18.0.0/16").contains("198.19.0.1".parse().unwrap()));
        assert!(!n("198.18.0.0/16").contains("fd00:f2b::1".parse().unwrap()));
        assert!(n("fd00:f2b::/64").contains("fd00:f2b::abcd".parse().unwrap()));
        assert!(n("198.18.0.0/16").overlaps(&n("198.18.4.0/24")));
        assert!(n("198.18.4.1").overlaps(&n("198.18.0.0/16")));
        assert!(!n("198.18.0.0/16").overlaps(&n("198.20.0.0/16")));
    }
}
