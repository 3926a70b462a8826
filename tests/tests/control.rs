//! The control socket under many clients at once: every request of every client is answered,
//! in order per connection, while bans change underneath.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{Result, anyhow};
use f2b_integration::{Fixture, TestConfig, skip_unless_capable};
use serde_json::Value;

#[test]
fn many_concurrent_clients_are_all_answered() -> Result<()> {
    skip_unless_capable!("many_concurrent_clients_are_all_answered");
    let fx = Fixture::start("ctl-many", &TestConfig::default())?;
    let socket = fx.agent.socket().to_path_buf();
    const CLIENTS: usize = 64;
    const ROUNDS: usize = 20;
    let results: Vec<Result<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let socket = socket.clone();
                s.spawn(move || -> Result<usize> {
                    let conn = UnixStream::connect(&socket)?;
                    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
                    let mut rd = BufReader::new(conn.try_clone()?);
                    let mut w = conn;
                    let ip = format!("198.18.{}.{}", 10 + c / 200, 1 + c % 200);
                    let mut ok = 0;
                    for r in 0..ROUNDS {
                        // Alternate reads and writes; each client bans and unbans its own address.
                        let req = match r % 4 {
                            0 => format!(r#"{{"cmd":"ban","ips":["{ip}"],"time":"1h"}}"#),
                            1 => r#"{"cmd":"list"}"#.to_string(),
                            2 => format!(r#"{{"cmd":"unban","ips":["{ip}"]}}"#),
                            _ => r#"{"cmd":"ping"}"#.to_string(),
                        };
                        w.write_all(format!("{req}\n").as_bytes())?;
                        let mut line = String::new();
                        rd.read_line(&mut line)?;
                        let v: Value = serde_json::from_str(&line)?;
                        if v["ok"] != true {
                            return Err(anyhow!("client {c} round {r}: {line}"));
                        }
                        // The answer belongs to this request (in order on the connection).
                        let shape_ok = match r % 4 {
                            0 => v["data"]["banned"][0]["ip"] == ip.as_str(),
                            1 => v["data"]["bans"].is_array(),
                            2 => v["data"]["unbanned"][0] == ip.as_str(),
                            _ => v["data"]["pong"] == true,
                        };
                        if !shape_ok {
                            return Err(anyhow!(
                                "client {c} round {r}: answer of another request: {line}"
                            ));
                        }
                        ok += 1;
                    }
                    Ok(ok)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("client thread panicked")))
            })
            .collect()
    });
    let mut answered = 0;
    for r in results {
        answered += r?;
    }
    assert_eq!(answered, CLIENTS * ROUNDS);
    assert!(
        fx.agent.banned()?.is_empty(),
        "every client unbanned what it banned"
    );
    fx.pass()
}

/// A `compact` ban answer names each ban by its position in the request (a repeated address
/// is banned once and has no position of its own), in runs whose fields are what `list`
/// then shows; f2b-ctl prints the same bans from it.
#[test]
fn compact_ban_answer_names_request_positions() -> Result<()> {
    skip_unless_capable!("compact_ban_answer_names_request_positions");
    let fx = Fixture::start("ctl-compact", &TestConfig::default())?;
    let conn = UnixStream::connect(fx.agent.socket())?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut rd = BufReader::new(conn.try_clone()?);
    let mut w = conn;
    let mut ask = |req: &str| -> Result<Value> {
        w.write_all(format!("{req}\n").as_bytes())?;
        let mut line = String::new();
        rd.read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    };
    let v = ask(r#"{"cmd":"ban","ips":["198.18.0.9"],"time":"1h"}"#)?;
    assert_eq!(v["ok"], true, "{v}");
    let ips = [
        "198.18.0.7",
        "198.18.0.8",
        "198.18.0.7",
        "198.18.0.9",
        "198.18.0.10",
    ];
    let req = serde_json::json!({"cmd": "ban", "ips": ips, "time": "2h", "compact": true});
    let v = ask(&req.to_string())?;
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["data"].get("banned").is_none(), "{v}");
    let runs = v["data"]["runs"]
        .as_array()
        .ok_or_else(|| anyhow!("no runs: {v}"))?;
    let list = fx.agent.ctl_json(&["list"])?;
    let listed = |ip: &str| {
        list["bans"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["ip"] == ip).cloned())
    };
    let mut positions = Vec::new();
    for r in runs {
        let (at, n) = (
            r["at"].as_u64().unwrap_or(99) as usize,
            r["n"].as_u64().unwrap_or(0) as usize,
        );
        for (p, ip) in ips.iter().enumerate().skip(at).take(n) {
            positions.push(p);
            let b = listed(ip).ok_or_else(|| anyhow!("{ip} not listed"))?;
            for field in ["jail", "since", "until", "ban_count"] {
                assert_eq!(b[field], r[field], "{field} of {ip}: run {r}");
            }
        }
    }
    assert_eq!(positions, vec![0, 1, 3, 4]);
    // A refused compact request answers an error and changes nothing.
    let v = ask(r#"{"cmd":"ban","ips":["198.18.0.11","nope"],"compact":true}"#)?;
    assert_eq!(v["ok"], false, "{v}");
    assert!(listed("198.18.0.11").is_none());
    assert_eq!(fx.agent.banned()?.len(), 4);
    // f2b-ctl asks for the compact answer and prints every ban from it.
    let out = fx
        .agent
        .ctl(&["ban", "198.18.0.12", "198.18.0.13/32", "198.18.0.12"])?;
    assert_eq!(out.code, 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("banned 198.18.0.12 in jail manual until "),
        "{out}"
    );
    assert!(
        lines[1].starts_with("banned 198.18.0.13 in jail manual until "),
        "{out}"
    );
    let v = fx.agent.ctl_json(&["ban", "198.18.0.14"])?;
    assert_eq!(v["banned"][0]["ip"], "198.18.0.14", "{v}");
    assert_eq!(v["banned"][0]["jail"], "manual", "{v}");
    assert_eq!(v["banned"][0]["packets"], 0, "{v}");
    fx.pass()
}
