//! Support for f2b's whole-system tests: network namespaces, a running agent, f2b-ctl and
//! real packets.
//!
//! The integration tests in `tests/` (and `cargo xtask demo`) build the same small world: an
//! "attacker" namespace and an "edge" namespace joined by a veth pair, the agent attached to the
//! edge end with XDP, its socket, redb file and bpffs pin directory in a temp directory. Every
//! piece is an RAII guard ([`netns::Topology`], [`agent::Agent`]) that removes what it created
//! on drop, also when a test panics. Traffic ([`traffic`]) is bounded in count and time and only
//! ever flows between those namespaces, from and to 198.18.0.0/15 and fd00:f2b::/64.
//!
//! The agent is started in the edge namespace with `setns(CLONE_NEWNET)` in `pre_exec` rather
//! than `ip netns exec`, which would also give it a fresh mount namespace (and with it a private
//! view of the bpffs pin directory).

pub mod agent;
pub mod netns;
pub mod traffic;

use std::io::Write;
use std::sync::{Mutex, MutexGuard, OnceLock};

pub use agent::{Agent, Bins, CtlOutput};
pub use netns::{NetNs, Topology};

/// Serialises the namespace tests of one test binary: each starts an agent and moves packets,
/// which is heavy on a 2-core machine, and counters are easier to reason about one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why namespace tests cannot run here, or None when they can (root and `ip netns` work).
/// Probed once per process.
pub fn skip_reason() -> Option<String> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON.get_or_init(probe).clone()
}

fn probe() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some(
            "not root (namespace tests need CAP_NET_ADMIN, CAP_BPF and CAP_SYS_ADMIN)".into(),
        );
    }
    let name = netns::unique_name("f2b-probe-");
    match std::process::Command::new("ip")
        .args(["netns", "add", &name])
        .output()
    {
        Ok(o) if o.status.success() => {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &name])
                .output();
            None
        }
        Ok(o) => Some(format!(
            "no network namespace support: `ip netns add` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!(
            "cannot run `ip` (iproute2 missing? run `cargo xtask setup`): {e}"
        )),
    }
}

/// Prints a line on the real stderr, past the test harness' output capture, so that a skipped
/// test says why even in a normal `cargo test` run.
pub fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Returns from the calling test (with `Ok(())`) when namespace tests cannot run here, after
/// printing why.
#[macro_export]
macro_rules! skip_unless_capable {
    ($test:expr) => {
        if let Some(reason) = $crate::skip_reason() {
            $crate::say(&format!("SKIPPED {}: {}", $test, reason));
            return Ok(());
        }
    };
}

/// A test config for the agent: the edge interface, paths under the agent's temp dir
/// (`{dir}`), small maps, the default ignoreip plus `extra_ignoreip`, and a port-scoped jail
/// `dns` (`ports: [5353]`) besides the implicit `manual` jail.
#[derive(Clone, Debug)]
pub struct TestConfig {
    pub extra_ignoreip: Vec<String>,
    pub socket_mode: String,
}

impl Default for TestConfig {
    fn default() -> Self {
        TestConfig {
            extra_ignoreip: Vec::new(),
            socket_mode: "0600".into(),
        }
    }
}

impl TestConfig {
    pub fn render(&self) -> String {
        let mut ignore = vec!["127.0.0.0/8".to_string(), "\"::1\"".to_string()];
        ignore.extend(self.extra_ignoreip.iter().map(|s| format!("\"{s}\"")));
        format!(
            "# written by the f2b integration tests\n\
             interfaces: [{iface}]\n\
             xdp_mode: auto\n\
             database: {{dir}}/f2b.redb\n\
             socket: {{dir}}/f2b.sock\n\
             socket_mode: \"{mode}\"\n\
             control_group: null\n\
             pin_dir: {{dir}}/bpf\n\
             maps:\n  bans: 8192\n  prefixes: 1024\n  allow: 256\n\
             guard:\n  min_prefix_v4: 16\n  min_prefix_v6: 32\n\
             defaults:\n  bantime: 1h\n  findtime: 10m\n  maxretry: 5\n  ignoreip: [{ignore}]\n  ports: all\n\
             jails:\n  dns:\n    enabled: true\n    ports: [5353]\n",
            iface = netns::EDGE_IF,
            mode = self.socket_mode,
            ignore = ignore.join(", "),
        )
    }
}

/// One test's world: the namespace pair and an agent on the edge, serialised with the other
/// namespace tests of the binary. Dropped in field order: agent, namespaces, then the lock.
pub struct Fixture {
    pub agent: Agent,
    pub net: Topology,
    passed: bool,
    _serial: MutexGuard<'static, ()>,
}

impl Fixture {
    /// Ends a test successfully. A fixture dropped without this (an early `?` return or a
    /// panic) prints the agent's log, so a failure comes with the agent's side of the story.
    pub fn pass(mut self) -> anyhow::Result<()> {
        self.passed = true;
        Ok(())
    }

    /// Builds the namespaces and starts a debug-build agent with `config`.
    pub fn start(tag: &str, config: &TestConfig) -> anyhow::Result<Fixture> {
        Self::start_with(tag, config, |_| {})
    }

    /// Like [`Fixture::start`], with a chance to adjust the agent's options.
    pub fn start_with(
        tag: &str,
        config: &TestConfig,
        adjust: impl FnOnce(&mut agent::AgentOptions),
    ) -> anyhow::Result<Fixture> {
        let serial = serial();
        let bins = Bins::locate()?;
        let net = Topology::create(tag)?;
        let mut opts = agent::AgentOptions::new(&[netns::EDGE_IF]);
        opts.config = Some(config.render());
        adjust(&mut opts);
        let agent = Agent::start(&bins, &net.edge, opts)?;
        Ok(Fixture {
            agent,
            net,
            passed: false,
            _serial: serial,
        })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if !self.passed && !std::thread::panicking() {
            say(&format!(
                "test failed; f2b-agent log ({}):\n{}",
                self.agent.ns_name(),
                self.agent.log_text()
            ));
        }
    }
}
