//! Stock filters against log lines written for them: `tests/filters/NAME[@MODE].log`, one
//! expectation per line in the sibling `.expect` (the address a failure must carry, or `-`
//! for a line that must not be a failure). Also: the prefilter never changes an answer, and
//! a line that is not a failure allocates nothing, and [`Filter::scan`] on a whole log finds
//! exactly the failures `match_line` finds line by line.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use f2b_agent::filter::{Failure, Filter, FilterSpec, LineMatch, stock};

/// Counts allocations made by the current thread (tests run on several threads at once).
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

// 2026-11-22T12:00:00Z: the test lines are from the morning of that day.
const NOW: i64 = 1_795_348_800;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filters")
}

/// Every `NAME[@MODE].log` with its filter name and mode.
fn cases() -> Vec<(PathBuf, String, Option<String>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            let (name, mode) = match stem.split_once('@') {
                Some((n, m)) => (n.to_string(), Some(m.to_string())),
                None => (stem, None),
            };
            (p, name, mode)
        })
        .collect();
    v.sort();
    v
}

fn expectations(log: &Path) -> Vec<Option<IpAddr>> {
    let text = std::fs::read_to_string(log.with_extension("expect")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.trim() {
            "-" => None,
            ip => Some(
                ip.parse()
                    .unwrap_or_else(|_| panic!("{log:?}: bad expectation {ip}")),
            ),
        })
        .collect()
}

#[test]
fn every_stock_filter_has_test_lines() {
    let tested: Vec<String> = cases().into_iter().map(|(_, n, _)| n).collect();
    for name in stock::names() {
        assert!(
            tested.iter().any(|t| t == name),
            "no tests/filters/{name}.log"
        );
    }
}

#[test]
fn stock_filters_match_their_logs() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (log, name, mode) in cases() {
        let filter = Filter::load(&FilterSpec::Name(name.clone()), mode.as_deref())
            .unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&log).unwrap();
        let want = expectations(&log);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            want.len(),
            "{log:?}: .log and .expect differ in length"
        );
        for (i, (line, want)) in lines.iter().zip(&want).enumerate() {
            let got = filter.match_line(line, NOW);
            let unfiltered = filter.match_line_unfiltered(line, NOW);
            if got != unfiltered {
                failures.push(format!(
                    "{}:{}: prefilter changed the answer ({got:?} vs {unfiltered:?})",
                    log.display(),
                    i + 1
                ));
            }
            let got_ip = match &got {
                LineMatch::Failure(f) => {
                    if f.time.is_none() {
                        failures.push(format!("{}:{}: no time found", log.display(), i + 1));
                    }
                    Some(f.ip)
                }
                _ => None,
            };
            if got_ip != *want {
                failures.push(format!(
                    "{}:{}: want {want:?}, got {got:?}\n    {line}",
                    log.display(),
                    i + 1
                ));
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked > 100, "only {checked} lines checked");
}

#[test]
fn lines_that_are_not_failures_do_not_allocate() {
    let sshd = Filter::load(&FilterSpec::Name("sshd".into()), Some("aggressive")).unwrap();
    let nginx = Filter::load(&FilterSpec::Name("nginx-botsearch".into()), None).unwrap();
    let lines = [
        // Rejected by the prefilter.
        "Nov 22 04:16:26 web1 CRON[2321]: pam_unix(cron:session): session closed for user root",
        // Past the prefilter (contains " from "), date cut, prefregex and RegexSet run.
        "Nov 22 04:16:09 web1 sshd[2304]: Accepted publickey for deploy from 192.0.2.5 port 50000 ssh2",
        "2026-11-22T04:16:09+00:00 web1 sshd[2304]: Connection closed by 192.0.2.5 port 6004",
    ];
    let mid =
        r#"192.0.2.11 - - [22/Nov/2026:04:22:05 +0000] "GET /index.html HTTP/1.1" 404 153 "-" "x""#;
    // Warm up: per-thread scratch buffers and the regex engines' caches are made once.
    for l in lines {
        assert!(
            !matches!(sshd.match_line(l, NOW), LineMatch::Failure(_)),
            "{l}"
        );
    }
    assert_eq!(nginx.match_line(mid, NOW), LineMatch::Miss);
    let before = allocs();
    for _ in 0..1000 {
        for l in lines {
            std::hint::black_box(sshd.match_line(l, NOW));
        }
        std::hint::black_box(nginx.match_line(mid, NOW));
    }
    assert_eq!(
        allocs() - before,
        0,
        "allocations on lines that are not failures"
    );
}

/// The failures of `text` as `match_line` finds them, with their lines' offsets.
fn per_line(filter: &Filter, text: &str) -> Vec<(usize, Failure)> {
    let mut out = Vec::new();
    let mut off = 0;
    for raw in text.split_inclusive('\n') {
        let line = raw.strip_suffix('\n').unwrap_or(raw);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let LineMatch::Failure(f) = filter.match_line(line, NOW) {
            out.push((off, f));
        }
        off += raw.len();
    }
    out
}

fn scanned(filter: &Filter, text: &str) -> Vec<(usize, Failure)> {
    let mut out = Vec::new();
    filter.scan(text, NOW, &mut |f, off| out.push((off, f.to_owned())));
    out
}

#[test]
fn scan_finds_what_match_line_finds() {
    let mut total = 0;
    for (log, name, mode) in cases() {
        let filter = Filter::load(&FilterSpec::Name(name.clone()), mode.as_deref()).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        let want = per_line(&filter, &text);
        assert_eq!(scanned(&filter, &text), want, "{log:?}");
        // CRLF line ends, and a last line without its newline.
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(
            scanned(&filter, &crlf),
            per_line(&filter, &crlf),
            "{log:?} CRLF"
        );
        let cut = text.trim_end_matches('\n');
        assert_eq!(
            scanned(&filter, cut),
            per_line(&filter, cut),
            "{log:?} no final newline"
        );
        total += want.len();
    }
    assert!(total > 50, "only {total} failures compared");
}

#[test]
fn scan_on_lines_that_are_not_failures_does_not_allocate() {
    let sshd = Filter::load(&FilterSpec::Name("sshd".into()), Some("aggressive")).unwrap();
    let chunk = "Nov 22 04:16:26 web1 CRON[2321]: pam_unix(cron:session): session closed for user root\n\
        Nov 22 04:16:09 web1 sshd[2304]: Accepted publickey for deploy from 192.0.2.5 port 50000 ssh2\n\
        2026-11-22T04:16:09+00:00 web1 sshd[2304]: Connection closed by 192.0.2.5 port 6004\n\
        Nov 22 04:16:09 web1 sshd[2304]: Failed password for root from 198.51.100.9 port 22 ssh2\n";
    let mut n = 0;
    sshd.scan(chunk, NOW, &mut |_, _| n += 1);
    assert_eq!(n, 1);
    let before = allocs();
    for _ in 0..1000 {
        sshd.scan(chunk, NOW, &mut |f, _| {
            std::hint::black_box(f);
        });
    }
    assert_eq!(
        allocs() - before,
        0,
        "allocations in scan (a failure is reported borrowed)"
    );
}
