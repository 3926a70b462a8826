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
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, Input};

use super::pattern::{self, ChainPart, HostForm};
use super::{BtSlot, DENSE_LIMIT, ascii_dense, ascii_syntax, bt_for};

#[derive(Debug, Clone)]
pub(super) struct Chain {
    steps: Vec<Step>,
    /// The whole pattern's capture groups (group 0 included): the length of `spans`.
    groups: usize,
}

#[derive(Debug, Clone)]
enum Step {
    Fwd {
        dfa: Box<ShortcutDfa>,
        group: Option<usize>,
        inner: Option<Inner>,
        skip: Option<Box<Skip>>,
    },
    /// A literal, then at most one optional byte ([`pattern::literal_step`]): its end read
    /// off the text by [`lit_end`].
    Lit {
        group: Option<usize>,
        start: bool,
        lit: Box<[u8]>,
        opt: Option<u8>,
    },
    /// A `<HOST>` group: its end read by [`host_read`], which gives what the group's DFA
    /// would (its leftmost-first match), without stepping a DFA of a few hundred states.
    Host { group: usize, form: HostForm },
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

/// A literal every match of a forward step starts with, and the step's DFA state after it
/// from each kind of start (see [`start_class`]; None: a special state on the way, so the
/// DFA is stepped over the literal). The literal is compared instead of stepped over.
#[derive(Debug, Clone)]
pub(super) struct Skip {
    lit: Vec<u8>,
    /// [`ShortcutDfa`] ids.
    after: [Option<u32>; 5],
}

/// A DFA in a table of its own, with shortcuts for two kinds of state, which [`first_end`]
/// takes instead of one dependent transition load per byte (the library's own acceleration
/// covers loops left by at most 3 bytes; `\S` is left by 6, and it has nothing for literals
/// mid-pattern):
/// - a state that loops on itself for at least [`MIN_LOOP`] bytes (`\S+`, `[^"]*`, `\d+`):
///   the next byte that leaves it is found with a table lookup per byte, loads that do not
///   wait on each other;
/// - a state from which only one byte leads anywhere but the dead (or quit) state, then
///   again from the next, for at least [`MIN_RUN`] bytes (`, server: `, `" was not found
///   in "`): the text is compared with that literal, and on a match the state after it is
///   taken at once. On a mismatch the DFA is stepped as usual (it dies or quits there).
///
/// The transitions are a table of its own whose entries carry two flags beside the next
/// state's id: [`MATCH`] (a match ends at the byte just stepped: recorded without a branch)
/// and [`LOOK`] (dead, quit, accelerated, or a shortcut: its [`Look`] is read). A step is a
/// class load, a transition load and a test of the flags, where the library's DFA plus a
/// shortcut table took a second lookup per byte and a branch per match state.
#[derive(Debug, Clone)]
pub(super) struct ShortcutDfa {
    /// The library's DFA, for start states the table cannot give (and the tests).
    pub(super) dfa: dense::DFA<Vec<u32>>,
    /// `next[(id & ID) + cls[byte]]`: the next state's id with its flags. Ids are state
    /// indexes shifted left by `stride2`.
    next: Box<[u32]>,
    cls: [u8; 256],
    stride2: u32,
    /// By state index (all states: most have nothing in it).
    looks: Box<[Look]>,
    /// By state index: a match ends at the end of the text when it ends in this state.
    eoi: Box<[bool]>,
    /// This table's id of each of the library's states, by the library's state index.
    remap: Box<[u32]>,
    /// The anchored start state by [`start_class`] of the byte before, when every byte of a
    /// class leads to the same one (else None: the library's DFA is asked).
    starts: Option<[u32; 5]>,
}

/// A [`ShortcutDfa`] id's flag: a match ends at the byte that entered the state.
const MATCH: u32 = 1 << 31;
/// A [`ShortcutDfa`] id's flag: the state's [`Look`] has something.
const LOOK: u32 = 1 << 30;
/// The id without its flags.
const ID: u32 = LOOK - 1;

/// What a state holds besides its transitions and whether it matches.
#[derive(Debug, Clone, Default)]
struct Look {
    dead: bool,
    quit: bool,
    /// Entered: it stays until the next of these bytes (the library's acceleration).
    accel: Option<Box<[u8]>>,
    /// In it, before the next byte: the shortcut.
    jump: Option<Jump>,
}

#[derive(Debug, Clone)]
enum Jump {
    /// The state stays on every byte but these (true: leaves).
    Loop(Box<[bool; 256]>),
    /// The literal only leads on, and the state after it (non-special, as are those on the
    /// way).
    Run(Box<[u8]>, u32),
}

/// Loops on fewer bytes are stepped: they rarely run long.
const MIN_LOOP: usize = 4;
/// Shorter literals are stepped: taking the shortcut costs a branch the CPU mispredicts.
const MIN_RUN: usize = 4;

impl ShortcutDfa {
    pub(super) fn new(dfa: dense::DFA<Vec<u32>>) -> ShortcutDfa {
        let classes = *dfa.byte_classes();
        let cls: [u8; 256] = std::array::from_fn(|b| classes.get(b as u8));
        let nclass = usize::from(cls.iter().copied().max().unwrap_or(0)) + 1;
        let reps: Vec<u8> = (0..nclass)
            .map(|c| cls.iter().position(|&k| usize::from(k) == c).unwrap_or(0) as u8)
            .collect();
        // Every state reachable from an anchored start, whatever the look-behind.
        let mut seen = std::collections::HashSet::new();
        let mut todo = Vec::new();
        for lb in std::iter::once(None).chain((0..=255u8).map(Some)) {
            let cfg = start::Config::new().anchored(Anchored::Yes).look_behind(lb);
            if let Ok(s) = dfa.start_state(&cfg)
                && seen.insert(s)
            {
                todo.push(s);
            }
        }
        while let Some(s) = todo.pop() {
            for &b in &reps {
                let n = dfa.next_state(s, b);
                if seen.insert(n) {
                    todo.push(n);
                }
            }
        }
        // The one byte that leads on from a state, and where.
        let forced = |s: StateID| -> Option<(u8, StateID)> {
            if dfa.is_special_state(s) {
                return None;
            }
            let mut live = (0..=255u8).filter_map(|b| {
                let n = dfa.next_state(s, b);
                (!dfa.is_dead_state(n) && !dfa.is_quit_state(n)).then_some((b, n))
            });
            let one = live.next()?;
            (live.next().is_none() && !dfa.is_special_state(one.1)).then_some(one)
        };
        // Shortcuts (with the library's ids for now), of non-special states only.
        let mut jumps = std::collections::HashMap::new();
        for &s in &seen {
            if dfa.is_special_state(s) {
                continue;
            }
            let leave: [bool; 256] = std::array::from_fn(|b| dfa.next_state(s, b as u8) != s);
            if leave.iter().filter(|l| !**l).count() >= MIN_LOOP {
                jumps.insert(s, (Some(Box::new(leave)), Vec::new(), s));
                continue;
            }
            let (mut lit, mut to) = (Vec::new(), s);
            while let Some((b, n)) = forced(to) {
                if lit.len() >= 255 {
                    break;
                }
                lit.push(b);
                to = n;
            }
            if lit.len() >= MIN_RUN {
                jumps.insert(s, (None, lit, to));
            }
        }
        // Numbered anew, in the library's order; flags ride on the ids.
        let mut states: Vec<StateID> = seen.into_iter().collect();
        states.sort();
        let stride2 = nclass.next_power_of_two().trailing_zeros();
        let old2 = dfa.stride2();
        let max_old = states
            .iter()
            .map(|s| s.as_usize() >> old2)
            .max()
            .unwrap_or(0);
        let mut remap = vec![0u32; max_old + 1];
        for (i, &s) in states.iter().enumerate() {
            let look = dfa.is_special_state(s) && !dfa.is_match_state(s)
                || dfa.is_accel_state(s)
                || jumps.contains_key(&s);
            remap[s.as_usize() >> old2] = (i << stride2) as u32
                | if dfa.is_match_state(s) { MATCH } else { 0 }
                | if look { LOOK } else { 0 };
        }
        let id = |s: StateID| remap[s.as_usize() >> old2];
        let mut next = vec![0u32; states.len() << stride2];
        let mut looks = Vec::with_capacity(states.len());
        let mut eoi = Vec::with_capacity(states.len());
        for (i, &s) in states.iter().enumerate() {
            for (c, &b) in reps.iter().enumerate() {
                next[(i << stride2) + c] = id(dfa.next_state(s, b));
            }
            eoi.push(dfa.is_match_state(dfa.next_eoi_state(s)));
            looks.push(Look {
                dead: dfa.is_dead_state(s),
                quit: dfa.is_quit_state(s),
                accel: dfa
                    .is_accel_state(s)
                    .then(|| dfa.accelerator(s).to_vec().into_boxed_slice()),
                jump: jumps.get(&s).map(|(leave, lit, to)| match leave {
                    Some(l) => Jump::Loop(l.clone()),
                    None => Jump::Run(lit.clone().into_boxed_slice(), id(*to)),
                }),
            });
        }
        let starts = class_starts(&dfa).map(|st| st.map(id));
        ShortcutDfa {
            next: next.into_boxed_slice(),
            cls,
            stride2,
            looks: looks.into_boxed_slice(),
            eoi: eoi.into_boxed_slice(),
            remap: remap.into_boxed_slice(),
            starts,
            dfa,
        }
    }

    /// This table's id of one of the library DFA's states (all are numbered that an
    /// anchored search can reach).
    fn id(&self, s: StateID) -> u32 {
        self.remap[s.as_usize() >> self.dfa.stride2()]
    }

    /// The look of a state (an id with or without flags).
    #[inline(always)]
    fn look(&self, sid: u32) -> &Look {
        &self.looks[((sid & ID) >> self.stride2) as usize]
    }

    #[cfg(test)]
    fn shortcuts(&self) -> usize {
        self.looks.iter().filter(|l| l.jump.is_some()).count()
    }
}

/// Which start state an anchored search at `pos` of `t` begins in, by the byte before it (as
/// the DFA's own start map has it: checked when a [`Skip`] is built): none, `\n`, `\r`, a
/// word byte, another byte.
fn start_class(t: &[u8], pos: usize) -> usize {
    match pos.checked_sub(1).map(|i| t[i]) {
        None => 0,
        Some(b'\n') => 1,
        Some(b'\r') => 2,
        Some(b) if b.is_ascii_alphanumeric() || b == b'_' => 3,
        Some(_) => 4,
    }
}

/// A look-behind byte of each [`start_class`].
const CLASS_BYTES: [Option<u8>; 5] = [None, Some(b'\n'), Some(b'\r'), Some(b'a'), Some(b' ')];

/// The anchored start state of each [`start_class`], when every look-behind byte leads to
/// the start state of its class's representative (else None).
fn class_starts(dfa: &dense::DFA<Vec<u32>>) -> Option<[StateID; 5]> {
    let start = |lb: Option<u8>| {
        dfa.start_state(&start::Config::new().anchored(Anchored::Yes).look_behind(lb))
            .ok()
    };
    let mut reps = [StateID::ZERO; 5];
    for (r, &b) in reps.iter_mut().zip(&CLASS_BYTES) {
        *r = start(b)?;
    }
    for b in 0..=255u8 {
        if start(Some(b)) != Some(reps[start_class(&[b], 1)]) {
            return None;
        }
    }
    Some(reps)
}

impl Skip {
    fn new(sd: &ShortcutDfa, lit: Vec<u8>) -> Option<Skip> {
        // Every byte of a class must lead to the start state its representative does.
        let starts = sd.starts?;
        // What the library calls special: match, dead, quit or accelerated (a state with
        // only a shortcut is not).
        let special = |sid: u32| {
            sid & MATCH != 0 || {
                let l = sd.look(sid);
                sid & LOOK != 0 && (l.dead || l.quit || l.accel.is_some())
            }
        };
        let mut after = [None; 5];
        for (slot, &start) in after.iter_mut().zip(&starts) {
            let mut sid = start;
            let mut ok = !special(sid);
            for &b in &lit {
                if !ok {
                    break;
                }
                sid = sd.next[(sid & ID) as usize + usize::from(sd.cls[usize::from(b)])];
                ok = !special(sid);
            }
            if ok {
                *slot = Some(sid);
            }
        }
        Some(Skip { lit, after })
    }
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

/// The span of the last `<HOST>` step that read an IPv4 address, and the address.
pub(super) type HostV4 = ((usize, usize), std::net::Ipv4Addr);

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
                    group: Some(g),
                    captures: false,
                    ..
                } if pattern::host_form(&regex).is_some() => Step::Host {
                    group: g,
                    form: pattern::host_form(&regex)?,
                },
                ChainPart::Fwd {
                    regex,
                    group,
                    captures: false,
                    ..
                } if pattern::literal_step(&regex).is_some() => {
                    let (start, lit, opt) = pattern::literal_step(&regex)?;
                    Step::Lit {
                        group,
                        start,
                        lit: lit.into_boxed_slice(),
                        opt,
                    }
                }
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
                    let dfa = ShortcutDfa::new(ascii_dense(&regex)?);
                    let skip = pattern::literal_prefix(&regex)
                        .and_then(|l| Skip::new(&dfa, l))
                        .map(Box::new);
                    Step::Fwd {
                        dfa: Box::new(dfa),
                        group,
                        inner,
                        skip,
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
        Some(Chain {
            steps,
            groups: names.len(),
        })
    }

    /// Runs the chain on `t` (ASCII), anchored at its start. On [`Outcome::Match`],
    /// `spans[g]` is group `g`'s span (None: it did not take part). A step with nested
    /// captures keeps its backtracker cache in `bts` under `(key.0, key.1 + step)`.
    pub(super) fn run(
        &self,
        t: &[u8],
        spans: &mut Vec<Option<(usize, usize)>>,
        v4: &mut Option<HostV4>,
        bts: &mut Vec<((u64, usize), BtSlot)>,
        key: (u64, usize),
    ) -> Outcome {
        *v4 = None;
        spans.clear();
        spans.resize(self.groups, None);
        let mut pos = 0;
        for (k, step) in self.steps.iter().enumerate() {
            match step {
                Step::Host { group, form } => {
                    let Some((e, ip)) = host_read(*form, t, pos) else {
                        return if k == 0 {
                            Outcome::NoMatch
                        } else {
                            Outcome::Unknown
                        };
                    };
                    spans[*group] = Some((pos, e));
                    if let Some(ip) = ip {
                        *v4 = Some(((pos, e), ip));
                    }
                    pos = e;
                }
                Step::Lit {
                    group,
                    start,
                    lit,
                    opt,
                } => {
                    let Some(e) = lit_end(*start, lit, *opt, t, pos) else {
                        return if k == 0 {
                            Outcome::NoMatch
                        } else {
                            Outcome::Unknown
                        };
                    };
                    if let Some(g) = group {
                        spans[*g] = Some((pos, e));
                    }
                    pos = e;
                }
                Step::Fwd {
                    dfa,
                    group,
                    inner,
                    skip,
                } => {
                    let e = match first_end(dfa, t, pos, skip.as_deref()) {
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
                        LazyEnd::Lit(f) => near_find(f, t, pos + min),
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
/// seen is the one. An accelerated state (it loops on all but a few bytes) skips to the next
/// of those bytes, as the library's search does. With a [`Skip`], its literal is compared
/// rather than stepped over.
pub(super) fn first_end(
    ld: &ShortcutDfa,
    t: &[u8],
    pos: usize,
    skip: Option<&Skip>,
) -> Option<Option<usize>> {
    walk(ld, t, pos, skip, &mut ())
}

/// Bytes of a text's start whose DFA states a [`Memo`] keeps.
const MEMO_BYTES: usize = 48;

/// The states a DFA went through from the start of the last text it was run on (see
/// [`first_end_memo`]).
#[derive(Debug)]
pub(super) struct Memo {
    /// The DFA's owner (a filter's id); 0: nothing kept.
    key: u64,
    /// The text's first `len` bytes.
    bytes: [u8; MEMO_BYTES],
    len: usize,
    /// The states before positions `0..=hi` are kept (usize::MAX: none): the walk passed
    /// each of them, or a shortcut over a state that stays put did.
    hi: usize,
    /// By position: the state before that byte, and the end of the last match before it
    /// (usize::MAX: none).
    states: [u32; MEMO_BYTES],
    lasts: [usize; MEMO_BYTES],
    /// Whether the last run resumed (for the tests).
    #[cfg(test)]
    resumed: bool,
}

impl Default for Memo {
    fn default() -> Memo {
        Memo::EMPTY
    }
}

impl Memo {
    pub(super) const EMPTY: Memo = Memo {
        key: 0,
        bytes: [0; MEMO_BYTES],
        len: 0,
        hi: usize::MAX,
        states: [0; MEMO_BYTES],
        lasts: [usize::MAX; MEMO_BYTES],
        #[cfg(test)]
        resumed: false,
    };
}

/// What [`walk`] tells of the states it is in before each byte.
trait Trail {
    /// The state before the byte at `at`.
    fn state(&mut self, at: usize, sid: u32, last: usize);
    /// The state before `at` is also the state before each byte up to `to`, included (a
    /// shortcut over a loop).
    fn stays(&mut self, at: usize, to: usize);
}

impl Trail for () {
    #[inline(always)]
    fn state(&mut self, _: usize, _: u32, _: usize) {}
    #[inline(always)]
    fn stays(&mut self, _: usize, _: usize) {}
}

impl Trail for Memo {
    #[inline(always)]
    fn state(&mut self, at: usize, sid: u32, last: usize) {
        // Kept only without a gap (an accelerated skip or a literal run leaves one).
        if at == self.hi.wrapping_add(1) && at < MEMO_BYTES {
            self.states[at] = sid;
            self.lasts[at] = last;
            self.hi = at;
        }
    }

    #[inline(always)]
    fn stays(&mut self, at: usize, to: usize) {
        if self.hi == at {
            let (s, l) = (self.states[at], self.lasts[at]);
            for i in at + 1..(to + 1).min(MEMO_BYTES) {
                self.states[i] = s;
                self.lasts[i] = l;
                self.hi = i;
            }
        }
    }
}

/// How many bytes `a` and `b` have in common at their starts.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().unwrap_or([0; 8]))
            ^ u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        if x != 0 {
            return i + (x.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + a[i..n]
        .iter()
        .zip(&b[i..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// [`first_end`] from the start of `t`, for a DFA run on the start of every candidate line
/// (prefregex's prefix, ` web1 sshd[1234]: `): the states the last run went through are
/// kept in `memo`, and a text that starts with the same bytes as the last one (up to the
/// pid's digits, say) resumes from the state before the first byte that differs. A DFA's
/// state after some bytes, and the last match end before them, depend on those bytes only.
pub(super) fn first_end_memo(
    ld: &ShortcutDfa,
    t: &[u8],
    memo: &mut Memo,
    key: u64,
) -> Option<Option<usize>> {
    let mut from = 0;
    if memo.key == key && memo.hi != usize::MAX {
        from = common_prefix(&memo.bytes[..memo.len], t).min(memo.hi);
    } else {
        memo.key = key;
    }
    let len = t.len().min(MEMO_BYTES);
    if len == MEMO_BYTES {
        memo.bytes.copy_from_slice(&t[..MEMO_BYTES]);
    } else {
        memo.bytes[from..len].copy_from_slice(&t[from..len]);
    }
    memo.len = len;
    #[cfg(test)]
    {
        memo.resumed = from > 0;
    }
    if from == 0 {
        memo.hi = usize::MAX;
        return walk(ld, t, 0, None, memo);
    }
    memo.hi = from;
    let (sid, last) = (memo.states[from], memo.lasts[from]);
    steps(ld, t, from, sid, last, memo)
}

/// [`first_end`], telling `trail` each state it is in before a byte.
fn walk(
    ld: &ShortcutDfa,
    t: &[u8],
    pos: usize,
    skip: Option<&Skip>,
    trail: &mut impl Trail,
) -> Option<Option<usize>> {
    let mut at = pos;
    let mut after = None;
    if let Some(sk) = skip {
        if !has_at(t, pos, &sk.lit) {
            // Every match starts with it.
            return Some(None);
        }
        if let Some(s) = sk.after[start_class(t, pos)] {
            after = Some(s);
            at = pos + sk.lit.len();
        }
    }
    let sid = match (after, &ld.starts) {
        (Some(s), _) => s,
        (None, Some(st)) => st[start_class(t, pos)],
        (None, None) => {
            let input = Input::new(t).range(pos..).anchored(Anchored::Yes);
            ld.id(ld.dfa.start_state_forward(&input).ok()?)
        }
    };
    if sid & LOOK != 0 && ld.look(sid).dead {
        return Some(None);
    }
    // usize::MAX: none yet (a sentinel, so that a match is recorded without a branch).
    steps(ld, t, at, sid, usize::MAX, trail)
}

/// The DFA's steps from `at` in state `sid`; `last`: the end of the last match so far.
#[inline(always)]
fn steps(
    ld: &ShortcutDfa,
    t: &[u8],
    mut at: usize,
    mut sid: u32,
    mut last: usize,
    trail: &mut impl Trail,
) -> Option<Option<usize>> {
    while at < t.len() {
        trail.state(at, sid, last);
        if sid & LOOK != 0 {
            match &ld.look(sid).jump {
                None => {}
                Some(Jump::Loop(leave)) => {
                    // The state stays up to the next leaving byte (it is not special: nothing
                    // to record on the way), which is then stepped.
                    let to = at
                        + t[at..]
                            .iter()
                            .position(|&b| leave[usize::from(b)])
                            .unwrap_or(t.len() - at);
                    trail.stays(at, to);
                    at = to;
                    if at == t.len() {
                        break;
                    }
                }
                Some(Jump::Run(lit, to)) if has_at(t, at, lit) => {
                    sid = *to;
                    at += lit.len();
                    continue;
                }
                Some(Jump::Run(..)) => {}
            }
        }
        // SAFETY: `sid & ID` is an id of this table (a start state, a Skip's or a
        // shortcut's state, or a transition's target: all index << stride2 with index < the
        // state count), and a byte's class is below 1 << stride2: in bounds of `next`.
        // `at < t.len()`.
        sid = unsafe {
            let c = *ld.cls.get_unchecked(usize::from(*t.get_unchecked(at)));
            *ld.next.get_unchecked((sid & ID) as usize + usize::from(c))
        };
        last = if sid & MATCH != 0 { at } else { last };
        if sid & LOOK != 0 {
            let l = ld.look(sid);
            if l.dead {
                return Some((last != usize::MAX).then_some(last));
            } else if l.quit {
                return None;
            }
            if let Some(acc) = &l.accel {
                at = accel_find(acc, t, at + 1);
                continue;
            }
        }
        at += 1;
    }
    if ld.eoi[((sid & ID) >> ld.stride2) as usize] {
        last = t.len();
    }
    Some((last != usize::MAX).then_some(last))
}

/// Bytes [`near_find`] looks at one by one before it asks memmem.
const NEAR: usize = 32;

/// The first position at or after `from` where `t` holds the finder's needle (not empty):
/// the first [`NEAR`] positions 8 at a time (a word compare finds the needle's first byte;
/// a user name before ` from ` is a few bytes, and memmem's set-up per call costs more
/// than that), then memmem.
pub(super) fn near_find(f: &memchr::memmem::Finder<'_>, t: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let n = f.needle();
    let (&first, last) = (n.first()?, t.len().checked_sub(n.len())?);
    let pat = u64::from(first) * ONES;
    let stop = last.min(from.saturating_add(NEAR));
    let mut i = from;
    while i <= stop {
        let Some(w) = t.get(i..i + 8) else {
            // The last few bytes: one by one.
            return (i..=stop)
                .find(|&k| t[k] == first && has_at(t, k, n))
                .or_else(|| far(f, t, stop + 1));
        };
        let x = u64::from_le_bytes(w.try_into().unwrap_or([0; 8])) ^ pat;
        // A high bit for each zero byte of `x` (the lowest one exact; those above it are
        // checked like any other).
        let mut m = x.wrapping_sub(ONES) & !x & (ONES << 7);
        while m != 0 {
            let k = i + (m.trailing_zeros() / 8) as usize;
            if k > stop {
                break;
            }
            if has_at(t, k, n) {
                return Some(k);
            }
            m &= m - 1;
        }
        i += 8;
    }
    far(f, t, stop + 1)
}

/// memmem from `rest` on.
fn far(f: &memchr::memmem::Finder<'_>, t: &[u8], rest: usize) -> Option<usize> {
    t.get(rest..).and_then(|r| f.find(r)).map(|i| rest + i)
}

/// Where a [`Step::Lit`]'s match from `pos` ends: None, no match.
fn lit_end(start: bool, lit: &[u8], opt: Option<u8>, t: &[u8], pos: usize) -> Option<usize> {
    if start && pos != 0 || !has_at(t, pos, lit) {
        return None;
    }
    let e = pos + lit.len();
    Some(e + usize::from(opt.is_some() && t.get(e).copied() == opt))
}

/// Whether `t` holds `lit` at `at`. Inline, 8 (or 4) bytes at a time, the last load
/// overlapping the one before: a slice's `starts_with` calls libc's `memcmp` for a length
/// known only at run time, whose call costs more than these literals' compare (a few to a
/// few tens of bytes, on every candidate line).
#[inline(always)]
pub(super) fn has_at(t: &[u8], at: usize, lit: &[u8]) -> bool {
    let n = lit.len();
    let Some(h) = at.checked_add(n).and_then(|e| t.get(at..e)) else {
        return false;
    };
    let w8 = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]));
    let w4 = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap_or([0; 4]));
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            if w8(h, i) != w8(lit, i) {
                return false;
            }
            i += 8;
        }
        w8(h, n - 8) == w8(lit, n - 8)
    } else if n >= 4 {
        w4(h, 0) == w4(lit, 0) && w4(h, n - 4) == w4(lit, n - 4)
    } else {
        h == lit
    }
}

/// The first position at or after `from` holding one of `needles` (1 to 3 bytes), else the
/// end of `t`.
fn accel_find(needles: &[u8], t: &[u8], from: usize) -> usize {
    let hay = t.get(from..).unwrap_or(&[]);
    let i = match *needles {
        [a] => memchr::memchr(a, hay),
        [a, b] => memchr::memchr2(a, b, hay),
        [a, b, c] => memchr::memchr3(a, b, c, hay),
        _ => None,
    };
    i.map_or(t.len(), |i| from + i)
}

/// Where the leftmost-first match of a `<HOST>` group's regex (pattern.rs: IPv4 first, then
/// IPv6; or one of them) starting at `pos` ends; None: no match. Each repetition there is
/// deterministic (a run of digits or hex digits, then a `.` or `:` that is neither), so
/// the highest-priority path is read straight off the text: as many digits as a part
/// takes, then its separator; the IPv6 form takes as many `group:` as it can (2 to 7),
/// then an IPv4 or 1 to 4 hex digits or nothing. Held to the group's DFA by a test.
///
/// With the end, the IPv4 address when the end is the IPv4 form's and `parse_v4` would take
/// the span (no octet over 255, no leading zero): the caller need not read it again.
pub(super) fn host_read(
    form: HostForm,
    t: &[u8],
    pos: usize,
) -> Option<(usize, Option<std::net::Ipv4Addr>)> {
    match form {
        HostForm::V4 => f2b_common::net::read_v4(t, pos),
        HostForm::V6 => v6_end(t, pos).map(|e| (e, None)),
        HostForm::Any => {
            f2b_common::net::read_v4(t, pos).or_else(|| v6_end(t, pos).map(|e| (e, None)))
        }
    }
}

/// Up to `max` bytes of `t` from `i` that satisfy `f`: how many.
fn run_len(t: &[u8], i: usize, max: usize, f: impl Fn(u8) -> bool) -> usize {
    t.get(i..)
        .unwrap_or(&[])
        .iter()
        .take(max)
        .take_while(|&&c| f(c))
        .count()
}

/// `(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?`
fn v6_end(t: &[u8], pos: usize) -> Option<usize> {
    let mut i = pos;
    let mut groups = 0;
    while groups < 7 {
        let n = run_len(t, i, 4, |c| c.is_ascii_hexdigit());
        if t.get(i + n) != Some(&b':') {
            break;
        }
        i += n + 1;
        groups += 1;
    }
    if groups < 2 {
        return None;
    }
    Some(
        f2b_common::net::read_v4(t, i)
            .map(|r| r.0)
            .unwrap_or_else(|| i + run_len(t, i, 4, |c| c.is_ascii_hexdigit())),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::pattern::{IPV4, IPV6};

    /// Seeded xorshift64: the same strings on every run.
    fn rng(mut s: u64) -> impl FnMut() -> u64 {
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    /// Random texts over the bytes that matter to addresses (digits, hex letters, `.`,
    /// `:`, brackets, space, a letter that is not hex), with real addresses mixed in.
    fn texts(n: usize) -> Vec<Vec<u8>> {
        const B: &[u8] = b"0123456789abcdefABCDEF.:.::[] xg1";
        const REAL: [&str; 8] = [
            "198.18.0.1",
            "2001:db8::1",
            "::ffff:198.18.0.9",
            "1:2:3:4:5:6:7:8",
            "fe80::1:2:3:4:5:6:7",
            "1.2.3.4.5",
            "255.255.255.2555",
            "1:2:3:4:5:6:7:8:9",
        ];
        let mut next = rng(0x9e37_79b9_7f4a_7c15);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let mut t = Vec::new();
            if next().is_multiple_of(2) {
                t.extend_from_slice(REAL[(next() % REAL.len() as u64) as usize].as_bytes());
                for _ in 0..next() % 3 {
                    let i = (next() % (t.len() as u64 + 1)) as usize;
                    t.insert(i, B[(next() % B.len() as u64) as usize]);
                }
            } else {
                for _ in 0..next() % 40 {
                    t.push(B[(next() % B.len() as u64) as usize]);
                }
            }
            out.push(t);
        }
        out
    }

    /// The hand-read `<HOST>` end is the group DFA's leftmost-first end, at every start of
    /// many texts, for each address form.
    #[test]
    fn host_end_is_the_dfas() {
        let forms = [
            (format!("{IPV4}|{IPV6}"), HostForm::Any),
            (IPV4.to_string(), HostForm::V4),
            (IPV6.to_string(), HostForm::V6),
        ];
        let texts = texts(20_000);
        for (re, form) in forms {
            let dfa = ShortcutDfa::new(ascii_dense(&re).unwrap());
            let (mut some, mut none, mut v4s) = (0, 0, 0);
            for t in &texts {
                for pos in 0..=t.len() {
                    let want = first_end(&dfa, t, pos, None).unwrap();
                    let read = host_read(form, t, pos);
                    if let Some((e, ip)) = read {
                        let span = &t[pos..e];
                        assert_eq!(ip, f2b_common::net::parse_v4(span), "{span:?}");
                        v4s += usize::from(ip.is_some());
                    }
                    let got = read.map(|r| r.0);
                    assert_eq!(
                        got,
                        want,
                        "{form:?} {:?} at {pos}",
                        String::from_utf8_lossy(t)
                    );
                    if got.is_some() { some += 1 } else { none += 1 }
                }
            }
            assert!(
                some > 5_000 && none > 10_000,
                "{form:?}: {some} matches, {none} not"
            );
            assert!(form == HostForm::V6 || v4s > 1_000, "{form:?}: {v4s} read");
        }
    }

    /// A DFA run from the states a memo kept for the last text's start gives what a fresh
    /// run gives, text after text: syslog-like prefixes that share their starts, with bytes
    /// changed, inserted and cut, and look-behind and loop patterns.
    #[test]
    fn memo_resumes_where_a_fresh_run_would_be() {
        let syslog = r"(?:\[\])?\s*(?:\S+\s+)?(?:[\[(]?sshd(?:\(\S+\))?[\])]?:?(?:\[\d+\])?:?\s+)?(?:(?:error|fatal): (?:PAM: )?)?";
        let cases: [(&str, &[&[u8]]); 3] = [
            (
                syslog,
                &[
                    b" web1 sshd[1039]: Failed password for x",
                    b" web1 sshd[20345]: error: PAM: Authentication failure",
                    b" mail.example.com sshd(pam_unix)[77]: x",
                ],
            ),
            (r"\bport \d+\b", &[b"port 22 x", b"port 2222", b"portal 1"]),
            (r"a*b+\S*x", &[b"aabbbxyz", b"abx", b"bbbb x"]),
        ];
        const B: &[u8] = b"ab x[]:1\n";
        let mut next = rng(0x243f_6a88_85a3_08d3);
        for (re, real) in cases {
            let dfa = ShortcutDfa::new(ascii_dense(re).unwrap());
            let mut memo = Memo::EMPTY;
            let (mut resumed, mut runs) = (0usize, 0usize);
            for _ in 0..5_000 {
                let mut t = real[(next() % real.len() as u64) as usize].to_vec();
                for _ in 0..next() % 3 {
                    let i = (next() % (t.len() as u64 + 1)) as usize;
                    match next() % 3 {
                        0 => t.insert(i, B[(next() % B.len() as u64) as usize]),
                        1 if i < t.len() => t[i] = B[(next() % B.len() as u64) as usize],
                        _ => t.truncate(i),
                    }
                }
                let got = first_end_memo(&dfa, &t, &mut memo, 7);
                resumed += usize::from(memo.resumed);
                runs += 1;
                assert_eq!(
                    got,
                    first_end(&dfa, &t, 0, None),
                    "{re} on {:?}",
                    String::from_utf8_lossy(&t)
                );
            }
            assert!(resumed > runs / 3, "{re}: {resumed} of {runs} resumed");
        }
    }

    /// `near_find` finds what memmem finds from the same start: needles of 1 to 8 bytes from
    /// a small alphabet (many near misses), in texts of 0 to 90 bytes, from every start.
    #[test]
    fn near_find_is_memmem() {
        const B: &[u8] = b"ab fro m";
        let mut next = rng(0x2545_f491_4f6c_dd1d);
        let mut hits = 0;
        for _ in 0..5_000 {
            let needle: Vec<u8> = (0..1 + next() % 8)
                .map(|_| B[(next() % B.len() as u64) as usize])
                .collect();
            let t: Vec<u8> = (0..next() % 91)
                .map(|_| B[(next() % B.len() as u64) as usize])
                .collect();
            let f = memchr::memmem::Finder::new(&needle);
            for from in 0..=t.len() + 1 {
                let want = t.get(from..).and_then(|r| f.find(r)).map(|i| from + i);
                assert_eq!(
                    near_find(&f, &t, from),
                    want,
                    "{needle:?} in {t:?} from {from}"
                );
                hits += usize::from(want.is_some_and(|w| w > from + NEAR));
            }
        }
        assert!(hits > 100, "{hits} found past the near part");
    }

    /// A literal step's end read off the text is the step DFA's leftmost-first end, at every
    /// start of texts that hold it, parts of it and the optional byte.
    #[test]
    fn literal_steps_end_where_the_dfa_does() {
        let steps = [
            r"(?:\A(?:Failed ))",
            r"(?:(?: from )\[?)",
            r"(?: port )",
            r"\Ax\[?",
            r"ab\]?",
        ];
        const B: &[u8] = b"Failed from [] port x ab";
        let mut next = rng(0x5851_f42d_4c95_7f2d);
        for re in steps {
            let (start, lit, opt) = pattern::literal_step(re).expect(re);
            let dfa = ShortcutDfa::new(ascii_dense(re).unwrap());
            let mut found = 0;
            for _ in 0..3_000 {
                let mut t = lit.clone();
                t.extend(opt);
                for _ in 0..next() % 5 {
                    let i = (next() % (t.len() as u64 + 1)) as usize;
                    t.insert(i, B[(next() % B.len() as u64) as usize]);
                }
                for pos in 0..=t.len() {
                    let want = first_end(&dfa, &t, pos, None).unwrap();
                    assert_eq!(
                        lit_end(start, &lit, opt, &t, pos),
                        want,
                        "{re} on {:?} at {pos}",
                        String::from_utf8_lossy(&t)
                    );
                    found += usize::from(want.is_some());
                }
            }
            assert!(found > 500, "{re}: {found}");
        }
        for not in [r"(?:Failed )+", r"a|b", r"ab\[*", r"ab[xy]?", r"(?i:ab)"] {
            assert_eq!(pattern::literal_step(not), None, "{not}");
        }
    }

    /// Steps with a literal prefix compare it instead of stepping over it and still end
    /// where the plain DFA ends, whatever byte precedes them.
    #[test]
    fn skipped_literal_gives_the_same_end() {
        let steps = [
            r"(?:\A(?:Failed ))",
            r"(?:(?: from )\[?)",
            r"(?:\A(?:Received disconnect from )\[?)",
            r"(?:, client: )\[?",
            r"\bport (?:\d+|x)\b",
            r"(?m:^ab)c*",
        ];
        const B: &[u8] = b"Failed from [ port 12 x\n\r:,clientab";
        let mut next = rng(0x2545_f491_4f6c_dd1d);
        let mut skips = 0;
        for re in steps {
            let dfa = ShortcutDfa::new(ascii_dense(re).unwrap());
            let Some(lit) = pattern::literal_prefix(re) else {
                continue;
            };
            let Some(skip) = Skip::new(&dfa, lit.clone()) else {
                continue;
            };
            skips += 1;
            for _ in 0..20_000 {
                let mut t = Vec::new();
                for _ in 0..next() % 6 {
                    t.push(B[(next() % B.len() as u64) as usize]);
                }
                let pos = t.len();
                if !next().is_multiple_of(4) {
                    t.extend_from_slice(&lit);
                }
                for _ in 0..next() % 12 {
                    t.push(B[(next() % B.len() as u64) as usize]);
                }
                assert_eq!(
                    first_end(&dfa, &t, pos, Some(&skip)),
                    first_end(&dfa, &t, pos, None),
                    "{re} on {:?} at {pos}",
                    String::from_utf8_lossy(&t)
                );
            }
        }
        assert!(skips >= 5, "{skips}");
    }

    /// With the shortcuts (long loops scanned, literal runs compared) a step ends where the
    /// library's own anchored search does, at every start of many texts.
    #[test]
    fn shortcuts_give_the_searchs_end() {
        let pats = [
            r"\S+ for (?:invalid user )?",
            r", server: \S*, request: \x22\S+ \S+ HTTP/\d+\.\d+\x22, host: \x22\S+\x22(?:, referrer: \x22\S+\x22)?\s*$",
            r"user \x22[^\x22]*\x22",
            r".*x",
            r"(?:[^\x22]+|.*?)\x22:? was",
            r"\w+\d+\s*$",
            // Look-behind: the start state depends on the byte before.
            r"\bport \d+\b",
            r"(?m:^a)b*",
        ];
        // Texts the patterns match, with bytes inserted and runs repeated, and noise.
        const REAL: [&[u8]; 7] = [
            b"keyboard-interactive/pam for invalid user bob",
            b", server: example.com, request: \"GET /a/b HTTP/1.1\", host: \"example.com\"",
            b", server: , request: \"GET / HTTP/2.0\", host: \"h\"x\", referrer: \"r\"  ",
            b"user \"admin\" was not found",
            b"\"ab\"c\":  was  xx abc123  \t",
            b"word12 \xc3\xa9x\n",
            b"port 22 xport 3\nabbb\rab",
        ];
        const B: &[u8] = b"ab x\t\"\n 1.9:,\xc3";
        let mut next = rng(0x9e37_79b9_7f4a_7c15);
        let (mut shortcuts, mut starts) = (0, 0);
        for re in pats {
            let dfa = ShortcutDfa::new(ascii_dense(re).unwrap());
            shortcuts += dfa.shortcuts();
            starts += usize::from(dfa.starts.is_some());
            for _ in 0..3_000 {
                let mut t = REAL[(next() % REAL.len() as u64) as usize].to_vec();
                for _ in 0..next() % 4 {
                    let i = (next() % (t.len() as u64 + 1)) as usize;
                    let b = B[(next() % B.len() as u64) as usize];
                    for _ in 0..1 + next() % 4 {
                        t.insert(i, b);
                    }
                }
                for pos in 0..=t.len() {
                    let input = Input::new(&t).range(pos..).anchored(Anchored::Yes);
                    let want = dfa
                        .dfa
                        .try_search_fwd(&input)
                        .ok()
                        .map(|m| m.map(|h| h.offset()));
                    assert_eq!(
                        first_end(&dfa, &t, pos, None),
                        want,
                        "{re} on {:?} at {pos}",
                        String::from_utf8_lossy(&t)
                    );
                }
            }
        }
        assert!(shortcuts >= 12, "{shortcuts} shortcuts");
        assert_eq!(starts, pats.len(), "start states read from a table");
    }
}
