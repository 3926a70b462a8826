//! The BPF filesystem where the maps are pinned (`/sys/fs/bpf/f2b` by default).
//!
//! Pinned maps keep the bans enforced while the agent restarts, and the restarted agent reuses
//! them. Hosts without systemd (containers, minimal VMs) often have no bpffs mounted at
//! `/sys/fs/bpf`, so the agent mounts one itself when it is missing.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `f_type` of a bpffs in `statfs` (BPF_FS_MAGIC, include/uapi/linux/magic.h).
pub const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Filesystem type of the mount holding `path` (which must exist).
fn fs_type(path: &Path) -> io::Result<i64> {
    let c = cstring(path)?;
    // SAFETY: statfs is plain old data; the kernel fills it on success.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a NUL-terminated path and st a valid out pointer for the call.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(
        clippy::unnecessary_cast,
        reason = "f_type's width differs between libcs/arches"
    )]
    Ok(st.f_type as i64)
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Nearest existing ancestor of `path` (or `path` itself).
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}

/// True when `dir`, or its nearest existing ancestor, lives on a bpffs, i.e. pinning under
/// `dir` works (after creating the missing directories).
pub fn is_bpffs(dir: &Path) -> bool {
    existing_ancestor(dir)
        .and_then(|p| fs_type(p).ok())
        .is_some_and(|t| t == BPF_FS_MAGIC)
}

/// Makes `dir` usable for pinning: if it (or its nearest existing ancestor) is not on a
/// bpffs, creates `dir` and mounts a bpffs on it. Idempotent: a second call finds the bpffs
/// and does nothing. Needs CAP_SYS_ADMIN to mount.
pub fn ensure_bpffs(dir: &Path) -> io::Result<()> {
    if is_bpffs(dir) {
        return std::fs::create_dir_all(dir);
    }
    std::fs::create_dir_all(dir)?;
    let target = cstring(dir)?;
    // SAFETY: all pointers are NUL-terminated strings that outlive the call; data is null.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("mount -t bpf bpf {}: {e}", dir.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_is_not_bpffs() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!is_bpffs(dir.path()));
        // A missing path is judged by its nearest existing ancestor.
        assert!(!is_bpffs(&dir.path().join("a/b/c")));
        assert_eq!(existing_ancestor(&dir.path().join("a/b")), Some(dir.path()));
    }

    #[test]
    fn nul_in_path_is_an_error() {
        assert!(ensure_bpffs(Path::new("/tmp/a\0b")).is_err());
    }

    /// Mounts a bpffs in a temp dir (root only), checks idempotence, and unmounts it.
    #[test]
    fn mounts_when_missing() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping mounts_when_missing: needs root to mount a bpffs");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = dir.path().join("bpf");
        ensure_bpffs(&fs).expect("mount bpffs");
        assert!(is_bpffs(&fs));
        assert_eq!(fs_type(&fs).expect("statfs"), BPF_FS_MAGIC);
        ensure_bpffs(&fs).expect("second call is a no-op");
        ensure_bpffs(&fs.join("sub")).expect("a subdirectory of a bpffs");
        assert!(fs.join("sub").is_dir());
        std::fs::remove_dir(fs.join("sub")).expect("rmdir on bpffs");
        let c = cstring(&fs).expect("cstring");
        // SAFETY: c is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) }, 0);
        assert!(!is_bpffs(&fs));
    }
}
