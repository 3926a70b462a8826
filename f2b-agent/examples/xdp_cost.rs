//! Per-packet cost of the XDP program, measured in the kernel with `BPF_PROG_TEST_RUN`.
//!
//! Loads the embedded program with its maps sized as the agent's defaults (pinned in a private
//! bpffs in a temp dir), fills the maps step by step (1 ban, then 1M bans, prefixes, an
//! allowlist) and, at each step, runs crafted hit and miss frames `REPEAT` times per round.
//! Prints the median over `ROUNDS` rounds of the kernel's mean ns per run. No thresholds:
//! this is a measurement, not a test.
//!
//! Run as root: `cargo run --release -p f2b-agent --example xdp_cost`.
//! The frames are never sent anywhere; their addresses are still kept to 198.18.0.0/15 and
//! fd00:f2b::/64. Bulk map keys are data only (100.64.0.0/10 and fd00:f2b::/64).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use aya::maps::MapData;
use aya::programs::Xdp;
use aya::{Ebpf, EbpfLoader};
use f2b_agent::bpffs::ensure_bpffs;
use f2b_agent::testrun::test_run;
use f2b_common::{BanValue, maps};

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 7;
const BULK: u32 = 1_000_000;
const PREFIXES: u32 = 65_535;
const ALLOWS: u32 = 4_095;

const HIT4: [u8; 4] = [198, 18, 0, 7];
const MISS4: [u8; 4] = [198, 18, 0, 8];
const HIT6: [u8; 16] = [0xfd, 0, 0x0f, 0x2b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
const MISS6: [u8; 16] = [0xfd, 0, 0x0f, 0x2b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8];

/// `enum bpf_cmd` value of `BPF_MAP_UPDATE_BATCH` (include/uapi/linux/bpf.h).
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Inserts `keys[i] -> values[i]` with `BPF_MAP_UPDATE_BATCH` (aya 0.14 has no batch API).
fn update_batch<K, V>(map: BorrowedFd<'_>, keys: &[K], values: &[V]) -> Result<()> {
    assert_eq!(keys.len(), values.len());
    const CHUNK: usize = 1 << 16;
    for (k, v) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let mut done = 0;
        while done < k.len() {
            let mut attr = BatchAttr {
                keys: k[done..].as_ptr() as u64,
                values: v[done..].as_ptr() as u64,
                count: (k.len() - done) as u32,
                map_fd: map.as_raw_fd() as u32,
                ..BatchAttr::default()
            };
            // SAFETY: keys/values point at `count` contiguous keys and values of the map's
            // key/value sizes, borrowed for the call; the kernel only reads them and writes
            // back `count` into attr.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_UPDATE_BATCH,
                    &mut attr as *mut BatchAttr,
                    size_of::<BatchAttr>() as libc::c_uint,
                )
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error()).context("BPF_MAP_UPDATE_BATCH");
            }
            if attr.count == 0 {
                bail!("BPF_MAP_UPDATE_BATCH made no progress");
            }
            done += attr.count as usize;
        }
    }
    Ok(())
}

/// LPM trie keys as the kernel lays them out (aya-ebpf's `Key<[u8; N]>`: packed).
#[repr(C, packed)]
#[derive(Clone, Copy)]
struct Lpm<const N: usize> {
    prefix_len: u32,
    addr: [u8; N],
}

/// A bpffs mounted on a fresh temp dir, unmounted (lazily) when dropped.
struct PrivateBpffs {
    mnt: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for PrivateBpffs {
    fn drop(&mut self) {
        if let Ok(c) = std::ffi::CString::new(self.mnt.as_os_str().as_encoded_bytes()) {
            // SAFETY: c is a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

struct Bench {
    ebpf: Ebpf,
    fs: PrivateBpffs,
    rows: Vec<(String, u32, u32, u32, u32)>,
}

impl Bench {
    fn map(&self, name: &str) -> Result<MapData> {
        MapData::from_pin(self.fs.mnt.join(name)).with_context(|| format!("open pinned {name}"))
    }

    /// Median, min and max of the kernel's mean ns per run over ROUNDS rounds.
    fn measure(&mut self, label: &str, frame: &[u8]) -> Result<u32> {
        let prog: &Xdp = self
            .ebpf
            .program(maps::PROGRAM)
            .context("program")?
            .try_into()?;
        let fd = prog.fd()?.as_fd();
        let mut ns = Vec::with_capacity(ROUNDS);
        let mut verdict = 0;
        for _ in 0..ROUNDS {
            let r = test_run(fd, frame, REPEAT)?;
            verdict = r.retval;
            ns.push(r.duration_ns);
        }
        ns.sort_unstable();
        let median = ns[ROUNDS / 2];
        self.rows
            .push((label.to_string(), verdict, median, ns[0], ns[ROUNDS - 1]));
        eprintln!("  {label}: {median} ns");
        Ok(median)
    }
}

fn frame_v4(src: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&[198, 18, 0, 1]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp(443));
    f.resize(64, 0);
    f
}

fn frame_v6(src: [u8; 16]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x86, 0xdd];
    let mut ip = [0u8; 40];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&20u16.to_be_bytes());
    ip[6] = 6;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src);
    ip[24..40].copy_from_slice(&MISS6);
    ip[39] = 1;
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp(443));
    f
}

fn tcp(dport: u16) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&40000u16.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = 0x02;
    h
}

fn bulk_v4(i: u32) -> [u8; 4] {
    // 100.64.0.0/10 holds 2^22 addresses; i < 2^20.
    (0x6440_0000u32 + i).to_be_bytes()
}

fn bulk_v6(i: u32) -> [u8; 16] {
    // fd00:f2b::1:0:0 + i, inside fd00:f2b::/64.
    let mut a = HIT6;
    a[10..12].copy_from_slice(&[0, 1]);
    a[12..16].copy_from_slice(&i.to_be_bytes());
    a
}

fn timed<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let r = f()?;
    eprintln!("  {what}: {:.2?}", t.elapsed());
    Ok(r)
}

fn main() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("xdp_cost needs root (BPF, mount)");
    }
    let tmp = tempfile::tempdir()?;
    let fs = PrivateBpffs {
        mnt: tmp.path().join("bpf"),
        _tmp: tmp,
    };
    ensure_bpffs(&fs.mnt)?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(&fs.mnt)
        .map_max_entries(maps::BANS_V4, f2b_common::DEFAULT_MAX_BANS)
        .map_max_entries(maps::BANS_V6, f2b_common::DEFAULT_MAX_BANS)
        .map_max_entries(maps::PREFIX_V4, f2b_common::DEFAULT_MAX_PREFIXES)
        .map_max_entries(maps::PREFIX_V6, f2b_common::DEFAULT_MAX_PREFIXES)
        .map_max_entries(maps::ALLOW_V4, f2b_common::DEFAULT_MAX_ALLOW)
        .map_max_entries(maps::ALLOW_V6, f2b_common::DEFAULT_MAX_ALLOW)
        .load(f2b_agent::EBPF_OBJECT)?;
    let prog: &mut Xdp = ebpf
        .program_mut(maps::PROGRAM)
        .context("no f2b_xdp program")?
        .try_into()?;
    prog.load()?;
    let mut b = Bench {
        ebpf,
        fs,
        rows: Vec::new(),
    };
    let permanent = BanValue::new(0);
    eprintln!("REPEAT={REPEAT} ROUNDS={ROUNDS}");

    let mut arp = vec![
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 2, 0x08, 0x06,
    ];
    arp.resize(60, 0);
    b.measure("non-IP frame (ARP), empty maps", &arp)?;
    b.measure("v4 miss, empty maps", &frame_v4(MISS4))?;
    b.measure("v6 miss, empty maps", &frame_v6(MISS6))?;

    let v4 = b.map(maps::BANS_V4)?;
    let v6 = b.map(maps::BANS_V6)?;
    update_batch(v4.fd().as_fd(), &[HIT4], &[permanent])?;
    update_batch(v6.fd().as_fd(), &[HIT6], &[permanent])?;
    let one4 = b.measure("v4 exact hit (drop), 1 ban", &frame_v4(HIT4))?;
    b.measure("v4 exact miss, 1 ban", &frame_v4(MISS4))?;
    let one6 = b.measure("v6 exact hit (drop), 1 ban", &frame_v6(HIT6))?;
    b.measure("v6 exact miss, 1 ban", &frame_v6(MISS6))?;

    let values = vec![permanent; BULK as usize];
    timed("batch insert 1M v4", || {
        let keys: Vec<[u8; 4]> = (0..BULK).map(bulk_v4).collect();
        update_batch(v4.fd().as_fd(), &keys, &values)
    })?;
    timed("batch insert 1M v6", || {
        let keys: Vec<[u8; 16]> = (0..BULK).map(bulk_v6).collect();
        update_batch(v6.fd().as_fd(), &keys, &values)
    })?;
    let big4 = b.measure("v4 exact hit (drop), 1M bans", &frame_v4(HIT4))?;
    b.measure("v4 exact miss, 1M bans", &frame_v4(MISS4))?;
    let big6 = b.measure("v6 exact hit (drop), 1M bans", &frame_v6(HIT6))?;
    b.measure("v6 exact miss, 1M bans", &frame_v6(MISS6))?;

    // Prefix bans: the hit source is not exactly banned, so it goes hash miss -> LPM hit.
    let p4 = b.map(maps::PREFIX_V4)?;
    let p6 = b.map(maps::PREFIX_V6)?;
    let hit_p4 = [198, 18, 4, 9];
    let mut hit_p6 = HIT6;
    hit_p6[10..12].copy_from_slice(&[0xff, 0xff]);
    let mut net_p6 = hit_p6;
    net_p6[12..16].fill(0);
    update_batch(
        p4.fd().as_fd(),
        &[Lpm {
            prefix_len: 24,
            addr: [198, 18, 4, 0],
        }],
        &[permanent],
    )?;
    update_batch(
        p6.fd().as_fd(),
        &[Lpm {
            prefix_len: 96,
            addr: net_p6,
        }],
        &[permanent],
    )?;
    b.measure("v4 prefix hit (drop), 1 prefix", &frame_v4(hit_p4))?;
    b.measure("v6 prefix hit (drop), 1 prefix", &frame_v6(hit_p6))?;
    let pvalues = vec![permanent; PREFIXES as usize];
    timed("batch insert 64K v4 /24 + 64K v6 /96 prefixes", || {
        // 100.64.0.0/24, 100.64.1.0/24, ... and fd00:f2b::i:0:0/96.
        let keys4: Vec<Lpm<4>> = (0..PREFIXES)
            .map(|i| Lpm {
                prefix_len: 24,
                addr: bulk_v4(i << 8),
            })
            .collect();
        update_batch(p4.fd().as_fd(), &keys4, &pvalues)?;
        let keys6: Vec<Lpm<16>> = (1..=PREFIXES)
            .map(|i| {
                let mut a = HIT6;
                a[10..12].copy_from_slice(&(i as u16).to_be_bytes());
                a[12..16].fill(0);
                Lpm {
                    prefix_len: 96,
                    addr: a,
                }
            })
            .collect();
        // The last one (i = 0xffff) is the hit prefix already present: an update.
        update_batch(p6.fd().as_fd(), &keys6, &pvalues)
    })?;
    b.measure(
        "v4 prefix hit (drop), 64K prefixes + 1M bans",
        &frame_v4(hit_p4),
    )?;
    b.measure("v4 miss, 64K prefixes + 1M bans", &frame_v4(MISS4))?;
    b.measure(
        "v6 prefix hit (drop), 64K prefixes + 1M bans",
        &frame_v6(hit_p6),
    )?;
    b.measure("v6 miss, 64K prefixes + 1M bans", &frame_v6(MISS6))?;

    let a4 = b.map(maps::ALLOW_V4)?;
    let a6 = b.map(maps::ALLOW_V6)?;
    let allow_keys: Vec<Lpm<4>> = (0..ALLOWS)
        .map(|i| Lpm {
            prefix_len: 32,
            addr: bulk_v4(0x20_0000 + i),
        })
        .chain([Lpm {
            prefix_len: 32,
            addr: HIT4,
        }])
        .collect();
    update_batch(a4.fd().as_fd(), &allow_keys, &vec![1u32; allow_keys.len()])?;
    update_batch(
        a6.fd().as_fd(),
        &[Lpm {
            prefix_len: 128,
            addr: HIT6,
        }],
        &[1u32],
    )?;
    b.measure("v4 allowlist hit (pass), 4K allow", &frame_v4(HIT4))?;
    b.measure(
        "v4 miss, 4K allow + 64K prefixes + 1M bans",
        &frame_v4(MISS4),
    )?;
    b.measure("v6 allowlist hit (pass), 1 allow", &frame_v6(HIT6))?;

    println!();
    println!("XDP per-packet cost (BPF_PROG_TEST_RUN, repeat {REPEAT}, median of {ROUNDS} rounds)");
    println!(
        "{:<48} {:>7} {:>7} {:>7} {:>7}",
        "case", "verdict", "median", "min", "max"
    );
    for (label, verdict, med, min, max) in &b.rows {
        let v = match verdict {
            1 => "DROP",
            2 => "PASS",
            _ => "?",
        };
        println!("{label:<48} {v:>7} {med:>5}ns {min:>5}ns {max:>5}ns");
    }
    let ratio = |big: u32, one: u32| big as f64 / one.max(1) as f64;
    println!();
    println!("exact v4 hit, 1M bans / 1 ban: {:.2}", ratio(big4, one4));
    println!("exact v6 hit, 1M bans / 1 ban: {:.2}", ratio(big6, one6));
    Ok(())
}
