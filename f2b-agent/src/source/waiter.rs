//! Waiting for log changes: inotify on the directories of the log paths (so creations,
//! renames and deletions are seen as well as writes), or polling on an interval.
//!
//! inotify is used through libc directly: four calls, no crate needed.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `backend:` in a jail's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// inotify, falling back to polling (with a warning) when inotify is unavailable or out
    /// of watches.
    #[default]
    Auto,
    Inotify,
    Polling,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Backend::Auto),
            "inotify" => Ok(Backend::Inotify),
            "polling" => Ok(Backend::Polling),
            other => Err(format!(
                "unknown backend {other:?}: expected auto, inotify or polling"
            )),
        }
    }
}

pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

const MASK: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;

struct Inotify {
    fd: OwnedFd,
    /// Directory -> watch descriptor.
    watches: HashMap<PathBuf, i32>,
    /// Some: a write (IN_MODIFY, IN_CLOSE_WRITE) to a name not in the set wakes nobody. A log
    /// directory like /var/log is written all day by other daemons; without this, every
    /// write to any file in it would wake every jail's reader.
    write_names: Option<HashSet<Vec<u8>>>,
    /// Whether anything but a write to a followed name happened since [`Waiter::only_writes`]
    /// last asked (a creation, rename, deletion, attribute change, overflow, a write while
    /// every name matters, or a change of watches): then the paths must be looked at again.
    moved: bool,
}

impl Inotify {
    fn new() -> io::Result<Inotify> {
        // SAFETY: plain syscall; the returned descriptor is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Inotify {
            fd,
            watches: HashMap::new(),
            write_names: None,
            moved: true,
        })
    }

    fn add(&mut self, dir: &Path) -> io::Result<()> {
        let c = CString::new(dir.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: valid fd and NUL-terminated path.
        let wd = unsafe {
            libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK | libc::IN_ONLYDIR)
        };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        self.watches.insert(dir.to_path_buf(), wd);
        self.moved = true;
        Ok(())
    }

    fn remove(&mut self, dir: &Path) {
        if let Some(wd) = self.watches.remove(dir) {
            // SAFETY: valid fd; a stale wd only yields EINVAL.
            unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
            self.moved = true;
        }
    }

    /// Waits for an event that matters (see `write_names`), up to `timeout`; reads and
    /// discards the events. Watches whose directory went away (IN_IGNORED) are forgotten so
    /// the next `watch` adds them again.
    fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.wait_once(deadline.saturating_duration_since(Instant::now()))? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                // The poll after a timeout is the safety net: it looks at everything.
                self.moved = true;
                return Ok(false);
            }
        }
    }

    /// Whether an event is worth a poll of the sources; notes in `moved` one that is more
    /// than a write to a followed file.
    fn matters(&mut self, ev: &libc::inotify_event, name: &[u8]) -> bool {
        let writes = libc::IN_MODIFY | libc::IN_CLOSE_WRITE;
        let Some(names) = &self.write_names else {
            self.moved = true;
            return true;
        };
        if ev.mask & !writes != 0 || name.is_empty() {
            self.moved = true;
            return true;
        }
        names.contains(name)
    }

    /// One poll(2) and the events it brought: true when one of them matters.
    fn wait_once(&mut self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        if r == 0 {
            return Ok(false);
        }
        let mut buf = [0u8; 8192];
        let mut any = false;
        loop {
            // SAFETY: reading into a buffer we own, length given.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            }
            if n == 0 {
                break;
            }
            let n = n as usize;
            let hdr = std::mem::size_of::<libc::inotify_event>();
            let mut i = 0;
            while i + hdr <= n {
                // SAFETY: the kernel wrote a whole event header at i; read unaligned.
                let ev: libc::inotify_event = unsafe {
                    std::ptr::read_unaligned(buf.as_ptr().add(i).cast::<libc::inotify_event>())
                };
                if ev.mask & libc::IN_IGNORED != 0 {
                    self.watches.retain(|_, wd| *wd != ev.wd);
                }
                // The name follows the header, NUL-padded.
                let start = (i + hdr).min(n);
                let end = (i + hdr + ev.len as usize).min(n);
                let raw = &buf[start..end];
                let name = &raw[..raw.iter().position(|b| *b == 0).unwrap_or(raw.len())];
                any |= self.matters(&ev, name);
                i += hdr + ev.len as usize;
            }
        }
        Ok(any)
    }
}

enum Kind {
    Inotify(Inotify),
    Polling { next: Instant },
}

/// Tells a jail's thread when to poll its [`super::LogSource`]. Poll after every `wait`,
/// whatever it returned: `true` means something certainly changed, `false` a timeout, and a
/// poll then is a cheap safety net (files on filesystems without inotify, missed events).
pub struct Waiter {
    kind: Kind,
    requested: Backend,
    interval: Duration,
    dirs: Vec<PathBuf>,
}

impl Waiter {
    /// `interval` is the polling backend's period (default [`DEFAULT_POLL_INTERVAL`]).
    pub fn new(backend: Backend, interval: Duration) -> io::Result<Waiter> {
        let kind = match backend {
            Backend::Polling => Kind::Polling {
                next: Instant::now(),
            },
            Backend::Inotify => Kind::Inotify(Inotify::new()?),
            Backend::Auto => match Inotify::new() {
                Ok(i) => Kind::Inotify(i),
                Err(e) => {
                    log::warn!("inotify unavailable ({e}); polling every {interval:?} instead");
                    Kind::Polling {
                        next: Instant::now(),
                    }
                }
            },
        };
        Ok(Waiter {
            kind,
            requested: backend,
            interval,
            dirs: Vec::new(),
        })
    }

    /// The backend in use: `Inotify` or `Polling`.
    pub fn backend(&self) -> Backend {
        match self.kind {
            Kind::Inotify(_) => Backend::Inotify,
            Kind::Polling { .. } => Backend::Polling,
        }
    }

    /// Watches exactly these directories (from [`super::LogSource::watch_dirs`]; call after
    /// every poll, it only changes what differs). With `auto`, running out of watches switches
    /// to polling with a warning; with `inotify` it is an error.
    pub fn watch(&mut self, dirs: &[PathBuf]) -> io::Result<()> {
        self.dirs = dirs.to_vec();
        let Kind::Inotify(ino) = &mut self.kind else {
            return Ok(());
        };
        let stale: Vec<PathBuf> = ino
            .watches
            .keys()
            .filter(|d| !dirs.contains(d))
            .cloned()
            .collect();
        for d in stale {
            ino.remove(&d);
        }
        for d in dirs {
            if ino.watches.contains_key(d) {
                continue;
            }
            match ino.add(d) {
                Ok(()) => {}
                // Gone since the source looked: the next poll names its parent instead.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if self.requested == Backend::Auto => {
                    log::warn!(
                        "inotify watch on {} failed ({e}); polling every {:?} instead",
                        d.display(),
                        self.interval
                    );
                    self.kind = Kind::Polling {
                        next: Instant::now(),
                    };
                    return Ok(());
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("inotify watch on {}: {e}", d.display()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Blocks until something changed in a watched directory (inotify) or the polling
    /// interval came round (polling: then `true`), or `timeout` passed (`false`).
    pub fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        match &mut self.kind {
            Kind::Inotify(ino) => ino.wait(timeout),
            Kind::Polling { next } => {
                let now = Instant::now();
                let until = now + timeout;
                if *next <= until {
                    std::thread::sleep(next.saturating_duration_since(now));
                    *next = Instant::now() + self.interval;
                    Ok(true)
                } else {
                    std::thread::sleep(timeout);
                    Ok(false)
                }
            }
        }
    }

    /// Which writes wake [`Waiter::wait`] (inotify): with `Some(names)`, a write to a file
    /// whose name is not among them does not (creations, renames, deletions and attribute
    /// changes always do); with None, every event does. From
    /// [`super::LogSource::write_names`] after every poll.
    pub fn wake_on(&mut self, names: Option<Vec<std::ffi::OsString>>) {
        if let Kind::Inotify(ino) = &mut self.kind {
            ino.write_names = names.map(|v| v.into_iter().map(|n| n.into_vec()).collect());
        }
    }

    /// True when everything [`Waiter::wait`] saw since the last call was a write to a file
    /// named in [`Waiter::wake_on`]: no file can have appeared, gone or been renamed, so the
    /// next poll may skip looking at the paths again (it still checks the files it reads for
    /// truncation). False with polling, and after a timeout or any other event.
    pub fn only_writes(&mut self) -> bool {
        match &mut self.kind {
            Kind::Inotify(ino) => !std::mem::replace(&mut ino.moved, false),
            Kind::Polling { .. } => false,
        }
    }

    /// The directories being watched.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}
