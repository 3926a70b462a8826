//! Following log files: rotation, truncation, partial and overlong lines, checkpoints.
//!
//! A file is known by its identity: device + inode + a hash of its first bytes (up to
//! [`FINGERPRINT_MAX`], recomputed as the file grows until that many exist). While a file is
//! followed its descriptor stays open, so the inode cannot be reused under us and a file that is
//! renamed or deleted can still be drained before the new file at the same path is read.
//! Across restarts the saved [`FilePos`] is matched against the file at the path (or, after a
//! rename while the agent was down, a file with that inode in the same directory), and the hash
//! tells inode reuse with other content apart from the same file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::glob;
use crate::store::FilePos;

/// How many leading bytes of a file make its fingerprint.
pub const FINGERPRINT_MAX: usize = 1024;
/// Default cap on one line; the rest of a longer line is skipped.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024;
/// Default read buffer (one per source).
pub const DEFAULT_READ_BUFFER: usize = 64 * 1024;
/// How far back from the end [`StartAt::Tail`] looks for the start of the last line.
const TAIL_LOOKBACK: u64 = 64 * 1024;

/// Where to start in a file that has no saved position, for a logpath entry the jail has never
/// read before (fail2ban's `logpath ... head|tail`). Files that appear later, and files of an
/// entry that was read before, are always read from the start: everything in them is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    Head,
    #[default]
    Tail,
}

#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub start_at: StartAt,
    /// Longest line passed on; longer ones are cut to this many bytes and counted.
    pub max_line: usize,
    /// How long a rotated-away (renamed or deleted) file is still followed after it left its
    /// path, for writers that keep writing to the old file until they reopen. Zero: drained once.
    pub rotate_wait: Duration,
    /// Size of the read buffer.
    pub read_buffer: usize,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            start_at: StartAt::Tail,
            max_line: DEFAULT_MAX_LINE,
            rotate_wait: Duration::from_secs(5),
            read_buffer: DEFAULT_READ_BUFFER,
        }
    }
}

/// What one [`LogSource::poll`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollStats {
    /// Complete lines passed on.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Lines longer than the cap, passed on cut.
    pub truncated_lines: u64,
    /// Files that left their path (renamed or deleted) and were drained.
    pub rotations: u64,
    /// Files found shorter than what was read, or with other first bytes: read again from 0.
    pub truncations: u64,
    /// Files open after the poll (current plus rotated ones still followed).
    pub files: usize,
    /// Per-file I/O errors (logged; the file is retried on the next poll).
    pub errors: u64,
    /// [`LogSource::poll_chunks`] stopped at its byte budget with more to read: call it again
    /// without waiting (after committing what this call read).
    pub more: bool,
}

/// Saved for an entry that was read before but has no file now (a literal path that does not
/// exist, or a glob's marker): "read what appears here from its start". No file has inode 0.
pub(crate) const MARKER: FilePos = FilePos {
    dev: 0,
    ino: 0,
    fingerprint: 0,
    fingerprint_len: 0,
    offset: 0,
};

/// FNV-1a, stable across builds and versions (it is persisted); 0 for no bytes, as
/// [`FilePos`] documents for an empty file.
fn fnv1a(bytes: &[u8]) -> u64 {
    if bytes.is_empty() {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn read_full_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], pos + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Hash of the first `len` bytes, or None when the file is shorter.
fn hash_prefix(file: &File, len: usize) -> io::Result<Option<u64>> {
    let mut buf = [0u8; FINGERPRINT_MAX];
    let len = len.min(FINGERPRINT_MAX);
    let n = read_full_at(file, &mut buf[..len], 0)?;
    Ok((n == len).then(|| fnv1a(&buf[..len])))
}

/// One open file being followed.
struct Tail {
    file: File,
    dev: u64,
    ino: u64,
    fp: u64,
    fp_len: u32,
    /// Start of the incomplete line: what a checkpoint saves.
    offset: u64,
    /// Bytes consumed (offset + length of the incomplete line so far).
    read_pos: u64,
    /// The first `max_line` bytes of the incomplete line.
    partial: Vec<u8>,
    /// Drop bytes up to the next newline (started in the middle of an overlong line).
    discard: bool,
    /// Set when the file left its path: followed until then, for late writers.
    deadline: Option<Instant>,
}

impl Tail {
    fn new(file: File, md: &fs::Metadata) -> Tail {
        Tail {
            file,
            dev: md.dev(),
            ino: md.ino(),
            fp: 0,
            fp_len: 0,
            offset: 0,
            read_pos: 0,
            partial: Vec::new(),
            discard: false,
            deadline: None,
        }
    }

    fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    fn pos(&self) -> FilePos {
        FilePos {
            dev: self.dev,
            ino: self.ino,
            fingerprint: self.fp,
            fingerprint_len: self.fp_len,
            offset: self.offset,
        }
    }

    fn seek(&mut self, offset: u64) {
        self.offset = offset;
        self.read_pos = offset;
        self.partial.clear();
        self.discard = false;
    }

    /// Does `pos` (saved earlier) describe this file? Same inode and the same first bytes.
    fn matches(&self, pos: &FilePos) -> io::Result<bool> {
        if (pos.dev, pos.ino) != self.id() || pos.ino == 0 {
            return Ok(false);
        }
        Ok(hash_prefix(&self.file, pos.fingerprint_len as usize)? == Some(pos.fingerprint))
    }

    /// Checks the file against what was read: shorter than the read position, or other first
    /// bytes than the fingerprint, means truncated (copytruncate, `> file`, rewritten): start
    /// over at 0. Grows the fingerprint. Returns the size to read up to.
    fn refresh(&mut self, stats: &mut PollStats) -> io::Result<u64> {
        // Checked on every poll, not only when size or mtime changed: mtime is only as fine as
        // the kernel's coarse clock, so a truncate and a rewrite to the same size can leave
        // both unchanged. Reading 1 KiB from the page cache is cheap.
        let size = self.file.metadata()?.len();
        let mut buf = [0u8; FINGERPRINT_MAX];
        let want = size.min(FINGERPRINT_MAX as u64) as usize;
        let n = if self.fp_len > 0 || want > 0 {
            read_full_at(&self.file, &mut buf[..want], 0)?
        } else {
            0
        };
        let fp_len = self.fp_len as usize;
        let truncated =
            size < self.read_pos || n < fp_len || (fp_len > 0 && fnv1a(&buf[..fp_len]) != self.fp);
        if truncated {
            stats.truncations += 1;
            self.seek(0);
        }
        if truncated || n > fp_len {
            self.fp = fnv1a(&buf[..n]);
            self.fp_len = n as u32;
        }
        Ok(size)
    }

    /// Passes on every complete line up to `size`, or as many as `budget` bytes allow
    /// (it is decreased by what was read). True when everything up to `size` was read.
    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        path: &str,
        size: u64,
        buf: &mut [u8],
        max_line: usize,
        stats: &mut PollStats,
        sink: &mut Sink<'_>,
        budget: &mut usize,
    ) -> io::Result<bool> {
        while self.read_pos < size && *budget > 0 {
            let want = usize::try_from(size - self.read_pos)
                .unwrap_or(usize::MAX)
                .min(buf.len())
                .min(*budget);
            let n = match self.file.read_at(&mut buf[..want], self.read_pos) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            *budget -= n;
            stats.bytes += n as u64;
            let chunk = &buf[..n];
            let start = match sink {
                Sink::Lines(on_line) => self.lines(path, chunk, max_line, stats, *on_line),
                Sink::Chunks { on_chunk, slow } => {
                    self.chunks(path, chunk, max_line, stats, *on_chunk, slow)
                }
            };
            if !self.discard {
                let rest = &chunk[start..];
                let room = max_line.saturating_sub(self.partial.len());
                self.partial
                    .extend_from_slice(&rest[..rest.len().min(room)]);
            }
            self.read_pos += n as u64;
        }
        Ok(self.read_pos >= size)
    }

    /// The line that started before this read ends at `nl`: pass it on (cut if it grew
    /// too long) unless it is being discarded.
    fn finish_partial(
        &mut self,
        path: &str,
        chunk: &[u8],
        nl: usize,
        max_line: usize,
        stats: &mut PollStats,
        on_line: &mut dyn FnMut(&str, &str),
    ) {
        let seg = &chunk[..nl];
        if self.discard {
            self.discard = false;
        } else {
            let total = self.read_pos + nl as u64 - self.offset;
            let room = max_line.saturating_sub(self.partial.len());
            self.partial.extend_from_slice(&seg[..seg.len().min(room)]);
            emit(
                path,
                &self.partial,
                total > max_line as u64,
                max_line,
                stats,
                on_line,
            );
            self.partial.clear();
        }
        self.offset = self.read_pos + nl as u64 + 1;
    }

    /// Line by line; returns where the incomplete rest of `chunk` starts.
    fn lines(
        &mut self,
        path: &str,
        chunk: &[u8],
        max_line: usize,
        stats: &mut PollStats,
        on_line: &mut dyn FnMut(&str, &str),
    ) -> usize {
        let mut start = 0usize;
        for nl in memchr::memchr_iter(b'\n', chunk) {
            if start == 0 && (self.discard || self.offset != self.read_pos) {
                self.finish_partial(path, chunk, nl, max_line, stats, on_line);
            } else {
                // The whole line is in this chunk: no copy.
                emit(path, &chunk[start..nl], false, max_line, stats, on_line);
                self.offset = self.read_pos + nl as u64 + 1;
            }
            start = nl + 1;
        }
        start
    }

    /// All complete lines of `chunk` at once: borrowed from the read buffer when they are
    /// valid UTF-8 and none is over the cap (the usual case), else rebuilt line by line in
    /// `slow` with exactly what [`LogSource::poll`] would pass on. Returns where the
    /// incomplete rest starts.
    fn chunks(
        &mut self,
        path: &str,
        chunk: &[u8],
        max_line: usize,
        stats: &mut PollStats,
        on_chunk: &mut dyn FnMut(&str, &str),
        slow: &mut String,
    ) -> usize {
        let Some(last) = memchr::memrchr(b'\n', chunk) else {
            return 0;
        };
        let mut start = 0;
        if self.discard || self.offset != self.read_pos {
            let nl = memchr::memchr(b'\n', chunk).unwrap_or(last);
            slow.clear();
            self.finish_partial(path, chunk, nl, max_line, stats, &mut |_, l| {
                push_line(slow, l)
            });
            if !slow.is_empty() {
                on_chunk(path, slow);
            }
            start = nl + 1;
        }
        if start <= last {
            let region = &chunk[start..=last];
            let mut lines = 0u64;
            let mut fits = true;
            let mut from = 0;
            for nl in memchr::memchr_iter(b'\n', region) {
                fits &= nl - from <= max_line;
                from = nl + 1;
                lines += 1;
            }
            match std::str::from_utf8(region) {
                Ok(text) if fits => {
                    stats.lines += lines;
                    on_chunk(path, text);
                }
                _ => {
                    slow.clear();
                    let mut from = 0;
                    for nl in memchr::memchr_iter(b'\n', region) {
                        emit(
                            path,
                            &region[from..nl],
                            false,
                            max_line,
                            stats,
                            &mut |_, l| push_line(slow, l),
                        );
                        from = nl + 1;
                    }
                    on_chunk(path, slow);
                }
            }
            self.offset = self.read_pos + last as u64 + 1;
        }
        last + 1
    }
}

/// Appends a line as [`LogSource::poll`] passes it on, so that a reader of the chunk that
/// drops one `\r` before each `\n` (as `str::lines` and `Filter::scan` do) gets it back.
fn push_line(slow: &mut String, line: &str) {
    slow.push_str(line);
    if line.ends_with('\r') {
        slow.push('\r');
    }
    slow.push('\n');
}

/// Where [`Tail::read`] passes what it reads.
enum Sink<'a> {
    Lines(&'a mut dyn FnMut(&str, &str)),
    Chunks {
        on_chunk: &'a mut dyn FnMut(&str, &str),
        slow: &'a mut String,
    },
}

fn emit(
    path: &str,
    line: &[u8],
    cut: bool,
    max_line: usize,
    stats: &mut PollStats,
    on_line: &mut dyn FnMut(&str, &str),
) {
    let mut line = line;
    let mut cut = cut;
    if line.len() > max_line {
        line = &line[..max_line];
        cut = true;
    }
    if cut {
        stats.truncated_lines += 1;
        // Do not end a cut line with half a character.
        if let Err(e) = std::str::from_utf8(line)
            && e.error_len().is_none()
        {
            line = &line[..e.valid_up_to()];
        }
    } else if let Some(l) = line.strip_suffix(b"\r") {
        line = l;
    }
    // Borrowed (no allocation) when the line is valid UTF-8.
    let text = String::from_utf8_lossy(line);
    stats.lines += 1;
    on_line(path, &text);
}

/// Where a new file starts when read from the end: after the last newline, so a line being
/// written right now is read whole once it is finished.
fn tail_offset(file: &File, size: u64) -> io::Result<(u64, bool)> {
    if size == 0 {
        return Ok((0, false));
    }
    let from = size.saturating_sub(TAIL_LOOKBACK);
    let mut buf = vec![0u8; (size - from) as usize];
    let n = read_full_at(file, &mut buf, from)?;
    match memchr::memrchr(b'\n', &buf[..n]) {
        Some(i) => Ok((from + i as u64 + 1, false)),
        None if from == 0 => Ok((0, false)),
        // No line start within reach: skip to the next newline.
        None => Ok((size, true)),
    }
}

struct Entry {
    pattern: String,
    glob: bool,
    /// The jail read this entry before (it has saved positions or a marker).
    known: bool,
}

/// The files at one path: the current one and rotated-away ones still being drained, oldest
/// first. Lines of all of them are reported under this path.
struct Watched {
    entry: usize,
    cur: Option<Tail>,
    old: Vec<Tail>,
}

/// All the log files of one jail. Synchronous: the jail's thread calls [`LogSource::poll`]
/// whenever its [`super::Waiter`] says something changed (and on its timeout), passes lines to
/// the filter, and commits [`LogSource::checkpoints`] with the bans those lines caused.
pub struct LogSource {
    entries: Vec<Entry>,
    opts: SourceOptions,
    files: BTreeMap<String, Watched>,
    /// Saved positions, consumed by the first scan.
    saved: HashMap<String, FilePos>,
    /// Paths to forget, reported by the next `checkpoints()`.
    gone: Vec<String>,
    dirs: BTreeSet<PathBuf>,
    buf: Vec<u8>,
    /// Lines rebuilt for a chunk that could not be passed on straight from `buf`.
    slow: String,
    /// Paths with a logged error, so a persistent error is logged once.
    warned: BTreeSet<String>,
    /// What `new` found (truncations while stopped), reported by the first poll.
    pending: PollStats,
    /// Set by [`LogSource::paths_unchanged`]: the next poll skips `discover`.
    paths_unchanged: bool,
}

impl LogSource {
    /// Opens the files of `logpaths` (paths and globs) and positions them: at the saved
    /// position when the file is the one saved, else per [`StartAt`]. Reads nothing yet.
    pub fn new(
        logpaths: &[String],
        opts: SourceOptions,
        saved: Vec<(String, FilePos)>,
    ) -> io::Result<LogSource> {
        if opts.max_line == 0 || opts.read_buffer == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "max_line and read_buffer must be positive",
            ));
        }
        let saved: HashMap<String, FilePos> = saved.into_iter().collect();
        let mut entries = Vec::new();
        let mut files = BTreeMap::new();
        for p in logpaths {
            if entries.iter().any(|e: &Entry| &e.pattern == p) {
                continue;
            }
            let glob = glob::is_glob(p);
            let known = saved.contains_key(p);
            if !glob {
                files.insert(
                    p.clone(),
                    Watched {
                        entry: entries.len(),
                        cur: None,
                        old: Vec::new(),
                    },
                );
            }
            entries.push(Entry {
                pattern: p.clone(),
                glob,
                known,
            });
        }
        let mut src = LogSource {
            entries,
            buf: vec![0; opts.read_buffer],
            slow: String::new(),
            opts,
            files,
            saved,
            gone: Vec::new(),
            dirs: BTreeSet::new(),
            warned: BTreeSet::new(),
            pending: PollStats::default(),
            paths_unchanged: false,
        };
        for e in &src.entries {
            if e.glob {
                src.saved.remove(&e.pattern);
            }
        }
        src.recover_renamed();
        let mut stats = PollStats::default();
        src.discover(true, &mut stats);
        src.pending = stats;
        let saved = std::mem::take(&mut src.saved);
        src.gone = saved
            .into_keys()
            .filter(|k| !src.files.contains_key(k))
            .collect();
        Ok(src)
    }

    /// After a restart: a saved file that is no longer at its path may have been renamed
    /// (rotated) while the agent was down. Look for its inode in the same directory and, if its
    /// first bytes are still the saved ones, drain it from the saved offset first.
    fn recover_renamed(&mut self) {
        let mut found: Vec<(String, Tail)> = Vec::new();
        for (path, pos) in &self.saved {
            if pos.ino == 0 {
                continue;
            }
            if let Ok(md) = fs::metadata(path)
                && (md.dev(), md.ino()) == (pos.dev, pos.ino)
            {
                continue;
            }
            let dir = match Path::new(path).parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let Ok(rd) = fs::read_dir(dir) else { continue };
            for de in rd.filter_map(|e| e.ok()) {
                use std::os::unix::fs::DirEntryExt;
                if de.ino() != pos.ino {
                    continue;
                }
                let Ok(file) = File::open(de.path()) else {
                    continue;
                };
                let Ok(md) = file.metadata() else { continue };
                if !md.is_file() {
                    continue;
                }
                let mut t = Tail::new(file, &md);
                if t.matches(pos).unwrap_or(false) && md.len() >= pos.offset {
                    t.fp = pos.fingerprint;
                    t.fp_len = pos.fingerprint_len;
                    t.seek(pos.offset);
                    t.deadline = Some(Instant::now() + self.opts.rotate_wait);
                    log::info!(
                        "{path}: rotated while stopped, draining {} from offset {}",
                        de.path().display(),
                        pos.offset
                    );
                    found.push((path.clone(), t));
                }
                break;
            }
        }
        for (path, t) in found {
            let entry = self.entry_of(&path);
            self.files
                .entry(path)
                .or_insert(Watched {
                    entry,
                    cur: None,
                    old: Vec::new(),
                })
                .old
                .push(t);
        }
    }

    fn entry_of(&self, path: &str) -> usize {
        self.entries
            .iter()
            .position(|e| e.pattern == path)
            .or_else(|| self.entries.iter().position(|e| e.glob))
            .unwrap_or(0)
    }

    fn warn(&mut self, path: &str, what: &str, e: &io::Error, stats: &mut PollStats) {
        stats.errors += 1;
        if self.warned.insert(path.to_string()) {
            log::warn!("{path}: {what}: {e}");
        }
    }

    /// Matches paths to files: a path still showing an open file keeps it (even when the file
    /// came from another path, as with a glob that matches rotated names); a new file is opened
    /// and positioned; open files no longer at any path become rotated-away files of theirs.
    fn discover(&mut self, initial: bool, stats: &mut PollStats) {
        let mut dirs = BTreeSet::new();
        let mut found: Vec<(String, usize)> = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            if e.glob {
                for p in glob::expand(&e.pattern, &mut dirs) {
                    found.push((p, i));
                }
            } else {
                dirs.insert(watch_dir(Path::new(&e.pattern)));
                found.push((e.pattern.clone(), i));
            }
        }
        self.dirs = dirs;
        // Every open file, olds before the current one so their order is kept.
        let mut pool: Vec<(String, Tail, bool)> = Vec::new();
        for (p, w) in self.files.iter_mut() {
            for t in w.old.drain(..) {
                pool.push((p.clone(), t, false));
            }
            if let Some(t) = w.cur.take() {
                pool.push((p.clone(), t, true));
            }
        }
        let mut claimed = BTreeSet::new();
        for (path, entry) in found {
            if !claimed.insert(path.clone()) {
                continue;
            }
            let md = match fs::metadata(&path) {
                Ok(md) if md.is_file() => md,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.warn(&path, "stat", &e, stats);
                    continue;
                }
            };
            let id = (md.dev(), md.ino());
            let tail = if let Some(k) = pool.iter().position(|(_, t, _)| t.id() == id) {
                let (_, mut t, _) = pool.remove(k);
                t.deadline = None;
                t
            } else {
                match self.open(&path, entry, initial, &mut pool, stats) {
                    Ok(Some(t)) => t,
                    Ok(None) => continue,
                    Err(e) => {
                        self.warn(&path, "open", &e, stats);
                        continue;
                    }
                }
            };
            self.files
                .entry(path)
                .or_insert(Watched {
                    entry,
                    cur: None,
                    old: Vec::new(),
                })
                .cur = Some(tail);
        }
        let deadline = Instant::now() + self.opts.rotate_wait;
        for (origin, mut t, was_cur) in pool {
            if was_cur {
                stats.rotations += 1;
                t.deadline = Some(deadline);
            }
            let entry = self.entry_of(&origin);
            self.files
                .entry(origin)
                .or_insert(Watched {
                    entry,
                    cur: None,
                    old: Vec::new(),
                })
                .old
                .push(t);
        }
    }

    fn open(
        &mut self,
        path: &str,
        entry: usize,
        initial: bool,
        pool: &mut Vec<(String, Tail, bool)>,
        stats: &mut PollStats,
    ) -> io::Result<Option<Tail>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let md = file.metadata()?;
        // Replaced between stat and open by a file we already follow.
        if let Some(k) = pool
            .iter()
            .position(|(_, t, _)| t.id() == (md.dev(), md.ino()))
        {
            let (_, mut t, _) = pool.remove(k);
            t.deadline = None;
            return Ok(Some(t));
        }
        let mut t = Tail::new(file, &md);
        let size = md.len();
        let saved = if initial {
            self.saved.remove(path)
        } else {
            None
        };
        match saved {
            Some(pos) if t.matches(&pos)? => {
                t.fp = pos.fingerprint;
                t.fp_len = pos.fingerprint_len;
                if size < pos.offset {
                    stats.truncations += 1;
                    t.seek(0);
                } else {
                    t.seek(pos.offset);
                }
            }
            // Known path, other file (replaced, or inode reused with other content): all new.
            Some(_) => {}
            None if initial
                && !self.entries[entry].known
                && self.opts.start_at == StartAt::Tail =>
            {
                let (off, discard) = tail_offset(&t.file, size)?;
                t.seek(off);
                t.discard = discard;
            }
            None => {}
        }
        // Fingerprint and truncation check now, so a checkpoint right after has an identity.
        t.refresh(stats)?;
        Ok(Some(t))
    }

    /// Reads every new complete line of every file and passes it to `on_line(path, line)`:
    /// without its newline (and a trailing `\r`), invalid UTF-8 replaced, cut at the cap.
    /// A rotated-away file is drained before the new file at its path is read.
    pub fn poll(&mut self, on_line: &mut dyn FnMut(&str, &str)) -> io::Result<PollStats> {
        self.poll_with(&mut Sink::Lines(on_line), usize::MAX)
    }

    /// [`LogSource::poll`] a buffer at a time: `on_chunk(path, chunk)` gets runs of complete
    /// lines, each ended by `\n`. Reading a line of a chunk as `str::lines` does (dropping
    /// one `\r` before its `\n`) gives exactly the line `poll` would pass on: same cap,
    /// same replacement of invalid UTF-8, same checkpoints. Usually a chunk is borrowed
    /// straight from the read buffer. Stops after about `budget` bytes of the files that are
    /// at their paths (rotated-away files are always drained whole, so that a checkpoint
    /// never has to describe two files of one path) and says so in [`PollStats::more`].
    pub fn poll_chunks(
        &mut self,
        budget: usize,
        on_chunk: &mut dyn FnMut(&str, &str),
    ) -> io::Result<PollStats> {
        let mut slow = std::mem::take(&mut self.slow);
        let r = self.poll_with(
            &mut Sink::Chunks {
                on_chunk,
                slow: &mut slow,
            },
            budget.max(1),
        );
        self.slow = slow;
        r
    }

    fn poll_with(&mut self, sink: &mut Sink<'_>, budget: usize) -> io::Result<PollStats> {
        self.gone.clear();
        let mut stats = std::mem::take(&mut self.pending);
        if !std::mem::take(&mut self.paths_unchanged) {
            self.discover(false, &mut stats);
        }
        let now = Instant::now();
        let max_line = self.opts.max_line;
        let mut errs: Vec<(String, io::Error)> = Vec::new();
        let buf = &mut self.buf;
        let mut budget = budget;
        for (path, w) in self.files.iter_mut() {
            for t in w.old.iter_mut() {
                let mut all = usize::MAX;
                let r = t
                    .refresh(&mut stats)
                    .and_then(|size| t.read(path, size, buf, max_line, &mut stats, sink, &mut all));
                budget = budget.saturating_sub(usize::MAX - all);
                if let Err(e) = r {
                    errs.push((path.clone(), e));
                    t.deadline = Some(now);
                }
            }
            w.old.retain(|t| t.deadline.is_none_or(|d| now < d));
            if let Some(t) = w.cur.as_mut() {
                let r = t.refresh(&mut stats).and_then(|size| {
                    t.read(path, size, buf, max_line, &mut stats, sink, &mut budget)
                });
                match r {
                    Ok(done) => stats.more |= !done,
                    // Kept open: dropping it would make the next poll read it again as new.
                    Err(e) => errs.push((path.clone(), e)),
                }
            }
        }
        for (path, e) in errs {
            self.warn(&path, "read", &e, &mut stats);
        }
        let entries = &self.entries;
        let gone = &mut self.gone;
        let warned = &mut self.warned;
        self.files.retain(|path, w| {
            if w.cur.is_some() {
                warned.remove(path);
            }
            let keep = w.cur.is_some() || !w.old.is_empty() || !entries[w.entry].glob;
            if !keep {
                gone.push(path.clone());
            }
            keep
        });
        stats.files = self
            .files
            .values()
            .map(|w| w.old.len() + usize::from(w.cur.is_some()))
            .sum();
        Ok(stats)
    }

    /// The positions to persist with the bans the lines read so far caused: `Some` for every
    /// followed path (a marker for a literal path or glob with no file now, so files that
    /// appear while the agent is down are read from their start), `None` for a path that is
    /// gone and should be forgotten. Call after every poll: forgotten paths are reported once.
    pub fn checkpoints(&self) -> Vec<(String, Option<FilePos>)> {
        let mut out: Vec<(String, Option<FilePos>)> = self
            .entries
            .iter()
            .filter(|e| e.glob)
            .map(|e| (e.pattern.clone(), Some(MARKER)))
            .collect();
        for (path, w) in &self.files {
            let pos = match (&w.cur, w.old.last()) {
                (Some(t), _) => t.pos(),
                // Only rotated-away files left: save the newest, found again by inode on restart.
                (None, Some(t)) => t.pos(),
                (None, None) => MARKER,
            };
            out.push((path.clone(), Some(pos)));
        }
        out.extend(self.gone.iter().map(|p| (p.clone(), None)));
        out
    }

    /// Directories whose changes matter (parents of the files, directories globs list, the
    /// nearest existing ancestor of a path that does not exist yet), as of the last poll.
    pub fn watch_dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().cloned().collect()
    }

    /// The file names whose writes matter, for [`super::Waiter::wake_on`]: those of the files
    /// followed now. None while a rotated-away file is still read (its new name is not
    /// known here): then every event in the watched directories matters.
    pub fn write_names(&self) -> Option<Vec<std::ffi::OsString>> {
        if self.files.values().any(|w| !w.old.is_empty()) {
            return None;
        }
        Some(
            self.files
                .iter()
                .filter(|(_, w)| w.cur.is_some())
                .filter_map(|(p, _)| Path::new(p).file_name().map(|n| n.to_os_string()))
                .collect(),
        )
    }

    /// Lets the next poll skip looking at the paths (a stat per path, a glob expansion): the
    /// caller knows that only the followed files were written since the last poll
    /// ([`super::Waiter::only_writes`]). The files are still checked for truncation.
    pub fn paths_unchanged(&mut self) {
        self.paths_unchanged = true;
    }

    /// Paths currently followed (with a file open), for status output.
    pub fn paths(&self) -> Vec<String> {
        self.files
            .iter()
            .filter(|(_, w)| w.cur.is_some())
            .map(|(p, _)| p.clone())
            .collect()
    }
}

/// The directory to watch for `path`: its parent, or the nearest ancestor that exists.
fn watch_dir(path: &Path) -> PathBuf {
    let mut dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    while !dir.is_dir() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => return PathBuf::from(if path.is_absolute() { "/" } else { "." }),
        }
    }
    dir
}
