//! systemd's journal as a source: `journalctl -o json -f` as a child process, one JSON object
//! per entry on its stdout. Each entry's `MESSAGE` is a line, its `__REALTIME_TIMESTAMP` the
//! line's time, and its `__CURSOR` the checkpoint: after a restart the child is started with
//! `--after-cursor`, so entries logged while the agent was down are read and none twice.
//!
//! A child process rather than libsystemd: no C library to link, and journalctl's own handling
//! of journal files, rotation and vacuuming. The child is restarted (with the last cursor) when
//! it exits.

use std::borrow::Cow;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::StartAt;

/// Longest JSON entry kept; longer ones are skipped (and counted) rather than buffered.
const MAX_ENTRY: usize = 1 << 20;
const RESPAWN_MIN: Duration = Duration::from_secs(1);
const RESPAWN_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JournalError {
    #[error("journal match {0:?}: expected FIELD=value (FIELD in A-Z, 0-9, _) or +")]
    BadMatch(String),
    #[error("journal match is empty")]
    Empty,
}

/// Splits a match expression (`_SYSTEMD_UNIT=sshd.service + _COMM=sshd`) into journalctl
/// arguments. Only `FIELD=value` and `+` are accepted, so nothing from the config can become a
/// journalctl option.
pub fn parse_matches(expr: &str) -> Result<Vec<String>, JournalError> {
    let mut out = Vec::new();
    for tok in expr.split_whitespace() {
        if tok == "+" {
            out.push(tok.to_string());
            continue;
        }
        let ok = tok.split_once('=').is_some_and(|(field, _)| {
            !field.is_empty()
                && !field.starts_with(|c: char| c.is_ascii_digit())
                && field
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        });
        if !ok {
            return Err(JournalError::BadMatch(tok.to_string()));
        }
        out.push(tok.to_string());
    }
    if out.iter().all(|t| t == "+") {
        return Err(JournalError::Empty);
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// From [`parse_matches`].
    pub matches: Vec<String>,
    /// Where to start without a saved cursor: `Tail` follows new entries only, `Head` reads
    /// every stored entry that matches first.
    pub start_at: StartAt,
    /// The program (default `journalctl` on PATH).
    pub journalctl: PathBuf,
    /// Read this journal directory instead of the system journal (`--directory`).
    pub directory: Option<PathBuf>,
    /// Cap on a MESSAGE, as for files.
    pub max_line: usize,
}

impl JournalConfig {
    pub fn new(matches: Vec<String>) -> JournalConfig {
        JournalConfig {
            matches,
            start_at: StartAt::Tail,
            journalctl: PathBuf::from("journalctl"),
            directory: None,
            max_line: super::file::DEFAULT_MAX_LINE,
        }
    }
}

/// One journal entry as journalctl's JSON output writes it.
#[derive(Debug, PartialEq, Eq)]
pub struct JournalEntry<'a> {
    pub cursor: Cow<'a, str>,
    pub time: SystemTime,
    /// None when the entry has no MESSAGE (or journalctl left out a huge one as null).
    pub message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawMessage<'a> {
    #[serde(borrow)]
    Text(Cow<'a, str>),
    /// Not valid UTF-8 in the journal: journalctl writes an array of byte values.
    Bytes(Vec<u8>),
}

#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(rename = "__CURSOR", borrow)]
    cursor: Cow<'a, str>,
    #[serde(rename = "__REALTIME_TIMESTAMP", borrow)]
    realtime: Cow<'a, str>,
    #[serde(rename = "MESSAGE", borrow, default)]
    message: Option<RawMessage<'a>>,
}

/// Parses one line of `journalctl -o json`.
pub fn parse_entry(line: &[u8]) -> Result<JournalEntry<'_>, String> {
    let raw: RawEntry = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let us: u64 = raw
        .realtime
        .parse()
        .map_err(|_| format!("bad __REALTIME_TIMESTAMP {:?}", raw.realtime))?;
    let message = match raw.message {
        None => None,
        Some(RawMessage::Text(t)) => Some(t),
        Some(RawMessage::Bytes(b)) => Some(Cow::Owned(String::from_utf8_lossy(&b).into_owned())),
    };
    Ok(JournalEntry {
        cursor: raw.cursor,
        time: UNIX_EPOCH + Duration::from_micros(us),
        message,
    })
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JournalStats {
    /// Messages passed on.
    pub lines: u64,
    pub bytes: u64,
    pub truncated_lines: u64,
    /// Entries that could not be parsed or were too big (skipped).
    pub bad_entries: u64,
    /// Times journalctl was (re)started in this poll.
    pub spawns: u64,
}

/// A followed journal. Not a thread of its own: [`JournalSource::poll`] waits on the child's
/// stdout with a timeout, so the jail's thread drives it like a file source.
pub struct JournalSource {
    cfg: JournalConfig,
    cursor: Option<String>,
    child: Option<(Child, ChildStdout)>,
    buf: Vec<u8>,
    /// Discarding an entry longer than MAX_ENTRY up to its newline.
    skipping: bool,
    next_spawn: Instant,
    backoff: Duration,
}

impl JournalSource {
    /// `cursor`: the saved checkpoint, if any. The child starts on the first poll.
    pub fn new(cfg: JournalConfig, cursor: Option<String>) -> JournalSource {
        JournalSource {
            cfg,
            cursor,
            child: None,
            buf: Vec::new(),
            skipping: false,
            next_spawn: Instant::now(),
            backoff: RESPAWN_MIN,
        }
    }

    /// The cursor of the last entry passed on: persist it with the bans its lines caused.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// journalctl's arguments for the current cursor.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["-o".into(), "json".into(), "-f".into(), "-q".into()];
        if let Some(d) = &self.cfg.directory {
            a.push("--directory".into());
            a.push(d.into());
        }
        match (&self.cursor, self.cfg.start_at) {
            (Some(c), _) => {
                // --no-tail: every entry after the cursor, not just the last ten.
                a.push("--no-tail".into());
                a.push(format!("--after-cursor={c}").into());
            }
            (None, StartAt::Head) => a.push("--no-tail".into()),
            (None, StartAt::Tail) => a.push("--lines=0".into()),
        }
        // Matches after `--`? journalctl takes them as positional arguments; they were
        // validated as FIELD=value / +, so none can start with '-'.
        a.extend(self.cfg.matches.iter().map(OsString::from));
        a
    }

    fn spawn(&mut self) -> io::Result<()> {
        let mut child = Command::new(&self.cfg.journalctl)
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start {}: {e}", self.cfg.journalctl.display()),
                )
            })?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("journalctl has no stdout"));
        };
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let fd = stdout.as_raw_fd();
            let fl = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        self.buf.clear();
        self.skipping = false;
        self.child = Some((child, stdout));
        Ok(())
    }

    fn reap(&mut self, why: &str) {
        if let Some((mut child, _)) = self.child.take() {
            let _ = child.kill();
            let status = child.wait();
            log::warn!(
                "{} exited ({why}, {status:?}); restarting in {:?}",
                self.cfg.journalctl.display(),
                self.backoff
            );
        }
        self.next_spawn = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(RESPAWN_MAX);
    }

    /// Waits up to `timeout` for entries and passes each MESSAGE on as
    /// `on_line(message, time)`. Starts journalctl when it is not running (and restarts it,
    /// with backoff, after it exits); an error starting it is returned.
    pub fn poll(
        &mut self,
        timeout: Duration,
        on_line: &mut dyn FnMut(&str, SystemTime),
    ) -> io::Result<JournalStats> {
        let mut stats = JournalStats::default();
        let deadline = Instant::now() + timeout;
        if self.child.is_none() {
            let now = Instant::now();
            if now < self.next_spawn {
                std::thread::sleep(self.next_spawn.min(deadline) - now);
                if Instant::now() < self.next_spawn {
                    return Ok(stats);
                }
            }
            if let Err(e) = self.spawn() {
                self.next_spawn = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(RESPAWN_MAX);
                return Err(e);
            }
            stats.spawns += 1;
        }
        let Some((child, mut stdout)) = self.child.take() else {
            return Ok(stats);
        };
        let r = self.read_child(&mut stdout, deadline, &mut stats, on_line);
        self.child = Some((child, stdout));
        let eof = r?;
        if eof {
            self.reap("end of output");
        } else if stats.lines > 0 {
            self.backoff = RESPAWN_MIN;
        }
        Ok(stats)
    }

    /// Reads what the child wrote (waiting until `deadline` for the first bytes); true at EOF.
    fn read_child(
        &mut self,
        stdout: &mut ChildStdout,
        deadline: Instant,
        stats: &mut JournalStats,
        on_line: &mut dyn FnMut(&str, SystemTime),
    ) -> io::Result<bool> {
        let fd = stdout.as_raw_fd();
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r <= 0 {
            return Ok(false);
        }
        let mut chunk = [0u8; 64 * 1024];
        let mut eof = false;
        loop {
            match stdout.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    stats.bytes += n as u64;
                    self.feed(&chunk[..n], stats, on_line);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(eof)
    }

    fn feed(
        &mut self,
        data: &[u8],
        stats: &mut JournalStats,
        on_line: &mut dyn FnMut(&str, SystemTime),
    ) {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            let seg = &data[start..nl];
            start = nl + 1;
            if self.skipping {
                self.skipping = false;
                self.buf.clear();
                continue;
            }
            if self.buf.is_empty() {
                self.entry(seg, stats, on_line);
            } else {
                self.buf.extend_from_slice(seg);
                let line = std::mem::take(&mut self.buf);
                self.entry(&line, stats, on_line);
                self.buf = line;
                self.buf.clear();
            }
        }
        let rest = &data[start..];
        if !self.skipping {
            if self.buf.len() + rest.len() > MAX_ENTRY {
                stats.bad_entries += 1;
                self.skipping = true;
                self.buf.clear();
            } else {
                self.buf.extend_from_slice(rest);
            }
        }
    }

    fn entry(
        &mut self,
        line: &[u8],
        stats: &mut JournalStats,
        on_line: &mut dyn FnMut(&str, SystemTime),
    ) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let e = match parse_entry(line) {
            Ok(e) => e,
            Err(err) => {
                stats.bad_entries += 1;
                log::warn!("journal: skipping an entry: {err}");
                return;
            }
        };
        if let Some(msg) = &e.message {
            let mut m: &str = msg;
            if m.len() > self.cfg.max_line {
                let mut cut = self.cfg.max_line;
                while !m.is_char_boundary(cut) {
                    cut -= 1;
                }
                m = &m[..cut];
                stats.truncated_lines += 1;
            }
            stats.lines += 1;
            on_line(m, e.time);
        }
        // The cursor moves past entries without a MESSAGE too.
        match &mut self.cursor {
            Some(c) => {
                c.clear();
                c.push_str(&e.cursor);
            }
            None => self.cursor = Some(e.cursor.into_owned()),
        }
    }
}

impl Drop for JournalSource {
    fn drop(&mut self) {
        if let Some((mut child, _)) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
