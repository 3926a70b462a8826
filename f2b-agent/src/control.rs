//! The control server: newline-delimited JSON on a Unix socket (see f2b_common::proto).
//! Each connection is served by its own task; requests are answered in order; a malformed
//! request gets an error response and the connection stays usable. Peer credentials
//! (SO_PEERCRED) decide who may change state: uid 0 or members of `control_group`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use f2b_common::proto::{
    MAX_REQUEST_BYTES, PROTOCOL_VERSION, PingData, Request, Response, StatusData,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, Semaphore, watch};

use crate::bans::{BanManager, BanRequest};
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
                        m.jail_status(jail.as_deref()).map(|jails| StatusData {
                            version: env!("CARGO_PKG_VERSION").into(),
                            uptime_secs: uptime,
                            interfaces: m.interfaces(),
                            jails,
                        })
                    })
                    .await;
                respond(r.and_then(|x| x))
            }
            Request::Ban {
                ips,
                jail,
                time,
                force,
            } => {
                let req = BanRequest {
                    ips,
                    jail,
                    time,
                    force,
                };
                let r = self
                    .with_manager(move |m| m.ban(&req))
                    .await
                    .and_then(|x| x);
                self.bans_changed.notify_one();
                respond(r)
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
                    Response::err(format!(
                        "permission denied: uid {uid} may read but not change state (needs root or the control group)"
                    ))
                }
                Ok(req) => ctl.handle(req).await,
            }
        };
        let t1 = t0.elapsed();
        let mut out = serde_json::to_vec(&resp)
            .unwrap_or_else(|_| br#"{"ok":false,"error":"encoding"}"#.to_vec());
        out.push(b'\n');
        let t2 = t0.elapsed();
        wr.write_all(&out).await?;
        log::debug!(
            "request of {} bytes: handled in {t1:?}, encoded {} bytes in {:?}, written in {:?}",
            line.len(),
            out.len(),
            t2 - t1,
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
