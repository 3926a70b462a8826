//! Types that cross a boundary in f2b.
//!
//! The kernel <-> agent boundary is raw bytes in BPF maps: the key and value types here are
//! `#[repr(C)]`, have no implicit padding (uninitialised padding would break hash lookups) and
//! keep IP addresses as octet arrays in network byte order. Both the XDP program (no_std,
//! bpfel) and the agent compile this crate, so the layout is written once.
//!
//! With the `std` feature the crate also carries the agent <-> f2b-ctl control protocol
//! ([`proto`]) and the parsers both sides use for durations and addresses ([`net`], [`duration`]).
#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(feature = "std")]
pub mod duration;
#[cfg(feature = "std")]
pub mod net;
#[cfg(feature = "std")]
pub mod proto;

/// Names of the maps in the XDP object; the agent looks them up and pins them by these names.
pub mod maps {
    pub const ALLOW_V4: &str = "F2B_ALLOW_V4";
    pub const ALLOW_V6: &str = "F2B_ALLOW_V6";
    pub const BANS_V4: &str = "F2B_BANS_V4";
    pub const BANS_V6: &str = "F2B_BANS_V6";
    pub const PREFIX_V4: &str = "F2B_PREFIX_V4";
    /// IPv6 prefix bans: a hash map keyed like an LPM trie (prefix length, masked address),
    /// looked up once per length in use ([`PREFIX_V6_LENS`]).
    pub const PREFIX_V6: &str = "F2B_PREFIX_V6";
    /// One `[u64; 2]`: bit `l` of word `l / 64` set when IPv6 prefixes of length `l` may be in
    /// [`PREFIX_V6`].
    pub const PREFIX_V6_LENS: &str = "F2B_PREFIX_V6_LENS";
    pub const COUNTERS: &str = "F2B_COUNTERS";
    /// Every map the agent pins, in a fixed order.
    pub const ALL: [&str; 8] = [
        ALLOW_V4,
        ALLOW_V6,
        BANS_V4,
        BANS_V6,
        PREFIX_V4,
        PREFIX_V6,
        PREFIX_V6_LENS,
        COUNTERS,
    ];
    /// Name of the XDP program (the function name in f2b-ebpf).
    pub const PROGRAM: &str = "f2b_xdp";
}

/// Default capacities; the agent overrides them from config (`maps:` section).
pub const DEFAULT_MAX_BANS: u32 = 1 << 20;
pub const DEFAULT_MAX_PREFIXES: u32 = 1 << 16;
pub const DEFAULT_MAX_ALLOW: u32 = 1 << 12;

/// Most ports a ban can be scoped to; a ban with more ports is widened to all ports.
pub const MAX_PORTS: usize = 8;

/// Value of an exact or prefix ban entry.
///
/// `expires_ns` is on CLOCK_BOOTTIME (`bpf_ktime_get_boot_ns`), 0 = permanent: the XDP program
/// stops dropping for an expired entry by itself, even while the agent is down.
/// `nports == 0` means every port; otherwise only TCP/UDP packets whose destination port is one
/// of `ports[..nports]` (host byte order) are dropped.
/// `packets`/`bytes` are counted by the XDP program with atomic adds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BanValue {
    pub expires_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    pub ports: [u16; MAX_PORTS],
    pub nports: u16,
    pub _pad: [u16; 3],
}

impl BanValue {
    pub const fn new(expires_ns: u64) -> Self {
        BanValue {
            expires_ns,
            packets: 0,
            bytes: 0,
            ports: [0; MAX_PORTS],
            nports: 0,
            _pad: [0; 3],
        }
    }

    /// True when the ban applies to a packet to `port` (None = no TCP/UDP port known).
    /// A port-scoped ban drops only TCP/UDP packets to one of its ports.
    #[inline(always)]
    pub fn covers_port(&self, port: Option<u16>) -> bool {
        if self.nports == 0 {
            return true;
        }
        let Some(port) = port else { return false };
        let mut i = 0;
        while i < MAX_PORTS {
            if i < self.nports as usize && self.ports[i] == port {
                return true;
            }
            i += 1;
        }
        false
    }

    /// True while the ban is in force at boottime `now_ns`.
    #[inline(always)]
    pub fn active_at(&self, now_ns: u64) -> bool {
        self.expires_ns == 0 || now_ns < self.expires_ns
    }
}

/// Value of an allowlist LPM entry (presence is what matters).
pub type AllowValue = u32;

/// Global per-CPU counters, indexes into the `F2B_COUNTERS` per-CPU array.
pub mod counters {
    pub const SEEN: u32 = 0;
    pub const PASSED: u32 = 1;
    /// Passed because the source is allowlisted.
    pub const PASS_ALLOWLIST: u32 = 2;
    /// Passed: not IPv4/IPv6, or truncated.
    pub const PASS_UNPARSED: u32 = 3;
    /// Passed: a matching ban had expired.
    pub const PASS_EXPIRED: u32 = 4;
    /// Passed: a matching ban is scoped to other ports.
    pub const PASS_PORT: u32 = 5;
    pub const DROP_EXACT_V4: u32 = 6;
    pub const DROP_EXACT_V6: u32 = 7;
    pub const DROP_PREFIX_V4: u32 = 8;
    pub const DROP_PREFIX_V6: u32 = 9;
    pub const COUNT: u32 = 10;
    /// Names as shown by `f2b-ctl stats`, by index.
    pub const NAMES: [&str; COUNT as usize] = [
        "seen",
        "passed",
        "passed_allowlist",
        "passed_unparsed",
        "passed_expired",
        "passed_port_scope",
        "dropped_exact_v4",
        "dropped_exact_v6",
        "dropped_prefix_v4",
        "dropped_prefix_v6",
    ];
}

#[cfg(feature = "user")]
// SAFETY: BanValue is repr(C), Copy, with no implicit padding (explicit _pad), so every
// byte pattern the kernel hands back is a valid value.
unsafe impl aya::Pod for BanValue {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_value_has_no_implicit_padding() {
        assert_eq!(
            core::mem::size_of::<BanValue>(),
            8 * 3 + 2 * MAX_PORTS + 2 + 6
        );
        assert_eq!(core::mem::align_of::<BanValue>(), 8);
    }

    #[test]
    fn port_scope() {
        let mut v = BanValue::new(0);
        assert!(v.covers_port(None));
        assert!(v.covers_port(Some(80)));
        v.ports[0] = 22;
        v.ports[1] = 2222;
        v.nports = 2;
        assert!(v.covers_port(Some(22)));
        assert!(v.covers_port(Some(2222)));
        assert!(!v.covers_port(Some(80)));
        assert!(!v.covers_port(None));
        // Stale entries beyond nports never match.
        v.ports[2] = 80;
        assert!(!v.covers_port(Some(80)));
    }

    #[test]
    fn expiry() {
        assert!(BanValue::new(0).active_at(u64::MAX));
        assert!(BanValue::new(100).active_at(99));
        assert!(!BanValue::new(100).active_at(100));
    }
}
