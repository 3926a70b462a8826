//! `f2b-ctl regex` through the built binary: offline (no agent, no socket), human and JSON
//! output, exit codes and `file:line: message` errors.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_f2b-ctl"))
        .args(args)
        // No agent anywhere: regex must not try to reach one.
        .env("F2B_SOCKET", "/nonexistent/f2b.sock")
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn logs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../f2b-agent/tests/filters")
}

fn tmp(name: &str, text: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("f2b-ctl-regex-{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

const LINE: &str =
    "Nov 22 04:16:03 web1 sshd[2301]: Failed password for root from 203.0.113.10 port 51122 ssh2";

#[test]
fn file_human_summary() {
    let log = logs().join("sshd.log");
    let o = ctl(&["regex", log.to_str().unwrap(), "sshd"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let s = out(&o);
    assert!(
        s.contains("Lines: 27 read, 18 matched, 0 ignored, 9 missed"),
        "{s}"
    );
    assert!(s.contains("Hosts: 18"), "{s}");
    assert!(s.contains("  203.0.113.10\n"), "{s}");
}

#[test]
fn one_line_json() {
    let o = ctl(&["regex", LINE, "sshd", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let s = out(&o);
    let year = s.split("\"time\":\"").nth(1).unwrap()[..4].to_string();
    assert_eq!(
        s,
        format!(
            "{{\"lineno\":1,\"host\":\"203.0.113.10\",\"time\":\"{year}-11-22T04:16:03Z\",\"failregex\":3}}\n"
        )
    );
}

#[test]
fn json_is_one_object_per_matched_line_and_nothing_else() {
    let log = logs().join("sshd@ddos.log");
    let o = ctl(&[
        "regex",
        log.to_str().unwrap(),
        "sshd",
        "--mode",
        "ddos",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let lines: Vec<serde_json::Value> = out(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let nos: Vec<u64> = lines
        .iter()
        .map(|v| v["lineno"].as_u64().unwrap())
        .collect();
    assert_eq!(nos, [1, 2, 3, 4, 5, 7]);
    assert_eq!(lines[0]["host"], "203.0.113.18");
    assert!(
        lines
            .iter()
            .all(|v| v["failregex"].is_u64() && v["time"].is_string())
    );
    // Without the mode, the ddos lines are not failures.
    let o = ctl(&["regex", log.to_str().unwrap(), "sshd", "--json"]);
    assert_eq!(out(&o).lines().count(), 1);
}

#[test]
fn no_match_is_success_and_time_may_be_null() {
    let o = ctl(&["regex", "nothing to see", "sshd", "--json"]);
    assert_eq!((o.status.code(), out(&o).as_str()), (Some(0), ""));
    let o = ctl(&["regex", "nothing to see", "sshd"]);
    assert!(out(&o).contains("1 read, 0 matched, 0 ignored, 1 missed"));
    let f = tmp("nodate.yaml", "failregex: ['^bad <HOST>$']\n");
    let o = ctl(&["regex", "bad 2001:db8::1", f.to_str().unwrap(), "--json"]);
    assert_eq!(
        out(&o),
        "{\"lineno\":1,\"host\":\"2001:db8::1\",\"time\":null,\"failregex\":0}\n"
    );
}

#[test]
fn bad_filter_is_exit_2_with_file_and_line() {
    let f = tmp(
        "bad.yaml",
        "description: x\nfailregex:\n  - 'ok <HOST>'\n  - '(<HOST>'\n",
    );
    let o = ctl(&["regex", LINE, f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).is_empty());
    let e = err(&o);
    assert!(
        e.contains(&format!("{}:4: failregex 1: bad regex", f.display())),
        "{e}"
    );
    let o = ctl(&["regex", LINE, "no-such-filter"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("no such filter"), "{}", err(&o));
    let o = ctl(&["regex", LINE, "sshd", "--mode", "bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("unknown mode \"bogus\""), "{}", err(&o));
    let o = ctl(&["regex", LINE]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn ignored_lines_are_counted() {
    let log = logs().join("recidive.log");
    let o = ctl(&["regex", log.to_str().unwrap(), "recidive"]);
    let s = out(&o);
    assert!(s.contains("6 read, 3 matched, 1 ignored, 2 missed"), "{s}");
}
