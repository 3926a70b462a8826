//! `BPF_PROG_TEST_RUN` for XDP programs: runs a loaded program on a frame we craft, in the
//! kernel, without attaching it anywhere. The verdict tests and the per-packet cost benchmark
//! use it; aya 0.14 has no wrapper for it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `enum bpf_cmd` value of `BPF_PROG_TEST_RUN` (include/uapi/linux/bpf.h).
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The `test` member of `union bpf_attr`, in kernel order. The kernel reads `size` bytes and
/// requires everything past the fields it knows to be zero, so the struct is sent zeroed
/// except for what we set.
#[repr(C)]
#[derive(Default)]
struct TestAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// Result of one `BPF_PROG_TEST_RUN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value (for XDP: `XDP_DROP` = 1, `XDP_PASS` = 2, ...).
    pub retval: u32,
    /// Mean wall time of one run in ns, as the kernel measured it over `repeat` runs.
    pub duration_ns: u32,
}

/// Runs the program behind `prog_fd` on `frame` `repeat` times (0 is treated as 1 by the
/// kernel) and returns the last verdict and the mean time per run.
///
/// The frame must be at least an Ethernet header long (14 bytes): the kernel refuses shorter
/// input for XDP with `EINVAL`.
pub fn test_run(prog_fd: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> io::Result<TestRun> {
    run(prog_fd, frame, repeat, 0)
}

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: frames the program redirects or transmits really leave.
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// Runs an XDP program over `count` live copies of `frame`: what it redirects (XDP_REDIRECT)
/// or transmits is really sent, on the calling thread's CPU and in its network namespace.
/// The benchmark's in-kernel traffic generator.
pub fn test_run_live(prog_fd: BorrowedFd<'_>, frame: &[u8], count: u32) -> io::Result<()> {
    run(prog_fd, frame, count, BPF_F_TEST_XDP_LIVE_FRAMES).map(|_| ())
}

fn run(prog_fd: BorrowedFd<'_>, frame: &[u8], repeat: u32, flags: u32) -> io::Result<TestRun> {
    let data_size_in = u32::try_from(frame.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut attr = TestAttr {
        prog_fd: prog_fd.as_raw_fd() as u32,
        data_size_in,
        data_in: frame.as_ptr() as u64,
        repeat,
        flags,
        ..TestAttr::default()
    };
    // SAFETY: attr is a valid, fully initialised bpf_attr prefix of the size we pass; the
    // kernel only reads data_in (frame.len() bytes, borrowed for the call) and writes back into
    // attr. data_out is null, so nothing else is written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestAttr,
            size_of::<TestAttr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TestRun {
        retval: attr.retval,
        duration_ns: attr.duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_matches_kernel_layout() {
        // offsetof(union bpf_attr, test.*) in include/uapi/linux/bpf.h (6.x).
        assert_eq!(std::mem::offset_of!(TestAttr, data_in), 16);
        assert_eq!(std::mem::offset_of!(TestAttr, repeat), 32);
        assert_eq!(std::mem::offset_of!(TestAttr, duration), 36);
        assert_eq!(std::mem::offset_of!(TestAttr, ctx_in), 48);
        assert_eq!(std::mem::offset_of!(TestAttr, flags), 64);
        assert_eq!(std::mem::offset_of!(TestAttr, batch_size), 72);
        assert_eq!(size_of::<TestAttr>(), 80);
    }

    #[test]
    fn bad_fd_is_an_error() {
        let file = std::fs::File::open("/dev/null").expect("open /dev/null");
        let fd = std::os::fd::AsFd::as_fd(&file);
        assert!(test_run(fd, &[0u8; 64], 1).is_err());
    }
}
