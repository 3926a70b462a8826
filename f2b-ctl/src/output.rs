//! Human-readable rendering of agent responses, and the small formatters it uses
//! (thousands separators, byte units, relative and absolute times).
//!
//! Everything here is pure: the current time is passed in, so output is testable.

use f2b_common::counters::NAMES;
use f2b_common::proto::{
    BanResult, BanRun, BanRuns, JailStatus, ListData, PingData, StatsData, StatusData, UnbanResult,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cli::Command;
use crate::table::{Align, Table};

/// What a successful response turns into: text for stdout, and notes for stderr.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    pub stdout: String,
    pub notes: Vec<String>,
}

impl Rendered {
    pub fn text(stdout: String) -> Rendered {
        Rendered {
            stdout,
            notes: Vec::new(),
        }
    }
}

/// Renders the `data` of a successful response to `cmd` for a person. `now` is Unix seconds.
///
/// Data of an unexpected shape (an agent newer or older than this f2b-ctl) is not an error:
/// the command did succeed, so the raw JSON is printed with a note saying why.
pub fn render(cmd: &Command, data: &Value, now: u64) -> Rendered {
    match try_render(cmd, data, now) {
        Ok(r) => r,
        Err(e) => Rendered {
            stdout: format!(
                "{}\n",
                serde_json::to_string_pretty(data).unwrap_or_else(|_| data.to_string())
            ),
            notes: vec![format!(
                "warning: the agent's answer has an unexpected shape ({e}); showing it as JSON"
            )],
        },
    }
}

fn decode<T: DeserializeOwned>(data: &Value) -> Result<T, String> {
    T::deserialize(data).map_err(|e| e.to_string())
}

fn try_render(cmd: &Command, data: &Value, now: u64) -> Result<Rendered, String> {
    Ok(match cmd {
        Command::Ping => ping(&decode(data)?),
        Command::Status { jail: None } => Rendered::text(status(&decode(data)?)),
        Command::Status { jail: Some(name) } => Rendered::text(jail_status(&decode(data)?, name)?),
        Command::Ban { .. } => Rendered::text(ban(&decode(data)?, now)),
        Command::Unban { .. } => Rendered::text(unban(&decode(data)?)),
        Command::List { jail } => Rendered::text(list(&decode(data)?, jail.as_deref(), now)),
        Command::Stats => Rendered::text(stats(&decode(data)?)),
        Command::Reload => Rendered::text(reload(data)),
        // Runs offline and prints for itself (crate::regex); never rendered from an answer.
        Command::Regex(_) => Rendered::text(String::new()),
        Command::Stop { detach } => {
            let what = if *detach {
                "stopping; the XDP program is detached and the pinned maps removed: bans are no longer enforced"
            } else {
                "stopping; the XDP program and pinned maps stay in place: bans remain enforced"
            };
            Rendered::text(with_details(what.into(), data, &["stopping", "detach"]))
        }
    })
}

fn ping(p: &PingData) -> Rendered {
    let mut r = Rendered::text("pong\n".into());
    if p.protocol != f2b_common::proto::PROTOCOL_VERSION {
        r.notes.push(format!(
            "warning: the agent (version {}) speaks control protocol {}, this f2b-ctl speaks {}",
            p.version,
            p.protocol,
            f2b_common::proto::PROTOCOL_VERSION
        ));
    }
    r
}

fn status(s: &StatusData) -> String {
    let mut out = format!("f2b-agent {}, up {}\n", s.version, span(s.uptime_secs));
    if s.interfaces.is_empty() {
        out.push_str("no interfaces attached\n");
    }
    for i in &s.interfaces {
        let note = if i.mode == "skb" {
            " (generic mode: slower than native)"
        } else {
            ""
        };
        out.push_str(&format!("interface {}: XDP {}{}\n", i.name, i.mode, note));
    }
    out.push('\n');
    if s.jails.is_empty() {
        out.push_str("no jails configured\n");
        return out;
    }
    let mut t = Table::new(&[
        ("JAIL", Align::Left),
        ("FAILING", Align::Right),
        ("FAILED TOTAL", Align::Right),
        ("BANNED", Align::Right),
        ("BANNED TOTAL", Align::Right),
        ("FILES", Align::Left),
    ]);
    for j in &s.jails {
        let name = if j.enabled {
            j.name.clone()
        } else {
            format!("{} (disabled)", j.name)
        };
        t.row([
            name,
            thousands(j.failing_now),
            thousands(j.failed_total),
            thousands(j.banned_now),
            thousands(j.banned_total),
            j.files.join(", "),
        ]);
    }
    out.push_str(&t.render());
    out
}

fn jail_status(s: &StatusData, name: &str) -> Result<String, String> {
    let j: &JailStatus = match s.jails.iter().find(|j| j.name == name) {
        Some(j) => j,
        None => return Err(format!("no jail named {name:?} in the answer")),
    };
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(" ")
        }
    };
    let mut out = format!("Status for the jail: {}\n", j.name);
    if !j.enabled {
        out.push_str("(disabled)\n");
    }
    out.push_str(&format!(
        "|- Filter\n\
         |  |- Currently failed: {}\n\
         |  |- Total failed:     {}\n\
         |  `- File list:        {}\n\
         `- Actions\n   \
            |- Currently banned: {}\n   \
            |- Total banned:     {}\n   \
            `- Banned IP list:   {}\n",
        thousands(j.failing_now),
        thousands(j.failed_total),
        list(&j.files),
        thousands(j.banned_now),
        thousands(j.banned_total),
        list(&j.banned),
    ));
    if j.evicted > 0 {
        out.push_str(&format!(
            "   note: {} failing addresses evicted (max_tracked reached)\n",
            thousands(j.evicted)
        ));
    }
    if j.ban_errors > 0 {
        out.push_str(&format!(
            "   warning: {} bans could not be enforced (see the agent log)\n",
            thousands(j.ban_errors)
        ));
    }
    Ok(out)
}

pub fn ban(r: &BanResult, now: u64) -> String {
    ban_lines(
        r.banned
            .iter()
            .map(|b| (b.ip.as_str(), b.jail.as_str(), b.until, b.ban_count)),
        r.banned.len(),
        now,
    )
}

/// The addresses of a request by position: [`crate::cli::Addrs`], or a slice of strings.
pub trait Names {
    fn count(&self) -> usize;
    fn name(&self, i: usize) -> Option<&str>;
}

impl Names for crate::cli::Addrs {
    fn count(&self) -> usize {
        self.len()
    }
    fn name(&self, i: usize) -> Option<&str> {
        self.get(i)
    }
}

impl<S: AsRef<str>> Names for [S] {
    fn count(&self) -> usize {
        self.len()
    }
    fn name(&self, i: usize) -> Option<&str> {
        self.get(i).map(AsRef::as_ref)
    }
}

/// [`ban`] for a compact answer: the addresses are the request's `ips`, named by position.
/// Err when a run names a position the request does not have.
pub fn ban_runs<N: Names + ?Sized>(ips: &N, r: &BanRuns, now: u64) -> Result<String, String> {
    for run in &r.runs {
        run_ips(ips, run)?;
    }
    Ok(ban_lines(
        r.runs.iter().flat_map(|run| {
            let at = run.at as usize;
            (at..at + run.n as usize).map(move |i| {
                (
                    ips.name(i).unwrap_or(""),
                    run.jail.as_str(),
                    run.until,
                    run.ban_count,
                )
            })
        }),
        r.runs.iter().map(|r| r.n as usize).sum(),
        now,
    ))
}

/// The positions of the request addresses of `run`.
fn run_ips<N: Names + ?Sized>(ips: &N, run: &BanRun) -> Result<std::ops::Range<usize>, String> {
    let (at, n) = (run.at as usize, run.n as usize);
    match at.checked_add(n) {
        Some(end) if end <= ips.count() => Ok(at..end),
        _ => Err(format!(
            "a run of {n} bans at position {at} of a request of {} addresses",
            ips.count()
        )),
    }
}

/// A compact answer as `--json` prints a [`BanResult`] (the agent's full answer, printed
/// through a JSON tree: keys sorted, one line): `{"banned":[BanInfo...]}`.
pub fn ban_runs_json<N: Names + ?Sized>(ips: &N, r: &BanRuns) -> Result<String, String> {
    #[derive(serde::Serialize)]
    struct Sorted<'a> {
        ban_count: u32,
        bytes: u64,
        ip: &'a str,
        jail: &'a str,
        packets: u64,
        since: u64,
        until: Option<u64>,
    }
    let mut out = Vec::with_capacity(64 + 128 * ips.count());
    out.extend_from_slice(br#"{"banned":["#);
    let mut first = true;
    for run in &r.runs {
        for i in run_ips(ips, run)? {
            if !first {
                out.push(b',');
            }
            first = false;
            let b = Sorted {
                ban_count: run.ban_count,
                bytes: run.bytes,
                ip: ips.name(i).unwrap_or(""),
                jail: &run.jail,
                packets: run.packets,
                since: run.since,
                until: run.until,
            };
            serde_json::to_writer(&mut out, &b).map_err(|e| e.to_string())?;
        }
    }
    out.extend_from_slice(b"]}");
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// One line per ban: (address, jail, until, ban count).
fn ban_lines<'a>(
    bans: impl Iterator<Item = (&'a str, &'a str, Option<u64>, u32)>,
    count: usize,
    now: u64,
) -> String {
    let mut out = String::with_capacity(count * 96);
    // A bulk ban gives most addresses the same jail, end and count: what follows the address
    // is formatted once for a run of alike bans.
    let mut key = None;
    let mut tail = String::new();
    for (ip, jail, end, count) in bans {
        if key != Some((jail, end, count)) {
            key = Some((jail, end, count));
            tail = format!(" in jail {jail} {} (ban #{count})\n", until_text(end, now));
        }
        out.push_str("banned ");
        out.push_str(ip);
        out.push_str(&tail);
    }
    if out.is_empty() {
        out.push_str("nothing banned\n");
    }
    out
}

fn until_text(until: Option<u64>, now: u64) -> String {
    match until {
        None => "permanently".to_string(),
        Some(t) => format!("until {}, {}", utc(t), expires(Some(t), now)),
    }
}

fn unban(r: &UnbanResult) -> String {
    if r.unbanned.is_empty() && r.not_banned.is_empty() {
        return "nothing to unban\n".into();
    }
    let mut out = String::new();
    for ip in &r.unbanned {
        out.push_str(&format!("unbanned {ip}\n"));
    }
    for ip in &r.not_banned {
        out.push_str(&format!("not banned: {ip}\n"));
    }
    out
}

fn list(l: &ListData, jail: Option<&str>, now: u64) -> String {
    let n = l.bans.len();
    let mut summary = format!("{n} active ban{}", if n == 1 { "" } else { "s" });
    if let Some(j) = jail {
        summary.push_str(&format!(" in jail {j}"));
    }
    summary.push('\n');
    if n == 0 {
        return summary;
    }
    let mut t = Table::new(&[
        ("IP", Align::Left),
        ("JAIL", Align::Left),
        ("SINCE", Align::Left),
        ("EXPIRES", Align::Left),
        ("BANS", Align::Right),
        ("PACKETS", Align::Right),
        ("BYTES", Align::Right),
    ]);
    for b in &l.bans {
        t.row([
            b.ip.clone(),
            b.jail.clone(),
            ago(b.since, now),
            expires(b.until, now),
            thousands(u64::from(b.ban_count)),
            thousands(b.packets),
            human_bytes(b.bytes),
        ]);
    }
    t.render() + &summary
}

fn stats(s: &StatsData) -> String {
    let mut t = Table::new(&[("COUNTER", Align::Left), ("PACKETS", Align::Right)]);
    for name in NAMES {
        if let Some(v) = s.counters.get(name) {
            t.row([name.to_string(), thousands(*v)]);
        }
    }
    // Counters this f2b-ctl does not know (a newer agent) still show, after the known ones.
    for (name, v) in &s.counters {
        if !NAMES.contains(&name.as_str()) {
            t.row([name.clone(), thousands(*v)]);
        }
    }
    let mut m = Table::new(&[
        ("MAP", Align::Left),
        ("ENTRIES", Align::Right),
        ("CAPACITY", Align::Right),
        ("%USED", Align::Right),
    ]);
    for u in &s.maps {
        let used = if u.capacity == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", u.entries as f64 * 100.0 / u.capacity as f64)
        };
        m.row([
            u.name.clone(),
            thousands(u.entries),
            thousands(u.capacity),
            used,
        ]);
    }
    let mut out = if t.is_empty() {
        "no counters\n".to_string()
    } else {
        t.render()
    };
    out.push('\n');
    out.push_str(&if m.is_empty() {
        "no maps\n".to_string()
    } else {
        m.render()
    });
    out
}

fn reload(data: &Value) -> String {
    let mut head = "reloaded".to_string();
    let restart: Vec<String> = data
        .get("restart_needed")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(scalar).collect())
        .unwrap_or_default();
    if !restart.is_empty() {
        head.push_str(&format!(
            "; changes to {} take effect only after an agent restart",
            restart.join(", ")
        ));
    }
    with_details(head, data, &["reloaded", "restart_needed"])
}

/// `head`, followed by whatever the agent put in `data` (reload/stop data is free-form),
/// less the `skip` keys that `head` already says.
fn with_details(head: String, data: &Value, skip: &[&str]) -> String {
    let mut out = head + "\n";
    match data {
        Value::Null => {}
        Value::Object(map) => {
            for (k, v) in map.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
                out.push_str(&format!("  {k}: {}\n", scalar(v)));
            }
        }
        other => out.push_str(&format!("  {}\n", scalar(other))),
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Binary units with one decimal: `512 B`, `1.5 KiB`, `1.2 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    // Round first so that 1023.96 KiB shows as 1.0 MiB, not 1024.0 KiB.
    while (v * 10.0).round() / 10.0 >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A length of time at a glance, at most two units: `42s`, `5m`, `2h 5m`, `3d 4h`.
pub fn span(secs: u64) -> String {
    const M: u64 = 60;
    const H: u64 = 3600;
    const D: u64 = 86_400;
    let two = |big: u64, bu: &str, small: u64, su: &str| {
        if small == 0 {
            format!("{big}{bu}")
        } else {
            format!("{big}{bu} {small}{su}")
        }
    };
    if secs < M {
        format!("{secs}s")
    } else if secs < H {
        format!("{}m", secs / M)
    } else if secs < D {
        two(secs / H, "h", secs % H / M, "m")
    } else {
        two(secs / D, "d", secs % D / H, "h")
    }
}

/// `5m ago`; a time at or after `now` (clock skew) is `just now`.
pub fn ago(then: u64, now: u64) -> String {
    if then >= now {
        "just now".into()
    } else {
        format!("{} ago", span(now - then))
    }
}

/// `in 9m`, `permanent`, or `expired` for a ban whose removal is still pending.
pub fn expires(until: Option<u64>, now: u64) -> String {
    match until {
        None => "permanent".into(),
        Some(t) if t <= now => "expired".into(),
        Some(t) => format!("in {}", span(t - now)),
    }
}

/// Unix seconds as `2026-11-22 05:20:07 UTC`.
pub fn utc(ts: u64) -> String {
    let days = ts / 86_400;
    let rem = ts % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_795_000_000;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn byte_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1_258_291), "1.2 MiB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn relative_times() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(59), "59s");
        assert_eq!(span(60), "1m");
        assert_eq!(span(599), "9m");
        assert_eq!(span(3600), "1h");
        assert_eq!(span(3600 + 5 * 60 + 7), "1h 5m");
        assert_eq!(span(86_400 * 3 + 3600 * 4), "3d 4h");
        assert_eq!(span(86_400 * 14), "14d");
        assert_eq!(ago(NOW - 300, NOW), "5m ago");
        assert_eq!(ago(NOW + 5, NOW), "just now");
        assert_eq!(expires(None, NOW), "permanent");
        assert_eq!(expires(Some(NOW + 540), NOW), "in 9m");
        assert_eq!(expires(Some(NOW), NOW), "expired");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }

    #[test]
    fn bulk_ban_lines_each_get_their_own_end() {
        let r: BanResult = serde_json::from_value(json!({"banned": [
            ban_info("198.18.0.1", Some(NOW + 3600)),
            ban_info("198.18.0.2", Some(NOW + 3600)),
            ban_info("198.18.0.3", None),
            ban_info("198.18.0.4", Some(NOW + 60)),
        ]}))
        .unwrap();
        let out = ban(&r, NOW);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[0].starts_with("banned 198.18.0.1 in jail sshd until ")
                && lines[0].ends_with(", in 1h (ban #2)"),
            "{out}"
        );
        assert!(lines[1].ends_with(", in 1h (ban #2)"), "{out}");
        assert_eq!(
            lines[2],
            "banned 198.18.0.3 in jail sshd permanently (ban #2)"
        );
        assert!(lines[3].ends_with(", in 1m (ban #2)"), "{out}");
    }

    fn ban_info(ip: &str, until: Option<u64>) -> Value {
        json!({"ip": ip, "jail": "sshd", "since": NOW - 300, "until": until,
               "ban_count": 2, "packets": 1234, "bytes": 1_258_291})
    }

    #[test]
    fn list_table() {
        let data = json!({"bans": [ban_info("198.18.0.7", Some(NOW + 540)),
                                    ban_info("fd00:f2b::/64", None)]});
        let r = render(&Command::List { jail: None }, &data, NOW);
        assert!(r.notes.is_empty());
        assert_eq!(
            r.stdout,
            "IP             JAIL  SINCE   EXPIRES    BANS  PACKETS    BYTES\n\
             198.18.0.7     sshd  5m ago  in 9m         2    1,234  1.2 MiB\n\
             fd00:f2b::/64  sshd  5m ago  permanent     2    1,234  1.2 MiB\n\
             2 active bans\n"
        );
        let r = render(
            &Command::List {
                jail: Some("x".into()),
            },
            &json!({"bans": []}),
            NOW,
        );
        assert_eq!(r.stdout, "0 active bans in jail x\n");
    }

    #[test]
    fn ban_and_unban_lines() {
        let cmd = Command::Ban {
            targets: vec![],
            jail: None,
            time: None,
            force: false,
            file: None,
        };
        let data = json!({"banned": [ban_info("198.18.0.7", Some(NOW + 3600)),
                                     ban_info("198.18.0.8", None)]});
        assert_eq!(
            render(&cmd, &data, NOW).stdout,
            "banned 198.18.0.7 in jail sshd until 2026-11-18 12:06:40 UTC, in 1h (ban #2)\n\
             banned 198.18.0.8 in jail sshd permanently (ban #2)\n"
        );
        let cmd = Command::Unban {
            targets: vec![],
            all: false,
            jail: None,
        };
        let data = json!({"unbanned": ["198.18.0.7"], "not_banned": ["198.18.0.9"]});
        assert_eq!(
            render(&cmd, &data, NOW).stdout,
            "unbanned 198.18.0.7\nnot banned: 198.18.0.9\n"
        );
    }

    /// A compact answer prints as the full answer it stands for: the same lines for a
    /// person, the same JSON (as printed from the full answer's tree) for `--json`.
    #[test]
    fn ban_runs_print_as_the_full_answer() {
        let ips: Vec<String> = ["198.18.0.7", "198.18.0.8", "fd00:f2b::/64", "198.18.0.9"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let run = |at, n, jail: &str, until, ban_count, packets| BanRun {
            at,
            n,
            jail: jail.into(),
            since: NOW - 300,
            until,
            ban_count,
            packets,
            bytes: packets * 60,
        };
        let runs = BanRuns {
            // Position 2 is no ban (a repeat in the request).
            runs: vec![
                run(0, 2, "sshd", Some(NOW + 3600), 2, 0),
                run(3, 1, "we\"b", None, 1, 7),
            ],
        };
        let full = BanResult {
            banned: [(0, 0), (1, 0), (3, 1)]
                .iter()
                .map(|&(i, r)| {
                    let r: &BanRun = &runs.runs[r];
                    f2b_common::proto::BanInfo {
                        ip: ips[i].clone(),
                        jail: r.jail.clone(),
                        since: r.since,
                        until: r.until,
                        ban_count: r.ban_count,
                        packets: r.packets,
                        bytes: r.bytes,
                    }
                })
                .collect(),
        };
        let text = ban_runs(ips.as_slice(), &runs, NOW).expect("runs in range");
        assert_eq!(text, ban(&full, NOW));
        // The same from the buffer f2b-ctl keeps its addresses in.
        let addrs = crate::cli::Addrs::normalised(
            &ips.iter()
                .map(|s| crate::cli::parse_target(s).expect("address"))
                .collect::<Vec<_>>(),
        );
        assert_eq!(ban_runs(&addrs, &runs, NOW), Ok(text.clone()));
        assert!(
            text.starts_with("banned 198.18.0.7 in jail sshd until "),
            "{text}"
        );
        assert_eq!(text.lines().count(), 3);
        let tree = serde_json::to_value(&full).expect("encode").to_string();
        assert_eq!(
            ban_runs_json(ips.as_slice(), &runs).expect("runs in range"),
            tree
        );
        assert_eq!(
            ban_runs(ips.as_slice(), &BanRuns { runs: vec![] }, NOW).expect("empty"),
            "nothing banned\n"
        );
        for bad in [
            run(3, 2, "sshd", None, 1, 0),
            run(u32::MAX, 2, "sshd", None, 1, 0),
        ] {
            let bad = BanRuns { runs: vec![bad] };
            assert!(ban_runs(ips.as_slice(), &bad, NOW).is_err());
            assert!(ban_runs_json(ips.as_slice(), &bad).is_err());
        }
    }

    fn status_data() -> Value {
        json!({"version": "0.1.0", "uptime_secs": 3720,
               "interfaces": [{"name": "eth0", "mode": "native"}, {"name": "eth1", "mode": "skb"}],
               "jails": [
                 {"name": "sshd", "enabled": true, "failing_now": 2, "failed_total": 1540,
                  "banned_now": 3, "banned_total": 40, "files": ["/var/log/auth.log"],
                  "banned": ["198.18.0.7", "198.18.0.8"]},
                 {"name": "nginx", "enabled": false, "failing_now": 0, "failed_total": 0,
                  "banned_now": 0, "banned_total": 0, "files": ["/var/log/a", "/var/log/b"]}]})
    }

    #[test]
    fn status_overview() {
        let r = render(&Command::Status { jail: None }, &status_data(), NOW);
        assert_eq!(
            r.stdout,
            "f2b-agent 0.1.0, up 1h 2m\n\
             interface eth0: XDP native\n\
             interface eth1: XDP skb (generic mode: slower than native)\n\
             \n\
             JAIL              FAILING  FAILED TOTAL  BANNED  BANNED TOTAL  FILES\n\
             sshd                    2         1,540       3            40  /var/log/auth.log\n\
             nginx (disabled)        0             0       0             0  /var/log/a, /var/log/b\n"
        );
    }

    #[test]
    fn status_of_one_jail() {
        let r = render(
            &Command::Status {
                jail: Some("sshd".into()),
            },
            &status_data(),
            NOW,
        );
        assert_eq!(
            r.stdout,
            "Status for the jail: sshd\n\
             |- Filter\n\
             |  |- Currently failed: 2\n\
             |  |- Total failed:     1,540\n\
             |  `- File list:        /var/log/auth.log\n\
             `- Actions\n   \
                |- Currently banned: 3\n   \
                |- Total banned:     40\n   \
                `- Banned IP list:   198.18.0.7 198.18.0.8\n"
        );
    }

    #[test]
    fn stats_in_counter_order() {
        let data = json!({"counters": {"dropped_exact_v4": 1_234_567, "seen": 2_000_000,
                                       "passed": 765_433, "future_counter": 1},
                          "maps": [{"name": "F2B_BANS_V4", "entries": 1234, "capacity": 1_048_576},
                                   {"name": "F2B_COUNTERS", "entries": 10, "capacity": 0}]});
        let r = render(&Command::Stats, &data, NOW);
        assert!(r.notes.is_empty());
        assert_eq!(
            r.stdout,
            "COUNTER             PACKETS\n\
             seen              2,000,000\n\
             passed              765,433\n\
             dropped_exact_v4  1,234,567\n\
             future_counter            1\n\
             \n\
             MAP           ENTRIES   CAPACITY  %USED\n\
             F2B_BANS_V4     1,234  1,048,576   0.1%\n\
             F2B_COUNTERS       10          0      -\n"
        );
    }

    #[test]
    fn ping_reload_stop() {
        let pong = json!({"pong": true, "version": "0.1.0", "protocol": 1});
        assert_eq!(
            render(&Command::Ping, &pong, NOW),
            Rendered::text("pong\n".into())
        );
        let old = json!({"pong": true, "version": "9", "protocol": 99});
        assert_eq!(render(&Command::Ping, &old, NOW).notes.len(), 1);
        assert_eq!(
            render(&Command::Reload, &Value::Null, NOW).stdout,
            "reloaded\n"
        );
        assert_eq!(
            render(&Command::Reload, &json!({"jails": 3}), NOW).stdout,
            "reloaded\n  jails: 3\n"
        );
        // The agent's actual reload/stop answers.
        assert_eq!(
            render(
                &Command::Reload,
                &json!({"reloaded": true, "restart_needed": []}),
                NOW
            )
            .stdout,
            "reloaded\n"
        );
        assert_eq!(
            render(
                &Command::Reload,
                &json!({"reloaded": true, "restart_needed": ["socket", "maps"]}),
                NOW
            )
            .stdout,
            "reloaded; changes to socket, maps take effect only after an agent restart\n"
        );
        assert_eq!(
            render(
                &Command::Stop { detach: false },
                &json!({"stopping": true, "detach": false}),
                NOW
            )
            .stdout
            .lines()
            .count(),
            1
        );
        assert!(
            render(&Command::Stop { detach: true }, &Value::Null, NOW)
                .stdout
                .contains("no longer enforced")
        );
        assert!(
            render(&Command::Stop { detach: false }, &Value::Null, NOW)
                .stdout
                .contains("remain enforced")
        );
    }

    #[test]
    fn unexpected_shape_falls_back_to_json() {
        let r = render(&Command::List { jail: None }, &json!({"surprise": 1}), NOW);
        assert_eq!(r.notes.len(), 1, "{r:?}");
        assert!(r.stdout.contains("\"surprise\": 1"), "{}", r.stdout);
    }
}
