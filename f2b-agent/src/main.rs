//! f2b-agent: loads the XDP program, enforces and persists bans, serves f2b-ctl.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use f2b_agent::bans::BanManager;
use f2b_agent::config::XdpModeCfg;
use f2b_agent::control::{self, Control, Overrides, StopKind};
use f2b_agent::kernel::Kernel;
use f2b_agent::store::Store;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};

#[derive(Parser, Debug)]
#[command(name = "f2b-agent", version, about = "f2b ban enforcer daemon (XDP)")]
struct Args {
    /// Config file (default: /etc/f2b/f2b.yaml if present, else the embedded default).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Control socket path (overrides `socket`).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// redb database path (overrides `database`).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Interface to attach to; repeat for several (overrides `interfaces`).
    #[arg(long = "iface")]
    ifaces: Vec<String>,
    /// XDP attach mode (overrides `xdp_mode`).
    #[arg(long, value_parser = ["auto", "native", "skb"])]
    xdp_mode: Option<String>,
    /// bpffs directory for pinned maps and links (overrides `pin_dir`).
    #[arg(long)]
    pin_dir: Option<PathBuf>,
    /// Validate the configuration and exit (0 valid; otherwise `file:line: what is wrong`).
    #[arg(long)]
    check_config: bool,
}

/// Writes log lines to stderr and, when configured, appends them to a file too.
struct Tee(Option<std::fs::File>);

impl std::io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        if let Some(f) = &mut self.0 {
            f.write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(f) = &mut self.0 {
            f.flush()?;
        }
        Ok(())
    }
}

/// Log lines are `2026-11-22T04:28:35Z LEVEL message`; ban events are `NOTICE [jail] Ban IP`,
/// the form the recidive filter reads back.
fn init_logging(logfile: Option<&Path>) -> Result<()> {
    use std::io::Write;
    let file = match logfile {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening logfile {}", p.display()))?,
        ),
        None => None,
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Pipe(Box::new(Tee(file))))
        // The format below writes no styles; `Always` only skips the escape-stripping pass
        // env_logger otherwise runs over every record written to a pipe or file.
        .write_style(env_logger::WriteStyle::Always)
        .format(|buf, r| {
            if r.target() == "f2b::ban" {
                // A batch of bans comes as one record, a ban a line: every line gets the
                // prefix the recidive filter reads (`TIME NOTICE [jail] Ban IP`).
                // The time is formatted once per record, not per line (a flood's batch holds
                // tens of thousands of bans).
                let ts = buf.timestamp().to_string();
                let msg = r.args().to_string();
                let mut out = Vec::with_capacity(msg.len() + 64 * (ts.len() + 8));
                for line in msg.lines() {
                    out.extend_from_slice(ts.as_bytes());
                    out.extend_from_slice(b" NOTICE ");
                    out.extend_from_slice(line.as_bytes());
                    out.push(b'\n');
                }
                return buf.write_all(&out);
            }
            writeln!(buf, "{} {} {}", buf.timestamp(), r.level(), r.args())
        })
        .init();
    Ok(())
}

/// Caps glibc's malloc arenas before any thread starts. By default every thread that
/// allocates while another holds the lock gets its own arena (up to 8 per core); the tokio
/// blocking threads that serve f2b-ctl then each keep the freed temporaries of a
/// 50k-address request in their own arena, and the agent's peak grows with every arena.
/// Measured with 1M bans inserted in 50k-address requests: VmHWM 292 MiB with the default,
/// 211 MiB with one arena. The per-line hot path does not allocate, so the shared arena's
/// lock is not contended there.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let args = Args::parse();
    let overrides = Overrides {
        config_path: args.config.clone(),
        socket: args.socket.clone(),
        database: args.db.clone(),
        interfaces: args.ifaces.clone(),
        xdp_mode: args
            .xdp_mode
            .as_deref()
            .and_then(|m| m.parse::<XdpModeCfg>().ok()),
        pin_dir: args.pin_dir.clone(),
    };
    if args.check_config {
        let _ = init_logging(None);
        return match overrides.load().map_err(|e| e.to_string()).and_then(|c| {
            f2b_agent::runner::prepare(&c)?;
            Ok(c)
        }) {
            Ok(c) => {
                println!(
                    "{}: configuration is valid ({} jails)",
                    c.source,
                    c.jails.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let logfile = overrides.load().ok().and_then(|c| c.logfile);
    if let Err(e) = init_logging(logfile.as_deref()) {
        eprintln!("f2b-agent: {e:#}");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("f2b-agent: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(overrides)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bind_socket(path: &Path, mode: u32, gid: Option<u32>) -> Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        // A live agent answers on it; a stale file from a crash does not.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another agent is already serving {}", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let l = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    if let Some(g) = gid {
        std::os::unix::fs::chown(path, None, Some(g))
            .with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(l)
}

async fn run(overrides: Overrides) -> Result<()> {
    let cfg = overrides.load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let control_gid = match &cfg.control_group {
        Some(g) => Some(
            control::group_gid(g).with_context(|| format!("control_group {g:?} does not exist"))?,
        ),
        None => None,
    };
    log::info!(
        "f2b-agent {} starting with {}",
        env!("CARGO_PKG_VERSION"),
        cfg.source
    );
    // Filters are part of the config: a bad one stops the start before anything changes.
    let prepared = f2b_agent::runner::prepare(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let t0 = Instant::now();
    let store = Store::open(&cfg.database)?;
    log::debug!("database open after {:?}", t0.elapsed());
    let kernel = Kernel::load(&cfg.pin_dir, cfg.maps)?;
    log::debug!("XDP object and maps loaded after {:?}", t0.elapsed());
    let mut mgr = BanManager::new(cfg.clone(), kernel, store);
    // Maps first, then attach: a freshly attached program never runs with empty maps.
    let r = mgr
        .reconcile()
        .map_err(|e| anyhow::anyhow!("reconciling bans: {e}"))?;
    log::info!(
        "bans: {} restored from the database, {} adopted from the kernel, {} expired removed{}",
        r.restored,
        r.adopted,
        r.expired,
        if r.failed > 0 {
            format!(", {} NOT enforced (see errors)", r.failed)
        } else {
            String::new()
        }
    );
    for iface in &cfg.interfaces {
        let key = format!("iface:{iface}");
        let prev = mgr.store().meta_get(&key)?;
        let mode = mgr
            .kernel_mut()
            .attach(iface, cfg.xdp_mode, prev.as_deref())?;
        mgr.store().meta_set(&key, mode.as_str())?;
    }
    log::info!("enforcing after {:?}", t0.elapsed());

    let listener = bind_socket(&cfg.socket, cfg.socket_mode, control_gid)?;
    log::info!("control socket {}", cfg.socket.display());
    let (action_tx, _action_worker) = f2b_agent::actions::spawn_worker()?;
    mgr.set_action_sink(action_tx);
    for jail in cfg.jails.keys() {
        mgr.emit("start", jail, "", "", 0, "");
    }
    let (stop_tx, stop_rx) = watch::channel(None);
    let ctl = Arc::new(Control {
        manager: Arc::new(Mutex::new(mgr)),
        runners: Mutex::new(Vec::new()),
        bans_changed: Arc::new(Notify::new()),
        stop: stop_tx,
        overrides,
        control_gid: Mutex::new(control_gid),
        started: Instant::now(),
    });
    {
        let shared = ctl.runner_shared();
        let mut runners = Vec::new();
        for p in prepared {
            runners.push(f2b_agent::runner::spawn(p, shared.clone())?);
        }
        if let Ok(mut g) = ctl.runners.lock() {
            *g = runners;
        }
    }
    let server = tokio::spawn(control::serve(listener, ctl.clone(), stop_rx.clone()));
    let timer = tokio::spawn(expiry_timer(ctl.clone(), stop_rx.clone()));

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut stop_rx2 = stop_rx.clone();
    let kind = tokio::select! {
        _ = term.recv() => { log::info!("SIGTERM: stopping, enforcement stays in place"); StopKind::Keep }
        _ = int.recv() => { log::info!("SIGINT: stopping, enforcement stays in place"); StopKind::Keep }
        r = stop_rx2.wait_for(|k| k.is_some()) => r.ok().and_then(|k| *k).unwrap_or(StopKind::Keep),
    };
    let _ = ctl.stop.send(Some(kind));
    {
        let c = ctl.clone();
        let _ = tokio::task::spawn_blocking(move || c.stop_runners()).await;
    }
    if let Ok(m) = ctl.manager.lock() {
        for jail in m.config().jails.keys() {
            m.emit("stop", jail, "", "", 0, "");
        }
    }
    let _ = server.await;
    let _ = timer.await;
    let _ = std::fs::remove_file(&cfg.socket);
    if kind == StopKind::Detach {
        // Close our map and program fds before removing the pins, so nothing keeps them alive.
        drop(ctl);
        let removed = Kernel::detach_and_unpin(&cfg.pin_dir)
            .with_context(|| format!("removing pins in {}", cfg.pin_dir.display()))?;
        log::info!(
            "detached: removed {} from {}",
            removed.join(", "),
            cfg.pin_dir.display()
        );
    }
    log::info!("stopped");
    Ok(())
}

/// Removes bans when their time is up: sleeps until the earliest expiry (an ordered set in
/// the manager), woken early whenever bans change.
async fn expiry_timer(ctl: Arc<Control>, mut stop: watch::Receiver<Option<StopKind>>) {
    loop {
        let next = {
            let m = ctl.manager.clone();
            tokio::task::spawn_blocking(move || m.lock().ok().and_then(|m| m.next_expiry()))
                .await
                .ok()
                .flatten()
        };
        let wait = match next {
            Some(until) => {
                let now_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                Duration::from_millis((until * 1000).saturating_sub(now_ms))
            }
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctl.bans_changed.notified() => continue,
            _ = stop.changed() => return,
        }
        let m = ctl.manager.clone();
        let n = tokio::task::spawn_blocking(move || {
            m.lock()
                .map(|mut m| m.expire_due(f2b_agent::clock::unix_now()))
                .unwrap_or(0)
        })
        .await
        .unwrap_or(0);
        if n > 0 {
            log::info!("{n} bans expired");
        }
    }
}
