//! Batched BPF map syscalls: `BPF_MAP_UPDATE_BATCH`, `BPF_MAP_DELETE_BATCH` and
//! `BPF_MAP_LOOKUP_BATCH`. aya 0.14 has no wrapper for them, and one syscall per entry is what
//! made bulk bans and the restore of a million bans slow (about 1 us of syscall overhead per
//! entry). Keys and values cross as arrays of the map's `#[repr(C)]` types.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use aya::Pod;

/// `enum bpf_cmd` values (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// Entries per syscall. The kernel walks a batch without a size limit, but it copies keys and
/// values in one piece, so a bounded chunk keeps its temporary allocation small.
pub const CHUNK: usize = 1 << 15;

/// The `batch` member of `union bpf_attr`, in kernel order.
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

/// A batch that stopped early: the first `done` elements were applied, element `done` failed.
#[derive(Debug)]
pub struct BatchError {
    pub done: usize,
    pub error: io::Error,
}

fn bpf(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: attr is a valid, fully initialised bpf_attr prefix of the size we pass. The
    // pointers in it reference buffers the callers keep alive and sized for `count` keys and
    // values of the map's sizes; the kernel writes back only into attr and, for lookups, into
    // the key/value/out_batch buffers, which the callers own mutably.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            size_of::<BatchAttr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Writes `keys[i] -> values[i]` (BPF_ANY: insert or replace, counters included).
pub fn update<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> Result<(), BatchError> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    let mut done = 0;
    while done < keys.len() {
        let n = (keys.len() - done).min(CHUNK);
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            values: values[done..].as_ptr() as u64,
            count: n as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // On failure the kernel reports in `count` how many elements it applied first.
        if let Err(error) = bpf(BPF_MAP_UPDATE_BATCH, &mut attr) {
            return Err(BatchError {
                done: done + (attr.count as usize).min(n),
                error,
            });
        }
        if attr.count == 0 {
            return Err(BatchError {
                done,
                error: io::Error::other("BPF_MAP_UPDATE_BATCH made no progress"),
            });
        }
        done += attr.count as usize;
    }
    Ok(())
}

/// A batch written in parts that did not all complete: the element ranges the kernel
/// applied, and the first refused element with why.
#[derive(Debug)]
pub struct PartsError {
    pub applied: Vec<std::ops::Range<usize>>,
    pub failed: usize,
    pub error: io::Error,
}

impl From<BatchError> for PartsError {
    /// A batch written as one part.
    fn from(e: BatchError) -> PartsError {
        PartsError {
            applied: std::iter::once(0..e.done).collect(),
            failed: e.done,
            error: e.error,
        }
    }
}

/// [`update`] with the elements split into `parts` contiguous parts written at once, one
/// thread each (the caller's thread takes the first). A hash map insert is mostly cache and
/// TLB misses (about 1 us per entry in a map of a million), and the map's buckets are locked
/// one by one, so the parts scale with the CPUs. Elements of different parts must be
/// different keys (an order between them is not kept).
pub fn update_parts<K: Pod + Sync, V: Pod + Sync>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
    parts: usize,
) -> Result<(), PartsError> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    let per = keys.len().div_ceil(parts.max(1)).max(1);
    let ranges: Vec<std::ops::Range<usize>> = (0..keys.len())
        .step_by(per)
        .map(|a| a..(a + per).min(keys.len()))
        .collect();
    let write = |r: &std::ops::Range<usize>| update(map, &keys[r.clone()], &values[r.clone()]);
    let results: Vec<Result<(), BatchError>> = match ranges.split_first() {
        None => return Ok(()),
        Some((first, [])) => vec![write(first)],
        Some((first, rest)) => std::thread::scope(|sc| {
            let others: Vec<_> = rest.iter().map(|r| sc.spawn(move || write(r))).collect();
            let mut all = vec![write(first)];
            for h in others {
                all.push(h.join().unwrap_or_else(|_| {
                    Err(BatchError {
                        done: 0,
                        error: io::Error::other("map writer thread panicked"),
                    })
                }));
            }
            all
        }),
    };
    let mut applied = Vec::new();
    let mut first_err = None;
    for (r, res) in ranges.iter().zip(results) {
        match res {
            Ok(()) => applied.push(r.clone()),
            Err(e) => {
                applied.push(r.start..r.start + e.done);
                if first_err.is_none() {
                    first_err = Some((r.start + e.done, e.error));
                }
            }
        }
    }
    match first_err {
        None => Ok(()),
        Some((failed, error)) => Err(PartsError {
            applied,
            failed,
            error,
        }),
    }
}

/// Deletes `keys`; keys that are not in the map are skipped. Returns how many were removed.
pub fn delete<K: Pod>(map: BorrowedFd<'_>, keys: &[K]) -> io::Result<usize> {
    let mut done = 0;
    let mut removed = 0;
    while done < keys.len() {
        let n = (keys.len() - done).min(CHUNK);
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            count: n as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        match bpf(BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(()) => {
                let c = (attr.count as usize).min(n);
                if c == 0 {
                    return Err(io::Error::other("BPF_MAP_DELETE_BATCH made no progress"));
                }
                removed += c;
                done += c;
            }
            // The batch stops at the first missing key: skip it and go on after it.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let c = (attr.count as usize).min(n);
                removed += c;
                done += c + 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// Calls `f` with successive chunks of every (key, value) of a hash map.
pub fn lookup_all<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    mut f: impl FnMut(&[K], &[V]),
) -> io::Result<()> {
    // A hash map refuses a chunk smaller than one of its buckets with ENOSPC; buckets hold a
    // handful of entries, so this is far above that.
    const N: usize = 4096;
    // SAFETY: K and V are Pod: every bit pattern, zero included, is a valid value.
    let mut keys: Vec<K> = vec![unsafe { std::mem::zeroed() }; N];
    // SAFETY: as above.
    let mut values: Vec<V> = vec![unsafe { std::mem::zeroed() }; N];
    // The opaque position token: a u32 bucket index for hash maps; room for any key size.
    let mut token_in = [0u8; 64];
    let mut token_out = [0u8; 64];
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token_in.as_ptr() as u64 },
            out_batch: token_out.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: N as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let r = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let c = (attr.count as usize).min(N);
        match r {
            Ok(()) => {
                f(&keys[..c], &values[..c]);
                token_in = token_out;
                first = false;
            }
            // ENOENT: the walk is over; the last chunk may still hold entries.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                f(&keys[..c], &values[..c]);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_matches_kernel_layout() {
        // offsetof(union bpf_attr, batch.*) in include/uapi/linux/bpf.h.
        assert_eq!(std::mem::offset_of!(BatchAttr, keys), 16);
        assert_eq!(std::mem::offset_of!(BatchAttr, count), 32);
        assert_eq!(std::mem::offset_of!(BatchAttr, map_fd), 36);
        assert_eq!(std::mem::offset_of!(BatchAttr, elem_flags), 40);
        assert_eq!(size_of::<BatchAttr>(), 56);
    }

    #[test]
    fn bad_fd_is_an_error() {
        let file = std::fs::File::open("/dev/null").expect("open /dev/null");
        let fd = std::os::fd::AsFd::as_fd(&file);
        assert!(update(fd, &[1u32], &[2u64]).is_err());
        assert!(delete(fd, &[1u32]).is_err());
        assert!(lookup_all::<u32, u64>(fd, |_, _| {}).is_err());
    }
}
