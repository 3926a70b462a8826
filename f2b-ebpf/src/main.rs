//! The f2b XDP program: drops packets whose source address is banned.
//!
//! This is the kernel end of the data flow: the agent turns log failures into bans and writes
//! them into the maps below; this program consults them for every frame, before the kernel
//! spends anything on it. Per frame:
//!
//! 1. parse Ethernet, up to two VLAN tags (802.1Q / 802.1ad, any order), IPv4 or IPv6;
//!    anything else, or a truncated header, passes (`PASS_UNPARSED`);
//! 2. an allowlisted source (LPM trie) always passes (`PASS_ALLOWLIST`);
//! 3. an exact ban (hash map), then a prefix ban (v4: LPM trie; v6: a hash map per length in
//!    use, longest first, see [`F2B_PREFIX_V6`]): a ban that is in force and covers
//!    the destination port drops the frame and counts it in the ban's `packets`/`bytes`;
//!    an expired or port-scoped-out ban falls through to the next map, because a wider ban may
//!    still apply.
//!
//! The TCP/UDP destination port is only parsed when a port-scoped ban is found, so unbanned
//! traffic never pays for the IPv6 extension-header walk.
//!
//! Every map is pinned by name so the agent can reuse it across restarts
//! (`EbpfLoader::map_pin_path`); the compiled-in sizes are small defaults that the agent
//! overrides with `EbpfLoader::set_max_entries`.
//!
//! There is deliberately no aya-log here: a log call in the per-packet path costs more than the
//! whole lookup (see shared/TOOLCHAIN.md). The program reports through counters only.
#![no_std]
#![no_main]
// bpfel-unknown-none has no compare-and-swap, so core hides `AtomicU64::fetch_add`; the
// intrinsic lowers to the BPF atomic add instruction, which is exactly what we need.
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "atomic_xadd: see above")]

use core::{
    cell::UnsafeCell,
    intrinsics::{AtomicOrdering, atomic_xadd},
    mem::size_of,
};

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    helpers::bpf_ktime_get_boot_ns,
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::XdpContext,
};
use f2b_common::{AllowValue, BanValue, counters, maps};

// Map names are the contract with the agent; the `#[map]` macro takes the static's name, so
// check at compile time that each static is named exactly as f2b_common::maps says.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}
const _: () = {
    assert!(same(maps::ALLOW_V4, "F2B_ALLOW_V4"));
    assert!(same(maps::ALLOW_V6, "F2B_ALLOW_V6"));
    assert!(same(maps::BANS_V4, "F2B_BANS_V4"));
    assert!(same(maps::BANS_V6, "F2B_BANS_V6"));
    assert!(same(maps::PREFIX_V4, "F2B_PREFIX_V4"));
    assert!(same(maps::PREFIX_V6, "F2B_PREFIX_V6"));
    assert!(same(maps::PREFIX_V6_LENS, "F2B_PREFIX_V6_LENS"));
    assert!(same(maps::COUNTERS, "F2B_COUNTERS"));
    assert!(same(maps::PROGRAM, "f2b_xdp"));
};

// Small compiled-in capacities: the agent sets the real ones from its config before loading.
const DEFAULT_BANS: u32 = 1024;
const DEFAULT_PREFIXES: u32 = 1024;
const DEFAULT_ALLOW: u32 = 256;

#[map]
static F2B_ALLOW_V4: LpmTrie<[u8; 4], AllowValue> = LpmTrie::pinned(DEFAULT_ALLOW, 0);
#[map]
static F2B_ALLOW_V6: LpmTrie<[u8; 16], AllowValue> = LpmTrie::pinned(DEFAULT_ALLOW, 0);
#[map]
static F2B_BANS_V4: HashMap<[u8; 4], BanValue> = HashMap::pinned(DEFAULT_BANS, 0);
#[map]
static F2B_BANS_V6: HashMap<[u8; 16], BanValue> = HashMap::pinned(DEFAULT_BANS, 0);
#[map]
static F2B_PREFIX_V4: LpmTrie<[u8; 4], BanCell> = LpmTrie::pinned(DEFAULT_PREFIXES, 0);
/// IPv6 prefix bans: one hash map keyed by (prefix length, masked address), the same bytes
/// as an LPM trie key, plus the set of lengths in use ([`F2B_PREFIX_V6_LENS`]). A lookup
/// tries the lengths in use, longest first: its cost is one hash lookup per length in use,
/// however many prefixes there are. The kernel's LPM trie costs a pointer chase per trie
/// level, and a million /96s under one /64 make the levels many (2.2x the cost of one entry).
#[map]
static F2B_PREFIX_V6: HashMap<Key<[u8; 16]>, BanCell> = HashMap::pinned(DEFAULT_PREFIXES, 0);
/// Bit `l` set (word `l / 64`, bit `l % 64`): some IPv6 prefix of length `l` (0-127) may be in
/// [`F2B_PREFIX_V6`]. Set by the agent before it inserts such a prefix, cleared after the last
/// one of that length is removed.
#[map]
static F2B_PREFIX_V6_LENS: Array<[u64; 2]> = Array::pinned(1, 0);
#[map]
static F2B_COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(counters::COUNT, 0);

/// A [`BanValue`] as the program sees it in a map: the counters in it are written through a
/// shared lookup result (aya-ebpf's `LpmTrie::get` hands out `&V`), so it needs interior
/// mutability. Same size and layout as `BanValue`.
#[repr(transparent)]
struct BanCell(UnsafeCell<BanValue>);

// SAFETY: BanCell only names the value type of a kernel map; no Rust code shares one between
// threads, and the kernel-side concurrent updates are the atomic adds in `apply`.
unsafe impl Sync for BanCell {}

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const VLAN_HLEN: usize = 4;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_DSTOPTS: u8 = 60;
/// Extension headers walked before giving up on finding a port; real traffic has at most a
/// few, and the bound keeps the verifier's work small.
const MAX_IPV6_EXT: usize = 6;

#[xdp]
pub fn f2b_xdp(ctx: XdpContext) -> u32 {
    count(counters::SEEN);
    let action = verdict(&ctx);
    if action == XDP_PASS {
        count(counters::PASSED);
    }
    action
}

/// Adds one to a global counter. Per-CPU, so a plain add is race free.
#[inline(always)]
fn count(index: u32) {
    if let Some(p) = F2B_COUNTERS.get_ptr_mut(index) {
        // SAFETY: the pointer is this CPU's slot of the per-CPU array, valid for the whole run.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn pass(reason: u32) -> u32 {
    count(reason);
    XDP_PASS
}

/// Reads a `T` at `off` bytes into the frame, or None when the frame is too short.
#[inline(always)]
fn load<T: Copy>(ctx: &XdpContext, off: usize) -> Option<T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + size_of::<T>() > end {
        return None;
    }
    // SAFETY: bounds checked just above against data_end (the verifier checks the same);
    // packet data has no alignment guarantee, hence read_unaligned.
    Some(unsafe { ((start + off) as *const T).read_unaligned() })
}

#[inline(always)]
fn load_be16(ctx: &XdpContext, off: usize) -> Option<u16> {
    load::<[u8; 2]>(ctx, off).map(u16::from_be_bytes)
}

/// Where the L3 header starts and what the frame carries.
#[derive(Clone, Copy)]
enum L3 {
    V4 { off: usize },
    V6 { off: usize },
}

#[inline(always)]
fn parse_l2(ctx: &XdpContext) -> Option<L3> {
    let mut off = ETH_HLEN;
    let mut proto = load_be16(ctx, 12)?;
    // Up to two tags (QinQ), in either order.
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        proto = load_be16(ctx, off + 2)?;
        off += VLAN_HLEN;
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            proto = load_be16(ctx, off + 2)?;
            off += VLAN_HLEN;
        }
    }
    match proto {
        ETH_P_IP => Some(L3::V4 { off }),
        ETH_P_IPV6 => Some(L3::V6 { off }),
        _ => None,
    }
}

/// The L4 destination port as far as a port-scoped ban needs it.
#[derive(Clone, Copy)]
enum Port {
    /// Not parsed yet.
    Unknown,
    /// TCP or UDP to this port (host byte order).
    Known(u16),
    /// Not TCP/UDP, a non-first fragment, or behind an IPv6 header we do not walk.
    None,
    /// The headers up to the port are cut short.
    Truncated,
}

#[inline(always)]
fn l4_port(ctx: &XdpContext, proto: u8, off: usize) -> Port {
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Port::None;
    }
    // TCP and UDP both start with source port, destination port.
    match load_be16(ctx, off + 2) {
        Some(p) => Port::Known(p),
        None => Port::Truncated,
    }
}

#[inline(always)]
fn port_v4(ctx: &XdpContext, off: usize) -> Port {
    let Some(vihl) = load::<u8>(ctx, off) else {
        return Port::Truncated;
    };
    let Some(frag) = load_be16(ctx, off + 6) else {
        return Port::Truncated;
    };
    let Some(proto) = load::<u8>(ctx, off + 9) else {
        return Port::Truncated;
    };
    if frag & 0x1fff != 0 {
        // Only the first fragment carries the L4 header.
        return Port::None;
    }
    // IHL >= 5 was checked by the caller; masking keeps the offset bounded for the verifier.
    let ihl = ((vihl & 0x0f) as usize) * 4;
    l4_port(ctx, proto, off + ihl)
}

#[inline(always)]
fn port_v6(ctx: &XdpContext, off: usize) -> Port {
    let Some(mut next) = load::<u8>(ctx, off + 6) else {
        return Port::Truncated;
    };
    let mut off = off + IPV6_HLEN;
    for _ in 0..MAX_IPV6_EXT {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let Some(h) = load::<[u8; 2]>(ctx, off) else {
                    return Port::Truncated;
                };
                next = h[0];
                off += (h[1] as usize + 1) * 8;
            }
            IPPROTO_FRAGMENT => {
                let Some(h) = load::<[u8; 4]>(ctx, off) else {
                    return Port::Truncated;
                };
                if u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
                    return Port::None;
                }
                next = h[0];
                off += 8;
            }
            _ => return l4_port(ctx, next, off),
        }
    }
    Port::None
}

/// Why a found ban did not drop the frame.
#[derive(Clone, Copy)]
enum Miss {
    Expired,
    OtherPort,
    Unparsed,
}

impl Miss {
    #[inline(always)]
    fn counter(self) -> u32 {
        match self {
            Miss::Expired => counters::PASS_EXPIRED,
            Miss::OtherPort => counters::PASS_PORT,
            Miss::Unparsed => counters::PASS_UNPARSED,
        }
    }
}

/// Decides whether the ban at `v` applies to this frame; on a drop, counts it in the ban.
/// `port` starts as [`Port::Unknown`] and is parsed at most once per frame, only when a
/// port-scoped ban needs it.
///
/// # Safety
/// `v` must point at a live map value.
#[inline(always)]
unsafe fn apply(
    ctx: &XdpContext,
    l3: L3,
    v: *mut BanValue,
    port: &mut Port,
    len: u64,
) -> Result<(), Miss> {
    // SAFETY: the caller hands us a map value pointer from a successful lookup; the verifier
    // knows its size.
    let ban = unsafe { &*v };
    if ban.expires_ns != 0 {
        // SAFETY: helper without arguments.
        let now = unsafe { bpf_ktime_get_boot_ns() };
        if now >= ban.expires_ns {
            return Err(Miss::Expired);
        }
    }
    if ban.nports != 0 {
        if let Port::Unknown = *port {
            *port = match l3 {
                L3::V4 { off } => port_v4(ctx, off),
                L3::V6 { off } => port_v6(ctx, off),
            };
        }
        match *port {
            Port::Known(p) if ban.covers_port(Some(p)) => {}
            Port::Truncated => return Err(Miss::Unparsed),
            _ => return Err(Miss::OtherPort),
        }
    }
    // SAFETY: both fields are 8-byte aligned u64s inside the map value; other CPUs update them
    // concurrently, so the adds must be atomic (BPF atomic add, result unused).
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*v).packets, 1);
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*v).bytes, len);
    }
    Ok(())
}

#[inline(always)]
fn verdict(ctx: &XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    match parse_l2(ctx) {
        Some(L3::V4 { off }) => verdict_v4(ctx, off, len),
        Some(L3::V6 { off }) => verdict_v6(ctx, off, len),
        None => pass(counters::PASS_UNPARSED),
    }
}

#[inline(always)]
fn verdict_v4(ctx: &XdpContext, off: usize, len: u64) -> u32 {
    let Some(hdr) = load::<[u8; IPV4_HLEN]>(ctx, off) else {
        return pass(counters::PASS_UNPARSED);
    };
    if hdr[0] >> 4 != 4 || hdr[0] & 0x0f < 5 {
        return pass(counters::PASS_UNPARSED);
    }
    let src = [hdr[12], hdr[13], hdr[14], hdr[15]];
    let key = Key::new(32, src);
    if F2B_ALLOW_V4.get(&key).is_some() {
        return pass(counters::PASS_ALLOWLIST);
    }
    let l3 = L3::V4 { off };
    let mut port = Port::Unknown;
    let mut miss = None;
    if let Some(v) = F2B_BANS_V4.get_ptr_mut(src) {
        // SAFETY: v comes from a successful lookup.
        match unsafe { apply(ctx, l3, v, &mut port, len) } {
            Ok(()) => {
                count(counters::DROP_EXACT_V4);
                return XDP_DROP;
            }
            Err(m) => miss = Some(m),
        }
    }
    if let Some(v) = F2B_PREFIX_V4.get(&key) {
        let v = v.0.get();
        // SAFETY: v comes from a successful lookup.
        match unsafe { apply(ctx, l3, v, &mut port, len) } {
            Ok(()) => {
                count(counters::DROP_PREFIX_V4);
                return XDP_DROP;
            }
            Err(m) => miss = Some(m),
        }
    }
    match miss {
        Some(m) => pass(m.counter()),
        None => XDP_PASS,
    }
}

#[inline(always)]
fn verdict_v6(ctx: &XdpContext, off: usize, len: u64) -> u32 {
    let Some(first) = load::<u8>(ctx, off) else {
        return pass(counters::PASS_UNPARSED);
    };
    let Some(src) = load::<[u8; 16]>(ctx, off + 8) else {
        return pass(counters::PASS_UNPARSED);
    };
    // The rest of the fixed header must be there too.
    if first >> 4 != 6 || load::<[u8; 16]>(ctx, off + 24).is_none() {
        return pass(counters::PASS_UNPARSED);
    }
    let key = Key::new(128, src);
    if F2B_ALLOW_V6.get(&key).is_some() {
        return pass(counters::PASS_ALLOWLIST);
    }
    let l3 = L3::V6 { off };
    let mut port = Port::Unknown;
    let mut miss = None;
    if let Some(v) = F2B_BANS_V6.get_ptr_mut(src) {
        // SAFETY: v comes from a successful lookup.
        match unsafe { apply(ctx, l3, v, &mut port, len) } {
            Ok(()) => {
                count(counters::DROP_EXACT_V6);
                return XDP_DROP;
            }
            Err(m) => miss = Some(m),
        }
    }
    if let Some(v) = longest_prefix_v6(&src) {
        // SAFETY: v comes from a successful lookup.
        match unsafe { apply(ctx, l3, v, &mut port, len) } {
            Ok(()) => {
                count(counters::DROP_PREFIX_V6);
                return XDP_DROP;
            }
            Err(m) => miss = Some(m),
        }
    }
    match miss {
        Some(m) => pass(m.counter()),
        None => XDP_PASS,
    }
}

/// `bits` leading one bits (0-64).
#[inline(always)]
fn mask64(bits: u32) -> u64 {
    if bits == 0 { 0 } else { !0u64 << (64 - bits) }
}

/// The longest IPv6 prefix ban covering `src`, as LPM would find it: for each length in use,
/// longest first, one hash lookup of the address masked to that length. The loop runs once
/// per length in use (highest set bit first), not once per possible length.
#[inline(always)]
fn longest_prefix_v6(src: &[u8; 16]) -> Option<*mut BanValue> {
    let lens = F2B_PREFIX_V6_LENS.get(0)?;
    let hi = u64::from_be_bytes([
        src[0], src[1], src[2], src[3], src[4], src[5], src[6], src[7],
    ]);
    let lo = u64::from_be_bytes([
        src[8], src[9], src[10], src[11], src[12], src[13], src[14], src[15],
    ]);
    // Word 1 holds lengths 64-127, word 0 lengths 0-63.
    let words = [lens[1], lens[0]];
    let mut w = 0;
    while w < 2 {
        let mut bits = words[w];
        let mut n = 0;
        while bits != 0 && n < 64 {
            let b = 63 - bits.leading_zeros();
            bits &= !(1u64 << b);
            n += 1;
            let (plen, khi, klo) = if w == 0 {
                (64 + b, hi, lo & mask64(b))
            } else {
                (b, hi & mask64(b), 0)
            };
            let mut data = [0u8; 16];
            let h = khi.to_be_bytes();
            let l = klo.to_be_bytes();
            let mut i = 0;
            while i < 8 {
                data[i] = h[i];
                data[8 + i] = l[i];
                i += 1;
            }
            let key = Key::new(plen, data);
            if let Some(v) = F2B_PREFIX_V6.get_ptr_mut(&key) {
                return Some(v as *mut BanValue);
            }
        }
        w += 1;
    }
    None
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never called.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 18] = *b"MIT OR Apache-2.0\0";
