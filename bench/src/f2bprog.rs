//! f2b's own XDP program (the object embedded in f2b-agent), loaded by the bench with its maps
//! pinned in a private bpffs, so the bench can fill maps in bulk and run or attach the program
//! without an agent. The program and map layout are exactly the agent's.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;

use anyhow::{Context, Result};
use aya::maps::MapData;
use aya::programs::Xdp;
use aya::{Ebpf, EbpfLoader};
use f2b_common::{BanValue, maps};

/// A bpffs mounted on a fresh temp dir, unmounted (lazily) when dropped.
pub struct PrivateBpffs {
    pub mnt: PathBuf,
    _tmp: tempfile::TempDir,
}

impl PrivateBpffs {
    pub fn new() -> Result<PrivateBpffs> {
        let tmp = tempfile::Builder::new()
            .prefix("f2b-bench-bpf-")
            .tempdir()?;
        let fs = PrivateBpffs {
            mnt: tmp.path().join("bpf"),
            _tmp: tmp,
        };
        f2b_agent::bpffs::ensure_bpffs(&fs.mnt)?;
        Ok(fs)
    }
}

impl Drop for PrivateBpffs {
    fn drop(&mut self) {
        if let Ok(c) = std::ffi::CString::new(self.mnt.as_os_str().as_encoded_bytes()) {
            // SAFETY: c is a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

pub struct F2bProg {
    pub ebpf: Ebpf,
    // Declared after ebpf: maps are closed before the mount goes.
    pub fs: PrivateBpffs,
}

/// LPM trie keys as the kernel lays them out (aya-ebpf's `Key<[u8; N]>`: packed).
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct Lpm<const N: usize> {
    pub prefix_len: u32,
    pub addr: [u8; N],
}

// SAFETY: repr(C, packed) and Copy with only integer fields: no padding, every byte pattern
// is a valid value, as aya's Pod requires for raw map keys.
unsafe impl<const N: usize> aya::Pod for Lpm<N> {}

impl F2bProg {
    /// Loads the program with exact-ban maps of the agent's default size (1Mi) and prefix maps
    /// of `prefixes` entries (the agent's default is 64Ki).
    pub fn load(prefixes: u32) -> Result<F2bProg> {
        let fs = PrivateBpffs::new()?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&fs.mnt)
            .map_max_entries(maps::BANS_V4, f2b_common::DEFAULT_MAX_BANS)
            .map_max_entries(maps::BANS_V6, f2b_common::DEFAULT_MAX_BANS)
            .map_max_entries(maps::PREFIX_V4, prefixes)
            .map_max_entries(maps::PREFIX_V6, prefixes)
            .map_max_entries(maps::ALLOW_V4, f2b_common::DEFAULT_MAX_ALLOW)
            .map_max_entries(maps::ALLOW_V6, f2b_common::DEFAULT_MAX_ALLOW)
            .load(f2b_agent::EBPF_OBJECT)
            .context("loading f2b's XDP object")?;
        let prog: &mut Xdp = ebpf
            .program_mut(maps::PROGRAM)
            .context("no f2b_xdp program")?
            .try_into()?;
        prog.load()?;
        Ok(F2bProg { ebpf, fs })
    }

    pub fn prog_fd(&self) -> Result<BorrowedFd<'_>> {
        let prog: &Xdp = self
            .ebpf
            .program(maps::PROGRAM)
            .context("program")?
            .try_into()?;
        Ok(prog.fd()?.as_fd())
    }

    pub fn map(&self, name: &str) -> Result<MapData> {
        MapData::from_pin(self.fs.mnt.join(name)).with_context(|| format!("open pinned {name}"))
    }

    /// Sum of the drop counters (all reasons) over CPUs.
    pub fn dropped(&self) -> Result<u64> {
        let m = self.map(maps::COUNTERS)?;
        let mut sum = 0;
        for i in [
            f2b_common::counters::DROP_EXACT_V4,
            f2b_common::counters::DROP_EXACT_V6,
            f2b_common::counters::DROP_PREFIX_V4,
            f2b_common::counters::DROP_PREFIX_V6,
        ] {
            sum += crate::sys::percpu_sum(m.fd().as_fd(), i)?;
        }
        Ok(sum)
    }

    /// Frames the program saw.
    pub fn seen(&self) -> Result<u64> {
        let m = self.map(maps::COUNTERS)?;
        crate::sys::percpu_sum(m.fd().as_fd(), f2b_common::counters::SEEN)
    }

    pub fn ban_v4(&self, keys: &[[u8; 4]]) -> Result<()> {
        let m = self.map(maps::BANS_V4)?;
        crate::sys::update_batch(m.fd().as_fd(), keys, &vec![BanValue::new(0); keys.len()])
    }

    pub fn ban_v6(&self, keys: &[[u8; 16]]) -> Result<()> {
        let m = self.map(maps::BANS_V6)?;
        crate::sys::update_batch(m.fd().as_fd(), keys, &vec![BanValue::new(0); keys.len()])
    }

    pub fn ban_prefix_v4(&self, keys: &[Lpm<4>]) -> Result<()> {
        let m = self.map(maps::PREFIX_V4)?;
        crate::sys::update_batch(m.fd().as_fd(), keys, &vec![BanValue::new(0); keys.len()])
    }

    /// As the agent writes IPv6 prefixes: their lengths into F2B_PREFIX_V6_LENS first, then
    /// the entries keyed by (length, address masked to it).
    pub fn ban_prefix_v6(&self, keys: &[Lpm<16>]) -> Result<()> {
        let mut lens: aya::maps::Array<MapData, [u64; 2]> =
            aya::maps::Array::try_from(aya::maps::Map::Array(self.map(maps::PREFIX_V6_LENS)?))?;
        let mut w = lens.get(&0, 0)?;
        let keys: Vec<Lpm<16>> = keys
            .iter()
            .map(|k| {
                let len = k.prefix_len;
                w[(len / 64) as usize] |= 1 << (len % 64);
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                Lpm {
                    prefix_len: len,
                    addr: (u128::from_be_bytes(k.addr) & mask).to_be_bytes(),
                }
            })
            .collect();
        lens.set(0, w, 0)?;
        let m = self.map(maps::PREFIX_V6)?;
        crate::sys::update_batch(m.fd().as_fd(), &keys, &vec![BanValue::new(0); keys.len()])
    }

    pub fn allow_v4(&self, keys: &[Lpm<4>]) -> Result<()> {
        let m = self.map(maps::ALLOW_V4)?;
        crate::sys::update_batch(m.fd().as_fd(), keys, &vec![1u32; keys.len()])
    }

    pub fn allow_v6(&self, keys: &[Lpm<16>]) -> Result<()> {
        let m = self.map(maps::ALLOW_V6)?;
        crate::sys::update_batch(m.fd().as_fd(), keys, &vec![1u32; keys.len()])
    }
}
