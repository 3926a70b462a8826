//! Runs the built f2b-ctl binary against missing sockets and a canned agent (a real
//! UnixListener in a thread) to check exit codes, stdout/stderr and the exact wire requests.
//! The real agent's behaviour is tested with the agent.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "f2b-ctl-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn sock(&self) -> PathBuf {
        self.0.join("f2b.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_f2b-ctl"))
        .args(args)
        .env_remove("F2B_SOCKET")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

/// What the canned agent does after reading the request line.
enum Reply {
    Line(String),
    /// Keep the connection open without answering for this long.
    Silence(Duration),
    Close,
}

/// Listens on `path`, accepts one connection, reads one request line and replies.
/// The thread returns the request line it read (without the newline).
fn agent(path: &Path, reply: Reply) -> JoinHandle<String> {
    let all = agents(path, vec![reply]);
    thread::spawn(move || all.join().unwrap().remove(0))
}

/// [`agent`] for one connection per reply, in turn; returns the request lines read.
fn agents(path: &Path, replies: Vec<Reply>) -> JoinHandle<Vec<String>> {
    let listener = UnixListener::bind(path).unwrap();
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let mut reqs = Vec::new();
        for reply in replies {
            let deadline = Instant::now() + Duration::from_secs(20);
            let stream = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("the client never connected: {e}"),
                }
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(
                line.ends_with('\n'),
                "request line not newline-terminated: {line:?}"
            );
            let mut stream = reader.into_inner();
            match reply {
                Reply::Line(l) => {
                    stream.write_all(l.as_bytes()).unwrap();
                    stream.write_all(b"\n").unwrap();
                }
                Reply::Silence(d) => thread::sleep(d),
                Reply::Close => {}
            }
            reqs.push(line.trim_end_matches('\n').to_string());
        }
        reqs
    })
}

/// Runs f2b-ctl against a canned agent; returns the client's output and the request it sent.
fn exchange(args: &[&str], reply: Reply) -> (Output, String) {
    let dir = TempDir::new();
    let sock = dir.sock();
    let server = agent(&sock, reply);
    let mut full: Vec<&str> = args.to_vec();
    let sock_s = sock.to_str().unwrap().to_string();
    full.extend(["--socket", &sock_s]);
    let out = ctl(&full);
    let req = server.join().unwrap();
    (out, req)
}

#[test]
fn missing_socket_exits_3_naming_the_path() {
    let dir = TempDir::new();
    let sock = dir.sock();
    let out = ctl(&["ping", "--socket", sock.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot reach the f2b agent at {}", sock.display())),
        "{err}"
    );
    assert!(err.contains("No such file or directory"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn stale_socket_exits_3() {
    let dir = TempDir::new();
    let sock = dir.sock();
    drop(UnixListener::bind(&sock).unwrap());
    let out = ctl(&["--socket", sock.to_str().unwrap(), "list", "--json"]);
    assert_eq!(code(&out), 3, "{out:?}");
    assert!(
        stderr(&out).contains("Connection refused"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn usage_errors_exit_2_without_connecting() {
    let dir = TempDir::new();
    let sock = dir.sock();
    let listener = UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    let s = sock.to_str().unwrap();
    for (args, expect) in [
        (&["ban", "not-an-ip"][..], "not-an-ip"),
        (&["ban", "0.0.0.0/0"][..], "/0 prefix is refused"),
        (&["ban", "::/0"][..], "/0 prefix is refused"),
        (&["ban", "198.18.0.7", "--time", "10x"][..], "--time"),
        (&["unban"][..], "<IP|CIDR|--all>"),
        (&["unban", "198.18.0.7", "--all"][..], "cannot be used with"),
        (&["ban"][..], "required"),
    ] {
        let mut full = args.to_vec();
        full.extend(["--socket", s]);
        let out = ctl(&full);
        assert_eq!(code(&out), 2, "{args:?}: {out:?}");
        assert!(stderr(&out).contains(expect), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("a usage error still connected to the agent: {other:?}"),
    }
}

#[test]
fn ping_prints_pong() {
    let (out, req) = exchange(
        &["ping"],
        Reply::Line(r#"{"ok":true,"data":{"pong":true,"version":"0.1.0","protocol":1}}"#.into()),
    );
    assert_eq!(req, r#"{"cmd":"ping"}"#);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), "pong\n");
    assert_eq!(stderr(&out), "");
}

#[test]
fn ban_sends_normalised_request_and_json_prints_data() {
    let data = r#"{"banned":[{"ip":"198.18.1.0/24","jail":"sshd","since":1795000000,"until":1795003600,"ban_count":2,"packets":0,"bytes":0}]}"#;
    let reply = format!(r#"{{"ok":true,"data":{data}}}"#);
    let (out, req) = exchange(
        &[
            "ban",
            "198.18.1.9/24",
            "::ffff:198.18.0.7",
            "--jail",
            "sshd",
            "--time",
            "60m",
            "--json",
        ],
        Reply::Line(reply),
    );
    assert_eq!(
        req,
        r#"{"cmd":"ban","ips":["198.18.1.0/24","198.18.0.7"],"jail":"sshd","time":"1h","compact":true}"#
    );
    assert_eq!(code(&out), 0, "{out:?}");
    let printed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let expected: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(printed, expected);
    assert_eq!(
        stdout(&out).lines().count(),
        1,
        "one JSON document: {}",
        stdout(&out)
    );
}

#[test]
fn ban_human_output() {
    let (out, req) = exchange(
        &["ban", "198.18.0.7", "--force"],
        Reply::Line(
            r#"{"ok":true,"data":{"banned":[{"ip":"198.18.0.7","jail":"manual","since":1795000000,"until":null,"ban_count":1}]}}"#.into(),
        ),
    );
    assert_eq!(
        req,
        r#"{"cmd":"ban","ips":["198.18.0.7"],"force":true,"compact":true}"#
    );
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(
        stdout(&out),
        "banned 198.18.0.7 in jail manual permanently (ban #1)\n"
    );
}

/// The compact answer names bans by request position; f2b-ctl prints them from the
/// addresses it sent, as it prints a full answer (text, and `--json` as a BanResult).
#[test]
fn ban_compact_answer() {
    const RUNS: &str = r#"{"ok":true,"data":{"runs":[{"at":0,"n":2,"jail":"manual","since":1795000000,"until":null,"ban_count":1,"packets":0,"bytes":0},{"at":2,"n":1,"jail":"manual","since":1795000000,"until":null,"ban_count":3,"packets":5,"bytes":300}]}}"#;
    let args = [
        "ban",
        "198.18.0.7",
        "fd00:f2b:0::0009",
        "198.18.0.8/32",
        "-t",
        "permanent",
    ];
    let (out, req) = exchange(&args, Reply::Line(RUNS.into()));
    assert_eq!(
        req,
        r#"{"cmd":"ban","ips":["198.18.0.7","fd00:f2b::9","198.18.0.8"],"time":"permanent","compact":true}"#
    );
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(
        stdout(&out),
        "banned 198.18.0.7 in jail manual permanently (ban #1)\n\
         banned fd00:f2b::9 in jail manual permanently (ban #1)\n\
         banned 198.18.0.8 in jail manual permanently (ban #3)\n"
    );
    let mut json = args.to_vec();
    json.push("--json");
    let (out, _) = exchange(&json, Reply::Line(RUNS.into()));
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(
        stdout(&out),
        r#"{"banned":[{"ban_count":1,"bytes":0,"ip":"198.18.0.7","jail":"manual","packets":0,"since":1795000000,"until":null},{"ban_count":1,"bytes":0,"ip":"fd00:f2b::9","jail":"manual","packets":0,"since":1795000000,"until":null},{"ban_count":3,"bytes":300,"ip":"198.18.0.8","jail":"manual","packets":5,"since":1795000000,"until":null}]}"#.to_string()
            + "\n"
    );
    // A run past the request's addresses is not an answer to it.
    let (out, _) = exchange(
        &["ban", "198.18.0.7"],
        Reply::Line(
            r#"{"ok":true,"data":{"runs":[{"at":0,"n":2,"jail":"manual","since":1,"until":null,"ban_count":1}]}}"#.into(),
        ),
    );
    assert_eq!(code(&out), 1, "{out:?}");
    assert!(
        stderr(&out).contains("invalid response"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "");
}

/// An agent from before `compact` refuses the field; f2b-ctl asks again without it and
/// prints the full answer.
#[test]
fn ban_falls_back_for_an_agent_without_compact() {
    let dir = TempDir::new();
    let sock = dir.sock();
    let server = agents(
        &sock,
        vec![
            Reply::Line(
                r#"{"ok":false,"error":"bad request: unknown field `compact`, expected one of `ips`, `jail`, `time`, `force`"}"#.into(),
            ),
            Reply::Line(
                r#"{"ok":true,"data":{"banned":[{"ip":"198.18.0.7","jail":"manual","since":1795000000,"until":null,"ban_count":1}]}}"#.into(),
            ),
        ],
    );
    let sock_s = sock.to_str().unwrap().to_string();
    let out = ctl(&["ban", "198.18.0.7", "--socket", &sock_s]);
    let reqs = server.join().unwrap();
    assert_eq!(
        reqs,
        vec![
            r#"{"cmd":"ban","ips":["198.18.0.7"],"compact":true}"#.to_string(),
            r#"{"cmd":"ban","ips":["198.18.0.7"]}"#.to_string()
        ]
    );
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(
        stdout(&out),
        "banned 198.18.0.7 in jail manual permanently (ban #1)\n"
    );
}

#[test]
fn refusal_exits_1_with_the_agents_message() {
    for json in [false, true] {
        let mut args = vec!["unban", "--all", "--jail", "sshd"];
        if json {
            args.push("--json");
        }
        let (out, req) = exchange(
            &args,
            Reply::Line(
                r#"{"ok":false,"error":"permission denied: uid 1000 may not change state"}"#.into(),
            ),
        );
        assert_eq!(req, r#"{"cmd":"unban","ips":[],"all":true,"jail":"sshd"}"#);
        assert_eq!(code(&out), 1, "{out:?}");
        assert!(
            stderr(&out).contains("permission denied: uid 1000"),
            "{}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "json={json}: {}", stdout(&out));
    }
}

#[test]
fn list_human_and_json() {
    const LIST: &str = r#"{"ok":true,"data":{"bans":[{"ip":"fd00:f2b::7","jail":"sshd","since":1,"until":null,"ban_count":3,"packets":1234567,"bytes":1258291}]}}"#;
    let (out, req) = exchange(&["list", "--jail", "sshd"], Reply::Line(LIST.into()));
    assert_eq!(req, r#"{"cmd":"list","jail":"sshd"}"#);
    assert_eq!(code(&out), 0, "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("IP           JAIL  SINCE"), "{text}");
    assert!(
        lines[1].contains("permanent") && lines[1].ends_with("1,234,567  1.2 MiB"),
        "{text}"
    );
    assert_eq!(lines[2], "1 active ban in jail sshd");

    let (out, _) = exchange(&["--json", "list"], Reply::Line(LIST.into()));
    assert_eq!(code(&out), 0, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["bans"][0]["packets"], 1_234_567);
    assert!(v.get("ok").is_none(), "only data is printed: {v}");
}

#[test]
fn stop_detach_and_reload_requests() {
    let (out, req) = exchange(&["stop", "--detach"], Reply::Line(r#"{"ok":true}"#.into()));
    assert_eq!(req, r#"{"cmd":"stop","detach":true}"#);
    assert_eq!(code(&out), 0, "{out:?}");
    assert!(stdout(&out).starts_with("stopping"), "{}", stdout(&out));

    let (out, req) = exchange(
        &["reload", "--json"],
        Reply::Line(r#"{"ok":true,"data":null}"#.into()),
    );
    assert_eq!(req, r#"{"cmd":"reload"}"#);
    assert_eq!(stdout(&out), "null\n");
}

#[test]
fn no_response_within_timeout_exits_3() {
    let started = Instant::now();
    let (out, _) = exchange(
        &["stats", "--timeout", "1s"],
        Reply::Silence(Duration::from_secs(4)),
    );
    assert_eq!(code(&out), 3, "{out:?}");
    assert!(
        stderr(&out).contains("no response within 1s"),
        "{}",
        stderr(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn closed_without_response_exits_3() {
    let (out, req) = exchange(&["status", "sshd"], Reply::Close);
    assert_eq!(req, r#"{"cmd":"status","jail":"sshd"}"#);
    assert_eq!(code(&out), 3, "{out:?}");
    assert!(
        stderr(&out).contains("closed the connection without a response"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn garbage_response_exits_1() {
    let (out, _) = exchange(&["ping"], Reply::Line("this is not json".into()));
    assert_eq!(code(&out), 1, "{out:?}");
    assert!(
        stderr(&out).contains("invalid response"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn socket_from_environment_and_flag_precedence() {
    let dir = TempDir::new();
    let env_sock = dir.0.join("env.sock");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_f2b-ctl"))
            .args(args)
            .env("F2B_SOCKET", &env_sock)
            .output()
            .unwrap()
    };
    let out = run(&["ping"]);
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains(env_sock.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    let flag = dir.0.join("flag.sock");
    let out = run(&["ping", "--socket", flag.to_str().unwrap()]);
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains(flag.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
}

#[test]
fn empty_env_means_default_and_non_socket_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_f2b-ctl"))
        .arg("ping")
        .env("F2B_SOCKET", "")
        .output()
        .unwrap();
    // Whether /run/f2b/f2b.sock exists here is not ours to know; it must be the path tried.
    if code(&out) != 0 {
        assert!(
            stderr(&out).contains("/run/f2b/f2b.sock"),
            "{}",
            stderr(&out)
        );
    }
    let dir = TempDir::new();
    let out = ctl(&["ping", "--socket", dir.0.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "{out:?}");
    assert!(stderr(&out).contains("is not a socket"), "{}", stderr(&out));
}
