//! Filter throughput on a synthetic auth.log: `cargo run --release -p f2b-agent --example
//! filter_speed [LINES] [FILE]`. Generates LINES (default 1,000,000) seeded, realistic
//! syslog lines (about 1 in 12 a failure, the rest the usual cron/systemd/sshd noise),
//! writes them to FILE (default a temp file, kept so `grep` can be timed on the same data),
//! and reports lines/s of `Filter::match_line` for the sshd filter in each mode.

use std::io::Write;
use std::time::Instant;

use f2b_agent::filter::{Filter, FilterSpec, LineMatch};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const USERS: [&str; 8] = [
    "root", "admin", "test", "oracle", "ubuntu", "git", "pi", "deploy",
];

fn line(r: &mut Rng, i: u64) -> String {
    let s = i / 20;
    let (h, m, sec) = (4 + s / 3600 % 20, s / 60 % 60, s % 60);
    let ts = format!("Nov 22 {h:02}:{m:02}:{sec:02} web1");
    let pid = 1000 + r.below(60000);
    let ip = format!("203.0.{}.{}", r.below(256), 1 + r.below(254));
    let user = USERS[r.below(USERS.len() as u64) as usize];
    match r.below(24) {
        0 => format!(
            "{ts} sshd[{pid}]: Failed password for {user} from {ip} port {} ssh2",
            1024 + r.below(60000)
        ),
        1 => format!(
            "{ts} sshd[{pid}]: Invalid user {user} from {ip} port {}",
            1024 + r.below(60000)
        ),
        2 => format!(
            "{ts} sshd[{pid}]: Connection closed by authenticating user {user} {ip} port {} [preauth]",
            1024 + r.below(60000)
        ),
        3 => format!(
            "{ts} sshd[{pid}]: Accepted publickey for deploy from 192.0.2.5 port {} ssh2: ED25519 SHA256:Xk2pQm0bqf2n6b8p3s9tUvWw",
            1024 + r.below(60000)
        ),
        4 => format!(
            "{ts} sshd[{pid}]: pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)"
        ),
        5 => format!(
            "{ts} sshd[{pid}]: Received disconnect from 192.0.2.5 port {}:11: disconnected by user",
            1024 + r.below(60000)
        ),
        6..=11 => format!(
            "{ts} CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"
        ),
        12..=15 => {
            format!("{ts} CRON[{pid}]: pam_unix(cron:session): session closed for user root")
        }
        16..=18 => format!(
            "{ts} systemd[1]: Started session-{}.scope - Session {} of User deploy.",
            r.below(9999),
            r.below(9999)
        ),
        19 => format!(
            "{ts} systemd-logind[512]: New session {} of user deploy.",
            r.below(9999)
        ),
        20 => format!(
            "{ts} sudo[{pid}]:   deploy : TTY=pts/0 ; PWD=/home/deploy ; USER=root ; COMMAND=/usr/bin/systemctl status nginx"
        ),
        21 => format!(
            "{ts} kernel: [{}.{:06}] IN=eth0 OUT= SRC={ip} DST=192.0.2.1 LEN=44 PROTO=TCP DPT=23",
            r.below(999999),
            r.below(999999)
        ),
        _ => format!(
            "{ts} dbus-daemon[480]: [system] Successfully activated service 'org.freedesktop.hostname1'"
        ),
    }
}

/// `grep -cE` patterns that count what the sshd filter counts on this corpus (the ceiling of
/// a plain regex scan; the counts are checked against the filter's).
const GREP_NORMAL: &str = r"sshd(-session)?\[[0-9]+\]: ((error|fatal): (PAM: )?)?([iI]nvalid user|[iI]llegal user|Failed [^ ]+ for|[aA]uthentication (failure|error|failed) for|User not known to the underlying authentication module for|maximum authentication attempts exceeded for) .* from [0-9a-fA-F.:]+( |$)";
const GREP_AGGRESSIVE: &str = r"sshd(-session)?\[[0-9]+\]: ((error|fatal): (PAM: )?)?(([iI]nvalid user|[iI]llegal user|Failed [^ ]+ for|[aA]uthentication (failure|error|failed) for|User not known to the underlying authentication module for|maximum authentication attempts exceeded for) .* from [0-9a-fA-F.:]+( |$)|Connection (closed|reset) by (authenticating user [^ ]+ )?[0-9a-fA-F.:]+ port [0-9]+ \[preauth\])";

const RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds of RUNS calls of `f` (after one warm-up), and what it returned.
fn time<T: PartialEq + std::fmt::Debug>(mut f: impl FnMut() -> T) -> (f64, T) {
    let want = f();
    let mut v = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let got = std::hint::black_box(f());
        v.push(t.elapsed().as_secs_f64());
        assert_eq!(got, want);
    }
    (median(v), want)
}

/// The buffer cut at line ends into pieces of about `size` bytes, as the source reads it.
fn chunks(text: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let cut = if rest.len() <= size {
            rest.len()
        } else {
            rest[..size].rfind('\n').map_or(rest.len(), |i| i + 1)
        };
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let path = args
        .get(2)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("f2b-filter-speed-auth.log"));
    let mut rng = Rng(0x5eed_f2b0_0000_0001);
    let lines: Vec<String> = (0..n).map(|i| line(&mut rng, i)).collect();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    for l in &lines {
        writeln!(f, "{l}").expect("write");
    }
    f.flush().expect("flush");
    drop(f);
    let text = std::fs::read_to_string(&path).expect("read back");
    println!(
        "{n} lines, {:.1} MB, written to {}; medians of {RUNS} runs",
        bytes as f64 / 1e6,
        path.display()
    );
    let now = 1_795_348_800;
    let rate = |dt: f64| {
        format!(
            "{:>6.2} M lines/s {:>6.0} MB/s",
            n as f64 / dt / 1e6,
            bytes as f64 / dt / 1e6
        )
    };
    for (mode, pat) in [("normal", GREP_NORMAL), ("aggressive", GREP_AGGRESSIVE)] {
        let filter = Filter::load(&FilterSpec::Name("sshd".into()), Some(mode)).expect("sshd");
        println!("sshd/{mode} (prefilter literals: {:?})", filter.literals());
        let (dt, by_line) = time(|| {
            lines
                .iter()
                .filter(|l| matches!(filter.match_line(l, now), LineMatch::Failure(_)))
                .count() as u64
        });
        println!(
            "  match_line per line:      {} ({by_line} failures)",
            rate(dt)
        );
        let (dt, scanned) = time(|| {
            let mut k = 0u64;
            filter.scan(&text, now, &mut |_, _| k += 1);
            k
        });
        println!(
            "  scan, whole buffer:       {} ({scanned} failures)",
            rate(dt)
        );
        assert_eq!(scanned, by_line, "scan and match_line disagree");
        let pieces = chunks(&text, 64 * 1024);
        let (dt, chunked) = time(|| {
            let mut k = 0u64;
            for c in &pieces {
                filter.scan(c, now, &mut |_, _| k += 1);
            }
            k
        });
        println!(
            "  scan, 64 KiB chunks:      {} ({chunked} failures)",
            rate(dt)
        );
        assert_eq!(chunked, by_line);
        let grep = time(|| {
            std::process::Command::new("grep")
                .env("LC_ALL", "C")
                .args(["-cE", pat])
                .arg(&path)
                .output()
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        });
        match grep {
            (dt, Some(c)) => {
                println!("  LC_ALL=C grep -cE:        {} ({c} lines)", rate(dt));
                assert_eq!(c, by_line, "grep -cE and the filter disagree");
            }
            (_, None) => println!("  grep -cE: not available"),
        }
    }
}
