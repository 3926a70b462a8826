//! The control server: newline-delimited JSON on a Unix socket (see f2b_common::proto).
//! Each connection is served by its own task; requests are answered in order; a malformed
//! request gets an error response and the connection stays usable. Peer credentials
//! (SO_PEERCRED) decide who may change state: uid 0 or members of `control_group`.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use f2b_common::proto::{
    MAX_REQUEST_BYTES, PROTOCOL_VERSION, PingData, Request, Response, StatusData,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, Semaphore, watch};

use crate::bans::{BanManager, BansDone};
use crate::config::Config;

/// Most connections served at once; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 256;

/// How the agent was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// Leave the XDP program and the pinned maps in place (enforcement continues).
    Keep,
    /// Detach the program and remove the pins.
    Detach,
}

/// Command-line settings that override the config file, re-applied on reload.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_path: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub database: Option<PathBuf>,
    pub interfaces: Vec<String>,
    pub xdp_mode: Option<crate::config::XdpModeCfg>,
    pub pin_dir: Option<PathBuf>,
}

impl Overrides {
    /// Loads the config this agent runs with (file, system file or embedded) plus overrides.
    pub fn load(&self) -> Result<Config, crate::config::ConfigError> {
        let mut c = Config::load(self.config_path.as_deref())?;
        if let Some(s) = &self.socket {
            c.socket = s.clone();
        }
        if let Some(d) = &self.database {
            c.database = d.clone();
        }
        if !self.interfaces.is_empty() {
            c.interfaces = self.interfaces.clone();
        }
        if let Some(m) = self.xdp_mode {
            c.xdp_mode = m;
        }
        if let Some(p) = &self.pin_dir {
            c.pin_dir = p.clone();
        }
        Ok(c)
    }
}

/// Resolves a group name to its gid.
pub fn group_gid(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam returns NULL or a pointer to static storage valid until the next call;
    // we copy gr_gid out at once. Called only from the (serialised) startup/reload path.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    if g.is_null() {
        None
    } else {
        // SAFETY: g is non-null and points to a valid struct group.
        Some(unsafe { (*g).gr_gid })
    }
}

/// Supplementary groups of a process, from /proc (SO_PEERCRED only has the primary gid).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

pub struct Control {
    pub manager: Arc<Mutex<BanManager>>,
    /// Log readers of the detecting jails, replaced on reload.
    pub runners: Mutex<Vec<crate::runner::Runner>>,
    /// Woken whenever bans change, so the expiry timer re-reads its next deadline.
    pub bans_changed: Arc<Notify>,
    pub stop: watch::Sender<Option<StopKind>>,
    pub overrides: Overrides,
    pub control_gid: Mutex<Option<u32>>,
    pub started: Instant,
}

impl Control {
    /// Handles the jail readers need.
    pub fn runner_shared(&self) -> crate::runner::Shared {
        crate::runner::Shared {
            manager: self.manager.clone(),
            bans_changed: self.bans_changed.clone(),
        }
    }

    /// Stops every jail reader (shutdown).
    pub fn stop_runners(&self) {
        let runners = match self.runners.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(_) => return,
        };
        for r in runners {
            r.stop();
        }
    }

    fn may_change(&self, uid: u32, gid: u32, pid: Option<i32>) -> bool {
        if uid == 0 {
            return true;
        }
        let Ok(guard) = self.control_gid.lock() else {
            return false;
        };
        match *guard {
            Some(g) => gid == g || pid.is_some_and(|p| supplementary_groups(p).contains(&g)),
            None => false,
        }
    }

    /// Runs a blocking closure on the ban manager off the async workers.
    async fn with_manager<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut BanManager) -> T + Send + 'static,
    ) -> Result<T, String> {
        let mgr = self.manager.clone();
        tokio::task::spawn_blocking(move || {
            let mut m = mgr
                .lock()
                .map_err(|_| "internal error: ban manager poisoned".to_string())?;
            Ok(f(&mut m))
        })
        .await
        .map_err(|e| format!("internal error: {e}"))?
    }

    /// The `ban` fast path ([`ban_fast`]) off the async workers. Hands `line` back, with the
    /// response line when it was a ban request.
    async fn ban_line(
        self: &Arc<Self>,
        line: Vec<u8>,
        refuse: Option<String>,
    ) -> (Vec<u8>, Option<Vec<u8>>) {
        let mgr = self.manager.clone();
        let r = tokio::task::spawn_blocking(move || {
            let out = ban_fast(&line, refuse, |req| match mgr.lock() {
                Ok(mut m) => m.ban_addrs(
                    &req.ips,
                    req.jail.as_deref(),
                    req.time.as_deref(),
                    req.force,
                ),
                Err(_) => Err("internal error: ban manager poisoned".to_string()),
            });
            (line, out)
        })
        .await;
        match r {
            Ok((line, out)) => {
                if out.is_some() {
                    self.bans_changed.notify_one();
                }
                (line, out)
            }
            Err(e) => (
                Vec::new(),
                Some(encode(&Response::err(format!("internal error: {e}")))),
            ),
        }
    }

    pub async fn handle(self: &Arc<Self>, req: Request) -> Response {
        match req {
            Request::Ping {} => Response::ok(&PingData {
                pong: true,
                version: env!("CARGO_PKG_VERSION").into(),
                protocol: PROTOCOL_VERSION,
            }),
            Request::Status { jail } => {
                let uptime = self.started.elapsed().as_secs();
                let r = self
                    .with_manager(move |m| {
                        let st = m.jail_status(jail.as_deref()).map(|jails| StatusData {
                            version: env!("CARGO_PKG_VERSION").into(),
                            uptime_secs: uptime,
                            interfaces: m.interfaces(),
                            jails,
                        });
                        (st, m.store().mark())
                    })
                    .await;
                // What the status reports (counts, read progress, bans) was handed to the
                // store's committer; answer once it is on disk, so a restart right after
                // neither rereads nor forgets anything shown.
                let r = match r {
                    Ok((st, mark)) => tokio::task::spawn_blocking(move || mark.wait())
                        .await
                        .map_err(|e| format!("internal error: {e}"))
                        .and(st),
                    Err(e) => Err(e),
                };
                respond(r)
            }
            Request::Ban {
                ips,
                jail,
                time,
                force,
                compact,
            } => {
                let r = self
                    .with_manager(move |m| {
                        m.ban_addrs(&ips, jail.as_deref(), time.as_deref(), force)
                    })
                    .await
                    .and_then(|x| x);
                self.bans_changed.notify_one();
                match r {
                    Ok(d) if compact => Response::ok(&d.runs()),
                    r => respond(r.map(|d| d.to_result())),
                }
            }
            Request::Unban { ips, all, jail } => {
                let r = self
                    .with_manager(move |m| m.unban(&ips, all, jail.as_deref()))
                    .await
                    .and_then(|x| x);
                self.bans_changed.notify_one();
                respond(r)
            }
            Request::List { jail } => {
                let r = self
                    .with_manager(move |m| {
                        if let Some(j) = &jail
                            && m.config().jail(j).is_none()
                            && m.list(Some(j)).bans.is_empty()
                        {
                            return Err(format!("unknown jail {j:?}"));
                        }
                        Ok(m.list(jail.as_deref()))
                    })
                    .await;
                respond(r.and_then(|x| x))
            }
            Request::Stats {} => respond(self.with_manager(|m| m.stats()).await),
            Request::Reload {} => {
                let cfg = match self.overrides.load() {
                    Ok(c) => c,
                    Err(e) => {
                        return Response::err(format!("reload refused, running config kept: {e}"));
                    }
                };
                let prepared = match crate::runner::prepare(&cfg) {
                    Ok(p) => p,
                    Err(e) => {
                        return Response::err(format!("reload refused, running config kept: {e}"));
                    }
                };
                let gid = match &cfg.control_group {
                    Some(g) => match group_gid(g) {
                        Some(gid) => Some(gid),
                        None => {
                            return Response::err(format!(
                                "reload refused: control_group {g:?} does not exist"
                            ));
                        }
                    },
                    None => None,
                };
                let r = self
                    .with_manager(move |m| m.reload(cfg))
                    .await
                    .and_then(|x| x);
                if r.is_ok() {
                    let me = self.clone();
                    let swapped = tokio::task::spawn_blocking(move || {
                        let shared = me.runner_shared();
                        let mut guard = me
                            .runners
                            .lock()
                            .map_err(|_| "runners poisoned".to_string())?;
                        let running = std::mem::take(&mut *guard);
                        *guard = crate::runner::reconcile(running, prepared, &shared)
                            .map_err(|e| e.to_string())?;
                        Ok::<(), String>(())
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|x| x);
                    if let Err(e) = swapped {
                        log::error!("reload: restarting jail readers: {e}");
                    }
                    if let Ok(mut g) = self.control_gid.lock() {
                        *g = gid;
                    }
                    log::info!("configuration reloaded");
                }
                self.bans_changed.notify_one();
                respond(r.map(
                    |restart| serde_json::json!({"reloaded": true, "restart_needed": restart}),
                ))
            }
            Request::Stop { detach } => {
                let kind = if detach {
                    StopKind::Detach
                } else {
                    StopKind::Keep
                };
                let _ = self.stop.send(Some(kind));
                Response::ok(&serde_json::json!({"stopping": true, "detach": detach}))
            }
        }
    }
}

fn respond<T: serde::Serialize>(r: Result<T, String>) -> Response {
    match r {
        Ok(d) => Response::ok(&d),
        Err(e) => Response::err(e),
    }
}

/// Serves connections until `stop` fires.
pub async fn serve(
    listener: UnixListener,
    ctl: Arc<Control>,
    mut stop: watch::Receiver<Option<StopKind>>,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    log::warn!("control socket accept: {e}");
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let ctl = ctl.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, ctl).await {
                log::debug!("control connection ended: {e}");
            }
            drop(permit);
        });
    }
}

async fn connection(stream: UnixStream, ctl: Arc<Control>) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let (uid, gid, pid) = (cred.uid(), cred.gid(), cred.pid());
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        // Read one line, refusing (and dropping the connection after answering) an
        // over-long one rather than buffering it without bound.
        let mut too_long = false;
        loop {
            let buf = rd.fill_buf().await?;
            if buf.is_empty() {
                if line.is_empty() {
                    return Ok(());
                }
                break;
            }
            let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (&buf[..=i], true),
                None => (buf, false),
            };
            let n = chunk.len();
            if line.len() + n > MAX_REQUEST_BYTES {
                too_long = true;
            } else {
                line.extend_from_slice(chunk);
            }
            rd.consume(n);
            if done {
                break;
            }
        }
        let t0 = Instant::now();
        let denied = || {
            format!(
                "permission denied: uid {uid} may read but not change state (needs root or the control group)"
            )
        };
        let mut fast = None;
        if !too_long && memchr::memmem::find(&line, b"\"ban\"").is_some() {
            let refuse = (!ctl.may_change(uid, gid, pid)).then(denied);
            let (back, out) = ctl.ban_line(std::mem::take(&mut line), refuse).await;
            line = back;
            fast = out;
        }
        let mut out = match fast {
            Some(out) => out,
            None => {
                let resp = if too_long {
                    Response::err(format!(
                        "request longer than {MAX_REQUEST_BYTES} bytes refused"
                    ))
                } else {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim();
                    if text.is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<Request>(text) {
                        Err(e) => Response::err(format!("bad request: {e}")),
                        Ok(req) if req.mutates() && !ctl.may_change(uid, gid, pid) => {
                            Response::err(denied())
                        }
                        Ok(req) => ctl.handle(req).await,
                    }
                };
                encode(&resp)
            }
        };
        let t1 = t0.elapsed();
        out.push(b'\n');
        let t2 = t0.elapsed();
        wr.write_all(&out).await?;
        log::debug!(
            "request of {} bytes: handled in {t1:?}, {} bytes answered in {:?}",
            line.len(),
            out.len(),
            t0.elapsed() - t2
        );
        if line.len() + out.len() >= BIG_EXCHANGE {
            drop(out);
            tokio::task::spawn_blocking(release_free_memory);
        }
        if too_long {
            return Ok(());
        }
    }
}

fn encode(resp: &Response) -> Vec<u8> {
    serde_json::to_vec(resp).unwrap_or_else(|_| br#"{"ok":false,"error":"encoding"}"#.to_vec())
}

/// A `ban` request as it arrives, addresses borrowed from the line: no per-address `String`
/// and no buffering of the whole request in serde's untyped content, which an internally
/// tagged enum ([`Request`]) needs. Same fields and rules as [`Request::Ban`].
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BanLine<'a> {
    #[serde(borrow)]
    cmd: Cow<'a, str>,
    #[serde(borrow)]
    ips: Vec<Cow<'a, str>>,
    #[serde(default)]
    jail: Option<String>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    compact: bool,
}

/// Applies `line` if it is a well-formed `ban` request and returns the response line
/// (without its newline); None when it is anything else, for the general path to answer.
/// `refuse` is the answer for a peer that may not change state.
/// `apply` bans (the ban manager's [`BanManager::ban_addrs`]).
fn ban_fast(
    line: &[u8],
    refuse: Option<String>,
    apply: impl FnOnce(&BanLine<'_>) -> Result<BansDone, String>,
) -> Option<Vec<u8>> {
    let req: BanLine<'_> = serde_json::from_slice(line.trim_ascii()).ok()?;
    if req.cmd != "ban" {
        return None;
    }
    if let Some(msg) = refuse {
        return Some(encode(&Response::err(msg)));
    }
    Some(match apply(&req) {
        Ok(d) => {
            // `Response::ok` would build a JSON tree of every ban first; write the same
            // object straight out instead.
            let mut out = Vec::with_capacity(if req.compact { 256 } else { 64 + 160 * d.len() });
            out.extend_from_slice(br#"{"ok":true,"data":"#);
            let written = if req.compact {
                serde_json::to_writer(&mut out, &d.runs())
            } else {
                serde_json::to_writer(&mut out, &d)
            };
            match written {
                Ok(()) => {
                    out.push(b'}');
                    out
                }
                Err(e) => encode(&Response::err(format!(
                    "internal error encoding response: {e}"
                ))),
            }
        }
        Err(e) => encode(&Response::err(e)),
    })
}

/// Requests or responses at least this long leave megabytes of freed temporaries behind.
const BIG_EXCHANGE: usize = 1 << 20;

/// Hands free heap pages back to the kernel (glibc keeps them otherwise, and the agent's
/// resident size would stay at the peak of its largest request).
fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases unused pages of the allocator's own heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_fast_path_takes_only_well_formed_bans() {
        let never = |_: &BanLine<'_>| -> Result<BansDone, String> { panic!("must not ban") };
        for other in [
            r#"{"cmd":"unban","ips":["198.18.0.7"]}"#,
            r#"{"cmd":"unban","ips":[],"all":true}"#,
            r#"{"cmd":"ban","ips":["198.18.0.7"],"bogus":1}"#,
            r#"{"cmd":"ban"}"#,
            r#"{"cmd":"list","jail":"ban"}"#,
            "not json \"ban\"",
        ] {
            assert!(ban_fast(other.as_bytes(), None, never).is_none(), "{other}");
        }
        let line = br#" {"ips":["198.18.0.7","fd00:f2b::\u0031"],"cmd":"ban","jail":"sshd","time":"1h","force":true}
"#;
        let refused =
            ban_fast(line, Some("permission denied: uid 7".into()), never).expect("a ban request");
        let r: Response = serde_json::from_slice(&refused).expect("response");
        assert_eq!(r.error.as_deref(), Some("permission denied: uid 7"));
        let mut seen = None;
        let out = ban_fast(line, None, |req| {
            seen = Some((
                req.ips.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                req.jail.clone(),
                req.time.clone(),
                req.force,
            ));
            Err("unknown jail \"sshd\"".into())
        })
        .expect("a ban request");
        assert_eq!(
            seen,
            Some((
                vec!["198.18.0.7".to_string(), "fd00:f2b::1".to_string()],
                Some("sshd".into()),
                Some("1h".into()),
                true
            ))
        );
        let r: Response = serde_json::from_slice(&out).expect("response");
        assert!(!r.ok);
        assert_eq!(r.error.as_deref(), Some("unknown jail \"sshd\""));
    }
}
