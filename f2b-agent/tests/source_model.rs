//! Model test for the file source: random sequences of appends (whole and partial lines),
//! rename rotation, copytruncate, truncation, deletion (of the live file or of rotated ones),
//! polls and restarts (the source dropped and rebuilt from its last checkpoints), replayed on
//! real files, checking every line against the guarantee in docs/sources.md:
//!
//! Lines are delivered at most once, in write order per path, exactly as written (cut at the
//! cap). A complete line is delivered unless, before the first poll after its newline was
//! written, one of these destroyed it or hid it:
//! - its file was truncated (in place, or by copytruncate: the copy is not followed);
//! - its file left the path (renamed or deleted) before any poll had opened it;
//! - the agent restarted while its file was away from the path, unless that file is the one
//!   the checkpoint names, still exists in the same directory and was not truncated since.
//!
//! Each seed runs with `LogSource::poll` (lines) or `LogSource::poll_chunks` (buffers of
//! lines, unbounded or with a small byte budget so reads stop mid-file), which must not differ.
//!
//! Files here always begin with a unique line id (the writer never writes fewer than the id's
//! bytes), which is what lets the fingerprint tell a rewritten file from the old one.

// A panic is the failure report here.
#![allow(clippy::unwrap_used)]

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use f2b_agent::source::{LogSource, SourceOptions, StartAt};

const PATHS: [&str; 2] = ["a.log", "b.log"];
const MAX_LINE: usize = 40;
/// "a000123 " : tag, six digits, space.
const ID_LEN: usize = 8;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Line {
    path: usize,
    text: String,
    /// May be lost (see the module doc); otherwise it must be delivered.
    exempt: bool,
}

struct Inst {
    path: usize,
    /// Lines whose newline was written since the last poll.
    unpolled: Vec<usize>,
    at_path: bool,
    /// Opened by the current incarnation of the source.
    seen: bool,
    deleted: bool,
    /// Name after a rename rotation.
    rotated: Option<PathBuf>,
    truncated_since_ckpt: bool,
}

#[derive(Default)]
struct PathState {
    cur: Option<usize>,
    /// (line index, bytes of it written so far)
    partial: Option<(usize, usize)>,
    /// The instance the source's checkpoint for this path names.
    ckpt: Option<usize>,
}

struct Model {
    dir: PathBuf,
    lines: Vec<Line>,
    insts: Vec<Inst>,
    paths: [PathState; 2],
    rotations: u32,
    delivered: Vec<Vec<String>>,
    stats_lines: u64,
    /// None: `poll`; Some(budget): `poll_chunks` with that budget, repeated while it has more.
    chunked: Option<usize>,
}

fn append(path: &Path, data: &[u8]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
}

impl Model {
    fn path(&self, p: usize) -> PathBuf {
        self.dir.join(PATHS[p])
    }

    fn exempt_unpolled(&mut self, inst: usize) {
        for &l in &self.insts[inst].unpolled {
            self.lines[l].exempt = true;
        }
        self.insts[inst].unpolled.clear();
    }

    /// The instance at path `p`, created by the write if there is none.
    fn cur_inst(&mut self, p: usize) -> usize {
        if let Some(i) = self.paths[p].cur {
            return i;
        }
        self.insts.push(Inst {
            path: p,
            unpolled: Vec::new(),
            at_path: true,
            seen: false,
            deleted: false,
            rotated: None,
            truncated_since_ckpt: false,
        });
        let i = self.insts.len() - 1;
        self.paths[p].cur = Some(i);
        i
    }

    fn write(&mut self, rng: &mut Rng, p: usize) {
        let path = self.path(p);
        let inst = self.cur_inst(p);
        if let Some((l, done)) = self.paths[p].partial.take() {
            let rest = format!("{}\n", &self.lines[l].text[done..]);
            append(&path, rest.as_bytes());
            self.insts[inst].unpolled.push(l);
            return;
        }
        let id = self.lines.len();
        let tag = if p == 0 { 'a' } else { 'b' };
        let filler: String = (0..rng.below(60))
            .map(|_| (b'a' + rng.below(26) as u8) as char)
            .collect();
        let text = format!("{tag}{id:06} {filler}");
        self.lines.push(Line {
            path: p,
            text: text.clone(),
            exempt: false,
        });
        if rng.chance(25) {
            let cut = ID_LEN + rng.below((text.len() - ID_LEN + 1) as u64) as usize;
            append(&path, &text.as_bytes()[..cut]);
            self.paths[p].partial = Some((id, cut));
        } else {
            append(&path, format!("{text}\n").as_bytes());
            self.insts[inst].unpolled.push(id);
        }
    }

    /// An unfinished line is abandoned when its file goes away or is truncated.
    fn drop_partial(&mut self, p: usize) {
        if let Some((l, _)) = self.paths[p].partial.take() {
            self.lines[l].exempt = true;
        }
    }

    fn rotate(&mut self, p: usize) {
        let Some(i) = self.paths[p].cur.take() else {
            return;
        };
        self.drop_partial(p);
        self.rotations += 1;
        let to = self.dir.join(format!("{}.{}", PATHS[p], self.rotations));
        fs::rename(self.path(p), &to).unwrap();
        self.insts[i].at_path = false;
        self.insts[i].rotated = Some(to);
        if !self.insts[i].seen {
            self.exempt_unpolled(i);
        }
    }

    fn truncate(&mut self, p: usize, copy: bool) {
        let Some(i) = self.paths[p].cur else { return };
        self.drop_partial(p);
        if copy {
            self.rotations += 1;
            let to = self.dir.join(format!("{}.c{}", PATHS[p], self.rotations));
            fs::copy(self.path(p), to).unwrap();
        }
        OpenOptions::new()
            .write(true)
            .open(self.path(p))
            .unwrap()
            .set_len(0)
            .unwrap();
        self.exempt_unpolled(i);
        self.insts[i].truncated_since_ckpt = true;
    }

    fn delete(&mut self, p: usize) {
        let Some(i) = self.paths[p].cur.take() else {
            return;
        };
        self.drop_partial(p);
        fs::remove_file(self.path(p)).unwrap();
        self.insts[i].at_path = false;
        self.insts[i].deleted = true;
        if !self.insts[i].seen {
            self.exempt_unpolled(i);
        }
    }

    fn delete_rotated(&mut self, rng: &mut Rng) {
        let live: Vec<usize> = (0..self.insts.len())
            .filter(|&i| self.insts[i].rotated.is_some() && !self.insts[i].deleted)
            .collect();
        if live.is_empty() {
            return;
        }
        let i = live[rng.below(live.len() as u64) as usize];
        fs::remove_file(self.insts[i].rotated.as_ref().unwrap()).unwrap();
        self.insts[i].deleted = true;
    }

    fn poll(&mut self, src: &mut LogSource) {
        let mut got: Vec<(String, String)> = Vec::new();
        match self.chunked {
            None => {
                let st = src
                    .poll(&mut |p, l| got.push((p.to_string(), l.to_string())))
                    .unwrap();
                self.stats_lines += st.lines;
            }
            Some(budget) => loop {
                let st = src
                    .poll_chunks(budget, &mut |p, c| {
                        assert!(c.ends_with('\n'), "chunk without its last newline");
                        got.extend(c.lines().map(|l| (p.to_string(), l.to_string())));
                    })
                    .unwrap();
                self.stats_lines += st.lines;
                if !st.more {
                    break;
                }
            },
        }
        for (p, l) in got {
            let k = PATHS
                .iter()
                .position(|n| Path::new(&p).file_name().unwrap() == *n)
                .unwrap_or_else(|| panic!("line reported for unknown path {p}"));
            self.delivered[k].push(l);
        }
        for inst in &mut self.insts {
            inst.unpolled.clear();
            inst.seen = inst.at_path;
        }
        for p in 0..PATHS.len() {
            self.paths[p].ckpt = self.paths[p].cur;
            if let Some(i) = self.paths[p].cur {
                self.insts[i].truncated_since_ckpt = false;
            }
        }
    }

    fn restart(&mut self, src: LogSource, opts: &SourceOptions) -> LogSource {
        let saved: Vec<_> = src
            .checkpoints()
            .into_iter()
            .filter_map(|(p, pos)| pos.map(|pos| (p, pos)))
            .collect();
        drop(src);
        let mut recovered = [None, None];
        for i in 0..self.insts.len() {
            let inst = &self.insts[i];
            if inst.at_path {
                continue;
            }
            let p = inst.path;
            let ok = self.paths[p].ckpt == Some(i)
                && !inst.deleted
                && !inst.truncated_since_ckpt
                && inst.rotated.is_some();
            if ok {
                recovered[p] = Some(i);
            } else {
                self.exempt_unpolled(i);
            }
        }
        for i in 0..self.insts.len() {
            let p = self.insts[i].path;
            self.insts[i].seen = self.insts[i].at_path || recovered[p] == Some(i);
        }
        for (p, rec) in recovered.iter().enumerate() {
            self.paths[p].ckpt = self.paths[p].cur.or(*rec);
            if let Some(i) = self.paths[p].ckpt {
                self.insts[i].truncated_since_ckpt = false;
            }
        }
        LogSource::new(&self.logpaths(), opts.clone(), saved).unwrap()
    }

    fn logpaths(&self) -> Vec<String> {
        (0..PATHS.len())
            .map(|p| self.path(p).display().to_string())
            .collect()
    }

    fn check(&self, seed: u64) {
        let mut total = 0;
        for (p, got) in self.delivered.iter().enumerate() {
            let mut last: Option<usize> = None;
            for l in got {
                let id: usize = l
                    .get(1..7)
                    .and_then(|d| d.parse().ok())
                    .unwrap_or_else(|| panic!("seed {seed}: garbled line {l:?} on {p}"));
                let line = &self.lines[id];
                assert_eq!(line.path, p, "seed {seed}: line {id} on the wrong path");
                let want = &line.text[..line.text.len().min(MAX_LINE)];
                assert_eq!(l, want, "seed {seed}: line {id} altered");
                assert!(
                    last.is_none_or(|prev| prev < id),
                    "seed {seed}: path {p}: line {id} after line {last:?} (duplicate or out of order)"
                );
                last = Some(id);
            }
            total += got.len();
        }
        assert_eq!(
            self.stats_lines, total as u64,
            "seed {seed}: PollStats.lines"
        );
        let mut seen = vec![false; self.lines.len()];
        for l in self.delivered.iter().flatten() {
            seen[l[1..7].parse::<usize>().unwrap()] = true;
        }
        for (id, line) in self.lines.iter().enumerate() {
            let complete = self.paths[line.path].partial.is_none_or(|(l, _)| l != id);
            if complete && !line.exempt {
                assert!(
                    seen[id],
                    "seed {seed}: line {id} ({:?}) was never delivered",
                    line.text
                );
            }
        }
    }
}

/// Lines, chunks, or chunks with a budget of a few reads.
fn mode(seed: u64) -> Option<usize> {
    match seed % 3 {
        0 => None,
        1 => Some(usize::MAX),
        _ => Some(1 + (seed as usize * 7) % 150),
    }
}

fn run(seed: u64, steps: usize) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut m = Model {
        dir: dir.path().to_path_buf(),
        lines: Vec::new(),
        insts: Vec::new(),
        paths: Default::default(),
        rotations: 0,
        delivered: vec![Vec::new(), Vec::new()],
        stats_lines: 0,
        chunked: mode(seed),
    };
    let opts = SourceOptions {
        start_at: StartAt::Tail,
        max_line: MAX_LINE,
        rotate_wait: Duration::ZERO,
        // Small and odd, so lines straddle reads.
        read_buffer: 7 + rng.below(60) as usize,
    };
    let mut src = LogSource::new(&m.logpaths(), opts.clone(), Vec::new()).unwrap();
    let trace = std::env::var_os("F2B_MODEL_TRACE").is_some();
    for step in 0..steps {
        let p = rng.below(PATHS.len() as u64) as usize;
        let op = rng.below(100);
        if trace {
            let name = match op {
                0..=44 => "write",
                45..=64 => "poll",
                65..=70 => "rotate",
                71..=74 => "copytruncate",
                75..=77 => "truncate",
                78..=81 => "delete",
                82..=85 => "delete-rotated",
                _ => "restart",
            };
            eprintln!(
                "step {step}: {name} {} (next line {})",
                PATHS[p],
                m.lines.len()
            );
        }
        match op {
            0..=44 => m.write(&mut rng, p),
            45..=64 => m.poll(&mut src),
            65..=70 => m.rotate(p),
            71..=74 => m.truncate(p, true),
            75..=77 => m.truncate(p, false),
            78..=81 => m.delete(p),
            82..=85 => m.delete_rotated(&mut rng),
            _ => src = m.restart(src, &opts),
        }
    }
    m.poll(&mut src);
    m.poll(&mut src);
    m.check(seed);
    let delivered = m.delivered.iter().map(Vec::len).sum();
    (m.lines.len(), delivered)
}

#[test]
fn random_write_rotate_truncate_delete_restart() {
    let seeds: u64 = std::env::var("F2B_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let start = Instant::now();
    let (mut written, mut delivered) = (0, 0);
    let only: Option<u64> = std::env::var("F2B_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    for seed in (0..seeds).filter(|s| only.is_none_or(|o| o == *s)) {
        let (w, d) = run(seed, 200);
        written += w;
        delivered += d;
    }
    eprintln!(
        "{seeds} seeds x 200 steps: {written} lines written, {delivered} delivered, {:?}",
        start.elapsed()
    );
    // The guarantee must not be vacuous: most lines survive.
    assert!(delivered * 2 > written, "{delivered} of {written}");
}

/// Without destructive events nothing may be lost at all.
#[test]
fn appends_polls_rotations_and_restarts_lose_nothing() {
    for seed in 0..50 {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(seed | 1);
        let mut m = Model {
            dir: dir.path().to_path_buf(),
            lines: Vec::new(),
            insts: Vec::new(),
            paths: Default::default(),
            rotations: 0,
            delivered: vec![Vec::new(), Vec::new()],
            stats_lines: 0,
            chunked: mode(seed),
        };
        let opts = SourceOptions {
            start_at: StartAt::Tail,
            max_line: MAX_LINE,
            rotate_wait: Duration::ZERO,
            read_buffer: 16,
        };
        let mut src = LogSource::new(&m.logpaths(), opts.clone(), Vec::new()).unwrap();
        for _ in 0..200 {
            let p = rng.below(2) as usize;
            match rng.below(10) {
                0..=5 => m.write(&mut rng, p),
                6..=7 => m.poll(&mut src),
                // Rotate only what a poll has seen, restart only after a poll: no loss allowed.
                8 => {
                    if m.paths[p].cur.is_some_and(|i| m.insts[i].seen) {
                        m.rotate(p);
                        m.poll(&mut src);
                    }
                }
                _ => {
                    m.poll(&mut src);
                    src = m.restart(src, &opts);
                }
            }
        }
        m.poll(&mut src);
        m.check(seed);
        let lost = m.lines.iter().filter(|l| l.exempt).count();
        let partial_dropped = m.lines.len() - m.delivered.iter().map(Vec::len).sum::<usize>();
        assert!(
            partial_dropped <= lost + 2,
            "seed {seed}: {partial_dropped} undelivered, {lost} exempt"
        );
    }
}

/// CRLF, invalid UTF-8, overlong lines (also ending in `\r` where cut), a line that straddles
/// reads: `poll_chunks` read with `str::lines` gives exactly what `poll` gives.
#[test]
fn chunks_read_as_lines_equal_poll() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.log");
    let mut data: Vec<u8> = Vec::new();
    data.extend_from_slice(b"plain\ncrlf\r\ntwo crs\r\r\n\xff\xfe bad utf8\n");
    data.extend_from_slice(&[b'x'; 100]);
    data.extend_from_slice(b"\n");
    data.extend_from_slice(&[b'y'; 39]);
    data.extend_from_slice(b"\r\r\n");
    data.extend_from_slice("\u{e9}t\u{e9} ".repeat(20).as_bytes());
    data.extend_from_slice(b"\n\nlast\npartial");
    fs::write(&path, &data).unwrap();
    let logpaths = vec![path.display().to_string()];
    for read_buffer in [5, 16, 64, 4096] {
        let opts = SourceOptions {
            start_at: StartAt::Head,
            max_line: 40,
            rotate_wait: Duration::ZERO,
            read_buffer,
        };
        let mut a = LogSource::new(&logpaths, opts.clone(), Vec::new()).unwrap();
        let mut want = Vec::new();
        let sa = a.poll(&mut |_, l| want.push(l.to_string())).unwrap();
        for budget in [1, 7, usize::MAX] {
            let mut b = LogSource::new(&logpaths, opts.clone(), Vec::new()).unwrap();
            let mut got = Vec::new();
            let mut lines = 0;
            loop {
                let st = b
                    .poll_chunks(budget, &mut |_, c| {
                        got.extend(c.lines().map(str::to_string))
                    })
                    .unwrap();
                lines += st.lines;
                if !st.more {
                    break;
                }
            }
            assert_eq!(got, want, "read_buffer {read_buffer}, budget {budget}");
            assert_eq!(lines, sa.lines);
            assert_eq!(b.checkpoints(), a.checkpoints());
        }
    }
}
