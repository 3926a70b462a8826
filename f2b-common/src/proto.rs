//! The control protocol between f2b-ctl and the agent.
//!
//! Newline-delimited JSON over a Unix socket: one [`Request`] object per line, one
//! [`Response`] per line, in order. The request is tagged by `cmd`:
//! `{"cmd":"ban","ips":["198.18.0.7"],"jail":"manual","time":"1h"}`.
//! Responses are `{"ok":true,"data":...}` or `{"ok":false,"error":"..."}`.
//! [`PROTOCOL_VERSION`] is reported by `ping`; fields are only ever added, with defaults.

use serde::{Deserialize, Serialize};

/// Bumped when a request or response changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest request line the agent reads; a longer line is refused.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// Jail of bans made by hand when no jail is named.
pub const MANUAL_JAIL: &str = "manual";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Ping {},
    Status {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jail: Option<String>,
    },
    Ban {
        ips: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jail: Option<String>,
        /// Duration (`10m`, `permanent`); the jail's bantime when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time: Option<String>,
        /// Allows prefixes shorter than the configured minimum (never /0).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
        /// Answer with [`BanRuns`] (bans as runs of request positions) instead of
        /// [`BanResult`]: the asker holds the addresses already, and a bulk ban's answer
        /// then stays a few hundred bytes instead of ~120 bytes per address.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        compact: bool,
    },
    Unban {
        #[serde(default)]
        ips: Vec<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        all: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jail: Option<String>,
    },
    List {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jail: Option<String>,
    },
    Stats {},
    Reload {},
    Stop {
        /// Also detach the XDP program and remove the pinned maps (enforcement ends).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        detach: bool,
    },
}

impl Request {
    /// Whether the request changes state (needs uid 0 or the control group).
    pub fn mutates(&self) -> bool {
        matches!(
            self,
            Request::Ban { .. } | Request::Unban { .. } | Request::Reload {} | Request::Stop { .. }
        )
    }
}

/// The JSON line (without its newline) of a `ban` request: byte for byte what serde writes
/// for [`Request::Ban`] with these fields, without building a `String` per address first
/// (a 50k-address ban from f2b-ctl spent more on that than the agent on its map writes).
pub fn ban_request_line<'a>(
    ips: impl IntoIterator<Item = &'a str>,
    jail: Option<&str>,
    time: Option<&str>,
    force: bool,
    compact: bool,
) -> Vec<u8> {
    let ips = ips.into_iter();
    let mut out = Vec::with_capacity(64 + 24 * ips.size_hint().0);
    out.extend_from_slice(br#"{"cmd":"ban","ips":["#);
    for (n, ip) in ips.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        push_json_str(&mut out, ip);
    }
    out.push(b']');
    if let Some(j) = jail {
        out.extend_from_slice(br#","jail":"#);
        push_json_str(&mut out, j);
    }
    if let Some(t) = time {
        out.extend_from_slice(br#","time":"#);
        push_json_str(&mut out, t);
    }
    if force {
        out.extend_from_slice(br#","force":true"#);
    }
    if compact {
        out.extend_from_slice(br#","compact":true"#);
    }
    out.push(b'}');
    out
}

/// `s` as a JSON string; addresses (the bulk) need no escape and are copied as they are.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok<T: Serialize>(data: &T) -> Response {
        match serde_json::to_value(data) {
            Ok(v) => Response {
                ok: true,
                data: Some(v),
                error: None,
            },
            Err(e) => Response::err(format!("internal error encoding response: {e}")),
        }
    }

    pub fn err(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            data: None,
            error: Some(msg.into()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PingData {
    pub pong: bool,
    pub version: String,
    pub protocol: u32,
}

/// One active ban as `list` and `ban` report it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BanInfo {
    /// Address or CIDR.
    pub ip: String,
    pub jail: String,
    /// Unix seconds when the current ban started.
    pub since: u64,
    /// Unix seconds when it ends; None = permanent.
    pub until: Option<u64>,
    /// How many times this address has been banned (history, across restarts).
    pub ban_count: u32,
    #[serde(default)]
    pub packets: u64,
    #[serde(default)]
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BanResult {
    /// Bans now in force (new or extended).
    pub banned: Vec<BanInfo>,
}

/// A `ban` answer for `compact: true`: what [`BanResult`] says, with each ban's address named
/// by its position in the request's `ips`. A run is `n` bans at positions `at`, `at + 1`, ...,
/// `at + n - 1` that share every other [`BanInfo`] field; runs are in request order, and a
/// position in no run is a repeat of an earlier address of the request (banned once).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BanRuns {
    pub runs: Vec<BanRun>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BanRun {
    pub at: u32,
    pub n: u32,
    pub jail: String,
    pub since: u64,
    pub until: Option<u64>,
    pub ban_count: u32,
    #[serde(default)]
    pub packets: u64,
    #[serde(default)]
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnbanResult {
    /// Entries removed.
    pub unbanned: Vec<String>,
    /// Requested entries that were not banned.
    pub not_banned: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListData {
    pub bans: Vec<BanInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JailStatus {
    pub name: String,
    pub enabled: bool,
    pub failing_now: u64,
    pub failed_total: u64,
    pub banned_now: u64,
    pub banned_total: u64,
    pub files: Vec<String>,
    /// Filled when a single jail is asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub banned: Vec<String>,
    /// Failing addresses forgotten because the jail tracked `max_tracked` already.
    #[serde(default)]
    pub evicted: u64,
    /// Bans the jail decided but could not enforce (e.g. a full map).
    #[serde(default)]
    pub ban_errors: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    /// "native" or "skb".
    pub mode: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusData {
    pub version: String,
    pub uptime_secs: u64,
    pub interfaces: Vec<InterfaceStatus>,
    pub jails: Vec<JailStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MapUsage {
    pub name: String,
    pub entries: u64,
    pub capacity: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsData {
    /// Kernel counters summed over CPUs, keyed by [`crate::counters::NAMES`].
    pub counters: std::collections::BTreeMap<String, u64>,
    pub maps: Vec<MapUsage>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_form() {
        let r: Request = serde_json::from_str(
            r#"{"cmd":"ban","ips":["198.18.0.7"],"jail":"manual","time":"1h"}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::Ban {
                ips: vec!["198.18.0.7".into()],
                jail: Some("manual".into()),
                time: Some("1h".into()),
                force: false,
                compact: false,
            }
        );
        assert!(r.mutates());
        let back = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&back).unwrap(), r);
        assert_eq!(
            serde_json::to_string(&Request::Ping {}).unwrap(),
            r#"{"cmd":"ping"}"#
        );
        assert!(!Request::Stats {}.mutates());
    }

    #[test]
    fn ban_request_line_is_serdes_encoding() {
        let ips = ["198.18.0.7", "fd00:f2b::1", "198.18.1.0/24"];
        for (jail, time, force, compact) in [
            (None, None, false, false),
            (Some("sshd"), Some("1h"), true, true),
            (Some("we\"b\\\u{1}é"), None, false, true),
            (None, Some("permanent"), true, false),
        ] {
            for n in [0, 1, 3] {
                let req = Request::Ban {
                    ips: ips[..n].iter().map(|s| s.to_string()).collect(),
                    jail: jail.map(str::to_string),
                    time: time.map(str::to_string),
                    force,
                    compact,
                };
                assert_eq!(
                    String::from_utf8(ban_request_line(
                        ips[..n].iter().copied(),
                        jail,
                        time,
                        force,
                        compact
                    ))
                    .unwrap(),
                    serde_json::to_string(&req).unwrap()
                );
            }
        }
        // Whatever a caller passes as an address is written as a valid JSON string.
        let odd = ["a\"b", "\\", "\n", "é"];
        let line = ban_request_line(odd.iter().copied(), None, None, false, false);
        let back: Request = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            back,
            Request::Ban {
                ips: odd.iter().map(|s| s.to_string()).collect(),
                jail: None,
                time: None,
                force: false,
                compact: false,
            }
        );
    }

    #[test]
    fn bad_requests_are_errors() {
        for bad in [
            "",
            "garbage",
            r#"{"cmd":"explode"}"#,
            r#"{"cmd":"ban"}"#,
            r#"{"cmd":"ban","ips":"x"}"#,
            r#"{"cmd":"stats","extra":1}"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn response_wire_form() {
        let ok = serde_json::to_string(&Response::ok(&PingData {
            pong: true,
            version: "0".into(),
            protocol: 1,
        }))
        .unwrap();
        assert!(ok.starts_with(r#"{"ok":true,"data":{"pong":true"#), "{ok}");
        let err = serde_json::to_string(&Response::err("nope")).unwrap();
        assert_eq!(err, r#"{"ok":false,"error":"nope"}"#);
    }
}
