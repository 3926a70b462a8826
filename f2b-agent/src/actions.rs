//! Command actions: programs a jail runs when it starts, stops, bans and unbans, with tags
//! (`<ip>`, `<jail>`, `<bantime>`, `<failures>`, `<user>`) filled in from the ban.
//!
//! Text from a log (a user name, say) can never become a command: by default the command is
//! split into arguments first and tags are substituted inside single arguments, then run
//! directly (no shell). With `shell: true` the template runs under `sh -c`, and every
//! substituted value is single-quoted, so it is one word whatever it contains. Each run has a
//! timeout; a command still running then is killed (by its PID; we started it).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Values for the tags of one event.
#[derive(Debug, Clone, Default)]
pub struct Tags {
    pub ip: String,
    pub jail: String,
    pub bantime: String,
    pub failures: String,
    pub user: String,
}

impl Tags {
    fn get(&self, tag: &str) -> Option<&str> {
        Some(match tag {
            "ip" => &self.ip,
            "jail" => &self.jail,
            "bantime" => &self.bantime,
            "failures" => &self.failures,
            "user" => &self.user,
            _ => return None,
        })
    }
}

/// `command` action as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandAction {
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub stop: Option<String>,
    #[serde(default)]
    pub ban: Option<String>,
    #[serde(default)]
    pub unban: Option<String>,
    /// Seconds each run may take (default 10).
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Run under `sh -c` with shell-quoted values instead of directly.
    #[serde(default)]
    pub shell: bool,
}

fn default_timeout() -> u64 {
    10
}

/// Quotes a value as one POSIX shell word.
pub fn shell_quote(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('\'');
    for c in v.chars() {
        if c == '\'' {
            s.push_str("'\\''");
        } else {
            s.push(c);
        }
    }
    s.push('\'');
    s
}

/// Replaces `<tag>`s in `text`; `quote` is applied to each substituted value.
fn substitute(text: &str, tags: &Tags, quote: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after
            .find('>')
            .and_then(|j| tags.get(&after[..j]).map(|v| (j, v)))
        {
            Some((j, v)) => {
                if quote {
                    out.push_str(&shell_quote(v));
                } else {
                    out.push_str(v);
                }
                rest = &after[j + 1..];
            }
            None => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Unknown `<tags>` in a template (a config error: probably a typo).
pub fn unknown_tags(template: &str) -> Vec<String> {
    let probe = Tags::default();
    let mut bad = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('<') {
        let after = &rest[i + 1..];
        if let Some(j) = after.find('>') {
            let name = &after[..j];
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && probe.get(name).is_none()
            {
                bad.push(name.to_string());
            }
        }
        rest = after;
    }
    bad
}

/// The argv a template becomes for these tags.
pub fn argv(template: &str, tags: &Tags, shell: bool) -> Vec<String> {
    if shell {
        vec![
            "/bin/sh".into(),
            "-c".into(),
            substitute(template, tags, true),
        ]
    } else {
        template
            .split_whitespace()
            .map(|w| substitute(w, tags, false))
            .collect()
    }
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Exited(i32),
    Signalled,
    TimedOut,
    SpawnFailed(String),
}

/// Runs a template to completion or timeout; stderr is captured for the log.
pub fn run(template: &str, tags: &Tags, shell: bool, timeout: Duration) -> (RunOutcome, String) {
    let args = argv(template, tags, shell);
    let Some((prog, rest)) = args.split_first() else {
        return (
            RunOutcome::SpawnFailed("empty command".into()),
            String::new(),
        );
    };
    let mut child = match Command::new(prog)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return (
                RunOutcome::SpawnFailed(format!("{prog}: {e}")),
                String::new(),
            );
        }
    };
    let deadline = Instant::now() + timeout;
    let outcome = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st.code().map_or(RunOutcome::Signalled, RunOutcome::Exited),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break RunOutcome::TimedOut;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => break RunOutcome::SpawnFailed(e.to_string()),
        }
    };
    let mut err = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.by_ref().take(4096).read_to_string(&mut err);
    }
    (outcome, err)
}

impl CommandAction {
    /// Every template of the action, with its name.
    pub fn templates(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("start", &self.start),
            ("stop", &self.stop),
            ("ban", &self.ban),
            ("unban", &self.unban),
        ]
        .into_iter()
        .filter_map(|(n, t)| t.as_deref().map(|t| (n, t)))
    }

    /// Runs the template for `event` (if configured) and logs a failure.
    pub fn fire(&self, event: &str, tags: &Tags) {
        let Some(t) = self.templates().find(|(n, _)| *n == event).map(|(_, t)| t) else {
            return;
        };
        let (outcome, stderr) = run(t, tags, self.shell, Duration::from_secs(self.timeout));
        if outcome != RunOutcome::Exited(0) {
            log::warn!(
                "[{}] {event} action for {} ended {outcome:?}{}{}",
                tags.jail,
                tags.ip,
                if stderr.is_empty() { "" } else { ": " },
                stderr.trim()
            );
        }
    }
}

/// One action run to do: the event (`start`, `stop`, `ban`, `unban`), the jail's command
/// actions at the time, and the tag values.
#[derive(Debug, Clone)]
pub struct ActionEvent {
    pub event: &'static str,
    pub actions: Vec<CommandAction>,
    pub tags: Tags,
}

/// Starts the worker that runs command actions off the ban path, in order. Returns the
/// sender; the worker ends when every sender is dropped.
pub fn spawn_worker() -> std::io::Result<(
    std::sync::mpsc::Sender<ActionEvent>,
    std::thread::JoinHandle<()>,
)> {
    let (tx, rx) = std::sync::mpsc::channel::<ActionEvent>();
    let h = std::thread::Builder::new()
        .name("f2b-actions".into())
        .spawn(move || {
            for ev in rx {
                for a in &ev.actions {
                    a.fire(ev.event, &ev.tags);
                }
            }
        })?;
    Ok((tx, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &[&str] = &[
        "$(touch PWN)",
        "`touch PWN`",
        "x; touch PWN",
        "a'b\"c",
        "x && touch PWN",
        "|touch PWN",
    ];

    fn tags(user: &str) -> Tags {
        Tags {
            ip: "198.18.0.7".into(),
            jail: "sshd".into(),
            bantime: "600".into(),
            failures: "3".into(),
            user: user.into(),
        }
    }

    #[test]
    fn direct_mode_keeps_each_value_one_argument() {
        let a = argv(
            "/bin/echo ban <ip> user=<user> <nosuch>",
            &tags("a b; c"),
            false,
        );
        assert_eq!(
            a,
            vec!["/bin/echo", "ban", "198.18.0.7", "user=a b; c", "<nosuch>"]
        );
    }

    #[test]
    fn shell_quoting_roundtrips_through_sh() {
        for v in HOSTILE {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(v)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), *v);
        }
    }

    #[test]
    fn hostile_user_names_run_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        for shell in [false, true] {
            for v in HOSTILE {
                let v = v.replace("PWN", &dir.path().join("pwned").display().to_string());
                let t = if shell {
                    format!("printf '%s\\n' <user> >> {}", out.display())
                } else {
                    "/bin/true <user> <ip>".to_string()
                };
                let (o, _) = run(&t, &tags(&v), shell, Duration::from_secs(5));
                assert_eq!(o, RunOutcome::Exited(0), "{v}");
                assert!(
                    !dir.path().join("pwned").exists(),
                    "{v:?} (shell={shell}) ran a command"
                );
            }
        }
        // The shell variant received each hostile value verbatim, as one word.
        let got = std::fs::read_to_string(&out).unwrap();
        assert_eq!(got.lines().count(), HOSTILE.len());
    }

    #[test]
    fn timeout_kills_the_command() {
        let t0 = Instant::now();
        let (o, _) = run("/bin/sleep 5", &tags(""), false, Duration::from_millis(200));
        assert_eq!(o, RunOutcome::TimedOut);
        assert!(t0.elapsed() < Duration::from_secs(4));
        let (o, _) = run("/nonexistent/cmd", &tags(""), false, Duration::from_secs(1));
        assert!(matches!(o, RunOutcome::SpawnFailed(_)));
        assert_eq!(
            run("/bin/false", &tags(""), false, Duration::from_secs(1)).0,
            RunOutcome::Exited(1)
        );
    }

    #[test]
    fn unknown_tags_are_found() {
        assert_eq!(
            unknown_tags("/x <ip> <ipp> <jail> <F-USER> a<b"),
            vec!["ipp", "F-USER"]
        );
    }
}
