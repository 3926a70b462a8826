//! Detection at run time: one OS thread per jail that reads logs. The thread owns its source,
//! filter and failure counter, so the per-line path (read -> prefilter/regex -> count) is
//! plain synchronous code with no lock; it takes the ban manager's lock once per batch of
//! lines, to ban what crossed maxretry and commit the read positions with those bans.
//! Files are read and matched a buffer at a time ([`LogSource::poll_chunks`] into
//! [`Filter::scan`]); the journal, which arrives as entries, a line at a time.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::Notify;

use crate::bans::BanManager;
use crate::clock::unix_now;
use crate::config::{Backend, Config, JailConfig, StartAt};
use crate::filter::{Filter, FilterSpec, LineMatch};
use crate::jail::{FailManager, Ticket};
use crate::sched::Pacer;
use crate::source::{self, JournalConfig, JournalSource, LogSource, SourceOptions, Waiter};

/// How long a reader waits for a change before it looks at the stop flag again.
const TICK: Duration = Duration::from_millis(200);

/// Most bytes of log read per batch: a backlog is committed (positions with the bans they
/// caused) in pieces of this size, so one lock hold and one redb commit stay small and the
/// stop flag is seen between pieces.
const BATCH_BYTES: usize = 4 << 20;

/// The batch size while the reader holds real-time priority (sched.rs): about a
/// millisecond of work, so a backlog found on wake-up cannot keep it there for long.
const BOOSTED_BATCH_BYTES: usize = 256 << 10;

fn source_start(s: StartAt) -> source::StartAt {
    match s {
        StartAt::Head => source::StartAt::Head,
        StartAt::Tail => source::StartAt::Tail,
    }
}

/// A jail's filter, loaded and checked.
pub struct Prepared {
    pub jail: JailConfig,
    pub filter: Filter,
}

/// Loads the filter of every enabled jail that reads logs. Any error refuses the whole
/// config (at start and on reload): `jail NAME: file:line: message`.
pub fn prepare(cfg: &Config) -> Result<Vec<Prepared>, String> {
    let mut out = Vec::new();
    for jail in cfg.jails.values().filter(|j| j.detects()) {
        let Some(spec) = &jail.filter else { continue };
        let spec = FilterSpec::from_config(spec).map_err(|e| format!("jail {}: {e}", jail.name))?;
        let filter = Filter::load_from(&spec, jail.mode.as_deref(), cfg.filters_dir.as_deref())
            .map_err(|e| format!("jail {}: {e}", jail.name))?;
        out.push(Prepared {
            jail: jail.clone(),
            filter,
        });
    }
    Ok(out)
}

/// A running reader thread.
pub struct Runner {
    pub jail: JailConfig,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Runner {
    /// Asks the thread to stop and waits for it (it finishes its current batch first).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Shared handles a reader needs.
#[derive(Clone)]
pub struct Shared {
    pub manager: Arc<Mutex<BanManager>>,
    pub bans_changed: Arc<Notify>,
}

pub fn spawn(p: Prepared, shared: Shared) -> io::Result<Runner> {
    // Files are opened and their starting positions committed before this returns, so that
    // once the agent answers, a crash can no longer make a jail skip lines (a new jail starts
    // at the end of its files, and that start is on disk).
    let opened = match p.jail.backend {
        Backend::Journal => None,
        _ => Some(open_files(&p.jail, &shared)?),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let jail = p.jail.clone();
    let flag = stop.clone();
    let handle = std::thread::Builder::new()
        .name(format!("jail-{}", jail.name))
        .spawn(move || {
            let name = p.jail.name.clone();
            let r = match opened {
                None => run_journal(p, &shared, &flag),
                Some(o) => run_files(p, o, &shared, &flag),
            };
            if let Err(e) = r {
                log::error!("[{name}] reader stopped: {e}");
            }
        })?;
    Ok(Runner {
        jail,
        stop,
        handle: Some(handle),
    })
}

fn lock(shared: &Shared) -> io::Result<std::sync::MutexGuard<'_, BanManager>> {
    shared
        .manager
        .lock()
        .map_err(|_| io::Error::other("ban manager poisoned"))
}

/// Hands one batch to the ban manager; wakes the expiry timer when bans were made.
fn flush(
    shared: &Shared,
    jail: &str,
    tickets: Vec<Ticket>,
    positions: &[(String, String, Option<crate::store::FilePos>)],
    meta: &[(String, String)],
    fails: &FailManager,
) -> io::Result<()> {
    let bans = lock(shared)?.jail_batch_count(jail, tickets, positions, meta, fails.stats());
    if bans > 0 {
        shared.bans_changed.notify_one();
    }
    Ok(())
}

type Checkpoints = Vec<(String, Option<crate::store::FilePos>)>;

fn open_files(jail: &JailConfig, shared: &Shared) -> io::Result<(LogSource, Checkpoints)> {
    let saved = lock(shared)?
        .store()
        .positions(&jail.name)
        .map_err(io::Error::other)?;
    let opts = SourceOptions {
        start_at: source_start(jail.start),
        max_line: jail.maxlinelen,
        ..SourceOptions::default()
    };
    let src = LogSource::new(&jail.logpath, opts, saved)?;
    let cps = src.checkpoints();
    let positions: Vec<_> = cps
        .iter()
        .map(|(path, pos)| (jail.name.clone(), path.clone(), *pos))
        .collect();
    lock(shared)?
        .store()
        .commit(&[], &[], &positions, &[])
        .map_err(io::Error::other)?;
    Ok((src, cps))
}

fn run_files(
    p: Prepared,
    (mut src, mut committed): (LogSource, Checkpoints),
    shared: &Shared,
    stop: &AtomicBool,
) -> io::Result<()> {
    let jail = &p.jail;
    let backend = match jail.backend {
        Backend::Inotify => source::Backend::Inotify,
        Backend::Polling => source::Backend::Polling,
        Backend::Auto | Backend::Journal => source::Backend::Auto,
    };
    let mut waiter = Waiter::new(backend, source::waiter::DEFAULT_POLL_INTERVAL)?;
    let mut fails = FailManager::new(jail.maxretry, jail.findtime, jail.max_tracked);
    log::info!(
        "[{}] reading {} with filter {} ({:?} backend)",
        jail.name,
        jail.logpath.join(", "),
        p.filter.name(),
        waiter.backend()
    );
    let mut first = true;
    let mut more = false;
    let mut pacer = Pacer::new(jail.realtime, &jail.name);
    // A ticket's user name is for command actions only: without them, no String per ban.
    let users = jail
        .actions
        .iter()
        .any(|a| matches!(a, crate::config::Action::Command(_)));
    // `committed`: positions as last committed. A quiet poll that changed them (a file
    // appeared or went away) is committed too, so a restart starts right.
    while !stop.load(Ordering::Relaxed) {
        // The work since the last wait is charged to the real-time budget (sched.rs).
        pacer.pace();
        // A backlog is read BATCH_BYTES at a time, each piece committed with its bans.
        let mut paths_unchanged = false;
        if !first && !more {
            waiter.wait(TICK)?;
            pacer.woke();
            // Only the followed files were written: no path to look at again (a stat per
            // path, a glob expansion: tens of microseconds on the way to a ban).
            paths_unchanged = waiter.only_writes();
            if paths_unchanged {
                src.paths_unchanged();
            }
        }
        first = false;
        let now = unix_now() as i64;
        let mut tickets = Vec::new();
        // At real-time priority, smaller pieces: the budget is checked between them.
        let piece = if pacer.boosted() {
            BOOSTED_BATCH_BYTES
        } else {
            BATCH_BYTES
        };
        // Each failure is counted two failures late, its cache misses (a million tracked
        // sources fit in no cache) overlapping the matching of the lines in between: the
        // bucket where its address is found is prefetched first, then (one failure later)
        // its slot's LRU neighbours and spilled times. The held failures' users are kept in
        // reused buffers.
        type Held = Option<(std::net::IpAddr, i64, bool)>;
        let (mut old, mut young): (Held, Held) = (None, None);
        let (mut old_user, mut young_user) = (String::new(), String::new());
        let stats = src.poll_chunks(piece, &mut |_path, chunk| {
            p.filter.scan(chunk, now, &mut |f, _| {
                fails.prefetch_bucket(&f.ip);
                if let Some((ip, ..)) = &young {
                    fails.prefetch(ip);
                }
                if let Some((ip, t, u)) = old.take()
                    && let Some(tk) = fails.add_failure(ip, t, now, u.then_some(&old_user))
                {
                    tickets.push(tk);
                }
                old = young.take();
                std::mem::swap(&mut old_user, &mut young_user);
                young = Some((f.ip, f.time.unwrap_or(now), users && f.user.is_some()));
                young_user.clear();
                if users {
                    young_user.push_str(f.user.unwrap_or(""));
                }
            });
            for (held, user) in [(&mut old, &old_user), (&mut young, &young_user)] {
                if let Some((ip, t, u)) = held.take()
                    && let Some(tk) = fails.add_failure(ip, t, now, u.then_some(user))
                {
                    tickets.push(tk);
                }
            }
        })?;
        more = stats.more;
        let cps = src.checkpoints();
        if !tickets.is_empty() || stats.lines > 0 || cps != committed {
            // Bans first (they go into the kernel map in there): the watch bookkeeping
            // below can wait.
            let positions: Vec<_> = cps
                .iter()
                .map(|(path, pos)| (jail.name.clone(), path.clone(), *pos))
                .collect();
            flush(shared, &jail.name, tickets, &positions, &[], &fails)?;
            committed = cps;
        }
        // The directories and names to watch change only when the paths were looked at.
        if !paths_unchanged {
            waiter.watch(&src.watch_dirs())?;
            waiter.wake_on(src.write_names());
        }
        if stats.truncated_lines > 0 {
            log::warn!(
                "[{}] {} over-long lines cut to {} bytes",
                jail.name,
                stats.truncated_lines,
                jail.maxlinelen
            );
        }
    }
    Ok(())
}

fn run_journal(p: Prepared, shared: &Shared, stop: &AtomicBool) -> io::Result<()> {
    let jail = &p.jail;
    let key = format!("journal:{}", jail.name);
    let cursor = lock(shared)?
        .store()
        .meta_get(&key)
        .map_err(io::Error::other)?;
    let expr = jail.journalmatch.clone().unwrap_or_default();
    let matches = source::journal::parse_matches(&expr).map_err(io::Error::other)?;
    let mut cfg = JournalConfig::new(matches);
    cfg.max_line = jail.maxlinelen;
    cfg.start_at = source_start(jail.start);
    let mut src = JournalSource::new(cfg, cursor);
    let mut fails = FailManager::new(jail.maxretry, jail.findtime, jail.max_tracked);
    log::info!(
        "[{}] following the journal ({expr}) with filter {}",
        jail.name,
        p.filter.name()
    );
    while !stop.load(Ordering::Relaxed) {
        let now = unix_now() as i64;
        let mut tickets = Vec::new();
        let r = src.poll(TICK, &mut |line, when| {
            let t = when
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(now);
            if let LineMatch::Failure(f) = p.filter.match_line(line, now)
                && let Some(tk) =
                    fails.add_failure(f.ip, f.time.unwrap_or(t), now, f.user.as_deref())
            {
                tickets.push(tk);
            }
        });
        match r {
            Ok(st) if st.lines == 0 && tickets.is_empty() => continue,
            Ok(_) => {}
            Err(e) => {
                log::warn!("[{}] journal: {e}", jail.name);
                continue;
            }
        }
        // The cursor is committed in the same transaction as the bans its entries caused.
        let meta: Vec<(String, String)> = src
            .cursor()
            .map(|c| (key.clone(), c.to_string()))
            .into_iter()
            .collect();
        flush(shared, &jail.name, tickets, &[], &meta, &fails)?;
    }
    Ok(())
}

/// The readers for a config: keeps the running ones whose jail did not change, stops the
/// others, starts the new ones.
pub fn reconcile(
    running: Vec<Runner>,
    want: Vec<Prepared>,
    shared: &Shared,
) -> io::Result<Vec<Runner>> {
    let mut keep = Vec::new();
    let mut want = want;
    for r in running {
        match want.iter().position(|p| p.jail == r.jail) {
            Some(i) => {
                want.remove(i);
                keep.push(r);
            }
            None => {
                log::info!("[{}] reader stopped (jail changed or removed)", r.jail.name);
                r.stop();
            }
        }
    }
    for p in want {
        keep.push(spawn(p, shared.clone())?);
    }
    Ok(keep)
}
