//! The XDP program's verdicts, checked in the real kernel with `BPF_PROG_TEST_RUN`.
//!
//! Each test loads the embedded object (`f2b_agent::EBPF_OBJECT`) with its maps pinned in a
//! private bpffs mounted in a temp dir (unmounted on drop), fills the maps through aya's map
//! API, runs crafted frames through the program (loaded, never attached) and checks the
//! verdict, the global per-CPU counters and the per-ban packet/byte counters.
//!
//! Needs root and a kernel with BPF; without them every test prints why and skips.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::Xdp;
use aya::{Ebpf, EbpfLoader};
use f2b_agent::bpffs::ensure_bpffs;
use f2b_agent::testrun::test_run;
use f2b_common::{AllowValue, BanValue, counters, maps};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// A bpffs mounted on a fresh temp dir, unmounted (lazily) when dropped.
struct PrivateBpffs {
    mnt: PathBuf,
    _tmp: tempfile::TempDir,
}

impl PrivateBpffs {
    fn new() -> PrivateBpffs {
        let tmp = tempfile::tempdir().unwrap();
        let mnt = tmp.path().join("bpf");
        ensure_bpffs(&mnt).unwrap();
        PrivateBpffs { mnt, _tmp: tmp }
    }
}

impl Drop for PrivateBpffs {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.mnt.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Why the tests cannot run here, if they cannot.
fn probe() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if let Err(e) = Array::<MapData, u32>::create(1, 0) {
        return Some(format!("cannot create a BPF map ({e}): BPF unavailable"));
    }
    None
}

/// The loaded program and its maps, pinned in a private bpffs.
struct Harness {
    ebpf: Ebpf,
    fs: PrivateBpffs,
}

/// Loads the program, or returns None (after saying why) when the kernel cannot run the tests.
fn harness(test: &str) -> Option<Harness> {
    if let Some(why) = probe() {
        eprintln!("SKIPPED {test}: {why}");
        return None;
    }
    let fs = PrivateBpffs::new();
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(&fs.mnt)
        .load(f2b_agent::EBPF_OBJECT)
        .unwrap();
    let prog: &mut Xdp = ebpf.program_mut(maps::PROGRAM).unwrap().try_into().unwrap();
    prog.load().unwrap();
    Some(Harness { ebpf, fs })
}

fn v4_key(ip: [u8; 4], len: u32) -> Key<[u8; 4]> {
    Key::new(len, ip)
}

fn v6_key(ip: [u8; 16], len: u32) -> Key<[u8; 16]> {
    Key::new(len, ip)
}

/// `ip` with only its first `len` bits kept.
fn mask6(ip: [u8; 16], len: u32) -> [u8; 16] {
    let bits = u128::from_be_bytes(ip);
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    (bits & mask).to_be_bytes()
}

impl Harness {
    fn run(&self, frame: &[u8]) -> u32 {
        let prog: &Xdp = self
            .ebpf
            .program(maps::PROGRAM)
            .unwrap()
            .try_into()
            .unwrap();
        test_run(prog.fd().unwrap().as_fd(), frame, 1)
            .unwrap()
            .retval
    }

    fn ban_v4(&mut self, ip: [u8; 4], v: BanValue) {
        let mut m: HashMap<_, [u8; 4], BanValue> =
            HashMap::try_from(self.ebpf.map_mut(maps::BANS_V4).unwrap()).unwrap();
        m.insert(ip, v, 0).unwrap();
    }

    fn ban_v6(&mut self, ip: [u8; 16], v: BanValue) {
        let mut m: HashMap<_, [u8; 16], BanValue> =
            HashMap::try_from(self.ebpf.map_mut(maps::BANS_V6).unwrap()).unwrap();
        m.insert(ip, v, 0).unwrap();
    }

    fn prefix_v4(&mut self, ip: [u8; 4], len: u32, v: BanValue) {
        let mut m: LpmTrie<_, [u8; 4], BanValue> =
            LpmTrie::try_from(self.ebpf.map_mut(maps::PREFIX_V4).unwrap()).unwrap();
        m.insert(&v4_key(ip, len), v, 0).unwrap();
    }

    /// As the agent writes an IPv6 prefix: the length into F2B_PREFIX_V6_LENS first, then
    /// the entry keyed by (length, address masked to it).
    fn prefix_v6(&mut self, ip: [u8; 16], len: u32, v: BanValue) {
        let mut lens: Array<_, [u64; 2]> =
            Array::try_from(self.ebpf.map_mut(maps::PREFIX_V6_LENS).unwrap()).unwrap();
        let mut w = lens.get(&0, 0).unwrap();
        w[(len / 64) as usize] |= 1 << (len % 64);
        lens.set(0, w, 0).unwrap();
        let mut m: HashMap<_, Key<[u8; 16]>, BanValue> =
            HashMap::try_from(self.ebpf.map_mut(maps::PREFIX_V6).unwrap()).unwrap();
        m.insert(v6_key(mask6(ip, len), len), v, 0).unwrap();
    }

    fn allow_v4(&mut self, ip: [u8; 4], len: u32) {
        let mut m: LpmTrie<_, [u8; 4], AllowValue> =
            LpmTrie::try_from(self.ebpf.map_mut(maps::ALLOW_V4).unwrap()).unwrap();
        m.insert(&v4_key(ip, len), 1, 0).unwrap();
    }

    fn allow_v6(&mut self, ip: [u8; 16], len: u32) {
        let mut m: LpmTrie<_, [u8; 16], AllowValue> =
            LpmTrie::try_from(self.ebpf.map_mut(maps::ALLOW_V6).unwrap()).unwrap();
        m.insert(&v6_key(ip, len), 1, 0).unwrap();
    }

    fn get_ban_v4(&self, ip: [u8; 4]) -> BanValue {
        let m: HashMap<_, [u8; 4], BanValue> =
            HashMap::try_from(self.ebpf.map(maps::BANS_V4).unwrap()).unwrap();
        m.get(&ip, 0).unwrap()
    }

    fn get_ban_v6(&self, ip: [u8; 16]) -> BanValue {
        let m: HashMap<_, [u8; 16], BanValue> =
            HashMap::try_from(self.ebpf.map(maps::BANS_V6).unwrap()).unwrap();
        m.get(&ip, 0).unwrap()
    }

    fn get_prefix_v4(&self, ip: [u8; 4], len: u32) -> BanValue {
        let m: LpmTrie<_, [u8; 4], BanValue> =
            LpmTrie::try_from(self.ebpf.map(maps::PREFIX_V4).unwrap()).unwrap();
        m.get(&v4_key(ip, len), 0).unwrap()
    }

    fn get_prefix_v6(&self, ip: [u8; 16], len: u32) -> BanValue {
        let m: HashMap<_, Key<[u8; 16]>, BanValue> =
            HashMap::try_from(self.ebpf.map(maps::PREFIX_V6).unwrap()).unwrap();
        m.get(&v6_key(mask6(ip, len), len), 0).unwrap()
    }

    /// Global counters summed over CPUs, by index.
    fn counters(&self) -> [u64; counters::COUNT as usize] {
        let m: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map(maps::COUNTERS).unwrap()).unwrap();
        let mut out = [0; counters::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = m.get(&(i as u32), 0).unwrap().iter().sum();
        }
        out
    }

    /// Asserts the global counters: `expect` lists the non-zero ones, every other must be 0.
    fn assert_counters(&self, expect: &[(u32, u64)]) {
        let got = self.counters();
        let mut want = [0; counters::COUNT as usize];
        for &(i, n) in expect {
            want[i as usize] = n;
        }
        let named = |c: &[u64]| {
            c.iter()
                .enumerate()
                .filter(|(_, n)| **n != 0)
                .map(|(i, n)| format!("{}={n}", counters::NAMES[i]))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(named(&got), named(&want));
    }

    fn pin_dir(&self) -> &Path {
        &self.fs.mnt
    }
}

// ---- frames, byte by byte ----

const V4_A: [u8; 4] = [198, 18, 0, 7];
const V4_B: [u8; 4] = [198, 18, 0, 8];
const V4_DST: [u8; 4] = [198, 18, 0, 1];
const V6_A: [u8; 16] = [0xfd, 0, 0x0f, 0x2b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
const V6_B: [u8; 16] = [0xfd, 0, 0x0f, 0x2b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8];
const V6_DST: [u8; 16] = [0xfd, 0, 0x0f, 0x2b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

fn eth(ethertype: u16, tags: &[u16]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    // Each tag: TPID, then TCI; the last TPID-or-type slot carries the payload's ethertype.
    for &tpid in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&[0x00, 0x64]); // VLAN id 100
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn l4(proto: u8, dport: u16) -> Vec<u8> {
    match proto {
        TCP => {
            let mut h = vec![0u8; 20];
            h[0..2].copy_from_slice(&40000u16.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            h[12] = 5 << 4; // data offset
            h[13] = 0x02; // SYN
            h
        }
        UDP => {
            let mut h = vec![0u8; 8];
            h[0..2].copy_from_slice(&40000u16.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            h[4..6].copy_from_slice(&8u16.to_be_bytes());
            h
        }
        // ICMP / ICMPv6 echo request
        _ => vec![8, 0, 0, 0, 0, 1, 0, 1],
    }
}

/// IPv4 header with `opt_words` 4-byte option words (NOPs), then `payload`.
fn ipv4(src: [u8; 4], proto: u8, opt_words: usize, frag_off: u16, payload: &[u8]) -> Vec<u8> {
    let hlen = 20 + 4 * opt_words;
    let mut h = vec![0u8; hlen];
    h[0] = 0x40 | (hlen / 4) as u8;
    h[2..4].copy_from_slice(&((hlen + payload.len()) as u16).to_be_bytes());
    h[6..8].copy_from_slice(&frag_off.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&V4_DST);
    for b in &mut h[20..] {
        *b = 1; // NOP
    }
    h.extend_from_slice(payload);
    h
}

fn ipv6(src: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&V6_DST);
    h.extend_from_slice(payload);
    h
}

fn frame_v4(src: [u8; 4], proto: u8, dport: u16) -> Vec<u8> {
    let mut f = eth(0x0800, &[]);
    f.extend(ipv4(src, proto, 0, 0, &l4(proto, dport)));
    f
}

fn frame_v6(src: [u8; 16], proto: u8, dport: u16) -> Vec<u8> {
    let mut f = eth(0x86dd, &[]);
    f.extend(ipv6(src, proto, &l4(proto, dport)));
    f
}

fn scoped(ports: &[u16]) -> BanValue {
    let mut v = BanValue::new(0);
    v.ports[..ports.len()].copy_from_slice(ports);
    v.nports = ports.len() as u16;
    v
}

fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out pointer.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) },
        0
    );
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

use counters::*;

// ---- tests ----

#[test]
fn v4_banned_and_not_banned() {
    let Some(mut h) = harness("v4_banned_and_not_banned") else {
        return;
    };
    h.ban_v4(V4_A, BanValue::new(0));
    let banned = frame_v4(V4_A, TCP, 443);
    assert_eq!(h.run(&banned), XDP_DROP);
    assert_eq!(h.run(&frame_v4(V4_B, TCP, 443)), XDP_PASS);
    assert_eq!(h.run(&banned), XDP_DROP);
    h.assert_counters(&[(SEEN, 3), (PASSED, 1), (DROP_EXACT_V4, 2)]);
    let v = h.get_ban_v4(V4_A);
    assert_eq!((v.packets, v.bytes), (2, 2 * banned.len() as u64));
    // The maps are pinned by their contract names in the private bpffs.
    for name in maps::ALL {
        assert!(h.pin_dir().join(name).exists(), "{name} not pinned");
    }
}

#[test]
fn v6_banned() {
    let Some(mut h) = harness("v6_banned") else {
        return;
    };
    h.ban_v6(V6_A, BanValue::new(0));
    let banned = frame_v6(V6_A, UDP, 53);
    assert_eq!(h.run(&banned), XDP_DROP);
    assert_eq!(h.run(&frame_v6(V6_B, UDP, 53)), XDP_PASS);
    // A v6 ban does not catch the v4 address space and vice versa.
    assert_eq!(h.run(&frame_v4(V4_A, UDP, 53)), XDP_PASS);
    h.assert_counters(&[(SEEN, 3), (PASSED, 2), (DROP_EXACT_V6, 1)]);
    let v = h.get_ban_v6(V6_A);
    assert_eq!((v.packets, v.bytes), (1, banned.len() as u64));
}

#[test]
fn vlan_tagged_frames() {
    let Some(mut h) = harness("vlan_tagged_frames") else {
        return;
    };
    h.ban_v4(V4_A, BanValue::new(0));
    h.ban_v6(V6_A, BanValue::new(0));
    let ip4 = ipv4(V4_A, TCP, 0, 0, &l4(TCP, 22));
    let ip6 = ipv6(V6_A, TCP, &l4(TCP, 22));
    for tags in [
        &[0x8100][..],
        &[0x88a8],
        &[0x88a8, 0x8100],
        &[0x8100, 0x88a8],
        &[0x8100, 0x8100],
    ] {
        let mut f = eth(0x0800, tags);
        f.extend_from_slice(&ip4);
        assert_eq!(h.run(&f), XDP_DROP, "v4 with tags {tags:x?}");
        let mut f = eth(0x86dd, tags);
        f.extend_from_slice(&ip6);
        assert_eq!(h.run(&f), XDP_DROP, "v6 with tags {tags:x?}");
    }
    // A third tag is beyond what the program parses: it passes, unparsed.
    let mut f = eth(0x0800, &[0x88a8, 0x8100, 0x8100]);
    f.extend_from_slice(&ip4);
    assert_eq!(h.run(&f), XDP_PASS);
    h.assert_counters(&[
        (SEEN, 11),
        (PASSED, 1),
        (PASS_UNPARSED, 1),
        (DROP_EXACT_V4, 5),
        (DROP_EXACT_V6, 5),
    ]);
}

#[test]
fn truncated_and_non_ip_frames_pass() {
    let Some(mut h) = harness("truncated_and_non_ip_frames_pass") else {
        return;
    };
    h.ban_v4(V4_A, BanValue::new(0));
    h.ban_v6(V6_A, BanValue::new(0));
    let full4 = frame_v4(V4_A, TCP, 22);
    let full6 = frame_v6(V6_A, TCP, 22);
    let mut n = 0;
    // Ethernet header only (the kernel refuses XDP test input shorter than 14 bytes).
    for f in [eth(0x0800, &[]), eth(0x86dd, &[])] {
        assert_eq!(h.run(&f), XDP_PASS);
        n += 1;
    }
    // A VLAN tag cut short.
    let mut f = eth(0x8100, &[]);
    f.extend_from_slice(&[0x00]);
    assert_eq!(h.run(&f), XDP_PASS);
    n += 1;
    // IPv4 header cut anywhere before its 20 bytes, including inside the source address.
    for cut in [15, 20, 14 + 15, 14 + 19] {
        assert_eq!(h.run(&full4[..cut]), XDP_PASS, "v4 cut at {cut}");
        n += 1;
    }
    // IPv6 header cut inside the source and inside the destination address.
    for cut in [14 + 20, 14 + 39] {
        assert_eq!(h.run(&full6[..cut]), XDP_PASS, "v6 cut at {cut}");
        n += 1;
    }
    // IHL below 5 and a wrong version nibble are not IPv4.
    let mut bad = full4.clone();
    bad[14] = 0x44;
    assert_eq!(h.run(&bad), XDP_PASS);
    let mut bad = full4.clone();
    bad[14] = 0x65;
    assert_eq!(h.run(&bad), XDP_PASS);
    n += 2;
    // ARP request: not IP at all.
    let mut arp = eth(0x0806, &[]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[
        0x02, 0, 0, 0, 0, 1, 198, 18, 0, 7, 0, 0, 0, 0, 0, 0, 198, 18, 0, 1,
    ]);
    assert_eq!(h.run(&arp), XDP_PASS);
    n += 1;
    h.assert_counters(&[(SEEN, n), (PASSED, n), (PASS_UNPARSED, n)]);
    assert_eq!(h.get_ban_v4(V4_A).packets, 0);
}

#[test]
fn truncated_l4_against_port_scope() {
    let Some(mut h) = harness("truncated_l4_against_port_scope") else {
        return;
    };
    // An all-ports ban needs no L4 header: the source alone decides.
    h.ban_v4(V4_A, BanValue::new(0));
    // A port-scoped ban cannot judge a frame whose ports are cut off: it passes, unparsed.
    h.ban_v4(V4_B, scoped(&[22]));
    let a = frame_v4(V4_A, TCP, 22);
    let b = frame_v4(V4_B, TCP, 22);
    let cut = 14 + 20 + 3; // one byte short of the destination port
    assert_eq!(h.run(&a[..cut]), XDP_DROP);
    assert_eq!(h.run(&b[..cut]), XDP_PASS);
    assert_eq!(h.run(&b[..cut + 1]), XDP_DROP);
    // The same for IPv6 behind a hop-by-hop header.
    h.ban_v6(V6_B, scoped(&[22]));
    let mut f = eth(0x86dd, &[]);
    f.extend(ipv6(
        V6_B,
        0,
        &[&hop_by_hop(TCP)[..], &l4(TCP, 22)].concat(),
    ));
    assert_eq!(h.run(&f[..14 + 40 + 8 + 3]), XDP_PASS);
    assert_eq!(h.run(&f[..14 + 40 + 4]), XDP_PASS); // extension header itself cut
    assert_eq!(h.run(&f), XDP_DROP);
    h.assert_counters(&[
        (SEEN, 6),
        (PASSED, 3),
        (PASS_UNPARSED, 3),
        (DROP_EXACT_V4, 2),
        (DROP_EXACT_V6, 1),
    ]);
}

#[test]
fn allowlist_wins() {
    let Some(mut h) = harness("allowlist_wins") else {
        return;
    };
    h.allow_v4([198, 18, 0, 0], 24);
    h.ban_v4(V4_A, BanValue::new(0));
    h.prefix_v4([198, 18, 0, 0], 16, BanValue::new(0));
    h.allow_v6(V6_A, 128);
    h.ban_v6(V6_A, BanValue::new(0));
    h.prefix_v6(V6_B, 64, BanValue::new(0));
    // Allowlisted and exactly banned, allowlisted and inside a banned prefix.
    assert_eq!(h.run(&frame_v4(V4_A, TCP, 22)), XDP_PASS);
    assert_eq!(h.run(&frame_v4(V4_B, TCP, 22)), XDP_PASS);
    assert_eq!(h.run(&frame_v6(V6_A, TCP, 22)), XDP_PASS);
    // Outside the allowlist, the prefix bans still drop.
    assert_eq!(h.run(&frame_v4([198, 18, 1, 7], TCP, 22)), XDP_DROP);
    assert_eq!(h.run(&frame_v6(V6_B, TCP, 22)), XDP_DROP);
    h.assert_counters(&[
        (SEEN, 5),
        (PASSED, 3),
        (PASS_ALLOWLIST, 3),
        (DROP_PREFIX_V4, 1),
        (DROP_PREFIX_V6, 1),
    ]);
    assert_eq!(h.get_ban_v4(V4_A).packets, 0);
    assert_eq!(h.get_ban_v6(V6_A).packets, 0);
}

#[test]
fn expiry_on_boottime() {
    let Some(mut h) = harness("expiry_on_boottime") else {
        return;
    };
    let now = boottime_ns();
    let expired = [198, 18, 0, 10];
    let permanent = [198, 18, 0, 11];
    let future = [198, 18, 0, 12];
    h.ban_v4(expired, BanValue::new(now - 1_000_000_000));
    h.ban_v4(permanent, BanValue::new(0));
    h.ban_v4(future, BanValue::new(now + 3600 * 1_000_000_000));
    assert_eq!(h.run(&frame_v4(expired, TCP, 22)), XDP_PASS);
    assert_eq!(h.run(&frame_v4(permanent, TCP, 22)), XDP_DROP);
    assert_eq!(h.run(&frame_v4(future, TCP, 22)), XDP_DROP);
    h.assert_counters(&[
        (SEEN, 3),
        (PASSED, 1),
        (PASS_EXPIRED, 1),
        (DROP_EXACT_V4, 2),
    ]);
    assert_eq!(h.get_ban_v4(expired).packets, 0);
    assert_eq!(h.get_ban_v4(permanent).packets, 1);

    // An expired exact ban falls through to a prefix ban that is still in force.
    h.prefix_v4([198, 18, 0, 0], 28, BanValue::new(0));
    assert_eq!(h.run(&frame_v4(expired, TCP, 22)), XDP_DROP);
    assert_eq!(h.get_prefix_v4([198, 18, 0, 0], 28).packets, 1);
    // An expired prefix ban passes too (v6 here).
    h.prefix_v6(V6_A, 64, BanValue::new(now - 1));
    assert_eq!(h.run(&frame_v6(V6_A, TCP, 22)), XDP_PASS);
    h.assert_counters(&[
        (SEEN, 5),
        (PASSED, 2),
        (PASS_EXPIRED, 2),
        (DROP_EXACT_V4, 2),
        (DROP_PREFIX_V4, 1),
    ]);
}

#[test]
fn port_scoped_ban() {
    let Some(mut h) = harness("port_scoped_ban") else {
        return;
    };
    h.ban_v4(V4_A, scoped(&[22, 2222]));
    h.ban_v6(V6_A, scoped(&[22]));
    assert_eq!(h.run(&frame_v4(V4_A, TCP, 22)), XDP_DROP);
    assert_eq!(h.run(&frame_v4(V4_A, UDP, 22)), XDP_DROP);
    assert_eq!(h.run(&frame_v4(V4_A, TCP, 2222)), XDP_DROP);
    assert_eq!(h.run(&frame_v4(V4_A, TCP, 80)), XDP_PASS);
    assert_eq!(h.run(&frame_v4(V4_A, ICMP, 0)), XDP_PASS);
    assert_eq!(h.run(&frame_v6(V6_A, TCP, 22)), XDP_DROP);
    assert_eq!(h.run(&frame_v6(V6_A, UDP, 22)), XDP_DROP);
    assert_eq!(h.run(&frame_v6(V6_A, UDP, 80)), XDP_PASS);
    assert_eq!(h.run(&frame_v6(V6_A, ICMPV6, 0)), XDP_PASS);
    // IPv4 options move the TCP header: IHL is honoured.
    let mut f = eth(0x0800, &[]);
    f.extend(ipv4(V4_A, TCP, 3, 0, &l4(TCP, 22)));
    assert_eq!(h.run(&f), XDP_DROP);
    let mut f = eth(0x0800, &[]);
    f.extend(ipv4(V4_A, TCP, 3, 0, &l4(TCP, 80)));
    assert_eq!(h.run(&f), XDP_PASS);
    // A non-first fragment has no port (its payload bytes are not a TCP header): passes.
    let mut f = eth(0x0800, &[]);
    f.extend(ipv4(V4_A, TCP, 0, 185, &l4(TCP, 22)));
    assert_eq!(h.run(&f), XDP_PASS);
    // A first fragment (MF set, offset 0) carries the header: drops.
    let mut f = eth(0x0800, &[]);
    f.extend(ipv4(V4_A, TCP, 0, 0x2000, &l4(TCP, 22)));
    assert_eq!(h.run(&f), XDP_DROP);
    h.assert_counters(&[
        (SEEN, 13),
        (PASSED, 6),
        (PASS_PORT, 6),
        (DROP_EXACT_V4, 5),
        (DROP_EXACT_V6, 2),
    ]);
    let v = h.get_ban_v4(V4_A);
    assert_eq!(v.packets, 5);
}

/// An 8-byte hop-by-hop options header (PadN) followed by `next`.
fn hop_by_hop(next: u8) -> [u8; 8] {
    [next, 0, 1, 4, 0, 0, 0, 0]
}

#[test]
fn ipv6_extension_headers() {
    let Some(mut h) = harness("ipv6_extension_headers") else {
        return;
    };
    h.ban_v6(V6_A, scoped(&[22]));
    let with = |hdrs: &[u8], first: u8, dport: u16| {
        let mut f = eth(0x86dd, &[]);
        f.extend(ipv6(V6_A, first, &[hdrs, &l4(TCP, dport)].concat()));
        f
    };
    assert_eq!(h.run(&with(&hop_by_hop(TCP), 0, 22)), XDP_DROP);
    assert_eq!(h.run(&with(&hop_by_hop(TCP), 0, 80)), XDP_PASS);
    // Hop-by-hop (16 bytes: hdr ext len 1), destination options, then a first fragment.
    let mut chain = vec![60, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    chain.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]); // dest opts -> fragment
    chain.extend_from_slice(&[TCP, 0, 0x00, 0x01, 0, 0, 0, 42]); // offset 0, MF
    assert_eq!(h.run(&with(&chain, 0, 22)), XDP_DROP);
    assert_eq!(h.run(&with(&chain, 0, 80)), XDP_PASS);
    // A non-first fragment: no port.
    let frag = [TCP, 0, 0x05, 0x00, 0, 0, 0, 42];
    assert_eq!(h.run(&with(&frag, 44, 22)), XDP_PASS);
    // Routing header (type 0 style, 8 bytes) before TCP.
    assert_eq!(h.run(&with(&[TCP, 0, 0, 0, 0, 0, 0, 0], 43, 22)), XDP_DROP);
    h.assert_counters(&[(SEEN, 6), (PASSED, 3), (PASS_PORT, 3), (DROP_EXACT_V6, 3)]);
}

#[test]
fn prefix_bans() {
    let Some(mut h) = harness("prefix_bans") else {
        return;
    };
    h.prefix_v4([198, 18, 4, 0], 24, BanValue::new(0));
    // fd00:f2b:0:0:8000::/65: only the upper half of the test /64.
    let mut p6 = V6_DST;
    p6[8] = 0x80;
    p6[15] = 0;
    h.prefix_v6(p6, 65, BanValue::new(0));
    let mut inside6 = p6;
    inside6[15] = 9;
    let f4 = frame_v4([198, 18, 4, 9], UDP, 53);
    assert_eq!(h.run(&f4), XDP_DROP);
    assert_eq!(h.run(&frame_v4([198, 18, 5, 9], UDP, 53)), XDP_PASS);
    assert_eq!(h.run(&frame_v6(inside6, TCP, 443)), XDP_DROP);
    assert_eq!(h.run(&frame_v6(V6_A, TCP, 443)), XDP_PASS);
    // An exact ban on an address inside the prefix takes the drop (and its count) first.
    h.ban_v4([198, 18, 4, 10], BanValue::new(0));
    assert_eq!(h.run(&frame_v4([198, 18, 4, 10], UDP, 53)), XDP_DROP);
    h.assert_counters(&[
        (SEEN, 5),
        (PASSED, 2),
        (DROP_PREFIX_V4, 1),
        (DROP_PREFIX_V6, 1),
        (DROP_EXACT_V4, 1),
    ]);
    let v = h.get_prefix_v4([198, 18, 4, 0], 24);
    assert_eq!((v.packets, v.bytes), (1, f4.len() as u64));
    assert_eq!(h.get_prefix_v6(p6, 65).packets, 1);
    // A port-scoped exact ban that does not cover the port falls through to the prefix.
    h.ban_v4([198, 18, 4, 11], scoped(&[22]));
    assert_eq!(h.run(&frame_v4([198, 18, 4, 11], UDP, 53)), XDP_DROP);
    assert_eq!(h.get_prefix_v4([198, 18, 4, 0], 24).packets, 2);
}

#[test]
fn counters_on_repeat() {
    let Some(mut h) = harness("counters_on_repeat") else {
        return;
    };
    h.ban_v4(V4_A, BanValue::new(0));
    let f = frame_v4(V4_A, TCP, 22);
    let prog: &Xdp = h.ebpf.program(maps::PROGRAM).unwrap().try_into().unwrap();
    let r = test_run(prog.fd().unwrap().as_fd(), &f, 1000).unwrap();
    assert_eq!(r.retval, XDP_DROP);
    h.assert_counters(&[(SEEN, 1000), (DROP_EXACT_V4, 1000)]);
    let v = h.get_ban_v4(V4_A);
    assert_eq!((v.packets, v.bytes), (1000, 1000 * f.len() as u64));
}

/// A second load against the same pin directory reuses the pinned maps (bans survive an
/// agent restart).
#[test]
fn pinned_maps_are_reused() {
    let Some(mut h) = harness("pinned_maps_are_reused") else {
        return;
    };
    h.ban_v4(V4_A, BanValue::new(0));
    let mut second = EbpfLoader::new()
        .default_map_pin_directory(h.pin_dir())
        .load(f2b_agent::EBPF_OBJECT)
        .unwrap();
    let prog: &mut Xdp = second
        .program_mut(maps::PROGRAM)
        .unwrap()
        .try_into()
        .unwrap();
    prog.load().unwrap();
    let r = test_run(prog.fd().unwrap().as_fd(), &frame_v4(V4_A, TCP, 22), 1).unwrap();
    assert_eq!(r.retval, XDP_DROP);
    assert_eq!(h.get_ban_v4(V4_A).packets, 1);
}

#[test]
fn v6_prefixes_of_several_lengths_longest_wins() {
    let Some(mut h) = harness("v6_prefixes_of_several_lengths_longest_wins") else {
        return;
    };
    // fd00:f2b::/48 (a length in the first word of the length set), fd00:f2b::/64 (the first
    // bit of the second word), fd00:f2b::8000:0:0/97 and one /127: a source is dropped by
    // the longest that covers it, counted there.
    let base = V6_DST;
    let mut p97 = base;
    p97[12] = 0x80;
    let mut p127 = base;
    p127[15] = 0x40;
    h.prefix_v6(base, 48, BanValue::new(0));
    h.prefix_v6(base, 64, scoped(&[22]));
    h.prefix_v6(p97, 97, BanValue::new(0));
    h.prefix_v6(p127, 127, BanValue::new(0));
    let mut in97 = p97;
    in97[15] = 0x33;
    let mut in127 = p127;
    in127[15] = 0x41;
    let mut in64 = base;
    in64[15] = 0x22;
    let mut in48 = base;
    in48[6] = 0x12;
    let mut outside = base;
    outside[5] = 0x01;
    assert_eq!(h.run(&frame_v6(in127, TCP, 80)), XDP_DROP);
    assert_eq!(h.run(&frame_v6(in97, TCP, 80)), XDP_DROP);
    assert_eq!(h.run(&frame_v6(in64, TCP, 22)), XDP_DROP);
    assert_eq!(h.run(&frame_v6(in48, TCP, 80)), XDP_DROP);
    assert_eq!(h.run(&frame_v6(outside, TCP, 80)), XDP_PASS);
    // Only the longest covering prefix is consulted, as with an LPM trie: the /64 is scoped
    // to port 22, so port 80 from inside it passes although the /48 covers it too.
    assert_eq!(h.run(&frame_v6(in64, TCP, 80)), XDP_PASS);
    for (ip, len) in [(p127, 127), (p97, 97), (base, 64), (base, 48)] {
        assert_eq!(h.get_prefix_v6(ip, len).packets, 1, "/{len}");
    }
    h.assert_counters(&[(SEEN, 6), (PASSED, 2), (PASS_PORT, 1), (DROP_PREFIX_V6, 4)]);
}
