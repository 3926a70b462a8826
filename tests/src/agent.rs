//! A running f2b-agent in a namespace, as a guard, and f2b-ctl against it.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io::Read as _;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::netns::NetNs;

/// `statfs` magic of a bpffs mount.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// How long a ctl call may take before the test calls the agent hung.
const CTL_TIMEOUT: Duration = Duration::from_secs(60);

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Paths of the f2b-agent and f2b-ctl binaries under test.
#[derive(Clone, Debug)]
pub struct Bins {
    pub agent: PathBuf,
    pub ctl: PathBuf,
}

impl Bins {
    /// `F2B_AGENT_BIN` / `F2B_CTL_BIN`, else `<workspace>/target/debug/{f2b-agent,f2b-ctl}`.
    pub fn locate() -> Result<Bins> {
        Self::locate_in(&workspace_root().join("target").join("debug"))
    }

    /// Like [`Bins::locate`], with `dir` as the fallback directory.
    pub fn locate_in(dir: &Path) -> Result<Bins> {
        let pick = |var: &str, name: &str| -> Result<PathBuf> {
            let p = std::env::var_os(var)
                .map(PathBuf::from)
                .unwrap_or_else(|| dir.join(name));
            if !p.is_file() {
                bail!(
                    "{name} binary not found at {} (set {var}, or build it first: \
                     `cargo build -p f2b-agent -p f2b-ctl`)",
                    p.display()
                );
            }
            Ok(p)
        };
        Ok(Bins {
            agent: pick("F2B_AGENT_BIN", "f2b-agent")?,
            ctl: pick("F2B_CTL_BIN", "f2b-ctl")?,
        })
    }
}

/// What f2b-ctl did: exit code (-1 when killed by a signal), stdout, stderr.
#[derive(Clone, Debug)]
pub struct CtlOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(self.stdout.trim())
            .with_context(|| format!("f2b-ctl output is not JSON: {self}"))
    }
}

impl std::fmt::Display for CtlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}; stdout: {:?}; stderr: {:?}",
            self.code,
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

/// Runs a command with piped output, killing it (by PID) if it outlives `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<CtlOutput> {
    let what = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {what}"))?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout pipe"))?;
    let mut err = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("no stderr pipe"))?;
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {timeout:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    Ok(CtlOutput {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    })
}

/// How to start an agent.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// YAML config; `{dir}` is replaced by the agent's temp directory. None = the agent's
    /// embedded default (no `--config`).
    pub config: Option<String>,
    /// Interfaces to attach to (`--iface`, in the agent's namespace).
    pub ifaces: Vec<String>,
    /// More arguments for the agent.
    pub extra_args: Vec<String>,
    /// How long to wait for `f2b-ctl ping` to answer after a (re)start.
    pub ready_timeout: Duration,
    /// Mount a bpffs on the pin directory before starting the agent (false: leave that to
    /// the agent, which must mount one itself).
    pub mount_bpffs: bool,
}

impl AgentOptions {
    pub fn new(ifaces: &[&str]) -> AgentOptions {
        AgentOptions {
            config: None,
            ifaces: ifaces.iter().map(|s| s.to_string()).collect(),
            extra_args: Vec::new(),
            ready_timeout: Duration::from_secs(60),
            mount_bpffs: true,
        }
    }
}

/// An f2b-agent running in a network namespace, with its socket, redb file, bpffs pin
/// directory and log in a private temp directory. Drop kills it (by PID), unmounts the pin
/// directory and removes the temp directory.
pub struct Agent {
    bins: Bins,
    opts: AgentOptions,
    ns: File,
    ns_name: String,
    child: Option<Child>,
    socket: PathBuf,
    db: PathBuf,
    pin_dir: PathBuf,
    config: Option<PathBuf>,
    log: PathBuf,
    mounted: bool,
    // Last: removed after the unmount in Drop.
    dir: tempfile::TempDir,
}

impl Agent {
    /// Prepares the directory, mounts a private bpffs for the pins, starts the agent in `ns`
    /// and waits until it answers `ping`.
    pub fn start(bins: &Bins, ns: &NetNs, opts: AgentOptions) -> Result<Agent> {
        let dir = tempfile::Builder::new().prefix("f2b-test-").tempdir()?;
        // Traversable by others so that a non-root f2b-ctl can reach a 0666 socket inside.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let pin_dir = dir.path().join("bpf");
        std::fs::create_dir(&pin_dir)?;
        let config = match &opts.config {
            Some(text) => {
                let p = dir.path().join("f2b.yaml");
                std::fs::write(&p, text.replace("{dir}", &dir.path().to_string_lossy()))?;
                Some(p)
            }
            None => None,
        };
        let mut agent = Agent {
            bins: bins.clone(),
            ns: ns.fd_file()?,
            ns_name: ns.name().to_string(),
            child: None,
            socket: dir.path().join("f2b.sock"),
            db: dir.path().join("f2b.redb"),
            log: dir.path().join("agent.log"),
            pin_dir,
            config,
            mounted: false,
            opts,
            dir,
        };
        if agent.opts.mount_bpffs {
            agent.mount_bpffs()?;
        }
        agent.spawn()?;
        agent.wait_ready()?;
        Ok(agent)
    }

    fn mount_bpffs(&mut self) -> Result<()> {
        if is_bpffs(&self.pin_dir) {
            return Ok(());
        }
        let target = CString::new(self.pin_dir.as_os_str().as_bytes())?;
        // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
        let rc = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                target.as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("mounting bpffs on {}", self.pin_dir.display()));
        }
        self.mounted = true;
        Ok(())
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(&self.bins.agent);
        if let Some(cfg) = &self.config {
            cmd.arg("--config").arg(cfg);
        }
        cmd.arg("--socket").arg(&self.socket);
        cmd.arg("--db").arg(&self.db);
        cmd.arg("--pin-dir").arg(&self.pin_dir);
        for i in &self.opts.ifaces {
            cmd.arg("--iface").arg(i);
        }
        cmd.args(&self.opts.extra_args);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let fd = self.ns.as_raw_fd();
        // SAFETY: setns is async-signal-safe, the closure allocates nothing, and `fd` (owned by
        // self.ns, CLOEXEC) is open until exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.bins.agent.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Polls `f2b-ctl ping` until it answers, the agent exits, or the deadline passes.
    pub fn wait_ready(&mut self) -> Result<()> {
        let timeout = self.opts.ready_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(st) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "f2b-agent exited during startup ({st}); its log:\n{}",
                    self.log_text()
                );
            }
            let out = self.ctl(&["ping"])?;
            if out.code == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "f2b-agent did not answer `f2b-ctl ping` within {timeout:?} (last: {out}); its log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ns_name(&self) -> &str {
        &self.ns_name
    }

    /// Everything the agent logged so far (all runs).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("<no log: {e}>"))
    }

    /// SIGKILL (by PID) and reap: a crash, no cleanup on the agent's side.
    pub fn sigkill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("SIGKILL f2b-agent")?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM and wait for a clean exit (SIGKILL and an error after `timeout`).
    pub fn sigterm_and_wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let Some(child) = self.child.as_ref() else {
            bail!("f2b-agent is not running")
        };
        let pid = i32::try_from(child.id())?;
        // SAFETY: plain kill(2) on our own child's PID, which is not yet reaped.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(std::io::Error::last_os_error()).context("SIGTERM f2b-agent");
        }
        self.wait_exit(timeout)
    }

    /// Waits for the agent to exit on its own (e.g. after `f2b-ctl stop`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("f2b-agent is not running")
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "f2b-agent did not exit within {timeout:?}; killed. Log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the agent process is still alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the agent again with the same config, socket, db and pin dir (after a
    /// SIGKILL/SIGTERM; a running agent is stopped with SIGTERM first).
    pub fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            self.sigterm_and_wait(Duration::from_secs(30))?;
        }
        self.child = None;
        self.spawn()?;
        self.wait_ready()
    }

    fn ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bins.ctl);
        // `--socket` right after the subcommand works whether it is a global or a per-subcommand flag.
        if let Some((sub, rest)) = args.split_first() {
            cmd.arg(sub).arg("--socket").arg(&self.socket).args(rest);
        }
        cmd
    }

    /// `f2b-ctl <args[0]> --socket <sock> <args[1..]>`.
    pub fn ctl(&self, args: &[&str]) -> Result<CtlOutput> {
        run_bounded(self.ctl_command(args), CTL_TIMEOUT)
    }

    /// Like [`Agent::ctl`], run as `uid`/`gid` with no supplementary groups. The binary is
    /// run from a copy in the agent's (world-readable) temp dir: the checkout it was built in
    /// may sit under a directory that user cannot enter (e.g. /root).
    pub fn ctl_as(&self, uid: u32, gid: u32, args: &[&str]) -> Result<CtlOutput> {
        let copy = self.dir.path().join("f2b-ctl");
        if !copy.exists() {
            std::fs::copy(&self.bins.ctl, &copy).with_context(|| {
                format!("copying {} for a non-root run", self.bins.ctl.display())
            })?;
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))?;
        }
        let mut cmd = Command::new(&copy);
        if let Some((sub, rest)) = args.split_first() {
            cmd.arg(sub).arg("--socket").arg(&self.socket).args(rest);
        }
        // Not below a directory the user cannot read either.
        cmd.current_dir("/");
        // SAFETY: setgroups/setgid/setuid are async-signal-safe; nothing is allocated.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        run_bounded(cmd, CTL_TIMEOUT)
    }

    /// `f2b-ctl ... --json`, which must exit 0; returns the parsed response data.
    pub fn ctl_json(&self, args: &[&str]) -> Result<Value> {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ctl(&all)?;
        if out.code != 0 {
            bail!("`f2b-ctl {}` failed: {out}", all.join(" "));
        }
        let v = out.json()?;
        // Accept a full response envelope too.
        Ok(match v.get("data") {
            Some(d) if v.get("ok").is_some() => d.clone(),
            _ => v,
        })
    }

    /// Kernel counters from `f2b-ctl stats --json`.
    pub fn counters(&self) -> Result<Counters> {
        let v = self.ctl_json(&["stats"])?;
        let obj = v
            .get("counters")
            .and_then(Value::as_object)
            .ok_or_else(|| anyhow!("stats --json has no counters object: {v}"))?;
        let mut m = BTreeMap::new();
        for (k, n) in obj {
            m.insert(
                k.clone(),
                n.as_u64()
                    .ok_or_else(|| anyhow!("counter {k} is not a u64: {n}"))?,
            );
        }
        Ok(Counters(m))
    }

    /// Entries in the pinned map `name` (keys of `key_size` bytes), counted from the kernel's
    /// side (`BPF_OBJ_GET`, then `BPF_MAP_GET_NEXT_KEY` to the end), not from the agent's.
    pub fn map_entries(&self, name: &str, key_size: usize) -> Result<u64> {
        #[repr(C)]
        struct ObjGet {
            pathname: u64,
            bpf_fd: u32,
            file_flags: u32,
        }
        #[repr(C)]
        struct NextKey {
            map_fd: u32,
            _pad: u32,
            key: u64,
            next_key: u64,
        }
        const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
        const BPF_OBJ_GET: libc::c_long = 7;
        let path = CString::new(self.pin_dir.join(name).as_os_str().as_bytes())?;
        let get = ObjGet {
            pathname: path.as_ptr() as u64,
            bpf_fd: 0,
            file_flags: 0,
        };
        /// bpf(2) with `attr`, a complete attribute for `cmd` whose pointers are valid for
        /// the call.
        fn bpf<A>(cmd: libc::c_long, attr: &A) -> libc::c_long {
            // SAFETY: the caller's attribute is complete for `cmd`; what it points to is
            // borrowed for the call.
            unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const A, size_of::<A>()) }
        }
        let fd = bpf(BPF_OBJ_GET, &get);
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("BPF_OBJ_GET {}", self.pin_dir.join(name).display()));
        }
        // SAFETY: the kernel just returned this fd to us; the File closes it.
        let map = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        let (mut key, mut next) = (vec![0u8; key_size], vec![0u8; key_size]);
        let mut n = 0u64;
        let mut first = true;
        loop {
            let attr = NextKey {
                map_fd: map.as_raw_fd() as u32,
                _pad: 0,
                // A null key asks for the first one.
                key: if first { 0 } else { key.as_ptr() as u64 },
                next_key: next.as_mut_ptr() as u64,
            };
            // `key` and `next` hold key_size bytes, the map's key size.
            if bpf(BPF_MAP_GET_NEXT_KEY, &attr) != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENOENT) {
                    return Ok(n);
                }
                return Err(e).context(format!("BPF_MAP_GET_NEXT_KEY on {name}"));
            }
            n += 1;
            first = false;
            std::mem::swap(&mut key, &mut next);
        }
    }

    /// The `ip` fields of `f2b-ctl list --json`, sorted.
    pub fn banned(&self) -> Result<Vec<String>> {
        let v = self.ctl_json(&["list"])?;
        let bans = v
            .get("bans")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("list --json has no bans array: {v}"))?;
        let mut ips = bans
            .iter()
            .map(|b| {
                b.get("ip")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("ban without ip: {b}"))
            })
            .collect::<Result<Vec<_>>>()?;
        ips.sort();
        Ok(ips)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Also when the agent mounted it: the mount must not outlive the temp dir.
        if (self.mounted || is_bpffs(&self.pin_dir))
            && let Ok(target) = CString::new(self.pin_dir.as_os_str().as_bytes())
            // SAFETY: valid NUL-terminated path.
            && unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0
        {
            crate::say(&format!(
                "warning: cleanup: umount {}: {}",
                self.pin_dir.display(),
                std::io::Error::last_os_error()
            ));
        }
        if std::thread::panicking() {
            crate::say(&format!(
                "f2b-agent log ({}):\n{}",
                self.ns_name,
                self.log_text()
            ));
        }
    }
}

/// True when `path` is on a bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Kernel counters by name (`seen`, `passed`, `dropped_exact_v4`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub BTreeMap<String, u64>);

impl Counters {
    /// A counter's value; a missing name is a test failure (the contract names them all).
    pub fn get(&self, name: &str) -> u64 {
        match self.0.get(name) {
            Some(v) => *v,
            None => panic!(
                "no counter {name:?} in f2b-ctl stats (have: {:?})",
                self.0.keys()
            ),
        }
    }

    /// `self[name] - before[name]`.
    pub fn delta(&self, before: &Counters, name: &str) -> u64 {
        self.get(name).saturating_sub(before.get(name))
    }
}
