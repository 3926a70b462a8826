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
        // Digits and dots, or hex digits and colons: read in place (std's parser costs
        // several times more, which shows in a 50k-address ban); anything else goes to std.
        let b = a.as_bytes();
        let addr: Option<IpAddr> = if b.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
            parse_v4(b).map(IpAddr::V4)
        } else if b.iter().all(|c| c.is_ascii_hexdigit() || *c == b':') {
            parse_v6_hex(b).map(IpAddr::V6)
        } else {
            a.parse().ok()
        };
        let addr = addr
            .ok_or_else(|| NetParseError(format!("{s:?} is not an IPv4/IPv6 address or CIDR")))?;
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

impl IpNet {
    /// Appends the address as `Display` writes it (f2b-ctl names the 50k addresses of a
    /// bulk ban, a jail logs every ban: the formatting machinery cost more than the rest).
    pub fn push_to(&self, out: &mut String) {
        let mut buf = [0u8; 64];
        let n = self.render(&mut buf);
        // Only ASCII digits, hex digits, '.', ':' and '/' were written.
        out.push_str(std::str::from_utf8(&buf[..n]).unwrap_or(""));
    }

    /// Writes the address into `buf`, returning its length (at most 45 + 4 bytes).
    fn render(&self, buf: &mut [u8; 64]) -> usize {
        let mut n = match self.addr {
            IpAddr::V4(a) => put_v4(buf, 0, a.octets()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => {
                    buf[..7].copy_from_slice(b"::ffff:");
                    put_v4(buf, 7, v4.octets())
                }
                None => put_v6(buf, a.segments()),
            },
        };
        if !self.is_host() {
            buf[n] = b'/';
            n = put_dec(buf, n + 1, self.len);
        }
        n
    }
}

/// `v` in decimal at `buf[n..]`; returns the end.
fn put_dec(buf: &mut [u8], mut n: usize, v: u8) -> usize {
    if v >= 100 {
        buf[n] = b'0' + v / 100;
        n += 1;
    }
    if v >= 10 {
        buf[n] = b'0' + v / 10 % 10;
        n += 1;
    }
    buf[n] = b'0' + v % 10;
    n + 1
}

/// A dotted quad at `buf[n..]`; returns the end.
fn put_v4(buf: &mut [u8], mut n: usize, o: [u8; 4]) -> usize {
    for (k, o) in o.into_iter().enumerate() {
        if k > 0 {
            buf[n] = b'.';
            n += 1;
        }
        n = put_dec(buf, n, o);
    }
    n
}

/// Hex groups `gs` joined by ':' at `buf[n..]`, each lowercase without leading zeros;
/// returns the end.
fn put_groups(buf: &mut [u8], mut n: usize, gs: &[u16]) -> usize {
    for (k, &g) in gs.iter().enumerate() {
        if k > 0 {
            buf[n] = b':';
            n += 1;
        }
        let mut shift = 12;
        while shift > 0 && g >> shift == 0 {
            shift -= 4;
        }
        loop {
            buf[n] = b"0123456789abcdef"[usize::from(g >> shift & 0xf)];
            n += 1;
            if shift == 0 {
                break;
            }
            shift -= 4;
        }
    }
    n
}

/// IPv6 (not IPv4-mapped) as std writes it (RFC 5952): the first longest run of two or
/// more zero groups as `::`. Returns the length.
fn put_v6(buf: &mut [u8], seg: [u16; 8]) -> usize {
    let (mut best, mut best_len, mut cur, mut cur_len) = (0, 0, 0, 0);
    for (i, &g) in seg.iter().enumerate() {
        if g == 0 {
            if cur_len == 0 {
                cur = i;
            }
            cur_len += 1;
            if cur_len > best_len {
                (best, best_len) = (cur, cur_len);
            }
        } else {
            cur_len = 0;
        }
    }
    if best_len > 1 {
        let n = put_groups(buf, 0, &seg[..best]);
        buf[n..n + 2].copy_from_slice(b"::");
        put_groups(buf, n + 2, &seg[best + best_len..])
    } else {
        put_groups(buf, 0, &seg)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        let n = self.render(&mut buf);
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

/// A dotted quad as `Ipv4Addr::from_str` reads it: four decimal octets of 1 to 3 digits,
/// at most 255, no leading zero.
pub fn parse_v4(b: &[u8]) -> Option<std::net::Ipv4Addr> {
    read_v4(b, 0).and_then(|(end, ip)| (end == b.len()).then_some(ip).flatten())
}

/// `(?:[0-9]{1,3}\.){3}[0-9]{1,3}` at `pos` of `t`: where it ends, and the address when every
/// octet is one [`parse_v4`] takes (at most 255, no leading zero).
#[inline]
pub fn read_v4(t: &[u8], pos: usize) -> Option<(usize, Option<std::net::Ipv4Addr>)> {
    let mut i = pos;
    let mut ip = 0u32;
    let mut ok = true;
    for k in 0..4 {
        if k > 0 {
            if t.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let s = i;
        let mut v = 0u32;
        while i < t.len() && i - s < 3 && t[i].is_ascii_digit() {
            v = v * 10 + u32::from(t[i] - b'0');
            i += 1;
        }
        if i == s {
            return None;
        }
        ok &= v <= 255 && (i - s == 1 || t[s] != b'0');
        ip = ip << 8 | (v & 0xff);
    }
    Some((i, ok.then(|| std::net::Ipv4Addr::from(ip))))
}

/// IPv6 of hex groups as `Ipv6Addr::from_str` reads it, for `b` of hex digits and colons
/// only (embedded IPv4 is left to the std parser): groups of 1 to 4 hex digits separated by `:`, either 8 of
/// them or at most 7 around one `::`.
pub fn parse_v6_hex(b: &[u8]) -> Option<std::net::Ipv6Addr> {
    // One pass: groups in order, and where the `::` was (the groups after it move to the
    // end).
    let mut g = [0u16; 8];
    let (mut n, mut gap, mut i) = (0usize, None, 0usize);
    if b.starts_with(b"::") {
        if b.len() == 2 {
            return Some(std::net::Ipv6Addr::UNSPECIFIED);
        }
        gap = Some(0);
        i = 2;
    }
    loop {
        let start = i;
        let mut v = 0u16;
        while i - start < 4 {
            let Some(d) = b.get(i).and_then(|&c| char::from(c).to_digit(16)) else {
                break;
            };
            v = v << 4 | d as u16;
            i += 1;
        }
        if i == start || n == 8 {
            return None;
        }
        g[n] = v;
        n += 1;
        if i == b.len() {
            break;
        }
        // A fifth digit or another byte, else `:`, then maybe the one `::`.
        if b[i] != b':' || i + 1 == b.len() {
            return None;
        }
        i += 1;
        if b[i] == b':' {
            if gap.is_some() {
                return None;
            }
            gap = Some(n);
            i += 1;
            if i == b.len() {
                break;
            }
        }
    }
    match gap {
        None => (n == 8).then(|| std::net::Ipv6Addr::from(g)),
        Some(_) if n > 7 => None,
        Some(k) => {
            let tail = n - k;
            g.copy_within(k..n, 8 - tail);
            g[k..8 - tail].fill(0);
            Some(std::net::Ipv6Addr::from(g))
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

    /// The in-place readers (tested against std on seeded strings in the filter's tests)
    /// and the std fallback give one answer for every way of writing an address.
    #[test]
    fn in_place_and_std_forms_agree() {
        for (s, want) in [
            ("198.18.0.7", "198.18.0.7"),
            ("0.0.0.0/8", "0.0.0.0/8"),
            ("fd00:f2b::2:0:1", "fd00:f2b::2:0:1"),
            ("FD00:0F2B:0000:0000:0000:0002:0000:0001", "fd00:f2b::2:0:1"),
            ("::", "::"),
            ("::ffff:c612:7", "198.18.0.7"),
            ("::ffff:198.18.0.7", "198.18.0.7"),
            ("::198.18.0.7", "::c612:7"),
            ("[fd00:f2b::1]/64", "fd00:f2b::/64"),
            (" 198.18.0.7 ", "198.18.0.7"),
        ] {
            assert_eq!(n(s).to_string(), want, "{s:?}");
        }
        for bad in [
            "01.2.3.4",
            "1.2.3.256",
            "fd00:f2b::1::",
            "fd00:12345::",
            "::g",
            "1.2.3.4:5",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?}");
        }
    }

    /// The in-place writer says what std's Display says, on seeded addresses with runs of
    /// zero groups of every length and place, IPv4-mapped ones and prefixes.
    #[test]
    fn display_agrees_with_std() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let r = next();
            let mut seg = [0u16; 8];
            for (i, g) in seg.iter_mut().enumerate() {
                // Each group zero with probability 1/2, small or full otherwise.
                *g = match (r >> (i * 3)) & 7 {
                    0..=3 => 0,
                    4 => (next() & 0xf) as u16,
                    5 => (next() & 0xff) as u16,
                    _ => next() as u16,
                };
            }
            if r >> 40 & 15 == 0 {
                seg[..6].copy_from_slice(&[0, 0, 0, 0, 0, 0xffff]);
            }
            let a = std::net::Ipv6Addr::from(seg);
            let host = IpNet::host(IpAddr::V6(a));
            assert_eq!(host.to_string(), a.to_string(), "{seg:x?}");
            let v4 = std::net::Ipv4Addr::from(next() as u32);
            assert_eq!(IpNet::host(IpAddr::V4(v4)).to_string(), v4.to_string());
            let len = (next() % 129) as u8;
            let p = IpNet::new(IpAddr::V6(a), len).expect("len <= 128");
            let want = if len == 128 {
                p.addr().to_string()
            } else {
                format!("{}/{len}", p.addr())
            };
            assert_eq!(p.to_string(), want);
        }
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
