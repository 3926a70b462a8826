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
