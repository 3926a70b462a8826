//! A failregex's captures without a backtracker over the whole line: the pattern is cut
//! along its top-level sequence ([`pattern::chain_parts`]) and each step's end is found by a
//! fully compiled DFA, left to right. A step that is one capture group gives that group's
//! span directly; a lazy `.*?` (sshd's user name) ends where a reverse DFA of the rest of the
//! pattern says the rest can first match; only a step holding nested groups (sshd's
//! `<F-NOFAIL>` inside an alternative) runs a backtracker, on its own short span.
//!
//! Leftmost-first is a priority order over paths, compared step by step: the highest-priority
//! match of step 1, then of step 2 from its end, and so on, is the highest-priority complete
//! match whenever every step succeeds, which is what a backtracker reports. When a step does
//! not succeed, a lower-priority choice earlier on might still lead to a match: the caller
//! then asks the backtracker ([`Outcome::Unknown`]); only a failing first step rules the
//! pattern out. For ASCII text (the engines are compiled with Unicode off).

use regex_automata::dfa::{Automaton, dense};
use regex_automata::nfa::thompson::{self, backtrack::BoundedBacktracker};
use regex_automata::{Anchored, Input};

use super::pattern::{self, ChainPart};
use super::{BtSlot, DENSE_LIMIT, ascii_dense, ascii_syntax, bt_for};

#[derive(Debug, Clone)]
pub(super) struct Chain {
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
enum Step {
    Fwd {
        dfa: Box<dense::DFA<Vec<u32>>>,
        group: Option<usize>,
        inner: Option<Inner>,
    },
    Lazy {
        group: Option<usize>,
        min: usize,
        except_lf: bool,
        end: LazyEnd,
    },
}

/// How a lazy step finds its end.
#[derive(Debug, Clone)]
enum LazyEnd {
    /// The rest of the pattern, reversed, every match, anchored at the end of the text: the
    /// leftmost place the rest can match.
    Rev(Box<dense::DFA<Vec<u32>>>),
    /// The rest starts with this literal: its first occurrence. Any match of the rest starts
    /// with it, so when the steps after succeed from there, no earlier end could have
    /// matched; when they do not, the backtracker decides.
    Lit(Box<memchr::memmem::Finder<'static>>),
}

/// Captures nested in a step: `(?:S)$` on the step's span, and which of its groups is which
/// group of the whole pattern.
#[derive(Debug, Clone)]
pub(super) struct Inner {
    pub(super) bt: BoundedBacktracker,
    map: Vec<(usize, usize)>,
    /// A literal per nested group that it contains when it takes part: a span with none
    /// of them has no capture, and the backtracker is not run (sshd's `<F-NOFAIL>publickey`
    /// on "Failed password for").
    needles: Option<Vec<memchr::memmem::Finder<'static>>>,
}

/// What a chain says about a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The pattern matches; the spans are its captures.
    Match,
    /// The pattern does not match.
    NoMatch,
    /// The chain cannot tell: ask the backtracker.
    Unknown,
}

impl Chain {
    /// `names`: the whole pattern's group names by index (to map nested groups).
    pub(super) fn new(regex: &str, names: &[Option<&str>]) -> Option<Chain> {
        let parts = pattern::chain_parts(regex)?;
        // Nothing to gain over one backtracker run when no group has a step of its own.
        if !parts.iter().any(|p| {
            matches!(
                p,
                ChainPart::Fwd { group: Some(_), .. } | ChainPart::Lazy { group: Some(_), .. }
            )
        }) {
            return None;
        }
        let mut steps = Vec::with_capacity(parts.len());
        for p in parts {
            steps.push(match p {
                ChainPart::Fwd {
                    regex,
                    group,
                    captures,
                    needles,
                } => {
                    let inner = if captures {
                        let src = format!("(?:{regex})$");
                        let bt = BoundedBacktracker::builder()
                            .syntax(ascii_syntax())
                            .thompson(thompson::Config::new().utf8(false))
                            .build(&src)
                            .ok()?;
                        let mut map = Vec::new();
                        for (i, n) in bt
                            .get_nfa()
                            .group_info()
                            .pattern_names(0.into())
                            .enumerate()
                        {
                            let Some(n) = n else { continue };
                            let full = names.iter().position(|x| *x == Some(n))?;
                            map.push((i, full));
                        }
                        let needles = needles.map(|v| {
                            v.iter()
                                .map(|n| memchr::memmem::Finder::new(n).into_owned())
                                .collect()
                        });
                        Some(Inner { bt, map, needles })
                    } else {
                        None
                    };
                    Step::Fwd {
                        dfa: Box::new(ascii_dense(&regex)?),
                        group,
                        inner,
                    }
                }
                ChainPart::Lazy {
                    group,
                    min,
                    except_lf,
                    rest,
                    lit,
                } => Step::Lazy {
                    group,
                    min,
                    except_lf,
                    end: match lit {
                        Some(l) => {
                            LazyEnd::Lit(Box::new(memchr::memmem::Finder::new(&l).into_owned()))
                        }
                        None => LazyEnd::Rev(Box::new(reverse_all(&rest)?)),
                    },
                },
            });
        }
        Some(Chain { steps })
    }

    /// Runs the chain on `t` (ASCII), anchored at its start. On [`Outcome::Match`],
    /// `spans[g]` is group `g`'s span (None: it did not take part). A step with nested
    /// captures keeps its backtracker cache in `bts` under `(key.0, key.1 + step)`.
    pub(super) fn run(
        &self,
        t: &[u8],
        spans: &mut Vec<Option<(usize, usize)>>,
        groups: usize,
        bts: &mut Vec<((u64, usize), BtSlot)>,
        key: (u64, usize),
    ) -> Outcome {
        spans.clear();
        spans.resize(groups, None);
        let mut pos = 0;
        for (k, step) in self.steps.iter().enumerate() {
            match step {
                Step::Fwd { dfa, group, inner } => {
                    let e = match first_end(dfa, t, pos) {
                        Some(Some(e)) => e,
                        Some(None) if k == 0 => return Outcome::NoMatch,
                        _ => return Outcome::Unknown,
                    };
                    if let Some(g) = group {
                        spans[*g] = Some((pos, e));
                    }
                    if let Some(inn) = inner
                        && inn
                            .needles
                            .as_ref()
                            .is_none_or(|ns| ns.iter().any(|n| n.find(&t[pos..e]).is_some()))
                    {
                        let s = bt_for(bts, (key.0, key.1 + k), &inn.bt);
                        let input = Input::new(&t[..e]).span(pos..e).anchored(Anchored::Yes);
                        if inn
                            .bt
                            .try_search(&mut s.cache, &input, &mut s.caps)
                            .is_err()
                            || !s.caps.is_match()
                        {
                            return Outcome::Unknown;
                        }
                        for &(i, full) in &inn.map {
                            spans[full] = s.caps.get_group(i).map(|sp| (sp.start, sp.end));
                        }
                    }
                    pos = e;
                }
                Step::Lazy {
                    group,
                    min,
                    except_lf,
                    end,
                } => {
                    let q = match end {
                        LazyEnd::Rev(rev) => leftmost_rest(rev, t, pos + min),
                        LazyEnd::Lit(f) => t
                            .get(pos + min..)
                            .and_then(|r| f.find(r))
                            .map(|i| pos + min + i),
                    };
                    let Some(q) = q else {
                        return Outcome::Unknown;
                    };
                    if *except_lf && memchr::memchr(b'\n', &t[pos..q]).is_some() {
                        return Outcome::Unknown;
                    }
                    if let Some(g) = group {
                        spans[*g] = Some((pos, q));
                    }
                    pos = q;
                }
            }
        }
        Outcome::Match
    }
}

/// Where the leftmost-first match of `dfa` (anchored) starting at `pos` ends: Some(None) no
/// match, None the DFA gave up. Stepped by hand (as `try_search_fwd` does, without its
/// per-call set-up): a match state after the byte at `at` means a match ending at `at`, and
/// a leftmost-first DFA dies once no higher-priority match can follow, so the last match
/// seen is the one.
fn first_end(dfa: &dense::DFA<Vec<u32>>, t: &[u8], pos: usize) -> Option<Option<usize>> {
    let input = Input::new(t).range(pos..).anchored(Anchored::Yes);
    let mut sid = dfa.start_state_forward(&input).ok()?;
    let mut last = None;
    if dfa.is_dead_state(sid) {
        return Some(None);
    }
    for (i, &b) in t[pos..].iter().enumerate() {
        // SAFETY: `sid` is always a state of this DFA (its start state or a transition's
        // target), which is all next_state_unchecked asks.
        sid = unsafe { dfa.next_state_unchecked(sid, b) };
        if dfa.is_special_state(sid) {
            if dfa.is_match_state(sid) {
                last = Some(pos + i);
            } else if dfa.is_dead_state(sid) {
                return Some(last);
            } else if dfa.is_quit_state(sid) {
                return None;
            }
        }
    }
    if dfa.is_match_state(dfa.next_eoi_state(sid)) {
        last = Some(t.len());
    }
    Some(last)
}

/// A reverse DFA of `pattern` (which ends with `$`) reporting every match, anchored at the
/// end of the text.
pub(super) fn reverse_all(pattern: &str) -> Option<dense::DFA<Vec<u32>>> {
    dense::Builder::new()
        .syntax(ascii_syntax())
        .thompson(thompson::Config::new().utf8(false).reverse(true))
        .configure(
            dense::Config::new()
                .match_kind(regex_automata::MatchKind::All)
                .start_kind(regex_automata::dfa::StartKind::Anchored)
                .dfa_size_limit(Some(DENSE_LIMIT))
                .determinize_size_limit(Some(4 * DENSE_LIMIT)),
        )
        .build(pattern)
        .ok()
}

/// The leftmost position `q >= from` where `rev`'s pattern matches `t[q..]`. The DFA is
/// stepped by hand right to left: a match state after the byte at `at` means a match
/// starting at `at + 1`.
fn leftmost_rest(rev: &dense::DFA<Vec<u32>>, t: &[u8], from: usize) -> Option<usize> {
    if from > t.len() {
        return None;
    }
    let input = Input::new(t).anchored(Anchored::Yes);
    let mut sid = rev.start_state_reverse(&input).ok()?;
    let mut found = None;
    let lo = from.saturating_sub(1);
    for (i, &b) in t[lo..].iter().enumerate().rev() {
        let at = lo + i;
        // SAFETY: as in `first_end`.
        sid = unsafe { rev.next_state_unchecked(sid, b) };
        if rev.is_special_state(sid) {
            if rev.is_match_state(sid) {
                found = Some(at + 1);
            } else if rev.is_dead_state(sid) {
                return found;
            } else if rev.is_quit_state(sid) {
                return None;
            }
        }
    }
    if from == 0 && rev.is_match_state(rev.next_eoi_state(sid)) {
        found = Some(0);
    }
    found
}
