//! Filter patterns as written (`<HOST>`/`<F-...>` tags, `%{name}` variables) to plain regex syntax,
//! and the literal every match of a pattern must contain (for the prefilter).

use std::collections::BTreeMap;

use regex_syntax::hir::{Hir, HirKind};

/// IPv4 dotted quad; the value is checked again with `IpAddr::from_str` after a match.
const IPV4: &str = r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}";
/// IPv6 in any compressed form, including IPv4-mapped/-compatible tails. Loose on purpose
/// (the parse after the match is the real check), strict enough not to eat a `:port`
/// after an IPv4 address because IPv4 is tried first.
const IPV6: &str = r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?";

/// Variables every filter can use; a filter's own `vars` override them.
///
/// `syslog_prefix` is everything a syslog or journal line carries between its (already cut)
/// timestamp and the program's message, each part optional:
///
/// | part | example |
/// |---|---|
/// | a cut bracketed stamp | `[]` |
/// | facility and level | `<auth.info>` |
/// | the sending host | `web1` |
/// | a kernel uptime stamp | `kernel: [ 1234.5678]` |
/// | a vserver context | `@vserver_web` |
/// | the program tag (`syslog_tag`) | `sshd[2301]:`, `postfix/smtpd[5101]:`, `sshd(pam_unix)[9]:`, `[9]: sshd:` |
/// | a Solaris message id | `[ID 800047 auth.info]` |
///
/// `syslog_tag` names the program with `daemon`, which a filter sets (default: any word).
pub fn builtin_vars() -> BTreeMap<String, String> {
    let v: &[(&str, &str)] = &[
        ("daemon", r"\S*"),
        ("syslog_pid", r"\[\d+\]"),
        (
            "syslog_tag",
            r"(?:(?:%{syslog_pid})?:\s+)?[\[(]?%{daemon}(?:\(\S+\))?[\])]?:?(?:%{syslog_pid})?:?",
        ),
        (
            "syslog_prefix",
            r"(?:\[\])?\s*(?:<[^.]+\.[^.]+>\s+)?(?:\S+\s+)?(?:kernel:\s?\[ *\d+\.\d+\]:?\s+)?(?:@vserver_\S+\s+)?(?:%{syslog_tag}\s+)?(?:\[ID \d+ \S+\]\s+)?",
        ),
    ];
    v.iter()
        .map(|(k, s)| ((*k).to_string(), (*s).to_string()))
        .collect()
}

/// Whether `s` is a variable name: a letter or `_`, then letters, digits, `_` or `-`.
fn is_var_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Replaces `%{name}` with the variable's value, recursively.
///
/// `%{` can never start anything else in a pattern: in regex syntax `{` after `%` is a
/// counted repetition, which starts with a digit (`%{2}`, `%{1,3}`); those are left alone.
pub fn expand_vars(p: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    fn go(p: &str, vars: &BTreeMap<String, String>, depth: usize) -> Result<String, String> {
        if depth > 16 {
            return Err("variables nest too deep (a %{name} that refers to itself?)".into());
        }
        let mut out = String::with_capacity(p.len());
        let mut rest = p;
        while let Some(i) = rest.find("%{") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            if after.starts_with(|c: char| c.is_ascii_digit()) {
                // A counted repetition of `%`, not a variable.
                out.push_str("%{");
                rest = after;
                continue;
            }
            let Some(j) = after.find('}') else {
                return Err(format!("unterminated variable reference in {p:?}"));
            };
            let name = &after[..j];
            if !is_var_name(name) {
                return Err(format!("bad variable reference %{{{name}}}"));
            }
            let val = vars
                .get(name)
                .ok_or_else(|| format!("unknown variable %{{{name}}}"))?;
            out.push_str(&go(val, vars, depth + 1)?);
            rest = &after[j + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
    go(p, vars, 0)
}

/// What a named group of a translated pattern stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Host,
    User,
    AltUser,
    Id,
    Content,
    NoFail,
}

/// A pattern in regex syntax plus the roles of its `f2b_*` groups, by group name.
#[derive(Debug, Clone)]
pub struct Translated {
    pub regex: String,
    pub groups: Vec<(String, Role)>,
}

/// Translates fail2ban tags to named groups. `<HOST>`/`<ADDR>`/`<IP4>`/`<IP6>` become
/// an address group (bracketed `[v6]` accepted, brackets outside the capture);
/// `<F-USER>`, `<F-ALT_USER…>`, `<F-ID>`, `<F-CONTENT>`, `<F-NOFAIL>` capture;
/// any other `<F-NAME>` (fail2ban's multi-line markers) is a plain group.
pub fn translate(p: &str) -> Result<Translated, String> {
    let mut out = String::with_capacity(p.len() + 64);
    let mut groups = Vec::new();
    let mut rest = p;
    let mut n = 0usize;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tail.find('>') else {
            out.push_str(tail);
            rest = "";
            break;
        };
        let tag = &tail[1..end];
        let mut group = |role: Role, prefix: &str, out: &mut String| {
            n += 1;
            let name = format!("f2b_{prefix}{n}");
            out.push_str("(?P<");
            out.push_str(&name);
            out.push('>');
            groups.push((name, role));
        };
        match tag {
            "HOST" | "ADDR" | "IP4" | "IP6" => {
                let body = match tag {
                    "IP4" => IPV4.to_string(),
                    "IP6" => IPV6.to_string(),
                    _ => format!("{IPV4}|{IPV6}"),
                };
                out.push_str(r"\[?");
                group(Role::Host, "host", &mut out);
                out.push_str(&body);
                out.push_str(r")\]?");
            }
            "F-USER" => group(Role::User, "user", &mut out),
            "F-ID" => group(Role::Id, "id", &mut out),
            "F-CONTENT" => group(Role::Content, "content", &mut out),
            "F-NOFAIL" => group(Role::NoFail, "nofail", &mut out),
            t if t.starts_with("F-ALT_USER") => group(Role::AltUser, "altuser", &mut out),
            t if t.starts_with("F-") && is_tag_name(&t[2..]) => out.push_str("(?:"),
            t if t.starts_with("/F-") && is_tag_name(&t[3..]) => out.push(')'),
            "SKIPLINES" => return Err("<SKIPLINES> (multi-line matching) is not supported".into()),
            t if !t.is_empty() && t.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
                return Err(format!("unknown tag <{t}>"));
            }
            _ => {
                // Not a tag: a literal `<` of the pattern (e.g. `user=<[^>]*>`).
                out.push('<');
                rest = &tail[1..];
                continue;
            }
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(Translated { regex: out, groups })
}

fn is_tag_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The longest literal that every match of `regex` contains, if any of at least 3 bytes.
///
/// Walks the HIR: concatenations of literals make runs; captures and repetitions with a
/// minimum of one are entered; alternations and optional parts contribute nothing (their
/// literals are not required). A run is also split at `[]`, `()` and `[] ` because that
/// is where a cut date used to be (`[22/Nov/2026:...]` -> `[]`): a literal spanning the
/// cut would be in the matched text but not in the raw line the prefilter sees.
pub fn required_literal(regex: &str) -> Option<String> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(regex)
        .ok()?;
    let mut runs: Vec<Vec<u8>> = Vec::new();
    walk(&hir, &mut runs);
    runs.into_iter()
        .flat_map(|r| split_at_cut(&r))
        .filter_map(|r| String::from_utf8(r).ok())
        .filter(|s| s.trim().len() >= 3)
        .max_by_key(|s| s.len())
}

fn split_at_cut(r: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < r.len() {
        if (r[i] == b'[' && r[i + 1] == b']') || (r[i] == b'(' && r[i + 1] == b')') {
            parts.push(r[start..i].to_vec());
            i += 2;
            start = i;
        } else {
            i += 1;
        }
    }
    parts.push(r[start..].to_vec());
    parts
}

fn walk(h: &Hir, runs: &mut Vec<Vec<u8>>) {
    match h.kind() {
        HirKind::Literal(l) => runs.push(l.0.to_vec()),
        HirKind::Capture(c) => walk(&c.sub, runs),
        HirKind::Repetition(r) if r.min >= 1 => walk(&r.sub, runs),
        HirKind::Concat(parts) => {
            let mut cur: Vec<u8> = Vec::new();
            for p in parts {
                if let HirKind::Literal(l) = p.kind() {
                    cur.extend_from_slice(&l.0);
                } else {
                    if !cur.is_empty() {
                        runs.push(std::mem::take(&mut cur));
                    }
                    walk(p, runs);
                }
            }
            if !cur.is_empty() {
                runs.push(cur);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tags_become_named_groups() {
        let t = translate(r"^Failed for <F-USER>\S+</F-USER> from <HOST> port").unwrap();
        assert!(t.regex.contains("(?P<f2b_user1>"), "{}", t.regex);
        assert!(t.regex.contains("(?P<f2b_host2>"), "{}", t.regex);
        assert_eq!(t.groups.len(), 2);
        regex::Regex::new(&t.regex).unwrap();
        // Markers without meaning here are plain groups; unknown UPPERCASE tags are errors.
        let t = translate("<F-MLFID>x</F-MLFID><F-ALT_USER1>y</F-ALT_USER1>").unwrap();
        assert!(
            t.regex.starts_with("(?:x)(?P<f2b_altuser1>y)"),
            "{}",
            t.regex
        );
        assert!(translate("<HOSTNAME>").is_err());
        assert!(translate("<SKIPLINES>").is_err());
        // Angle brackets that are not tags stay.
        assert_eq!(translate("user=<[^>]*>").unwrap().regex, "user=<[^>]*>");
    }

    #[test]
    fn vars_expand_recursively() {
        let mut v = builtin_vars();
        v.insert("daemon".into(), "sshd".into());
        let p = expand_vars("^%{syslog_prefix}x", &v).unwrap();
        assert!(p.contains("sshd") && !p.contains("%{"), "{p}");
        assert!(expand_vars("%{nope}", &v).unwrap_err().contains("nope"));
        assert!(expand_vars("%{no pe}", &v).is_err());
        assert!(expand_vars("%{x", &v).is_err());
        // Counted repetitions of `%` are regex syntax, not references.
        assert_eq!(expand_vars("a%{2}b%{1,3}", &v).unwrap(), "a%{2}b%{1,3}");
        v.insert("a".into(), "%{a}".into());
        assert!(expand_vars("%{a}", &v).is_err());
    }

    #[test]
    fn literals() {
        let lit = |p: &str| required_literal(&translate(p).unwrap().regex);
        assert_eq!(
            lit(r"^Failed \S+ for <F-USER>\S+</F-USER> from <HOST>").as_deref(),
            Some("Failed ")
        );
        assert_eq!(lit(r"^(?:foo|bar) x").as_deref(), None);
        assert_eq!(lit(r"^(?:Invalid user)? abc").as_deref(), Some(" abc"));
        assert_eq!(lit(r"^Invalid user \S+").as_deref(), Some("Invalid user "));
        // A run spanning a cut date is split there.
        assert_eq!(
            lit(r#"^<HOST> - \S+ \[\] "GETX"#).as_deref(),
            Some(r#" "GETX"#)
        );
        // Case-insensitive text is not a literal.
        assert_eq!(lit(r"(?i)^authentication failed").as_deref(), None);
    }
}
