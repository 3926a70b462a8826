//! Detection end to end: failure lines appended to a log file the agent watches turn into a
//! ban in the kernel map, and packets from that source are dropped in the edge namespace.
//! Restarts resume exactly where reading stopped; command actions never run text from a log.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use f2b_integration::netns::{ATTACKER_V4, EDGE_IF, EDGE_V4};
use f2b_integration::traffic::{ping, ping_answered};
use f2b_integration::{Fixture, TestConfig, skip_unless_capable};
use serde_json::Value;

/// The test config of the other namespace tests plus a jail `sshd` reading `{dir}/auth.log`.
fn config(jail_extra: &str) -> String {
    let base = TestConfig::default().render();
    format!(
        "{base}  sshd:\n    filter: sshd\n    logpath: [\"{{dir}}/auth.log\"]\n    maxretry: 3\n    findtime: 10m\n    bantime: 10m\n{jail_extra}"
    )
}

fn start(tag: &str, cfg: String) -> Result<Fixture> {
    // The log exists before the agent starts, so the jail starts at its (empty) end.
    Fixture::start_with(tag, &TestConfig::default(), |o| o.config = Some(cfg))
}

fn log_path(fx: &Fixture) -> PathBuf {
    fx.agent.dir().join("auth.log")
}

/// Appends sshd "Failed password" lines stamped now, in one write each.
fn fail(path: &Path, ip: &str, user: &str, n: usize) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for i in 0..n {
        let now = chrono_like_syslog_now();
        writeln!(
            f,
            "{now} edge sshd[{}]: Failed password for invalid user {user} from {ip} port {} ssh2",
            4000 + i,
            50000 + i
        )?;
    }
    Ok(())
}

/// `Nov 22 04:16:03` for the current UTC time (the test machines run in UTC).
fn chrono_like_syslog_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%b %e %H:%M:%S"])
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim_end().to_string(),
        Err(_) => "Jan  1 00:00:00".into(),
    }
}

/// Waits (bounded) until `cond` holds on `status sshd --json`.
fn wait_status(fx: &Fixture, what: &str, cond: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = fx.agent.ctl_json(&["status", "sshd"])?;
        let jail = v["jails"].get(0).cloned().unwrap_or(Value::Null);
        if cond(&jail) {
            return Ok(jail);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}; last status: {jail}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn edge() -> IpAddr {
    EDGE_V4.parse().expect("edge address")
}

#[test]
fn failure_lines_ban_and_the_source_is_dropped() -> Result<()> {
    skip_unless_capable!("failure_lines_ban_and_the_source_is_dropped");
    let fx = start("det-ban", config(""))?;
    let log = log_path(&fx);
    std::fs::write(&log, "")?;
    fx.agent.ctl(&["reload"])?;
    fail(&log, ATTACKER_V4, "admin", 2)?;
    wait_status(&fx, "2 failures counted", |j| j["failed_total"] == 2)?;
    assert!(
        fx.agent.banned()?.is_empty(),
        "two failures must not ban (maxretry 3)"
    );
    let before = fx.agent.counters()?;
    let p = ping_answered(&fx.net.attacker, edge(), None, 3, Duration::from_secs(5))?;
    assert_eq!(p.received, 3, "not banned yet: {p}");

    fail(&log, ATTACKER_V4, "admin", 1)?;
    let j = wait_status(&fx, "the ban", |j| j["banned_now"] == 1)?;
    assert_eq!(j["banned"], serde_json::json!([ATTACKER_V4]));
    assert_eq!(j["failed_total"], 3);
    assert_eq!(j["files"], serde_json::json!([log.display().to_string()]));
    let p = ping(&fx.net.attacker, edge(), None, 5)?;
    assert_eq!(p.received, 0, "banned by the jail: {p}");
    let after = fx.agent.counters()?;
    assert!(
        after.delta(&before, "dropped_exact_v4") >= 5,
        "XDP dropped the pings"
    );
    let list = fx.agent.ctl_json(&["list"])?;
    assert_eq!(list["bans"][0]["jail"], "sshd");
    fx.pass()
}

#[test]
fn restart_mid_stream_reads_each_line_once() -> Result<()> {
    skip_unless_capable!("restart_mid_stream_reads_each_line_once");
    let mut fx = start("det-restart", config(""))?;
    let log = log_path(&fx);
    // 198.18.0.2 is banned from the log, then unbanned by hand.
    fail(&log, ATTACKER_V4, "root", 3)?;
    wait_status(&fx, "first ban", |j| j["banned_now"] == 1)?;
    assert_eq!(fx.agent.ctl(&["unban", ATTACKER_V4])?.code, 0);
    // One failure of .9 before the crash, two while the agent is down.
    fail(&log, "198.18.0.9", "guest", 1)?;
    wait_status(&fx, "4 failures", |j| j["failed_total"] == 4)?;
    fx.agent.sigkill()?;
    fail(&log, "198.18.0.9", "guest", 2)?;
    fx.agent.restart()?;
    // The two lines written while down are read (and nothing before them is read again:
    // .2's old failures would ban it a second time).
    wait_status(&fx, "lines written while down", |j| j["failed_total"] == 2)?;
    assert!(
        fx.agent.banned()?.is_empty(),
        "no old line reread, .9 has 2 failures since the restart"
    );
    // The third failure of .9 after the restart bans it: counting goes on from the new lines.
    fail(&log, "198.18.0.9", "guest", 1)?;
    wait_status(&fx, "ban of .9", |j| j["banned_now"] == 1)?;
    assert_eq!(fx.agent.banned()?, vec!["198.18.0.9".to_string()]);
    // A clean restart (SIGTERM) rereads nothing either.
    fx.agent.sigterm_and_wait(Duration::from_secs(20))?;
    fx.agent.restart()?;
    std::thread::sleep(Duration::from_millis(300));
    let j = wait_status(&fx, "status after restart", |_| true)?;
    assert_eq!(
        j["failed_total"], 0,
        "nothing reread after a clean restart: {j}"
    );
    fx.pass()
}

#[test]
fn bantime_increment_survives_a_restart() -> Result<()> {
    skip_unless_capable!("bantime_increment_survives_a_restart");
    let mut fx = start(
        "det-incr",
        config("    bantime_increment: {enabled: true, factor: 1, maxtime: 1d}\n"),
    )?;
    let log = log_path(&fx);
    fail(&log, ATTACKER_V4, "root", 3)?;
    wait_status(&fx, "first ban", |j| j["banned_now"] == 1)?;
    let first = fx.agent.ctl_json(&["list"])?["bans"][0].clone();
    assert_eq!(first["ban_count"], 1);
    fx.agent.ctl(&["unban", ATTACKER_V4])?;
    fx.agent.sigkill()?;
    fx.agent.restart()?;
    fail(&log, ATTACKER_V4, "root", 3)?;
    wait_status(&fx, "second ban", |j| j["banned_now"] == 1)?;
    let second = fx.agent.ctl_json(&["list"])?["bans"][0].clone();
    assert_eq!(second["ban_count"], 2, "{second}");
    let len = |b: &Value| -> Result<u64> {
        Ok(b["until"]
            .as_u64()
            .ok_or_else(|| anyhow!("no until: {b}"))?
            - b["since"].as_u64().ok_or_else(|| anyhow!("no since"))?)
    };
    assert_eq!(len(&first)?, 600);
    assert_eq!(len(&second)?, 1200, "second ban lasts bantime * 2");
    fx.pass()
}

#[test]
fn hostile_user_names_never_become_commands() -> Result<()> {
    skip_unless_capable!("hostile_user_names_never_become_commands");
    let scratch = tempfile::Builder::new().prefix("f2b-pwn-").tempdir()?;
    let pwned = scratch.path().join("pwned");
    let actions = scratch.path().join("actions.log");
    let jail = format!(
        "    maxretry: 1\n    actions:\n      - xdp\n      - command:\n          ban: \"printf '%s|%s\\\\n' <ip> <user> >> {a}\"\n          shell: true\n      - command:\n          ban: \"/bin/echo <user>\"\n",
        a = actions.display()
    )
    .replace("    maxretry: 3\n", "");
    let cfg = config("").replace("    maxretry: 3\n", "") + &jail;
    let fx = start("det-hostile", cfg)?;
    let log = log_path(&fx);
    let p = pwned.display();
    let names = [
        format!("$(touch${{IFS}}{p})"),
        format!("`touch${{IFS}}{p}`"),
        format!(";touch${{IFS}}{p};"),
    ];
    for (i, n) in names.iter().enumerate() {
        fail(&log, &format!("198.18.0.{}", 20 + i), n, 1)?;
    }
    wait_status(&fx, "three bans", |j| j["banned_now"] == 3)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let t = std::fs::read_to_string(&actions).unwrap_or_default();
        if t.lines().count() >= 3 || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for (i, n) in names.iter().enumerate() {
        let want = format!("198.18.0.{}|{n}", 20 + i);
        assert!(
            text.lines().any(|l| l == want),
            "action got {want:?} verbatim; log:\n{text}"
        );
    }
    assert!(!pwned.exists(), "a user name from the log ran a command");
    fx.pass()
}

#[test]
fn reload_keeps_bans_and_refuses_a_broken_config() -> Result<()> {
    skip_unless_capable!("reload_keeps_bans_and_refuses_a_broken_config");
    let fx = start("det-reload", config(""))?;
    let cfg_path = fx.agent.dir().join("f2b.yaml");
    let good = std::fs::read_to_string(&cfg_path)?;
    assert_eq!(fx.agent.ctl(&["ban", ATTACKER_V4])?.code, 0);
    // A broken file: refused with its line, the running config and the ban stay.
    std::fs::write(&cfg_path, format!("{good}  bogus_key: 1\n"))?;
    let out = fx.agent.ctl(&["reload"])?;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("f2b.yaml:") && out.stderr.contains("bogus_key"),
        "{}",
        out.stderr
    );
    let bad_filter = good.replace("filter: sshd", "filter: {failregex: ['(unclosed <HOST>']}");
    std::fs::write(&cfg_path, bad_filter)?;
    let out = fx.agent.ctl(&["reload"])?;
    assert_eq!(out.code, 1, "a bad failregex is refused: {out:?}");
    assert_eq!(fx.agent.banned()?, vec![ATTACKER_V4.to_string()]);
    // A good change applies without dropping the ban: a longer maxretry for sshd.
    std::fs::write(&cfg_path, good.replace("maxretry: 3", "maxretry: 4"))?;
    assert_eq!(fx.agent.ctl(&["reload"])?.code, 0);
    assert_eq!(fx.agent.banned()?, vec![ATTACKER_V4.to_string()]);
    let p = ping(&fx.net.attacker, edge(), None, 3)?;
    assert_eq!(p.received, 0, "the ban is still enforced after reload: {p}");
    let log = log_path(&fx);
    fail(&log, "198.18.0.30", "x", 3)?;
    wait_status(&fx, "3 failures", |j| j["failed_total"] == 3)?;
    assert!(
        !fx.agent.banned()?.contains(&"198.18.0.30".to_string()),
        "maxretry is 4 now"
    );
    fail(&log, "198.18.0.30", "x", 1)?;
    wait_status(&fx, "ban with the new maxretry", |j| j["banned_now"] == 1)?;
    let _ = EDGE_IF;
    fx.pass()
}

#[test]
fn lines_written_while_down_after_a_quiet_start_are_read() -> Result<()> {
    skip_unless_capable!("lines_written_while_down_after_a_quiet_start_are_read");
    // The jail's log does not exist yet and nothing is read before the crash: its start is
    // still on disk, so what is written while the agent is down is read after the restart.
    let mut fx = start("det-quiet", config(""))?;
    let log = log_path(&fx);
    assert!(!log.exists());
    fx.agent.sigkill()?;
    fail(&log, ATTACKER_V4, "oracle", 3)?;
    fx.agent.restart()?;
    wait_status(&fx, "ban from lines written while down", |j| {
        j["banned_now"] == 1
    })?;
    assert_eq!(fx.agent.banned()?, vec![ATTACKER_V4.to_string()]);
    fx.pass()
}

#[test]
fn recidive_reads_the_agents_own_log_and_bans_longer() -> Result<()> {
    skip_unless_capable!("recidive_reads_the_agents_own_log_and_bans_longer");
    let cfg = config("").replacen("interfaces:", "logfile: \"{dir}/f2b.log\"\ninterfaces:", 1)
        + "  recidive:\n    filter: recidive\n    logpath: [\"{dir}/f2b.log\"]\n    maxretry: 2\n    findtime: 1d\n    bantime: 1w\n";
    let fx = start("det-recidive", cfg)?;
    // Two short manual bans of the same source: the agent logs "NOTICE [manual] Ban ..." twice.
    assert_eq!(fx.agent.ctl(&["ban", ATTACKER_V4, "--time", "1m"])?.code, 0);
    assert_eq!(fx.agent.ctl(&["unban", ATTACKER_V4])?.code, 0);
    assert_eq!(fx.agent.ctl(&["ban", ATTACKER_V4, "--time", "1m"])?.code, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let ban = loop {
        let list = fx.agent.ctl_json(&["list"])?;
        let b = list["bans"][0].clone();
        if b["jail"] == "recidive" || Instant::now() > deadline {
            break b;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        ban["jail"], "recidive",
        "the recidive jail took the ban over: {ban}"
    );
    let until = ban["until"]
        .as_u64()
        .ok_or_else(|| anyhow!("no until: {ban}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    assert!(
        until > now + 6 * 86_400,
        "a week-long ban, not the 1m manual one: {ban}"
    );
    let log = std::fs::read_to_string(fx.agent.dir().join("f2b.log"))?;
    assert!(
        log.contains(&format!("NOTICE [recidive] Ban {ATTACKER_V4}")),
        "{log}"
    );
    fx.pass()
}

#[test]
fn bans_made_in_one_batch_are_logged_one_line_each() -> Result<()> {
    skip_unless_capable!("bans_made_in_one_batch_are_logged_one_line_each");
    let cfg = config("").replacen("interfaces:", "logfile: \"{dir}/f2b.log\"\ninterfaces:", 1);
    let fx = start("det-banlog", cfg)?;
    let log = log_path(&fx);
    std::fs::write(&log, "")?;
    fx.agent.ctl(&["reload"])?;
    // Three sources (data only: no packet is sent to or from them), three failures each,
    // appended in one write so that one batch bans all three.
    let ips = ["198.18.5.1", "198.18.5.2", "198.18.5.3"];
    let now = chrono_like_syslog_now();
    let mut buf = String::new();
    for (i, ip) in ips.iter().cycle().take(9).enumerate() {
        buf += &format!(
            "{now} edge sshd[{}]: Failed password for root from {ip} port {} ssh2\n",
            5000 + i,
            40000 + i
        );
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)?
        .write_all(buf.as_bytes())?;
    wait_status(&fx, "three bans", |j| j["banned_now"] == 3)?;
    let text = std::fs::read_to_string(fx.agent.dir().join("f2b.log"))?;
    for ip in ips {
        let line = text
            .lines()
            .find(|l| l.ends_with(&format!(" NOTICE [sshd] Ban {ip}")))
            .ok_or_else(|| anyhow!("no ban line for {ip}:\n{text}"))?;
        // Every line carries its own time stamp: `2026-11-22T04:28:35Z NOTICE [sshd] Ban IP`.
        let stamp = line.split(' ').next().unwrap_or_default();
        assert!(
            stamp.len() >= 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "time stamp on its own ban line: {line:?}"
        );
    }
    fx.pass()
}

/// Scheduling policy (field 41 of /proc/PID/task/TID/stat) of the agent's thread named `comm`.
fn thread_policy(pid: u32, comm: &str) -> Result<Option<u32>> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = t?.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if name.trim_end() != comm {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat"))?;
        // Fields after the ")" closing the name start at field 3.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let policy = rest
            .split_whitespace()
            .nth(41 - 3)
            .ok_or_else(|| anyhow!("short stat: {stat}"))?;
        return Ok(Some(policy.parse()?));
    }
    Ok(None)
}

#[test]
fn log_readers_wait_at_real_time_priority_unless_configured_off() -> Result<()> {
    skip_unless_capable!("log_readers_wait_at_real_time_priority_unless_configured_off");
    let quiet =
        "  quiet:\n    filter: sshd\n    logpath: [\"{dir}/quiet.log\"]\n    realtime: false\n";
    let fx = start("det-rt", config(quiet))?;
    std::fs::write(log_path(&fx), "")?;
    std::fs::write(fx.agent.dir().join("quiet.log"), "")?;
    fx.agent.ctl(&["reload"])?;
    let pid = fx.agent.pid().ok_or_else(|| anyhow!("agent not running"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (rt, normal) = loop {
        let rt = thread_policy(pid, "jail-sshd")?;
        let normal = thread_policy(pid, "jail-quiet")?;
        if rt == Some(libc::SCHED_FIFO as u32) && normal.is_some() || Instant::now() > deadline {
            break (rt, normal);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        rt,
        Some(libc::SCHED_FIFO as u32),
        "jail-sshd: default realtime"
    );
    assert_eq!(
        normal,
        Some(libc::SCHED_OTHER as u32),
        "jail-quiet: realtime: false"
    );
    // Nothing else in the agent runs at real-time priority (a thread that ends meanwhile is
    // skipped).
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = t?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        if comm.trim_end() != "jail-sshd" {
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
            assert_eq!(
                rest.split_whitespace().nth(41 - 3),
                Some("0"),
                "thread {comm}"
            );
        }
    }
    // And the boosted reader still bans.
    fail(&log_path(&fx), ATTACKER_V4, "admin", 3)?;
    wait_status(&fx, "the ban", |j| j["banned_now"] == 1)?;
    fx.pass()
}

/// Sources of the flood tests: 198.19.0.0 + i (none of them the edge's own address).
fn flood_source(i: u32) -> String {
    std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 19, 0, 0)) + i).to_string()
}

/// One "Failed password" line from each source `from..to`, appended in one write.
fn flood(path: &Path, from: u32, to: u32) -> Result<()> {
    let now = chrono_like_syslog_now();
    let mut buf = Vec::with_capacity((to - from) as usize * 100);
    for i in from..to {
        writeln!(
            buf,
            "{now} edge sshd[{}]: Failed password for invalid user flood from {} port {} ssh2",
            1000 + i % 30_000,
            flood_source(i),
            1024 + i % 60_000
        )?;
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(&buf)?;
    Ok(())
}

/// The jail sshd with maxretry 1 (a ban per source) and room for the flood in the maps.
fn flood_config() -> String {
    config("")
        .replace("    maxretry: 3\n", "    maxretry: 1\n")
        .replace("bans: 8192", "bans: 65536")
}

/// Jail sshd's status from `status --json` over all jails (asked for alone, it would list
/// every banned address), once `cond` holds on it (bounded: `limit`).
fn wait_sshd(
    fx: &Fixture,
    what: &str,
    limit: Duration,
    cond: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let v = fx.agent.ctl_json(&["status"])?;
        let jail = v["jails"]
            .as_array()
            .and_then(|a| a.iter().find(|j| j["name"] == "sshd"))
            .cloned()
            .unwrap_or(Value::Null);
        if cond(&jail) {
            return Ok(jail);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}; last status: {jail}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The counts of the agent's last "bans: N restored from the database, M adopted from the
/// kernel" line.
fn last_restore(fx: &Fixture) -> Result<(u64, u64)> {
    let log = fx.agent.log_text();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("restored from the database"))
        .ok_or_else(|| anyhow!("no restore line in the agent's log"))?;
    let num = |before: &str| -> Result<u64> {
        let head = line.split(before).next().ok_or_else(|| anyhow!("{line}"))?;
        Ok(head
            .rsplit(|c: char| !c.is_ascii_digit())
            .find(|w| !w.is_empty())
            .ok_or_else(|| anyhow!("no count before {before:?}: {line}"))?
            .parse()?)
    };
    Ok((
        num(" restored from the database")?,
        num(" adopted from the kernel")?,
    ))
}

const FLOOD: u32 = 30_000;

/// An agent with [`flood_config`] following an empty auth.log from its start.
fn flood_fixture(tag: &str) -> Result<(Fixture, PathBuf)> {
    let fx = start(tag, flood_config())?;
    let log = log_path(&fx);
    std::fs::write(&log, "")?;
    fx.agent.ctl(&["reload"])?;
    Ok((fx, log))
}

/// A clean stop and start: the database held all `n` bans (restored from it, none adopted
/// from the kernel), and the kernel map holds them.
fn restart_finds_all_in_db_and_map(fx: &mut Fixture, n: u64) -> Result<()> {
    fx.agent.sigterm_and_wait(Duration::from_secs(60))?;
    fx.agent.restart()?;
    assert_eq!(last_restore(fx)?, (n, 0), "restored from redb, adopted");
    assert_eq!(fx.agent.map_entries("F2B_BANS_V4", 4)?, n);
    Ok(())
}

/// A backlog of failing sources (read and banned piece by piece): every source ends up
/// banned once, in the kernel map (counted from the kernel's side) and in redb (a clean
/// restart restores all of them from the database and adopts none from the kernel), and
/// nothing is read twice.
#[test]
fn a_flood_of_sources_is_banned_once_each_in_map_and_database() -> Result<()> {
    skip_unless_capable!("a_flood_of_sources_is_banned_once_each_in_map_and_database");
    let (mut fx, log) = flood_fixture("det-flood")?;
    flood(&log, 0, FLOOD)?;
    let n = u64::from(FLOOD);
    let j = wait_sshd(&fx, "every source banned", Duration::from_secs(120), |j| {
        j["banned_now"] == n
    })?;
    assert_eq!(j["failed_total"], n, "{j}");
    assert_eq!(j["banned_total"], n, "{j}");
    assert_eq!(j["ban_errors"], 0, "{j}");
    assert_eq!(fx.agent.map_entries("F2B_BANS_V4", 4)?, n);
    restart_finds_all_in_db_and_map(&mut fx, n)?;
    // One more line: once it is counted, every line before it in the file was read too (a
    // reader reads in order), so a flood line read again would show in the count.
    flood(&log, FLOOD, FLOOD + 1)?;
    let j = wait_sshd(
        &fx,
        "the line after the restart",
        Duration::from_secs(20),
        |j| j["failed_total"].as_u64().is_some_and(|f| f > 0),
    )?;
    assert_eq!(j["failed_total"], 1, "nothing read again: {j}");
    assert_eq!(j["banned_now"], n + 1, "{j}");
    fx.pass()
}

/// A SIGKILL while a flood's bans are on their way (some pieces banned, later ones read but
/// not yet banned or committed) loses none: after a restart every source is banned, in the
/// kernel map and in the database.
#[test]
fn a_kill_mid_flood_loses_no_ban() -> Result<()> {
    skip_unless_capable!("a_kill_mid_flood_loses_no_ban");
    let (mut fx, log) = flood_fixture("det-flood-kill")?;
    let n = u64::from(FLOOD);
    flood(&log, 0, FLOOD / 2)?;
    wait_sshd(&fx, "the first bans", Duration::from_secs(60), |j| {
        j["banned_now"].as_u64().is_some_and(|b| b > 0)
    })?;
    // The second half lands while the first is still being banned, and the kill follows at
    // once: whatever the reader had read, queued or applied is cut short.
    flood(&log, FLOOD / 2, FLOOD)?;
    let before = fx.agent.map_entries("F2B_BANS_V4", 4)?;
    fx.agent.sigkill()?;
    fx.agent.restart()?;
    let j = wait_sshd(&fx, "every source banned", Duration::from_secs(120), |j| {
        j["banned_now"] == n
    })?;
    assert_eq!(j["ban_errors"], 0, "{j}");
    assert_eq!(fx.agent.map_entries("F2B_BANS_V4", 4)?, n);
    f2b_integration::say(&format!(
        "a_kill_mid_flood_loses_no_ban: {before} of {n} bans in the map at the kill"
    ));
    // Everything the restart adopted or banned again is now in redb too.
    restart_finds_all_in_db_and_map(&mut fx, n)?;
    fx.pass()
}
