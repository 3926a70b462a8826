//! Filters: one log line in, at most one failure (address, time, which pattern) out.
//!
//! This is the matcher of the ripgrep split: synchronous, no I/O, no tokio, no knowledge of
//! files or jails. Sources hand it `&str` lines; jails count what it returns. Per line:
//!
//! 1. literal prefilter: one searcher (memmem, Teddy or Aho-Corasick) over a literal each
//!    failregex requires (derived from the pattern, or the filter's `literals`); a line
//!    containing none is a [`LineMatch::Miss`] without any regex or date work. This is what
//!    most lines hit. Then some failregex's longest literal runs must be in the line, in order.
//! 2. date: the timestamp is found and cut out (fail2ban does the same, and its patterns,
//!    anchored with `^`, assume it), giving its Unix time.
//! 3. `prefregex`, when the filter has one: its `<F-CONTENT>` part is what failregex sees.
//! 4. the first failregex that matches, with its captures (`<HOST>`, `<F-USER>`, `<F-ID>`):
//!    on an ASCII line with engines compiled with Unicode off; when all start with `^`, each
//!    tried in turn behind cheap literal checks, as a chain of DFAs ([`chain`]) when it can
//!    be cut into one, else with a backtracker (and a reverse DFA for a capture-free tail);
//!    else one DFA pass names it and a backtracker takes its captures.
//! 5. `ignoreregex` on the date-cut line turns a failure into [`LineMatch::Ignored`].
//!
//! A line that does not match allocates nothing: the date is cut into a reused per-thread
//! buffer only when it sits mid-line, capture slots for prefregex are per-thread too, and
//! owned strings are made only for a [`Failure`].

mod chain;
pub mod date;
pub mod pattern;
pub mod source;
pub mod stock;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use aho_corasick::AhoCorasick;
use regex::{CaptureLocations, Regex, RegexSet};
use regex_automata::dfa::{Automaton, dense};
use regex_automata::nfa::thompson::{
    self,
    backtrack::{self, BoundedBacktracker},
};
use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, PatternSet, meta};
use serde::Deserialize;

// The in-place address readers live with IpNet (f2b-ctl and the ban path use them too).
use f2b_common::net::{parse_v4, parse_v6_hex};

use date::{DateMode, Tz};
use pattern::Role;

/// Where a filter comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterSpec {
    /// A stock filter (embedded), or `NAME.yaml` in the operator's filter directory.
    Name(String),
    /// A filter file.
    Path(PathBuf),
    /// The same schema written inline in a jail.
    Inline(serde_yaml::Value),
}

impl FilterSpec {
    /// A jail's `filter:` value: a string naming a stock filter, a string that looks like a
    /// path (contains `/` or ends in `.yaml`), or a mapping (an inline filter).
    pub fn from_config(value: &serde_yaml::Value) -> Result<FilterSpec, FilterError> {
        match value {
            serde_yaml::Value::String(s) if s.contains('/') || s.ends_with(".yaml") => {
                Ok(FilterSpec::Path(PathBuf::from(s)))
            }
            serde_yaml::Value::String(s) if valid_name(s) => Ok(FilterSpec::Name(s.clone())),
            serde_yaml::Value::String(s) => Err(FilterError::new(
                "filter",
                None,
                format!("{s:?} is not a filter name (letters, digits, - and _) nor a path"),
            )),
            serde_yaml::Value::Mapping(_) => Ok(FilterSpec::Inline(value.clone())),
            _ => Err(FilterError::new(
                "filter",
                None,
                "expected a filter name, a path to a filter file or an inline filter mapping",
            )),
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A filter that cannot be loaded: `file:line: message` (line when it is known).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FilterError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl FilterError {
    fn new(file: impl Into<String>, line: Option<usize>, message: impl Into<String>) -> Self {
        FilterError {
            file: file.into(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file, l, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// What one line amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineMatch {
    Miss,
    /// A failregex matched but so did an ignoreregex.
    Ignored,
    Failure(Failure),
}

/// A failure found in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The client; an IPv4-mapped IPv6 address is given as the IPv4 address.
    pub ip: IpAddr,
    /// The address as it was written in the line (without brackets).
    pub host: String,
    /// Unix seconds from the line's timestamp; None when the line has none we know.
    pub time: Option<i64>,
    /// Index of the failregex that matched (base list first, then the mode's additions).
    pub failregex: usize,
    pub user: Option<String>,
    pub id: Option<String>,
}

/// The filter file schema (docs/filters.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    #[serde(default)]
    prefregex: Option<String>,
    #[serde(default)]
    failregex: Vec<String>,
    #[serde(default)]
    ignoreregex: Vec<String>,
    #[serde(default)]
    datepattern: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    modes: BTreeMap<String, RawMode>,
    #[serde(default)]
    default_mode: Option<String>,
    #[serde(default)]
    literals: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMode {
    #[serde(default)]
    replace: bool,
    #[serde(default)]
    prefregex: Option<String>,
    #[serde(default)]
    failregex: Vec<String>,
    #[serde(default)]
    ignoreregex: Vec<String>,
    /// The prefilter's literals for this mode's failregexes (the top-level `literals` cover
    /// only the base list).
    #[serde(default)]
    literals: Option<Vec<String>>,
}

/// A compiled pattern and where its tagged groups are.
#[derive(Debug, Clone)]
struct Compiled {
    re: Regex,
    /// The same pattern for captures on lines short enough for its visited set.
    bt: Option<BoundedBacktracker>,
    /// The same again for ASCII text (see [`ascii_syntax`]): a far smaller NFA, hence a far
    /// smaller visited set to clear and walk. Same group indices.
    abt: Option<BoundedBacktracker>,
    /// Necessary conditions for a match at the start of a text, checked before the
    /// backtracker is tried there: it starts with one of these (None: no such set)...
    starts: Option<Vec<Vec<u8>>>,
    /// The first bytes of `starts` as a bit set (all bytes when there are none): one load
    /// rules out most patterns before any literal is compared.
    first_bytes: [u64; 4],
    /// ... and contains these literals in this order.
    runs: Vec<memchr::memmem::Finder<'static>>,
    /// The capture-free tail checked by a reverse DFA and the head whose captures are taken
    /// on the text cut where the tail starts (see [`pattern::split_tail`]); ASCII engines.
    tail: Option<Box<Tail>>,
    /// The captures found step by step with DFAs (see [`chain`]); ASCII engines.
    chain: Option<Box<chain::Chain>>,
    /// The runs for the raw line (split where a date may have been cut).
    raw_runs: Vec<memchr::memmem::Finder<'static>>,
    host: Vec<usize>,
    user: Vec<usize>,
    alt_user: Vec<usize>,
    id: Vec<usize>,
    nofail: Vec<usize>,
    content: Vec<usize>,
}

impl Compiled {
    fn new(regex: Regex, groups: &[(String, Role)]) -> Compiled {
        let bt = BoundedBacktracker::new(regex.as_str()).ok();
        let abt = BoundedBacktracker::builder()
            .syntax(ascii_syntax())
            .thompson(thompson::Config::new().utf8(false))
            .build(regex.as_str())
            .ok();
        let starts = pattern::prefix_literals(regex.as_str());
        let mut first_bytes = [0u64; 4];
        match &starts {
            Some(s) => {
                for b in s.iter().filter_map(|l| l.first()) {
                    first_bytes[usize::from(b >> 6)] |= 1 << (b & 63);
                }
            }
            None => first_bytes = [u64::MAX; 4],
        }
        let runs = pattern::ordered_runs(regex.as_str())
            .iter()
            .map(|r| memchr::memmem::Finder::new(r).into_owned())
            .collect();
        let raw_runs = pattern::ordered_raw_runs(regex.as_str())
            .iter()
            .map(|r| memchr::memmem::Finder::new(r).into_owned())
            .collect();
        let tail = abt
            .as_ref()
            .and_then(|_| Tail::new(regex.as_str()))
            .map(Box::new);
        let names: Vec<Option<&str>> = regex.capture_names().collect();
        let chain = abt
            .as_ref()
            .and_then(|_| chain::Chain::new(regex.as_str(), &names))
            .map(Box::new);
        let mut c = Compiled {
            chain,
            tail,
            bt,
            abt,
            starts,
            first_bytes,
            runs,
            raw_runs,
            host: vec![],
            user: vec![],
            alt_user: vec![],
            id: vec![],
            nofail: vec![],
            content: vec![],
            re: regex,
        };
        for (i, name) in c.re.capture_names().enumerate() {
            let Some(name) = name else { continue };
            let Some((_, role)) = groups.iter().find(|(n, _)| n == name) else {
                continue;
            };
            match role {
                Role::Host => c.host.push(i),
                Role::User => c.user.push(i),
                Role::AltUser => c.alt_user.push(i),
                Role::Id => c.id.push(i),
                Role::NoFail => c.nofail.push(i),
                Role::Content => c.content.push(i),
            }
        }
        c
    }

    /// The cheap necessary conditions for a match at the start of `t` (see `starts`, `runs`);
    /// `runs_seen`: the runs were found in the raw line already, and are not looked for again
    /// (this only orders the work: the pattern itself decides).
    fn may_match_at_start(&self, t: &[u8], runs_seen: bool) -> bool {
        let first = |b: &u8| self.first_bytes[usize::from(b >> 6)] >> (b & 63) & 1 == 1;
        if self.starts.is_some() && !t.first().is_some_and(first) {
            return false;
        }
        if let Some(s) = &self.starts
            && !s.iter().any(|l| chain::has_at(t, 0, l))
        {
            return false;
        }
        runs_seen || in_order(&self.runs, t)
    }
}

#[derive(Debug, Clone)]
struct Tail {
    /// `B$`, reversed, every match (overlapping), anchored at the end of the text.
    rev: dense::DFA<Vec<u32>>,
    /// `H$`.
    head: BoundedBacktracker,
}

impl Tail {
    fn new(regex: &str) -> Option<Tail> {
        let (head, tail) = pattern::split_tail(regex)?;
        let rev = chain::reverse_all(&tail)?;
        let head = BoundedBacktracker::builder()
            .syntax(ascii_syntax())
            .thompson(thompson::Config::new().utf8(false))
            .build(&head)
            .ok()?;
        Some(Tail { rev, head })
    }

    /// Where the tail can start in `t`: Ok(None) nowhere, Ok(Some(q)) at `q` only, Err
    /// at several places (or the DFA gave up). The DFA is stepped by hand, right to left: a
    /// match state after the byte at `at` means a match starting at `at + 1`. (The
    /// library's overlapping search, which would say the same, costs several times a plain
    /// step per byte.)
    fn start(&self, t: &[u8]) -> Result<Option<usize>, ()> {
        let rev = &self.rev;
        let input = Input::new(t).anchored(Anchored::Yes);
        let mut found = None;
        let mut hit = |q: usize| match found.replace(q) {
            None => Ok(()),
            Some(_) => Err(()),
        };
        let mut sid = rev.start_state_reverse(&input).map_err(|_| ())?;
        for at in (0..t.len()).rev() {
            sid = rev.next_state(sid, t[at]);
            if rev.is_special_state(sid) {
                if rev.is_match_state(sid) {
                    hit(at + 1)?;
                } else if rev.is_dead_state(sid) {
                    return Ok(found);
                } else if rev.is_quit_state(sid) {
                    return Err(());
                }
            }
        }
        if rev.is_match_state(rev.next_eoi_state(sid)) {
            hit(0)?;
        }
        Ok(found)
    }
}

/// Whether each literal is found in `t` after the end of the one before.
fn in_order(runs: &[memchr::memmem::Finder<'_>], t: &[u8]) -> bool {
    let mut at = 0;
    for f in runs {
        match f.find(&t[at..]) {
            Some(i) => at += i + f.needle().len(),
            None => return false,
        }
    }
    true
}

impl Compiled {}

/// Syntax for engines that only ever see ASCII text: Unicode classes (`\d`, `\s`, `\w`,
/// `\b`, `.`, `[^x]`, case folding) shrink to their ASCII parts, which on an ASCII
/// haystack match exactly what the Unicode forms match, with NFAs a fraction of the size. A
/// pattern that cannot be written so (a non-ASCII class) has no such engine; its lines take
/// the Unicode one.
fn ascii_syntax() -> syntax::Config {
    syntax::Config::new().unicode(false).utf8(false)
}

/// A meta regex of `patterns` for ASCII text (see [`ascii_syntax`]).
fn ascii_meta(patterns: &[&str], kind: regex_automata::MatchKind) -> Option<meta::Regex> {
    meta::Regex::builder()
        .syntax(ascii_syntax())
        .configure(meta::Config::new().match_kind(kind).utf8_empty(false))
        .build_many(patterns)
        .ok()
}

/// Most memory a fully compiled DFA may take (per filter and pattern).
const DENSE_LIMIT: usize = 1 << 20;

/// An anchored, leftmost-first, fully compiled DFA of `pattern` for ASCII text.
fn ascii_dense(pattern: &str) -> Option<dense::DFA<Vec<u32>>> {
    dense::Builder::new()
        .syntax(ascii_syntax())
        .thompson(thompson::Config::new().utf8(false))
        .configure(
            dense::Config::new()
                .start_kind(regex_automata::dfa::StartKind::Anchored)
                .dfa_size_limit(Some(DENSE_LIMIT))
                .determinize_size_limit(Some(4 * DENSE_LIMIT)),
        )
        .build(pattern)
        .ok()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A loaded filter: every pattern compiled, ready for [`Filter::match_line`].
#[derive(Debug, Clone)]
pub struct Filter {
    name: String,
    description: Option<String>,
    mode: Option<String>,
    /// Identifies this filter's capture slots in the per-thread scratch space.
    id: u64,
    prefilter: Option<Prefilter>,
    literals: Vec<String>,
    date: DateMode,
    tz: Tz,
    pref: Option<Compiled>,
    /// `^X` when prefregex is `^X(?P<content>.+)$` and X captures nothing (see
    /// [`pattern::prefix_before_content`]): the content found without a capturing search.
    pref_prefix: Option<Regex>,
    /// Each engine below again for ASCII text, when the pattern can be written so (see
    /// [`ascii_syntax`]); most log lines are ASCII.
    ascii: AsciiEngines,
    /// All failregexes, matched as a set (every pattern that matches anywhere, like
    /// `RegexSet`): the first of them is the one whose captures are taken.
    fail_set: meta::Regex,
    /// The failregexes without assertions (see [`pattern::without_assertions`]): the cheap
    /// first check on a line that passed the prefilter, before prefregex and captures.
    quick_set: Option<RegexSet>,
    fail: Vec<Compiled>,
    /// Longest content the failregexes are tried on one by one with their ASCII
    /// backtrackers (see [`Filter::match_text`]); 0 when they cannot all be (one does not
    /// start with `^`, or has no ASCII form).
    direct_max: usize,
    /// Every failregex has literal runs to look for in the raw line (see
    /// [`Filter::may_match_raw`]).
    raw_gate: bool,
    /// Per prefilter literal, the failregexes that need it (or a literal containing it), each
    /// with whether the literal holds the first of its raw runs (found with the literal).
    lit_owners: Vec<Vec<(usize, bool)>>,
    ignore_set: Option<RegexSet>,
}

#[derive(Debug, Clone, Default)]
struct AsciiEngines {
    pref_prefix: Option<meta::Regex>,
    /// The same fully compiled (no cache to consult, no strategy to pick per call), when it
    /// fits in [`DENSE_LIMIT`] bytes.
    pref_prefix_dense: Option<chain::ShortcutDfa>,
    fail_set: Option<meta::Regex>,
    quick_set: Option<meta::Regex>,
    /// The failregexes leftmost-first, when all start with `^`.
    first: Option<meta::Regex>,
}

/// The literal search in front of everything (see the module docs).
#[derive(Debug, Clone)]
enum Prefilter {
    One(memchr::memmem::Finder<'static>),
    /// Teddy (SIMD), used directly: Aho-Corasick's own choice for literals that share
    /// their first byte (nginx's all start with `"`) is a memchr for that byte, which stops
    /// at every quote of a line.
    Packed(aho_corasick::packed::Searcher),
    Ac(AhoCorasick),
}

impl Prefilter {
    /// Where the leftmost hit at or after `from` starts, and which literal it is.
    fn find(&self, b: &[u8], from: usize) -> Option<(usize, usize)> {
        match self {
            Prefilter::One(f) => f.find(&b[from..]).map(|i| (from + i, 0)),
            Prefilter::Packed(p) => p
                .find_in(b, aho_corasick::Span::from(from..b.len()))
                .map(|m| (m.start(), m.pattern().as_usize())),
            Prefilter::Ac(ac) => ac
                .find(aho_corasick::Input::new(b).span(from..b.len()))
                .map(|m| (m.start(), m.pattern().as_usize())),
        }
    }
}

/// A failure borrowed from the text that was matched: what [`Filter::scan`] reports
/// without allocating. [`FailureRef::to_owned`] makes a [`Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRef<'a> {
    pub ip: IpAddr,
    pub host: &'a str,
    pub time: Option<i64>,
    pub failregex: usize,
    pub user: Option<&'a str>,
    pub id: Option<&'a str>,
}

impl FailureRef<'_> {
    pub fn to_owned(&self) -> Failure {
        Failure {
            ip: self.ip,
            host: self.host.to_string(),
            time: self.time,
            failregex: self.failregex,
            user: self.user.map(str::to_string),
            id: self.id.map(str::to_string),
        }
    }
}

/// What one line amounts to, borrowed.
enum Verdict<'a> {
    Miss,
    Ignored,
    Failure(FailureRef<'a>),
}

/// Per-thread buffers so that the per-line path does not allocate. Taken out of the
/// thread-local for the duration of a call (and put back after), so a callback that
/// matches again with another filter gets its own instead of a borrow panic.
#[derive(Default)]
struct Scratch {
    /// The line with a mid-line date cut out.
    buf: String,
    /// Capture slots per (filter id, pattern): prefregex is `PREF`, failregexes their index.
    locs: Vec<((u64, usize), CaptureLocations)>,
    /// Backtracker caches and capture slots per (filter id, failregex).
    bts: Vec<((u64, usize), BtSlot)>,
    /// Which failregexes matched.
    pats: Option<PatternSet>,
    /// Group spans found by a [`chain::Chain`].
    spans: Vec<Option<(usize, usize)>>,
    /// The IPv4 address a chain's `<HOST>` step read, and its span.
    v4: Option<chain::HostV4>,
    /// The prefix DFA's states over the last candidate line's start.
    memo: chain::Memo,
}

struct BtSlot {
    cache: backtrack::Cache,
    caps: Captures,
}

/// Where a [`chain::Chain`] leaves its group spans and the IPv4 address it read, and the
/// prefix DFA's memo.
type ChainOut<'a, 'b> = (
    &'a mut Vec<Option<(usize, usize)>>,
    &'b mut Option<chain::HostV4>,
    &'b mut chain::Memo,
);

/// A failregex's capture spans, from whichever engine took them.
enum Groups<'s> {
    Bt(&'s Captures),
    Locs(&'s CaptureLocations),
    Spans(&'s [Option<(usize, usize)>]),
}

impl Groups<'_> {
    fn get(&self, g: usize) -> Option<(usize, usize)> {
        match self {
            Groups::Bt(c) => c.get_group(g).map(|s| (s.start, s.end)),
            Groups::Locs(l) => l.get(g),
            Groups::Spans(s) => s.get(g).copied().flatten(),
        }
    }
}

fn bt_for<'a>(
    bts: &'a mut Vec<((u64, usize), BtSlot)>,
    id: (u64, usize),
    bt: &BoundedBacktracker,
) -> &'a mut BtSlot {
    let i = match bts.iter().position(|(i, _)| *i == id) {
        Some(i) => i,
        None => {
            if bts.len() >= MAX_SCRATCH_FILTERS
                && let Some(k) = bts.iter().position(|((f, _), _)| *f != id.0)
            {
                bts.remove(k);
            }
            bts.push((
                id,
                BtSlot {
                    cache: bt.create_cache(),
                    caps: bt.create_captures(),
                },
            ));
            bts.len() - 1
        }
    };
    &mut bts[i].1
}

const PREF: usize = usize::MAX;
/// Backtracker keys of chain steps: `CHAIN_KEY + failregex * MAX_STEPS + step` (below the
/// tails' keys, which count down from `usize::MAX - 1`, above `2 * failregex + 1`).
const CHAIN_KEY: usize = 1 << 40;
const MAX_STEPS: usize = 1 << 16;

/// How a failregex's captures were taken.
#[derive(Clone, Copy)]
enum Via {
    /// By a backtracker, whose slot has this key.
    Bt((u64, usize)),
    /// By the general regex, into its capture locations.
    Locs,
    /// By a [`chain::Chain`], into the scratch spans.
    Chain,
}

fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut s = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let r = f(&mut s);
    SCRATCH.with(|c| *c.borrow_mut() = s);
    r
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch {
            buf: String::new(),
            locs: Vec::new(),
            bts: Vec::new(),
            pats: None,
            spans: Vec::new(),
            v4: None,
            memo: chain::Memo::EMPTY,
        })
    };
}

const MAX_SCRATCH_FILTERS: usize = 256;

fn locs_for<'a>(
    locs: &'a mut Vec<((u64, usize), CaptureLocations)>,
    id: (u64, usize),
    re: &Regex,
) -> &'a mut CaptureLocations {
    let i = match locs.iter().position(|(i, _)| *i == id) {
        Some(i) => i,
        None => {
            // Evict another filter's slots, never this one's: a call holds several at once.
            if locs.len() >= MAX_SCRATCH_FILTERS
                && let Some(k) = locs.iter().position(|((f, _), _)| *f != id.0)
            {
                locs.remove(k);
            }
            locs.push((id, re.capture_locations()));
            locs.len() - 1
        }
    };
    &mut locs[i].1
}

/// Ordered key path and item index of a pattern in the filter file, for error lines.
struct Origin<'a> {
    path: Vec<&'a str>,
    item: Option<usize>,
    what: String,
}

struct Loader<'a> {
    file: String,
    src: Option<&'a str>,
    vars: BTreeMap<String, String>,
}

impl Loader<'_> {
    fn err(&self, o: &Origin<'_>, msg: impl fmt::Display) -> FilterError {
        let line = self.src.and_then(|s| match o.item {
            Some(i) => source::item_line(s, &o.path, i),
            None => source::key_line(s, &o.path),
        });
        FilterError::new(self.file.clone(), line, format!("{}: {msg}", o.what))
    }

    fn translate(&self, p: &str, o: &Origin<'_>) -> Result<pattern::Translated, FilterError> {
        let expanded = pattern::expand_vars(p, &self.vars).map_err(|e| self.err(o, e))?;
        pattern::translate(&expanded).map_err(|e| self.err(o, e))
    }

    fn compile(&self, p: &str, o: &Origin<'_>) -> Result<(Compiled, String), FilterError> {
        let t = self.translate(p, o)?;
        let re = Regex::new(&t.regex).map_err(|e| self.err(o, regex_message(&e)))?;
        Ok((Compiled::new(re, &t.groups), t.regex))
    }
}

/// The one informative line of a regex error (they come with a multi-line caret diagram).
fn regex_message(e: &regex::Error) -> String {
    let s = e.to_string();
    s.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(|l| format!("bad regex: {l}"))
        .unwrap_or_else(|| format!("bad regex: {}", s.replace('\n', " ")))
}

impl Filter {
    /// Loads a filter; see [`Filter::load_from`] for operator filter directories.
    pub fn load(spec: &FilterSpec, mode: Option<&str>) -> Result<Filter, FilterError> {
        Self::load_from(spec, mode, None)
    }

    /// Loads a filter. A [`FilterSpec::Name`] is looked up as `dir/NAME.yaml` first (when
    /// `dir` is given and the file exists: operator filters override stock ones), then in
    /// the stock filters embedded in the binary.
    pub fn load_from(
        spec: &FilterSpec,
        mode: Option<&str>,
        dir: Option<&Path>,
    ) -> Result<Filter, FilterError> {
        match spec {
            FilterSpec::Name(name) => {
                if !valid_name(name) {
                    return Err(FilterError::new(
                        name.clone(),
                        None,
                        "a filter name is letters, digits, - and _",
                    ));
                }
                if let Some(d) = dir {
                    let p = d.join(format!("{name}.yaml"));
                    if p.is_file() {
                        return Self::load_file(&p, name, mode);
                    }
                }
                let src = stock::get(name).ok_or_else(|| {
                    FilterError::new(
                        name.clone(),
                        None,
                        format!(
                            "no such filter; stock filters are: {}",
                            stock::names().collect::<Vec<_>>().join(", ")
                        ),
                    )
                })?;
                Self::from_yaml(src, &format!("config/filters/{name}.yaml"), name, mode)
            }
            FilterSpec::Path(p) => {
                let name = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| p.display().to_string());
                Self::load_file(p, &name, mode)
            }
            FilterSpec::Inline(v) => {
                let raw: RawFilter = serde_yaml::from_value(v.clone())
                    .map_err(|e| FilterError::new("inline filter", None, yaml_message(&e)))?;
                let loader = Loader {
                    file: "inline filter".into(),
                    src: None,
                    vars: BTreeMap::new(),
                };
                Self::build(raw, loader, "inline", mode)
            }
        }
    }

    fn load_file(p: &Path, name: &str, mode: Option<&str>) -> Result<Filter, FilterError> {
        let text = std::fs::read_to_string(p).map_err(|e| {
            FilterError::new(p.display().to_string(), None, format!("cannot read: {e}"))
        })?;
        Self::from_yaml(&text, &p.display().to_string(), name, mode)
    }

    /// Loads a filter from YAML text; `file` names it in errors.
    pub fn from_yaml(
        text: &str,
        file: &str,
        name: &str,
        mode: Option<&str>,
    ) -> Result<Filter, FilterError> {
        let raw: RawFilter = serde_yaml::from_str(text).map_err(|e| {
            FilterError::new(file, e.location().map(|l| l.line()), yaml_message(&e))
        })?;
        let loader = Loader {
            file: file.to_string(),
            src: Some(text),
            vars: BTreeMap::new(),
        };
        Self::build(raw, loader, name, mode)
    }

    fn build(
        mut raw: RawFilter,
        mut loader: Loader<'_>,
        name: &str,
        mode: Option<&str>,
    ) -> Result<Filter, FilterError> {
        let key = |k: &'static str| Origin {
            path: vec![k],
            item: None,
            what: k.to_string(),
        };
        let mut vars = pattern::builtin_vars();
        vars.append(&mut raw.vars);
        loader.vars = vars;

        let mode_name = mode.map(str::to_string).or(raw.default_mode.clone());
        if let Some(d) = &raw.default_mode
            && !raw.modes.contains_key(d)
        {
            return Err(loader.err(&key("default_mode"), format!("no mode {d:?} in modes")));
        }
        let mode_def = match &mode_name {
            None => None,
            Some(m) => Some(raw.modes.get(m).ok_or_else(|| {
                let known: Vec<&str> = raw.modes.keys().map(String::as_str).collect();
                FilterError::new(
                    loader.file.clone(),
                    None,
                    if known.is_empty() {
                        format!("mode {m:?}: this filter has no modes")
                    } else {
                        format!("unknown mode {m:?}; modes: {}", known.join(", "))
                    },
                )
            })?),
        };
        let mode_key = mode_name.clone().unwrap_or_default();

        // prefregex: the mode's, else the filter's.
        let pref_src = match mode_def.and_then(|m| m.prefregex.as_ref()) {
            Some(p) => Some((
                p,
                Origin {
                    path: vec!["modes", &mode_key, "prefregex"],
                    item: None,
                    what: "prefregex".into(),
                },
            )),
            None => raw.prefregex.as_ref().map(|p| (p, key("prefregex"))),
        };
        let (pref, pref_prefix_src) = match pref_src {
            None => (None, None),
            Some((p, o)) => {
                let (c, re) = loader.compile(p, &o)?;
                if c.content.is_empty() {
                    return Err(loader.err(&o, "needs <F-CONTENT>...</F-CONTENT>"));
                }
                let plain = c.host.is_empty()
                    && c.user.is_empty()
                    && c.alt_user.is_empty()
                    && c.id.is_empty()
                    && c.nofail.is_empty()
                    && c.content.len() == 1;
                let prefix = plain.then(|| {
                    (
                        pattern::prefix_before_content(&re, c.content[0], false),
                        pattern::prefix_before_content(&re, c.content[0], true),
                    )
                });
                (Some(c), prefix)
            }
        };
        let (pref_prefix_src, ascii_prefix_src) = pref_prefix_src.unwrap_or_default();
        let pref_prefix = pref_prefix_src.as_deref().and_then(|x| Regex::new(x).ok());
        let pref_has_host = pref.as_ref().is_some_and(|p| !p.host.is_empty());

        // failregex and ignoreregex: the base lists, then the mode's (or only the mode's).
        let mut fail_src: Vec<(&String, Origin<'_>)> = Vec::new();
        let mut ign_src: Vec<(&String, Origin<'_>)> = Vec::new();
        let replace = mode_def.is_some_and(|m| m.replace);
        if !replace {
            for (i, p) in raw.failregex.iter().enumerate() {
                fail_src.push((p, item(vec!["failregex"], i, "failregex", i)));
            }
            for (i, p) in raw.ignoreregex.iter().enumerate() {
                ign_src.push((p, item(vec!["ignoreregex"], i, "ignoreregex", i)));
            }
        }
        if let Some(m) = mode_def {
            for (i, p) in m.failregex.iter().enumerate() {
                let n = fail_src.len();
                fail_src.push((
                    p,
                    item(vec!["modes", &mode_key, "failregex"], i, "failregex", n),
                ));
            }
            for (i, p) in m.ignoreregex.iter().enumerate() {
                let n = ign_src.len();
                ign_src.push((
                    p,
                    item(vec!["modes", &mode_key, "ignoreregex"], i, "ignoreregex", n),
                ));
            }
        }
        if fail_src.is_empty() {
            return Err(loader.err(&key("failregex"), "at least one pattern is needed"));
        }

        let mut fail = Vec::with_capacity(fail_src.len());
        let mut fail_res = Vec::with_capacity(fail_src.len());
        for (p, o) in &fail_src {
            let (c, re) = loader.compile(p, o)?;
            if c.host.is_empty() && !pref_has_host {
                return Err(loader.err(o, "no <HOST> (in it or in prefregex)"));
            }
            fail.push(c);
            fail_res.push(re);
        }
        // Checked by RegexSet for the error message; matched with the same engine directly.
        RegexSet::new(&fail_res)
            .map_err(|e| FilterError::new(loader.file.clone(), None, regex_message(&e)))?;
        let fail_set = meta::Regex::builder()
            .configure(meta::Config::new().match_kind(regex_automata::MatchKind::All))
            .build_many(&fail_res)
            .map_err(|e| FilterError::new(loader.file.clone(), None, format!("bad regex: {e}")))?;
        // Only an optimisation: any pattern it cannot make means no quick check.
        let quick_src = fail_res
            .iter()
            .map(|r| pattern::without_assertions(r, false))
            .collect::<Option<Vec<String>>>();
        let quick_set = quick_src.as_ref().and_then(|q| RegexSet::new(q).ok());
        let ascii = AsciiEngines {
            // Only with the general one: the shortcut is off when that cannot be built.
            pref_prefix_dense: ascii_prefix_src
                .as_deref()
                .filter(|_| pref_prefix.is_some())
                .and_then(ascii_dense)
                .map(chain::ShortcutDfa::new),
            pref_prefix: ascii_prefix_src
                .as_deref()
                .filter(|_| pref_prefix.is_some())
                .and_then(|x| ascii_meta(&[x], regex_automata::MatchKind::LeftmostFirst)),
            fail_set: ascii_meta(&strs(&fail_res), regex_automata::MatchKind::All),
            first: fail_res
                .iter()
                .all(|r| pattern::starts_anchored(r))
                .then(|| ascii_meta(&strs(&fail_res), regex_automata::MatchKind::LeftmostFirst))
                .flatten(),
            quick_set: quick_set.as_ref().and_then(|_| {
                let q = fail_res
                    .iter()
                    .map(|r| pattern::without_assertions(r, true))
                    .collect::<Option<Vec<String>>>()?;
                ascii_meta(&strs(&q), regex_automata::MatchKind::All)
            }),
        };
        let direct_max = fail
            .iter()
            .zip(&fail_res)
            .map(|(c, r)| match &c.abt {
                Some(bt) if pattern::starts_anchored(r) => bt.max_haystack_len(),
                _ => 0,
            })
            .min()
            .unwrap_or(0);
        let mut ign_res = Vec::with_capacity(ign_src.len());
        for (p, o) in &ign_src {
            let (_, re) = loader.compile(p, o)?;
            ign_res.push(re);
        }
        let ignore_set = if ign_res.is_empty() {
            None
        } else {
            Some(
                RegexSet::new(&ign_res)
                    .map_err(|e| FilterError::new(loader.file.clone(), None, regex_message(&e)))?,
            )
        };

        let date = DateMode::parse(raw.datepattern.as_deref())
            .map_err(|e| loader.err(&key("datepattern"), e))?;
        let tz = match raw.timezone.as_deref() {
            None => Tz::Local,
            Some(s) => Tz::parse(s).ok_or_else(|| {
                loader.err(
                    &key("timezone"),
                    format!("{s:?}: expected local, UTC or an offset such as +0100"),
                )
            })?,
        };

        // Prefilter: per list of failregexes (the base list, the mode's), its override or
        // each pattern's own literal set. A pattern with no usable literal, or an override
        // of [], means every line has to go to the regexes: no prefilter at all.
        let each: Vec<Option<Vec<String>>> = fail_res
            .iter()
            .map(|r| pattern::required_literals(r))
            .collect();
        let per_pattern: Option<Vec<Vec<String>>> = each.iter().cloned().collect();
        let mode_literals = mode_def.and_then(|m| m.literals.clone());
        let base_n = if replace { 0 } else { raw.failregex.len() };
        let list = |over: Option<Vec<String>>, pats: &[Option<Vec<String>>]| {
            if pats.is_empty() {
                return Some(Vec::new());
            }
            match over {
                Some(l) => {
                    let l: Vec<String> = l.into_iter().filter(|s| !s.is_empty()).collect();
                    (!l.is_empty()).then_some(l)
                }
                None => pats
                    .iter()
                    .cloned()
                    .collect::<Option<Vec<Vec<String>>>>()
                    .map(|v| v.concat()),
            }
        };
        let literals: Option<Vec<String>> = match (
            list(raw.literals.take(), &each[..base_n]),
            list(mode_literals, &each[base_n..]),
        ) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            _ => None,
        };
        let (prefilter, literals) = match literals {
            Some(mut l) if !l.is_empty() => {
                l.sort();
                l.dedup();
                // A literal containing another adds nothing to "contains any of them".
                let all = l.clone();
                l.retain(|a| !all.iter().any(|b| b != a && a.contains(b.as_str())));
                let packed = aho_corasick::packed::Config::new()
                    .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
                    .builder()
                    .extend(&l)
                    .build();
                let pf = match (&l[..], packed) {
                    ([one], _) => Prefilter::One(memchr::memmem::Finder::new(one).into_owned()),
                    (_, Some(p)) => Prefilter::Packed(p),
                    _ => Prefilter::Ac(
                        AhoCorasick::builder()
                            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                            .build(&l)
                            .map_err(|e| {
                                loader.err(
                                    &key("literals"),
                                    format!("cannot build the prefilter: {e}"),
                                )
                            })?,
                    ),
                };
                (Some(pf), l)
            }
            _ => (None, Vec::new()),
        };
        // Only an ordering hint for the raw gate (which asks every pattern in the end): the
        // patterns whose own literals hold the one found (also for an override's literals,
        // when they are pieces of the patterns' own, as sshd's are).
        let lit_owners = match &per_pattern {
            Some(pp) => literals
                .iter()
                .map(|l| {
                    (0..pp.len())
                        .filter(|&i| pp[i].iter().any(|x| x.contains(l.as_str())))
                        .map(|i| {
                            let first = fail[i].raw_runs.first().map(|f| f.needle());
                            (
                                i,
                                first
                                    .is_some_and(|r| l.as_bytes().windows(r.len()).any(|w| w == r)),
                            )
                        })
                        .collect()
                })
                .collect(),
            _ => Vec::new(),
        };

        Ok(Filter {
            name: name.to_string(),
            description: raw.description,
            mode: mode_name,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            prefilter,
            literals,
            date,
            tz,
            pref,
            pref_prefix,
            ascii,
            fail_set,
            quick_set,
            direct_max,
            raw_gate: fail.iter().all(|c| !c.raw_runs.is_empty()),
            lit_owners,
            fail,
            ignore_set,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The mode in force (the one asked for, else `default_mode`).
    pub fn mode(&self) -> Option<&str> {
        self.mode.as_deref()
    }

    /// The prefilter's literals; empty when there is no prefilter (every line is tried).
    pub fn literals(&self) -> &[String] {
        &self.literals
    }

    pub fn failregex_count(&self) -> usize {
        self.fail.len()
    }

    /// Matches one line (without its newline). `now_unix` is only used to infer the year
    /// of stamps that have none.
    pub fn match_line(&self, line: &str, now_unix: i64) -> LineMatch {
        if let Some(pf) = &self.prefilter
            && pf.find(line.as_bytes(), 0).is_none()
        {
            return LineMatch::Miss;
        }
        if !self.may_match_raw(line.as_bytes()) {
            return LineMatch::Miss;
        }
        self.match_after_prefilter(line, now_unix)
    }

    /// [`Filter::match_line`] without the literal prefilter: what the prefilter must never
    /// change. For tests and `f2b-ctl regex --no-prefilter`.
    pub fn match_line_unfiltered(&self, line: &str, now_unix: i64) -> LineMatch {
        self.match_after_prefilter(line, now_unix)
    }

    fn match_after_prefilter(&self, line: &str, now: i64) -> LineMatch {
        with_scratch(|s| match self.verdict(line, now, s, true, None) {
            Verdict::Miss => LineMatch::Miss,
            Verdict::Ignored => LineMatch::Ignored,
            Verdict::Failure(f) => LineMatch::Failure(f.to_owned()),
        })
    }

    /// [`Filter::match_line_unfiltered`] with the general (Unicode) engines only.
    #[cfg(test)]
    fn match_line_general(&self, line: &str, now: i64) -> LineMatch {
        with_scratch(|s| match self.verdict(line, now, s, false, None) {
            Verdict::Miss => LineMatch::Miss,
            Verdict::Ignored => LineMatch::Ignored,
            Verdict::Failure(f) => LineMatch::Failure(f.to_owned()),
        })
    }

    /// Finds the failures in a buffer of lines (separated by `\n`, the last one with or
    /// without it; one trailing `\r` of a line is not part of it, as with `str::lines`) and
    /// calls `on_failure(failure, offset of its line in chunk)` for each, in order. Gives the
    /// same failures as [`Filter::match_line`] on every line, but searches the whole buffer
    /// for the prefilter's literals at once and only looks at the lines around a hit.
    pub fn scan(
        &self,
        chunk: &str,
        now_unix: i64,
        on_failure: &mut dyn FnMut(&FailureRef<'_>, usize),
    ) {
        let b = chunk.as_bytes();
        with_scratch(|s| {
            let mut pos = 0usize;
            let mut hint: Option<&[(usize, bool)]> = None;
            while pos < b.len() {
                let (start, end) = match &self.prefilter {
                    Some(pf) => {
                        let Some((m, lit)) = pf.find(b, pos) else {
                            return;
                        };
                        hint = self.lit_owners.get(lit).map(Vec::as_slice);
                        // Literals hold no newline: the hit lies within one line.
                        let start = memchr::memrchr(b'\n', &b[pos..m]).map_or(pos, |i| pos + i + 1);
                        let end = memchr::memchr(b'\n', &b[m..]).map_or(b.len(), |i| m + i);
                        (start, end)
                    }
                    None => {
                        let end = memchr::memchr(b'\n', &b[pos..]).map_or(b.len(), |i| pos + i);
                        (pos, end)
                    }
                };
                pos = end + 1;
                // Both ends sit next to an ASCII byte (or the buffer's ends): char boundaries.
                let raw = &chunk[start..end];
                let line = raw.strip_suffix('\r').unwrap_or(raw);
                let Some(seen) = self.may_match_raw_first(line.as_bytes(), hint) else {
                    continue;
                };
                if let Verdict::Failure(f) = self.verdict(line, now_unix, s, true, seen) {
                    on_failure(&f, start);
                }
            }
        });
    }

    /// The second half of the prefilter: whether some failregex's literal runs are all in
    /// the raw line, in its order (a failregex sees the line with its date cut, and only
    /// prefregex's content of it, where they would be in the same order).
    fn may_match_raw(&self, line: &[u8]) -> bool {
        !self.raw_gate || self.fail.iter().any(|c| in_order(&c.raw_runs, line))
    }

    /// [`Filter::may_match_raw`], asking the failregexes in `first` before the others: the
    /// ones whose literal the prefilter found, nearly always the one that matches, so a
    /// failure line costs one pattern's runs instead of every earlier pattern's too. When
    /// the literal holds a pattern's first run, only the runs after it are looked for (a
    /// looser check than all of them in order: never a line less). None: no pattern can
    /// match; Some(Some(i)): failregex `i`'s runs are in the line.
    fn may_match_raw_first(
        &self,
        line: &[u8],
        first: Option<&[(usize, bool)]>,
    ) -> Option<Option<usize>> {
        if !self.raw_gate {
            return Some(None);
        }
        let first = first.unwrap_or(&[]);
        for &(i, held) in first {
            if let Some(c) = self.fail.get(i)
                && in_order(&c.raw_runs[usize::from(held).min(c.raw_runs.len())..], line)
            {
                return Some(Some(i));
            }
        }
        self.fail
            .iter()
            .enumerate()
            .find(|&(i, c)| !first.iter().any(|&(j, _)| j == i) && in_order(&c.raw_runs, line))
            .map(|(i, _)| Some(i))
    }

    /// Everything after the prefilter, cheapest check first: date position, the failregexes
    /// without assertions (one DFA pass, no captures), then prefregex and the captures of
    /// the failregex that matched.
    ///
    /// `fast`: ASCII text may take the ASCII engines (always, but for the test that holds
    /// them to the general ones).
    ///
    /// `seen`: a failregex whose literal runs the raw line holds (see
    /// [`Filter::may_match_raw_first`]).
    fn verdict<'a>(
        &self,
        line: &'a str,
        now: i64,
        s: &'a mut Scratch,
        fast: bool,
        seen: Option<usize>,
    ) -> Verdict<'a> {
        let found = self.date.find(line, self.tz, now);
        let Scratch {
            buf,
            locs,
            bts,
            pats,
            spans,
            v4,
            memo,
        } = s;
        let text: &str = match found {
            None => line,
            Some(f) if f.start == 0 => &line[f.end..],
            Some(f) => {
                buf.clear();
                buf.push_str(&line[..f.start]);
                buf.push_str(&line[f.end..]);
                buf.as_str()
            }
        };
        let ascii = fast && text.is_ascii();
        // Only worth a pass of its own when prefregex needs a capturing search.
        if self.pref_prefix.is_none() && self.pref.is_some() {
            let miss = match (&self.ascii.quick_set, &self.quick_set) {
                (Some(q), _) if ascii => !q.is_match(text.as_bytes()),
                (_, Some(q)) => !q.is_match(text),
                _ => false,
            };
            if miss {
                return Verdict::Miss;
            }
        }
        self.match_text(
            text,
            ascii,
            found.map(|f| f.time),
            seen,
            locs,
            bts,
            pats,
            (spans, v4, memo),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn match_text<'a>(
        &self,
        text: &'a str,
        ascii: bool,
        time: Option<i64>,
        seen: Option<usize>,
        locs: &'a mut Vec<((u64, usize), CaptureLocations)>,
        bts: &'a mut Vec<((u64, usize), BtSlot)>,
        pats: &mut Option<PatternSet>,
        (spans, v4, memo): ChainOut<'a, '_>,
    ) -> Verdict<'a> {
        // Slots of prefregex, then of the failregex, both in the per-thread list.
        let mut pref_span: Option<(usize, usize)> = None;
        let dense = match &self.ascii.pref_prefix_dense {
            Some(d) if ascii => chain::first_end_memo(d, text.as_bytes(), memo, self.id),
            _ => None,
        };
        let prefix_end = match (dense, &self.ascii.pref_prefix, &self.pref_prefix) {
            (Some(e), _, _) => Some(e),
            (None, Some(x), _) if ascii => Some(x.find(text.as_bytes()).map(|m| m.end())),
            (None, _, Some(x)) => Some(x.find(text).map(|m| m.end())),
            _ => None,
        };
        let fast = match prefix_end {
            Some(None) => return Verdict::Miss,
            // On an ASCII text every offset is a char boundary; else a match ends on one.
            Some(Some(e)) if e < text.len() => Some(&text[e..]),
            _ => None,
        };
        let content = match (&self.pref, fast) {
            (None, _) => text,
            (Some(_), Some(c)) => c,
            (Some(p), None) => {
                let l = locs_for(locs, (self.id, PREF), &p.re);
                if p.re.captures_read(l, text).is_none() {
                    return Verdict::Miss;
                }
                let Some((a, b)) = p.content.iter().find_map(|&g| l.get(g)) else {
                    return Verdict::Miss;
                };
                pref_span = Some((a, b));
                &text[a..b]
            }
        };
        // The first pattern that matches, as `RegexSet::matches` would say, without
        // allocating its answer.
        // Backtrackers are keyed 2 * pattern (+ 1 for the ASCII one), capture locations by
        // pattern: two lists.
        let (idx, via) = if ascii && content.len() <= self.direct_max {
            // Every failregex starts with `^`: each is tried at the content's start only, in
            // order, and the first that matches is the one `RegexSet` would name; a wrong
            // one usually fails within a few bytes. Its captures come with the answer.
            let mut hit = None;
            for (idx, c) in self.fail.iter().enumerate() {
                let Some(bt) = &c.abt else { break };
                if !c.may_match_at_start(content.as_bytes(), seen == Some(idx)) {
                    continue;
                }
                if let Some(ch) = c.chain.as_deref() {
                    let base = CHAIN_KEY + idx * MAX_STEPS;
                    let out = ch.run(content.as_bytes(), spans, v4, bts, (self.id, base));
                    match out {
                        chain::Outcome::Match => {
                            hit = Some((idx, Via::Chain));
                            break;
                        }
                        chain::Outcome::NoMatch => continue,
                        chain::Outcome::Unknown => {}
                    }
                }
                // The whole pattern, or its head up to where its tail must start.
                let (bt, key, hay) =
                    match c.tail.as_deref().map(|t| (t, t.start(content.as_bytes()))) {
                        Some((_, Ok(None))) => continue,
                        Some((t, Ok(Some(q)))) => {
                            (&t.head, (self.id, usize::MAX - 1 - idx), &content[..q])
                        }
                        _ => (bt, (self.id, 2 * idx + 1), content),
                    };
                let slot = bt_for(bts, key, bt);
                let input = Input::new(hay).anchored(Anchored::Yes);
                if bt
                    .try_search(&mut slot.cache, &input, &mut slot.caps)
                    .is_ok()
                    && slot.caps.is_match()
                {
                    hit = Some((idx, Via::Bt(key)));
                    break;
                }
            }
            match hit {
                Some(h) => h,
                None => return Verdict::Miss,
            }
        } else {
            let n = self.fail.len();
            let ps = match pats {
                Some(p) if p.capacity() >= n => p,
                _ => pats.insert(PatternSet::new(n)),
            };
            ps.clear();
            let idx = match (&self.ascii.first, &self.ascii.fail_set) {
                // All start with `^`: the leftmost-first match is the first pattern that
                // matches, in one pass that stops where the first pattern's match does.
                (Some(f), _) if ascii => f
                    .find(Input::new(content).anchored(Anchored::Yes))
                    .map(|m| m.pattern().as_usize()),
                (_, Some(a)) if ascii => {
                    a.which_overlapping_matches(&Input::new(content), ps);
                    ps.iter().next().map(|p| p.as_usize())
                }
                _ => {
                    self.fail_set
                        .which_overlapping_matches(&Input::new(content), ps);
                    ps.iter().next().map(|p| p.as_usize())
                }
            };
            let Some(idx) = idx else {
                return Verdict::Miss;
            };
            let c = &self.fail[idx];
            let (bt, key) = match (&c.abt, &c.bt) {
                (Some(a), _) if ascii => (Some(a), (self.id, 2 * idx + 1)),
                (_, b) => (b.as_ref(), (self.id, 2 * idx)),
            };
            let via = match bt {
                Some(bt) if content.len() <= bt.max_haystack_len() => {
                    let slot = bt_for(bts, key, bt);
                    if bt
                        .try_search(&mut slot.cache, &Input::new(content), &mut slot.caps)
                        .is_err()
                        || !slot.caps.is_match()
                    {
                        return Verdict::Miss;
                    }
                    Via::Bt(key)
                }
                _ => {
                    let l = locs_for(locs, (self.id, idx), &c.re);
                    if c.re.captures_read(l, content).is_none() {
                        return Verdict::Miss;
                    }
                    Via::Locs
                }
            };
            (idx, via)
        };
        let c = &self.fail[idx];
        let fl = match via {
            Via::Bt(key) => match bts.iter().find(|(k, _)| *k == key) {
                Some((_, s)) => Groups::Bt(&s.caps),
                None => return Verdict::Miss,
            },
            Via::Locs => match locs.iter().find(|(k, _)| *k == (self.id, idx)) {
                Some((_, l)) => Groups::Locs(l),
                None => return Verdict::Miss,
            },
            Via::Chain => Groups::Spans(spans),
        };
        if c.nofail.iter().any(|&g| fl.get(g).is_some()) {
            return Verdict::Miss;
        }
        let pl = pref_span.and_then(|_| {
            locs.iter()
                .find(|(k, _)| *k == (self.id, PREF))
                .map(|(_, l)| l)
        });
        let first = |gs: &[usize]| {
            gs.iter()
                .find_map(|&g| fl.get(g))
                .map(|(a, b)| &content[a..b])
        };
        let from_pref = |gs: fn(&Compiled) -> &Vec<usize>| -> Option<&'a str> {
            let (p, l) = (self.pref.as_ref()?, pl?);
            gs(p)
                .iter()
                .find_map(|&g| l.get(g))
                .map(|(a, b)| &text[a..b])
        };
        let host_span = c.host.iter().find_map(|&g| fl.get(g));
        let host = host_span
            .map(|(a, b)| &content[a..b])
            .or_else(|| from_pref(|p| &p.host));
        let Some(host) = host else {
            return Verdict::Miss;
        };
        // The chain's `<HOST>` step read the address already when it is this span.
        let read = match (via, *v4) {
            (Via::Chain, Some((span, ip))) if host_span == Some(span) => Some(IpAddr::V4(ip)),
            _ => None,
        };
        let Some(ip) = read.or_else(|| parse_ip(host)) else {
            // Not an address (hostnames are never looked up): nothing to ban.
            return Verdict::Miss;
        };
        if let Some(ig) = &self.ignore_set
            && ig.is_match(text)
        {
            return Verdict::Ignored;
        }
        let user = first(&c.user)
            .or_else(|| from_pref(|p| &p.user))
            .or_else(|| first(&c.alt_user))
            .or_else(|| from_pref(|p| &p.alt_user));
        let id = first(&c.id).or_else(|| from_pref(|p| &p.id));
        Verdict::Failure(FailureRef {
            ip,
            host,
            time,
            failregex: idx,
            user,
            id,
        })
    }
}

fn item<'a>(path: Vec<&'a str>, i: usize, what: &str, n: usize) -> Origin<'a> {
    Origin {
        path,
        item: Some(i),
        what: format!("{what} {n}"),
    }
}

/// The address in a `<HOST>` capture: IPv4, IPv6, IPv4-mapped IPv6 (given as IPv4).
fn parse_ip(s: &str) -> Option<IpAddr> {
    // Most hosts are plain IPv4: read in one pass before anything else is looked at (the
    // checks below would send such a host to the same reader).
    if let Some(v4) = parse_v4(s.as_bytes()) {
        return Some(IpAddr::V4(v4));
    }
    // Byte-wise `trim_start_matches('[')` / `trim_end_matches(']')` (the char-pattern forms
    // cost more than the IPv4 read below).
    let b = s.as_bytes();
    let a = b.iter().position(|&c| c != b'[').unwrap_or(b.len());
    let z = b
        .iter()
        .rposition(|&c| c != b']')
        .map_or(a, |z| (z + 1).max(a));
    let s = &s[a..z];
    // Digits and dots can only be IPv4: read in place (the std parser costs several times
    // more, and most failures carry IPv4 addresses).
    if s.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return parse_v4(s.as_bytes()).map(IpAddr::V4);
    }
    // Hex digits and colons only (no embedded IPv4): IPv6 read in place, same reason.
    if s.bytes().all(|c| c.is_ascii_hexdigit() || c == b':') {
        let v6 = parse_v6_hex(s.as_bytes())?;
        return Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4));
    }
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)),
        v4 => Some(v4),
    }
}

/// serde_yaml's message without its trailing " at line L column C" (the prefix says where).
fn yaml_message(e: &serde_yaml::Error) -> String {
    let m = e.to_string();
    match m.find(" at line ") {
        Some(i) => m[..i].to_string(),
        None => m,
    }
}

#[cfg(test)]
mod tests;
