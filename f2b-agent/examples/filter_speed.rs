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
    println!(
        "{n} lines, {:.1} MB, written to {}",
        bytes as f64 / 1e6,
        path.display()
    );
    let now = 1_795_348_800;
    for mode in ["normal", "aggressive"] {
        let filter = Filter::load(&FilterSpec::Name("sshd".into()), Some(mode)).expect("sshd");
        // One pass to warm caches, then the timed pass.
        let mut failures = 0u64;
        for l in &lines {
            if let LineMatch::Failure(_) = filter.match_line(l, now) {
                failures += 1;
            }
        }
        let t = Instant::now();
        let mut timed = 0u64;
        for l in &lines {
            if let LineMatch::Failure(_) = std::hint::black_box(filter.match_line(l, now)) {
                timed += 1;
            }
        }
        let dt = t.elapsed().as_secs_f64();
        assert_eq!(timed, failures);
        println!(
            "sshd/{mode}: {failures} failures, {:.3} s, {:.0} lines/s, {:.0} MB/s (prefilter literals: {:?})",
            dt,
            n as f64 / dt,
            bytes as f64 / dt / 1e6,
            filter.literals()
        );
    }
}
