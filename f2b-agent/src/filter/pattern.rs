//! Filter patterns as written (`<HOST>`/`<F-...>` tags, `%{name}` variables) to plain regex syntax,
//! and the literal every match of a pattern must contain (for the prefilter).

use std::collections::BTreeMap;

use regex_syntax::hir::{Hir, HirKind};

/// IPv4 dotted quad; the value is checked again with `IpAddr::from_str` after a match.
pub(crate) const IPV4: &str = r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}";
/// IPv6 in any compressed form, including IPv4-mapped/-compatible tails. Loose on purpose
/// (the parse after the match is the real check), strict enough not to eat a `:port`
/// after an IPv4 address because IPv4 is tried first.
pub(crate) const IPV6: &str =
    r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?";

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

/// Most literals one pattern may contribute to the prefilter (Aho-Corasick's packed SIMD
/// searcher handles up to 64 in all).
const MAX_SET: usize = 8;

/// A set of literals one of which every match of `regex` contains, chosen to be selective:
/// e.g. `{"Invalid user ", "invalid user ", "Illegal user ", "illegal user "}` for
/// `^(?:[iI]nvalid|[iI]llegal) user ...`, where [`required_literal`] can only offer
/// `" from "`. Windows of the pattern's top-level sequence are expanded into their finite
/// prefix sets (regex-syntax's extractor); the window whose shortest literal is longest
/// wins, and [`required_literal`]'s single literal competes on the same terms. None when
/// neither finds literals of at least 3 non-space bytes.
pub fn required_literals(regex: &str) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(regex)
        .ok()?;
    let mut top = &hir;
    while let HirKind::Capture(c) = top.kind() {
        top = &c.sub;
    }
    let parts: Vec<Hir> = match top.kind() {
        HirKind::Concat(p) => p.clone(),
        _ => vec![top.clone()],
    };
    // (shortest literal length, fewer literals is better, the set)
    let mut best: Option<(usize, usize, Vec<String>)> = None;
    let mut offer = |set: Vec<String>| {
        let Some(min) = set.iter().map(String::len).min() else {
            return;
        };
        let better = match &best {
            None => true,
            Some((m, n, _)) => min > *m || (min == *m && set.len() < *n),
        };
        if better {
            best = Some((min, set.len(), set));
        }
    };
    let mut ex = Extractor::new();
    ex.kind(ExtractKind::Prefix).limit_total(64);
    for i in 0..parts.len() {
        for j in i + 1..=parts.len().min(i + 8) {
            let seq = ex.extract(&Hir::concat(parts[i..j].to_vec()));
            let Some(lits) = seq.literals() else { continue };
            if lits.is_empty() || lits.len() > MAX_SET {
                continue;
            }
            let set: Option<Vec<String>> = lits
                .iter()
                .map(|l| {
                    split_at_cut(l.as_bytes())
                        .into_iter()
                        .filter_map(|r| String::from_utf8(r).ok())
                        .filter(|s| s.trim().len() >= 3 && !s.contains('\n'))
                        .max_by_key(|s| s.len())
                })
                .collect();
            if let Some(mut set) = set {
                set.sort();
                set.dedup();
                offer(set);
            }
        }
    }
    if let Some(l) = required_literal(regex)
        && !l.contains('\n')
    {
        offer(vec![l]);
    }
    best.map(|(_, _, s)| s)
}

/// The same regex with every zero-width assertion (`^`, `$`, `\b`, ...) removed: it matches
/// a superset of what the original matches anywhere in any context, so a text it does not
/// match cannot contain a match of the original (of a substring such as prefregex's
/// content either). Used as the cheap first check on candidate lines.
///
/// `ascii`: parse (and so print) it for engines with Unicode off (see `ascii_syntax` in
/// the filter module), whose syntax has no Unicode classes.
pub fn without_assertions(regex: &str, ascii: bool) -> Option<String> {
    let hir = parse(regex, ascii)?;
    Some(strip_looks(&hir).to_string())
}

/// For a prefregex of the form `^X(?P<content>.+)$` whose `X` captures nothing: the regex
/// `^(?:X)`. Then the content is everything after the end of `^X`'s (leftmost-first) match,
/// whenever that end is before the end of the text: `.+$` accepts any non-empty rest of a
/// line, so the backtracking order that picks X's match is the same in both. One DFA pass
/// instead of a capturing search. `content_group` is the content group's index; `ascii` as
/// for [`without_assertions`].
pub fn prefix_before_content(regex: &str, content_group: usize, ascii: bool) -> Option<String> {
    use regex_syntax::hir::{Dot, Look};
    let hir = parse(regex, ascii)?;
    let HirKind::Concat(parts) = hir.kind() else {
        return None;
    };
    let n = parts.len();
    if n < 3 {
        return None;
    }
    if !matches!(parts[0].kind(), HirKind::Look(Look::Start))
        || !matches!(parts[n - 1].kind(), HirKind::Look(Look::End))
    {
        return None;
    }
    let HirKind::Capture(c) = parts[n - 2].kind() else {
        return None;
    };
    let dot_plus = |d| {
        Hir::repetition(regex_syntax::hir::Repetition {
            min: 1,
            max: None,
            greedy: true,
            sub: Box::new(Hir::dot(d)),
        })
    };
    if c.index as usize != content_group
        || (*c.sub != dot_plus(Dot::AnyCharExceptLF) && *c.sub != dot_plus(Dot::AnyByteExceptLF))
    {
        return None;
    }
    let x = &parts[1..n - 2];
    if x.iter().any(|h| h.properties().explicit_captures_len() > 0) {
        return None;
    }
    let mut v = vec![Hir::look(Look::Start)];
    v.extend(x.iter().cloned());
    Some(Hir::concat(v).to_string())
}

/// Literals one of which every match of `regex` starts with, when there are few (at most
/// 16) and none is empty: a check of a text's first bytes that rules the pattern out for an
/// anchored search at its start.
pub fn prefix_literals(regex: &str) -> Option<Vec<Vec<u8>>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(regex)
        .ok()?;
    let mut ex = Extractor::new();
    ex.kind(ExtractKind::Prefix).limit_total(16);
    let seq = ex.extract(&hir);
    let lits = seq.literals()?;
    if lits.is_empty() || lits.len() > 16 || lits.iter().any(|l| l.as_bytes().is_empty()) {
        return None;
    }
    Some(lits.iter().map(|l| l.as_bytes().to_vec()).collect())
}

/// Literal runs (of at least 3 bytes) that every match of `regex` contains, in this order
/// and without overlap: finding each after the end of the one before is a necessary
/// condition for a match.
pub fn ordered_runs(regex: &str) -> Vec<Vec<u8>> {
    let Ok(hir) = regex_syntax::ParserBuilder::new().build().parse(regex) else {
        return Vec::new();
    };
    let mut runs = Vec::new();
    walk(&hir, &mut runs);
    runs.retain(|r| r.len() >= 3);
    longest_in_order(runs)
}

/// Most literal runs checked per pattern: each is a substring search, and the longest few
/// say nearly all that all of them say.
const MAX_RUNS: usize = 2;

/// The [`MAX_RUNS`] longest of `runs` (the first of equals), still in their order.
fn longest_in_order(runs: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut by_len: Vec<usize> = (0..runs.len()).collect();
    by_len.sort_by_key(|&i| std::cmp::Reverse(runs[i].len()));
    by_len.truncate(MAX_RUNS);
    by_len.sort_unstable();
    by_len.into_iter().map(|i| runs[i].clone()).collect()
}

/// [`ordered_runs`] for the raw line, before its date is cut: each run is split where a cut
/// date used to be (see [`required_literal`]), as the prefilter's literals are.
pub fn ordered_raw_runs(regex: &str) -> Vec<Vec<u8>> {
    let Ok(hir) = regex_syntax::ParserBuilder::new().build().parse(regex) else {
        return Vec::new();
    };
    let mut runs = Vec::new();
    walk(&hir, &mut runs);
    longest_in_order(
        runs.iter()
            .flat_map(|r| split_at_cut(r))
            .filter(|r| r.len() >= 3 && !r.contains(&b'\n'))
            .collect(),
    )
}

/// Whether every match of `regex` starts at the start of the text (it begins with `^`, in
/// each branch).
pub fn starts_anchored(regex: &str) -> bool {
    use regex_syntax::hir::Look;
    regex_syntax::ParserBuilder::new()
        .build()
        .parse(regex)
        .is_ok_and(|h| h.properties().look_set_prefix().contains(Look::Start))
}

/// For an ASCII engine: `regex` split as `H B` where `B` is the part after the last capture
/// group at the top level, when `B` ends with `$`, cannot match the empty string and has no
/// other assertion, and `H` has none but a leading `^`: (`H$`, `B$`). Then when `B$`
/// matches a text's suffix at exactly one position `q`, a match of the whole has its `H`
/// part end at `q`, and its captures are those of `H$` on the text cut at `q` (leftmost-first
/// explores the same `H` paths in the same order; `B` captures nothing).
pub fn split_tail(regex: &str) -> Option<(String, String)> {
    use regex_syntax::hir::{Look, LookSet};
    let hir = parse(regex, true)?;
    let HirKind::Concat(parts) = hir.kind() else {
        return None;
    };
    let k = parts
        .iter()
        .rposition(|p| p.properties().explicit_captures_len() > 0)?;
    let (h, b) = (&parts[..=k], &parts[k + 1..]);
    let end = Hir::look(Look::End);
    if b.last() != Some(&end) {
        return None;
    }
    let only = |hs: &[Hir], allowed: LookSet| {
        hs.iter()
            .all(|p| p.properties().look_set().subtract(allowed).is_empty())
    };
    let start = LookSet::singleton(Look::Start);
    if !only(b, LookSet::singleton(Look::End))
        || !only(&h[..1], start)
        || !only(&h[1..], LookSet::empty())
    {
        return None;
    }
    let tail = Hir::concat(b.to_vec());
    if tail.properties().minimum_len().is_none_or(|n| n == 0) {
        return None;
    }
    let mut head = h.to_vec();
    head.push(end);
    Some((Hir::concat(head).to_string(), tail.to_string()))
}

/// Which address forms a `<HOST>`-like group's regex is (see [`host_form`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostForm {
    /// `<HOST>`, `<ADDR>`: IPv4, else IPv6.
    Any,
    /// `<IP4>`
    V4,
    /// `<IP6>`
    V6,
}

/// Whether `regex` (as [`chain_parts`] prints a group's body) is exactly the body
/// [`translate`] gives an address tag, and which.
pub fn host_form(regex: &str) -> Option<HostForm> {
    let printed = |r: &str| parse(r, true).map(|h| h.to_string());
    let forms = [
        (format!("{IPV4}|{IPV6}"), HostForm::Any),
        (IPV4.to_string(), HostForm::V4),
        (IPV6.to_string(), HostForm::V6),
    ];
    forms
        .into_iter()
        .find(|(r, _)| printed(r).as_deref() == Some(regex))
        .map(|(_, f)| f)
}

/// A literal every match of `regex` (ASCII syntax) starts with (the longest common prefix of
/// its prefix literals), when there is one that is not empty.
pub fn literal_prefix(regex: &str) -> Option<Vec<u8>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let hir = parse(regex, true)?;
    let mut ex = Extractor::new();
    ex.kind(ExtractKind::Prefix).limit_total(16);
    let seq = ex.extract(&hir);
    seq.literals()?;
    seq.longest_common_prefix()
        .filter(|p| !p.is_empty())
        .map(<[u8]>::to_vec)
}

/// A step that is a literal, after `\A` or not, then at most one optional byte (` from \[?`):
/// whether it starts with `\A`, the literal, and the optional byte. Its leftmost-first match
/// needs no automaton: the literal where the step starts, then the byte when it is there.
pub fn literal_step(regex: &str) -> Option<(bool, Vec<u8>, Option<u8>)> {
    use regex_syntax::hir::Look;
    let hir = parse(regex, true)?;
    let mut parts: &[Hir] = match hir.kind() {
        HirKind::Concat(p) => p,
        _ => std::slice::from_ref(&hir),
    };
    let start = matches!(
        parts.first().map(Hir::kind),
        Some(HirKind::Look(Look::Start))
    );
    if start {
        parts = &parts[1..];
    }
    let [first, rest @ ..] = parts else {
        return None;
    };
    let HirKind::Literal(lit) = first.kind() else {
        return None;
    };
    let opt = match rest {
        [] => None,
        [r] => match r.kind() {
            HirKind::Repetition(rep) if rep.min == 0 && rep.max == Some(1) && rep.greedy => {
                match rep.sub.kind() {
                    HirKind::Literal(b) if b.0.len() == 1 => Some(b.0[0]),
                    _ => return None,
                }
            }
            _ => return None,
        },
        _ => return None,
    };
    (!lit.0.is_empty()).then(|| (start, lit.0.to_vec(), opt))
}

/// One step of a [`chain_parts`] split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainPart {
    /// Parts matched as one regex (ASCII syntax) from where the previous step ended, taking
    /// its leftmost-first (highest priority) match. `group`: the part is exactly this capture
    /// group (nothing nested in it); `captures`: it holds capture groups to take after the
    /// match is found.
    Fwd {
        regex: String,
        group: Option<usize>,
        captures: bool,
        /// When it holds captures: a literal each of them must contain when it takes
        /// part (None when one has none), so that a span without any of them has no
        /// capture to take.
        needles: Option<Vec<String>>,
    },
    /// A lazy "anything" (`.*?`, `.+?`, optionally a capture group `group` of exactly that):
    /// it ends at the leftmost position (at least `min` bytes on) where `rest`, the rest of
    /// the pattern up to its final `$`, matches the rest of the text. `except_lf`: `.`
    /// without the `s` flag (no newline in the span).
    Lazy {
        group: Option<usize>,
        min: usize,
        except_lf: bool,
        rest: String,
        /// The literal `rest` starts with, when it does (sshd's ` from `).
        lit: Option<Vec<u8>>,
    },
}

/// `regex` (parsed for ASCII engines) cut along its top-level sequence into steps whose
/// boundaries cheap automata can find one after the other: maximal runs of parts without a
/// lazy "anything", with each capture group that holds no other group as a step of its own,
/// and the lazy parts between them. Taking, step by step, the highest-priority match of each
/// (or for a lazy part the shortest span after which the rest can still match) yields the
/// highest-priority match of the whole whenever the last step succeeds: a backtracker
/// explores the same choices in the same order and accepts the first complete one.
/// None when the pattern cannot be cut so: a lazy part with no `$` at the end of the
/// pattern, or assertions other than `^`/`$` where a step needs exact bounds.
pub fn chain_parts(regex: &str) -> Option<Vec<ChainPart>> {
    use regex_syntax::hir::{Dot, Look, LookSet};
    let hir = parse(regex, true)?;
    let parts: Vec<Hir> = match hir.kind() {
        HirKind::Concat(p) => p.clone(),
        _ => vec![hir.clone()],
    };
    let end = Hir::look(Look::End);
    let ends = parts.last() == Some(&end);
    let lazy_any = |h: &Hir| -> Option<(Option<usize>, usize, bool)> {
        let (group, h) = match h.kind() {
            HirKind::Capture(c) => (Some(c.index as usize), &*c.sub),
            _ => (None, h),
        };
        let HirKind::Repetition(r) = h.kind() else {
            return None;
        };
        if r.greedy || r.max.is_some() {
            return None;
        }
        let except_lf = if *r.sub == Hir::dot(Dot::AnyByteExceptLF) {
            true
        } else if *r.sub == Hir::dot(Dot::AnyByte) {
            false
        } else {
            return None;
        };
        Some((group, r.min as usize, except_lf))
    };
    let mut out = Vec::new();
    let mut run: Vec<Hir> = Vec::new();
    let flush = |run: &mut Vec<Hir>, out: &mut Vec<ChainPart>| -> Option<()> {
        if run.is_empty() {
            return Some(());
        }
        // Parts without captures before and after those with: steps of their own, so that
        // the backtracker taking the nested captures runs on as short a span as can be.
        let has = |p: &Hir| p.properties().explicit_captures_len() > 0;
        let mut parts = std::mem::take(run);
        if let (Some(a), Some(b)) = (parts.iter().position(has), parts.iter().rposition(has)) {
            let after = parts.split_off(b + 1);
            let mid = parts.split_off(a);
            for (chunk, captures) in [(parts, false), (mid, true), (after, false)] {
                if chunk.is_empty() {
                    continue;
                }
                let h = Hir::concat(chunk);
                // Its captures are taken on exactly its span: no look-ahead past it.
                if captures
                    && !h
                        .properties()
                        .look_set()
                        .subtract(LookSet::singleton(Look::Start))
                        .is_empty()
                {
                    return None;
                }
                let needles = if captures {
                    let mut subs = Vec::new();
                    capture_subs(&h, &mut subs);
                    subs.iter()
                        .map(|s| required_literal(&s.to_string()))
                        .collect::<Option<Vec<String>>>()
                } else {
                    None
                };
                out.push(ChainPart::Fwd {
                    regex: h.to_string(),
                    group: None,
                    captures,
                    needles,
                });
            }
            return Some(());
        }
        out.push(ChainPart::Fwd {
            regex: Hir::concat(parts).to_string(),
            group: None,
            captures: false,
            needles: None,
        });
        Some(())
    };
    for (i, p) in parts.iter().enumerate() {
        if let Some((group, min, except_lf)) = lazy_any(p) {
            if !ends || i + 1 == parts.len() {
                return None;
            }
            flush(&mut run, &mut out)?;
            let rest = Hir::concat(parts[i + 1..].to_vec());
            if !rest
                .properties()
                .look_set()
                .subtract(LookSet::singleton(Look::End))
                .is_empty()
            {
                return None;
            }
            let lit = match parts[i + 1].kind() {
                HirKind::Literal(l) if !l.0.is_empty() => Some(l.0.to_vec()),
                _ => None,
            };
            out.push(ChainPart::Lazy {
                group,
                min,
                except_lf,
                rest: rest.to_string(),
                lit,
            });
            continue;
        }
        if let HirKind::Capture(c) = p.kind()
            && c.sub.properties().explicit_captures_len() == 0
            && c.sub.properties().look_set().is_empty()
        {
            flush(&mut run, &mut out)?;
            out.push(ChainPart::Fwd {
                regex: c.sub.to_string(),
                group: Some(c.index as usize),
                captures: false,
                needles: None,
            });
            continue;
        }
        run.push(p.clone());
    }
    flush(&mut run, &mut out)?;
    Some(out)
}

/// The sub-patterns of every capture group in `h`.
fn capture_subs(h: &Hir, out: &mut Vec<Hir>) {
    match h.kind() {
        HirKind::Capture(c) => {
            out.push((*c.sub).clone());
            capture_subs(&c.sub, out);
        }
        HirKind::Repetition(r) => capture_subs(&r.sub, out),
        HirKind::Concat(p) | HirKind::Alternation(p) => {
            for x in p {
                capture_subs(x, out);
            }
        }
        _ => {}
    }
}

/// `regex` as HIR; with `ascii`, Unicode off (classes are byte classes).
fn parse(regex: &str, ascii: bool) -> Option<Hir> {
    regex_syntax::ParserBuilder::new()
        .unicode(!ascii)
        .utf8(!ascii)
        .build()
        .parse(regex)
        .ok()
}

fn strip_looks(h: &Hir) -> Hir {
    match h.kind() {
        HirKind::Look(_) => Hir::empty(),
        HirKind::Capture(c) => {
            // Names are dropped: the stripped patterns are only ever asked "is there a match".
            Hir::capture(regex_syntax::hir::Capture {
                index: c.index,
                name: None,
                sub: Box::new(strip_looks(&c.sub)),
            })
        }
        HirKind::Repetition(r) => Hir::repetition(regex_syntax::hir::Repetition {
            min: r.min,
            max: r.max,
            greedy: r.greedy,
            sub: Box::new(strip_looks(&r.sub)),
        }),
        HirKind::Concat(p) => Hir::concat(p.iter().map(strip_looks).collect()),
        HirKind::Alternation(p) => Hir::alternation(p.iter().map(strip_looks).collect()),
        _ => h.clone(),
    }
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

    #[test]
    fn literal_sets() {
        let lits = |p: &str| required_literals(&translate(p).unwrap().regex);
        assert_eq!(
            lits(r"^(?:[iI]nvalid|[iI]llegal) user <F-USER>\S+</F-USER> from <HOST>").unwrap(),
            [
                "Illegal user ",
                "Invalid user ",
                "illegal user ",
                "invalid user "
            ]
        );
        assert_eq!(
            lits(r"^Failed \S+ for <F-USER>\S+</F-USER> from <HOST>").unwrap(),
            ["Failed "]
        );
        assert_eq!(lits(r"^(?:foo|bar) x").unwrap(), ["bar x", "foo x"]);
        assert_eq!(lits(r"^(?:fo|ba)"), None);
        assert_eq!(lits(r#"^<HOST> - \S+ \[\] "GETX"#).unwrap(), [r#" "GETX"#]);
    }

    #[test]
    fn prefix_before_content_form() {
        let t = translate(r"^\S+ (?:error: )?<F-CONTENT>.+</F-CONTENT>$").unwrap();
        let re = regex::Regex::new(&t.regex).unwrap();
        let g = re.capture_names().position(|n| n.is_some()).unwrap();
        let x = prefix_before_content(&t.regex, g, false).unwrap();
        let m = regex::Regex::new(&x)
            .unwrap()
            .find("host error: boom")
            .unwrap();
        assert_eq!(m.end(), "host error: ".len());
        // Captures in the prefix, or anything after the content: not this form.
        let t = translate(r"^<HOST> <F-CONTENT>.+</F-CONTENT>$").unwrap();
        let re = regex::Regex::new(&t.regex).unwrap();
        let g = re
            .capture_names()
            .position(|n| n == Some("content"))
            .unwrap_or(99);
        assert_eq!(prefix_before_content(&t.regex, g, false), None);
        let t = translate(r"^x <F-CONTENT>.+</F-CONTENT> y$").unwrap();
        assert_eq!(prefix_before_content(&t.regex, 1, false), None);
    }

    #[test]
    fn stripped_assertions_match_a_superset() {
        let re = without_assertions(r"^a\b(?P<x>b)+$", false).unwrap();
        let r = regex::Regex::new(&re).unwrap();
        assert!(r.is_match("xx ab yy"));
        assert!(!r.is_match("xx a yy"));
    }
}
