//! Flood throughput on one core: `cargo run --release -p f2b-agent --example flood
//! [SOURCES] [REPEATS]`. Writes SOURCES (default 1,000,000) distinct IPv4 sources each failing
//! REPEATS (default 3) times, interleaved, as sshd "Failed password" lines (every line a
//! failure), then reports lines/s of the reader thread's work without the ban manager:
//! - file source `poll_chunks` -> `Filter::scan` -> `FailManager::add_failure` (the runner),
//! - the same lines in memory through `match_line` -> `add_failure` (the line API),
//! - `FailManager::add_failure` alone.
//!
//! maxretry 5 with 3 failures per source: every source stays tracked, so the table grows to
//! SOURCES entries (max_tracked 1 << 20, the default) and nothing is banned.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use f2b_agent::filter::{Filter, FilterSpec, LineMatch};
use f2b_agent::jail::FailManager;
use f2b_agent::source::{LogSource, SourceOptions, StartAt};

const RUNS: usize = 3;
const NOW: i64 = 1_795_348_800;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 | (i.wrapping_mul(2_654_435_761) & 0x00ff_ffff))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sources: u32 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let repeats: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let dir = std::env::temp_dir().join("f2b-flood");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("auth.log");
    let mut text = String::new();
    for r in 0..repeats {
        for i in 0..sources {
            let s = u64::from(r * sources + i) / 50_000;
            let (h, m, sec) = (4 + s / 3600 % 20, s / 60 % 60, s % 60);
            text.push_str(&format!(
                "Nov 22 {h:02}:{m:02}:{sec:02} web1 sshd[{}]: Failed password for root from {} port {} ssh2\n",
                1000 + i % 60000,
                ip(i),
                1024 + i % 60000
            ));
        }
    }
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write");
    let n = u64::from(sources) * u64::from(repeats);
    println!(
        "{sources} sources x {repeats} = {n} failure lines, {:.1} MB; medians of {RUNS} runs",
        text.len() as f64 / 1e6
    );
    let filter = Filter::load(&FilterSpec::Name("sshd".into()), None).expect("sshd");
    let rate = |dt: f64| format!("{:>6.2} M lines/s", n as f64 / dt / 1e6);
    let fresh = || FailManager::new(5, 86_400, 1 << 20);

    let mut v = Vec::new();
    for _ in 0..RUNS {
        let mut fails = fresh();
        let opts = SourceOptions {
            start_at: StartAt::Head,
            ..SourceOptions::default()
        };
        let t = Instant::now();
        let mut src =
            LogSource::new(&[path.display().to_string()], opts, Vec::new()).expect("source");
        let mut found = 0u64;
        loop {
            let st = src
                .poll_chunks(4 << 20, &mut |_, chunk| {
                    filter.scan(chunk, NOW, &mut |f, _| {
                        found += 1;
                        std::hint::black_box(fails.add_failure(
                            f.ip,
                            f.time.unwrap_or(NOW),
                            NOW,
                            f.user,
                        ));
                    })
                })
                .expect("poll");
            if !st.more {
                break;
            }
        }
        v.push(t.elapsed().as_secs_f64());
        assert_eq!(found, n);
        assert_eq!(fails.stats().failing_now, u64::from(sources));
    }
    println!(
        "  file -> poll_chunks -> scan -> add_failure: {}",
        rate(median(v))
    );

    let lines: Vec<&str> = text.lines().collect();
    let mut v = Vec::new();
    for _ in 0..RUNS {
        let mut fails = fresh();
        let t = Instant::now();
        for l in &lines {
            if let LineMatch::Failure(f) = filter.match_line(l, NOW) {
                std::hint::black_box(fails.add_failure(
                    f.ip,
                    f.time.unwrap_or(NOW),
                    NOW,
                    f.user.as_deref(),
                ));
            }
        }
        v.push(t.elapsed().as_secs_f64());
        assert_eq!(fails.stats().failed_total, n);
    }
    println!(
        "  lines in memory -> match_line -> add_failure: {}",
        rate(median(v))
    );

    let mut v = Vec::new();
    for _ in 0..RUNS {
        let mut fails = fresh();
        let t = Instant::now();
        for r in 0..repeats {
            for i in 0..sources {
                std::hint::black_box(fails.add_failure(
                    IpAddr::V4(ip(i)),
                    NOW - i64::from(repeats - r),
                    NOW,
                    Some("root"),
                ));
            }
        }
        v.push(t.elapsed().as_secs_f64());
    }
    println!(
        "  add_failure alone:                          {}",
        rate(median(v))
    );
}
