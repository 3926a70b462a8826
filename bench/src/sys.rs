//! Thin wrappers over the `bpf(2)` commands the bench needs and aya 0.14 lacks (batch map
//! operations, live-frame test runs, XDP links on an ifindex, raw program loads), and over
//! /proc for CPU time and process memory.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result, bail};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_XDP_ATTACH_TYPE: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

pub const XDP_DROP: i32 = 1;
pub const XDP_PASS: i32 = 2;

/// Every `bpf_attr` we send: a zeroed 128-byte buffer that a typed prefix is copied into (the
/// kernel requires the bytes past the fields it knows to be zero).
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    let mut buf = [0u64; 16];
    assert!(size_of::<T>() <= size_of_val(&buf));
    // SAFETY: T is a plain #[repr(C)] struct no larger than buf; copied bytewise both ways.
    unsafe {
        std::ptr::copy_nonoverlapping(
            attr as *const T as *const u8,
            buf.as_mut_ptr() as *mut u8,
            size_of::<T>(),
        );
    }
    // SAFETY: buf is a valid bpf_attr of the size passed; pointers inside point at memory the
    // caller keeps borrowed for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            buf.as_mut_ptr(),
            size_of_val(&buf) as libc::c_uint,
        )
    };
    // SAFETY: as above, copying back what the kernel wrote (counts, durations).
    unsafe {
        std::ptr::copy_nonoverlapping(
            buf.as_ptr() as *const u8,
            attr as *mut T as *mut u8,
            size_of::<T>(),
        );
    }
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// One eBPF instruction.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

/// XDP program: `return bpf_redirect(ifindex, 0)`. The in-kernel generator runs it with
/// `BPF_PROG_TEST_RUN` live frames, so every frame leaves through `ifindex` as an xdp_frame.
pub fn redirect_insns(ifindex: u32) -> Vec<Insn> {
    vec![
        insn(0xb7, 1, 0, 0, ifindex as i32), // r1 = ifindex
        insn(0xb7, 2, 0, 0, 0),              // r2 = 0
        insn(0x85, 0, 0, 0, 23),             // call bpf_redirect
        insn(0x95, 0, 0, 0, 0),              // exit
    ]
}

/// XDP program: count the frame in slot 0 of a per-CPU array, then return `verdict`.
pub fn count_insns(map_fd: i32, verdict: i32) -> Vec<Insn> {
    vec![
        insn(0x62, 10, 0, -4, 0),     // *(u32 *)(r10 - 4) = 0
        insn(0xbf, 2, 10, 0, 0),      // r2 = r10
        insn(0x07, 2, 0, 0, -4),      // r2 += -4
        insn(0x18, 1, 1, 0, map_fd),  // r1 = map (BPF_PSEUDO_MAP_FD)
        insn(0, 0, 0, 0, 0),          //   (second half of ld_imm64)
        insn(0x85, 0, 0, 0, 1),       // call bpf_map_lookup_elem
        insn(0x15, 0, 0, 3, 0),       // if r0 == 0 goto +3
        insn(0x79, 1, 0, 0, 0),       // r1 = *(u64 *)(r0 + 0)
        insn(0x07, 1, 0, 0, 1),       // r1 += 1
        insn(0x7b, 0, 1, 0, 0),       // *(u64 *)(r0 + 0) = r1
        insn(0xb7, 0, 0, 0, verdict), // r0 = verdict
        insn(0x95, 0, 0, 0, 0),       // exit
    ]
}

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// Loads a hand-assembled XDP program; the verifier log is in the error when it refuses.
pub fn load_xdp(name: &str, insns: &[Insn]) -> Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 1 << 16];
    let mut prog_name = [0u8; 16];
    for (d, s) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
    };
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned(fd)),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            bail!(
                "loading XDP program {name}: {e}; verifier: {}",
                String::from_utf8_lossy(&log[..end])
            )
        }
    }
}

#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

/// A one-slot per-CPU u64 array (the counter of [`count_insns`]).
pub fn percpu_counter() -> Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_PERCPU_ARRAY,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
    };
    Ok(owned(
        bpf(BPF_MAP_CREATE, &mut attr).context("creating a per-CPU counter map")?,
    ))
}

/// Number of possible CPUs (the stride of per-CPU map values).
pub fn possible_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| {
            s.trim()
                .split(',')
                .map(|r| match r.split_once('-') {
                    Some((a, b)) => Some(b.parse::<usize>().ok()? - a.parse::<usize>().ok()? + 1),
                    None => r.parse::<usize>().ok().map(|_| 1),
                })
                .sum::<Option<usize>>()
        })
        .unwrap_or(1)
}

#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Sum over CPUs of u64 slot `index` of a per-CPU array.
pub fn percpu_sum(map: BorrowedFd<'_>, index: u32) -> Result<u64> {
    let mut vals = vec![0u64; possible_cpus()];
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: &index as *const u32 as u64,
        value: vals.as_mut_ptr() as u64,
        flags: 0,
    };
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).context("reading a per-CPU counter")?;
    Ok(vals.iter().sum())
}

/// Looks `key` up in a (non-per-CPU) map; true when present (the value lands in `value`).
pub fn lookup_elem(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        flags: 0,
    };
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// Attaches `prog` in driver (native) mode to `ifindex` of the calling thread's network
/// namespace; detached when the returned link fd is closed.
pub fn attach_xdp_native(prog: BorrowedFd<'_>, ifindex: u32) -> Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP_ATTACH_TYPE,
        flags: XDP_FLAGS_DRV_MODE,
    };
    Ok(owned(bpf(BPF_LINK_CREATE, &mut attr).with_context(
        || format!("attaching XDP (native) to ifindex {ifindex}"),
    )?))
}

/// Runs `prog` over `count` live copies of `frame` (`BPF_F_TEST_XDP_LIVE_FRAMES`): what the
/// program redirects is really transmitted. Runs on the calling thread's CPU, in its netns.
pub fn test_run_live(prog: BorrowedFd<'_>, frame: &[u8], count: u32) -> Result<()> {
    f2b_agent::testrun::test_run_live(prog, frame, count)
        .context("BPF_PROG_TEST_RUN with live frames")
}

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

/// Inserts `keys[i] -> values[i]` with `BPF_MAP_UPDATE_BATCH`: the agent's own batch writer
/// (f2b_agent::kernel::batch), so the bench fills maps the way the agent does.
pub fn update_batch<K: aya::Pod, V: aya::Pod>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> Result<()> {
    f2b_agent::kernel::batch::update(map, keys, values).map_err(|e| {
        anyhow::anyhow!(
            "BPF_MAP_UPDATE_BATCH: {} after {} of {} entries",
            e.error,
            e.done,
            keys.len()
        )
    })
}

/// Number of entries of a hash map, by `BPF_MAP_LOOKUP_BATCH` in chunks of 32K.
pub fn count_entries(map: BorrowedFd<'_>, key_size: usize, value_size: usize) -> Result<u64> {
    const CHUNK: usize = 1 << 15;
    let mut keys = vec![0u8; key_size * CHUNK];
    let mut vals = vec![0u8; value_size * CHUNK];
    let mut token = [0u8; 16];
    let mut first = true;
    let mut total = 0u64;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token.as_ptr() as u64 },
            out_batch: token.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: vals.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        first = false;
        match bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) {
            Ok(_) => total += u64::from(attr.count),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                total += u64::from(attr.count);
                return Ok(total);
            }
            Err(e) => return Err(e).context("BPF_MAP_LOOKUP_BATCH"),
        }
    }
}

#[repr(C)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// Opens a pinned object.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let mut attr = ObjGetAttr {
        pathname: c.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    bpf(BPF_OBJ_GET, &mut attr).map(owned)
}

/// Pins the calling thread to one CPU.
pub fn pin_thread(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; sched_setaffinity(0) affects
    // only the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error()).context("sched_setaffinity");
        }
    }
    Ok(())
}

/// Moves the calling thread to SCHED_FIFO priority 1 (what f2b's log readers use), with
/// SCHED_RESET_ON_FORK.
pub fn fifo() -> io::Result<()> {
    let p = libc::sched_param { sched_priority: 1 };
    // SAFETY: plain syscall on the calling thread with a valid parameter struct.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &p) } == 0
    {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// CPU time of one CPU from /proc/stat, in USER_HZ ticks.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    pub softirq: u64,
    pub total: u64,
}

pub fn cpu_times(cpu: usize) -> Result<CpuTimes> {
    let text = std::fs::read_to_string("/proc/stat")?;
    let tag = format!("cpu{cpu} ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&tag))
        .with_context(|| format!("no {tag} in /proc/stat"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 8 {
        bail!("short /proc/stat line: {line}");
    }
    let total: u64 = v.iter().take(8).sum();
    Ok(CpuTimes {
        softirq: v[6],
        total,
    })
}

/// Ticks per second of /proc/stat.
pub fn user_hz() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// (VmRSS, VmHWM) of a process in KiB.
pub fn rss_kib(pid: u32) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|x| x.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// Lets the machine settle before a latency measurement: `sync` (what earlier sections wrote,
/// gigabytes of generated logs, is flushed now rather than during the trials), then waits,
/// up to `max`, until the dirty and under-writeback page cache is below 16 MiB. Returns the
/// time it took and the dirty KiB left.
pub fn settle(max: std::time::Duration) -> (std::time::Duration, u64) {
    let t0 = std::time::Instant::now();
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let dirty = || -> u64 {
        std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("Dirty:") || l.starts_with("Writeback:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    };
    let mut left = dirty();
    while left > 16 << 10 && t0.elapsed() < max {
        std::thread::sleep(std::time::Duration::from_millis(50));
        left = dirty();
    }
    (t0.elapsed(), left)
}
