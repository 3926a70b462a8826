//! Seeded log generators (no downloads): an sshd auth.log with ~30% failures of many shapes
//! from ~50k sources (IPv4 and IPv6), an nginx access log and an nginx error log. The same
//! seed gives the same bytes on every run. Timestamps are fixed and in the past (syslog: Oct 12,
//! no year, as syslog writes them; nginx: 2025), 20 lines per second.

use std::fmt::Write as _;

/// A small seeded PRNG (xorshift64*), so generated inputs are the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

const USERS: [&str; 12] = [
    "root", "admin", "test", "oracle", "ubuntu", "git", "pi", "deploy", "user", "postgres",
    "ftpuser", "support",
];

/// Source number `k` (< 50k): 1 in 5 IPv6 (in 2001:db8::/32), the rest IPv4 in 100.64.0.0/10.
/// Data only: no packet carries these addresses.
fn source(k: u64) -> String {
    if k % 5 == 4 {
        format!("2001:db8:{:x}::{:x}", k >> 8, (k & 0xff) + 1)
    } else {
        format!(
            "100.{}.{}.{}",
            64 + (k >> 16) % 64,
            (k >> 8) & 0xff,
            (k & 0xff) | 1
        )
    }
}

const SOURCES: u64 = 50_000;

fn syslog_stamp(i: u64) -> String {
    // 20 lines per second from Nov 22 04:00:00 on.
    let s = i / 20;
    let (h, m, sec) = (4 + s / 3600 % 20, s / 60 % 60, s % 60);
    format!("Oct 12 {h:02}:{m:02}:{sec:02}")
}

/// An auth.log of `n` lines. Failure shapes (counted by sshd in normal mode, by both f2b and
/// fail2ban): wrong password (existing and invalid user), keyboard-interactive/pam, invalid
/// user, PAM authentication failure, AllowUsers/DenyUsers refusals, maximum attempts, JSch
/// "Auth fail". Noise: accepted logins, session open/close, disconnects, preauth closes
/// (counted only in ddos/aggressive modes), cron, systemd, sudo, kernel.
pub fn auth_log(n: u64, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut out = String::with_capacity(n as usize * 100);
    for i in 0..n {
        let ts = syslog_stamp(i);
        // One process per line: fail2ban's sshd filter ties lines of one sshd PID together
        // (a "Connection closed ... [preauth]" after a failure of the same PID counts), so
        // reused PIDs would make the counts depend on random collisions.
        let pid = 1000 + i % 4_000_000;
        r.below(60000);
        let ip = source(r.below(SOURCES));
        let user = USERS[r.below(USERS.len() as u64) as usize];
        let port = 1024 + r.below(60000);
        let roll = r.below(100);
        let _ = match roll {
            // ~30% failures, 10 shapes
            0..=7 => writeln!(
                out,
                "{ts} web1 sshd[{pid}]: Failed password for {user} from {ip} port {port} ssh2"
            ),
            8..=12 => writeln!(
                out,
                "{ts} web1 sshd[{pid}]: Failed password for invalid user {user} from {ip} port {port} ssh2"
            ),
            13..=17 => writeln!(
                out,
                "{ts} web1 sshd[{pid}]: Invalid user {user} from {ip} port {port}"
            ),
            18..=19 => writeln!(
                out,
                "{ts} web1 sshd[{pid}]: Failed keyboard-interactive/pam for invalid user {user} from {ip} port {port} ssh2"
            ),
            20..=21 => writeln!(
                out,
                "{ts} web1 sshd[{pid}]: error: PAM: Authentication failure for {user} from {ip}"
            ),
            22..=23 => writeln!(
                out,
                "{ts} web1 sshd[{pid}]: User {user} from {ip} not allowed because not listed in AllowUsers"
            ),
            24 => writeln!(
                out,
                "{ts} web1 sshd[{pid}]: User {user} from {ip} not allowed because listed in DenyUsers"
            ),
            25..=26 => writeln!(
                out,
                "{ts} web1 sshd[{pid}]: error: maximum authentication attempts exceeded for {user} from {ip} port {port} ssh2 [preauth]"
            ),
            27 => writeln!(
                out,
                "{ts} web1 sshd[{pid}]: Received disconnect from {ip} port {port}:3: com.jcraft.jsch.JSchException: Auth fail [preauth]"
            ),
            28..=29 => writeln!(
                out,
                "{ts} web1 sshd[{pid}]: Failed none for invalid user {user} from {ip} port {port} ssh2"
            ),
            // noise
            30..=33 => writeln!(
                out,
                "{ts} web1 sshd[{pid}]: Connection closed by authenticating user {user} {ip} port {port} [preauth]"
            ),
            34..=36 => writeln!(
                out,
                "{ts} web1 sshd[{pid}]: Disconnected from invalid user {user} {ip} port {port} [preauth]"
            ),
            37..=38 => writeln!(
                out,
                "{ts} web1 sshd[{pid}]: Accepted publickey for deploy from 192.0.2.5 port {port} ssh2: ED25519 SHA256:Xk2pQm0bqf2n6b8p3s9tUvWw"
            ),
            39..=40 => writeln!(
                out,
                "{ts} web1 sshd[{pid}]: pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)"
            ),
            41..=42 => writeln!(
                out,
                "{ts} web1 sshd[{pid}]: Received disconnect from {ip} port {port}:11: Bye Bye [preauth]"
            ),
            43..=45 => writeln!(
                out,
                "{ts} web1 sshd[{pid}]: Connection from {ip} port {port} on 192.0.2.1 port 22 rdomain \"\""
            ),
            46..=65 => writeln!(
                out,
                "{ts} web1 CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"
            ),
            66..=80 => writeln!(
                out,
                "{ts} web1 CRON[{pid}]: pam_unix(cron:session): session closed for user root"
            ),
            81..=88 => writeln!(
                out,
                "{ts} web1 systemd[1]: Started session-{}.scope - Session {} of User deploy.",
                r.below(9999),
                r.below(9999)
            ),
            89..=91 => writeln!(
                out,
                "{ts} web1 systemd-logind[512]: New session {} of user deploy.",
                r.below(9999)
            ),
            92..=94 => writeln!(
                out,
                "{ts} web1 sudo[{pid}]:   deploy : TTY=pts/0 ; PWD=/home/deploy ; USER=root ; COMMAND=/usr/bin/systemctl status nginx"
            ),
            95..=97 => writeln!(
                out,
                "{ts} web1 kernel: [{}.{:06}] IN=eth0 OUT= SRC={ip} DST=192.0.2.1 LEN=44 PROTO=TCP DPT=23",
                r.below(999999),
                r.below(999999)
            ),
            _ => writeln!(
                out,
                "{ts} web1 dbus-daemon[480]: [system] Successfully activated service 'org.freedesktop.hostname1'"
            ),
        };
    }
    out.into_bytes()
}

const PATHS_OK: [&str; 8] = [
    "/",
    "/index.html",
    "/static/app.js",
    "/static/style.css",
    "/api/v1/items?page=2",
    "/favicon.ico",
    "/images/logo.png",
    "/blog/2024/10/hello-world",
];

const PATHS_BOT: [&str; 8] = [
    "/phpmyadmin/index.php",
    "/pma/",
    "/wp-login.php",
    "/cgi-bin/test.cgi",
    "/webmail/",
    "/roundcube/",
    "/mysqladmin/",
    "/admin/phpMyAdmin/setup.php",
];

const AGENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "curl/8.5.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "python-requests/2.31.0",
];

fn nginx_access_stamp(i: u64) -> String {
    let s = i / 20;
    let (h, m, sec) = (4 + s / 3600 % 20, s / 60 % 60, s % 60);
    format!("22/Nov/2025:{h:02}:{m:02}:{sec:02} +0000")
}

fn nginx_error_stamp(i: u64) -> String {
    let s = i / 20;
    let (h, m, sec) = (4 + s / 3600 % 20, s / 60 % 60, s % 60);
    format!("2025/11/22 {h:02}:{m:02}:{sec:02}")
}

/// An nginx access log (combined format): ~10% 404s for admin/webmail software
/// (nginx-botsearch), a few 404s for other paths, the rest ordinary 200/304s.
pub fn nginx_access(n: u64, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut out = String::with_capacity(n as usize * 160);
    for i in 0..n {
        let ts = nginx_access_stamp(i);
        let ip = source(r.below(SOURCES));
        let ua = AGENTS[r.below(AGENTS.len() as u64) as usize];
        let roll = r.below(100);
        let (method, path, status) = match roll {
            0..=9 => (
                if roll.is_multiple_of(3) {
                    "POST"
                } else {
                    "GET"
                },
                PATHS_BOT[r.below(PATHS_BOT.len() as u64) as usize],
                404,
            ),
            10..=12 => ("GET", "/missing/page.html", 404),
            13..=20 => (
                "GET",
                PATHS_OK[r.below(PATHS_OK.len() as u64) as usize],
                304,
            ),
            _ => (
                if roll.is_multiple_of(7) {
                    "POST"
                } else {
                    "GET"
                },
                PATHS_OK[r.below(PATHS_OK.len() as u64) as usize],
                200,
            ),
        };
        let _ = writeln!(
            out,
            "{ip} - - [{ts}] \"{method} {path} HTTP/1.1\" {status} {} \"-\" \"{ua}\"",
            100 + r.below(20000)
        );
    }
    out.into_bytes()
}

/// An nginx error log: auth_basic failures (nginx-http-auth, ~15%), limit_req rejections
/// (nginx-limit-req, ~15%), "No such file" opens of admin paths (nginx-botsearch), upstream
/// errors and other noise.
pub fn nginx_error(n: u64, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut out = String::with_capacity(n as usize * 200);
    for i in 0..n {
        let ts = nginx_error_stamp(i);
        let ip = source(r.below(SOURCES));
        let pid = 1000 + r.below(9000);
        let conn = r.below(10_000_000);
        let user = USERS[r.below(USERS.len() as u64) as usize];
        let roll = r.below(100);
        let _ = match roll {
            0..=9 => writeln!(
                out,
                "{ts} [error] {pid}#{pid}: *{conn} user \"{user}\": password mismatch, client: {ip}, server: example.com, request: \"GET /private/ HTTP/1.1\", host: \"example.com\""
            ),
            10..=14 => writeln!(
                out,
                "{ts} [error] {pid}#{pid}: *{conn} user \"{user}\" was not found in \"/etc/nginx/.htpasswd\", client: {ip}, server: example.com, request: \"GET /private/ HTTP/1.1\", host: \"example.com\""
            ),
            15..=29 => writeln!(
                out,
                "{ts} [error] {pid}#{pid}: *{conn} limiting requests, excess: {}.{:03} by zone \"api\", client: {ip}, server: example.com, request: \"GET /api/v1/items HTTP/1.1\", host: \"example.com\"",
                r.below(20),
                r.below(1000)
            ),
            30..=49 => writeln!(
                out,
                "{ts} [error] {pid}#{pid}: *{conn} connect() failed (111: Connection refused) while connecting to upstream, client: {ip}, server: example.com, request: \"GET /api/v1/items HTTP/1.1\", upstream: \"http://127.0.0.1:8080/api/v1/items\", host: \"example.com\""
            ),
            50..=69 => writeln!(
                out,
                "{ts} [warn] {pid}#{pid}: *{conn} an upstream response is buffered to a temporary file /var/cache/nginx/proxy_temp/1/00/0000000001 while reading upstream, client: {ip}, server: example.com, request: \"GET /download HTTP/1.1\", upstream: \"http://127.0.0.1:8080/download\", host: \"example.com\""
            ),
            70..=79 => writeln!(
                out,
                "{ts} [error] {pid}#{pid}: *{conn} open() \"/var/www/html/missing.html\" failed (2: No such file or directory), client: {ip}, server: example.com, request: \"GET /missing.html HTTP/1.1\", host: \"example.com\""
            ),
            _ => writeln!(out, "{ts} [notice] {pid}#{pid}: signal process started"),
        };
    }
    out.into_bytes()
}

/// One sshd failure line for the flood and latency runs: "Failed password" from `ip`,
/// stamped with the syslog time `stamp`.
pub fn failure_line(out: &mut Vec<u8>, stamp: &str, ip: &str, n: u64) {
    let _ = writeln!(
        Buf(out),
        "{stamp} edge sshd[{}]: Failed password for invalid user admin from {ip} port {} ssh2",
        1000 + n % 60000,
        1024 + n % 60000
    );
}

struct Buf<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The current time as a syslog stamp (`Nov 22 04:16:03`), in UTC (the bench machines run in
/// UTC; f2b and fail2ban read stamps without a zone as local time).
pub fn syslog_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as libc::time_t);
    // SAFETY: gmtime_r writes into the tm we pass; both pointers are valid.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::gmtime_r(&secs, &mut tm);
        tm
    };
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MON[tm.tm_mon as usize % 12],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}
