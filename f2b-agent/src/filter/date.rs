//! Timestamps in log lines: find one, turn it into Unix seconds, and say where it was so the
//! caller can cut it out before failregex runs (what fail2ban does, and what its stock
//! patterns assume).
//!
//! Automatic detection is hand-written byte scanning, no regex and no allocation: it only
//! runs on lines that passed the literal prefilter, but those can be many under attack.
//! Formats: syslog `Nov 22 04:16:03` (year inferred), ctime `Sun Nov 22 04:16:03[.f] 2026`,
//! ISO 8601 / RFC 3339 (`T` or space, fractions, `Z`/`±HH:MM`/`±HHMM`), Apache/nginx access
//! `22/Nov/2026:04:16:03 +0000`, nginx error `2026/11/22 04:16:03`, MySQL `261122 4:16:03`,
//! epoch seconds `1795321563[.123]` and TAI64N `@4000000065...`.

use std::cell::Cell;

use regex::Regex;

/// Where zone-less timestamps are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tz {
    /// The host's local time, as libc says (`TZ`, /etc/localtime).
    Local,
    /// A fixed offset east of UTC, in seconds (`UTC` is 0).
    Fixed(i32),
}

impl Tz {
    pub fn parse(s: &str) -> Option<Tz> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("local") {
            return Some(Tz::Local);
        }
        if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("gmt") || t == "Z" {
            return Some(Tz::Fixed(0));
        }
        let b = t.as_bytes();
        let (off, used) = parse_offset(b, 0)?;
        (used == b.len()).then_some(Tz::Fixed(off))
    }

    /// Seconds to subtract from a naive (zone-less) time read as if it were UTC.
    fn offset_for(self, naive: i64) -> i64 {
        match self {
            Tz::Fixed(o) => i64::from(o),
            Tz::Local => local_offset(naive),
        }
    }
}

/// Span of the local-offset cache: an offset found equal at both ends of such a span is
/// taken for the whole span. Wrong only if a zone changed its offset twice within 15
/// minutes, which no zone in the tz database does.
const OFFSET_SPAN: i64 = 900;

thread_local! {
    /// (span index, offset) of the last two spans asked for (the lines' and now's, for a
    /// year guess): lines come in time order, and localtime_r (a lock and a zone table
    /// walk) costs more than the rest of a date.
    static OFFSET_CACHE: Cell<[(i64, i64); 2]> = const { Cell::new([(i64::MIN, 0); 2]) };
}

/// The local UTC offset at (about) `t`, from libc; 0 if libc cannot say.
fn local_offset(t: i64) -> i64 {
    let span = t.div_euclid(OFFSET_SPAN);
    let cached = OFFSET_CACHE
        .try_with(Cell::get)
        .unwrap_or([(i64::MIN, 0); 2]);
    if let Some(&(_, off)) = cached.iter().find(|(s, _)| *s == span) {
        return off;
    }
    let off = local_offset_libc(t);
    let first = span * OFFSET_SPAN;
    if local_offset_libc(first) == off && local_offset_libc(first + OFFSET_SPAN - 1) == off {
        let _ = OFFSET_CACHE.try_with(|c| c.set([(span, off), cached[0]]));
    }
    off
}

fn local_offset_libc(t: i64) -> i64 {
    let tt = t as libc::time_t;
    // SAFETY: `tm` is plain old data that localtime_r fills; both pointers are valid.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&tt, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff
    }
}

/// How a filter finds its timestamps.
#[derive(Debug, Clone)]
pub enum DateMode {
    /// Try every known format, leftmost first.
    Auto,
    /// The lines carry no date (`datepattern: none`): nothing is cut, time is None.
    Never,
    /// Only this one (`datepattern: epoch`, `tai64n`, `iso8601`, `syslog` ...).
    Only(Format),
    /// An strftime-like pattern translated to a regex.
    Pattern(Box<DatePattern>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Syslog,
    Iso8601,
    Access,
    NginxError,
    Epoch,
    Tai64n,
}

/// A timestamp found in a line: `line[start..end]` is what gets cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub end: usize,
    pub time: i64,
}

/// Broken-down time as read; `year` None means "infer it".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Fields {
    year: Option<i64>,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    /// Offset east of UTC when the stamp carries one.
    offset: Option<i32>,
}

impl DateMode {
    pub fn parse(spec: Option<&str>) -> Result<DateMode, String> {
        let Some(s) = spec.map(str::trim) else {
            return Ok(DateMode::Auto);
        };
        let lower = s.to_ascii_lowercase();
        Ok(match lower.as_str() {
            "" | "auto" => DateMode::Auto,
            "none" | "{none}" => DateMode::Never,
            "epoch" => DateMode::Only(Format::Epoch),
            "tai64n" => DateMode::Only(Format::Tai64n),
            "iso8601" => DateMode::Only(Format::Iso8601),
            "syslog" => DateMode::Only(Format::Syslog),
            "access" | "apache" | "nginx-access" => DateMode::Only(Format::Access),
            "nginx-error" => DateMode::Only(Format::NginxError),
            _ => DateMode::Pattern(Box::new(DatePattern::new(s)?)),
        })
    }

    /// Finds the timestamp of `line`. `now` is for year inference, `tz` for zone-less stamps.
    pub fn find(&self, line: &str, tz: Tz, now: i64) -> Option<Found> {
        match self {
            DateMode::Never => None,
            DateMode::Auto => scan(line.as_bytes(), None, tz, now),
            DateMode::Only(f) => scan(line.as_bytes(), Some(*f), tz, now),
            DateMode::Pattern(p) => p.find(line, tz, now),
        }
    }
}

/// Leftmost timestamp of any (or one) known format.
fn scan(b: &[u8], only: Option<Format>, tz: Tz, now: i64) -> Option<Found> {
    // A syslog stamp at the line start: lines come in time order, many with the same stamp
    // (and host after it), so the last one's bytes are compared first.
    let syslog_first = b.first().is_some_and(u8::is_ascii_uppercase)
        && matches!(only, None | Some(Format::Syslog));
    if syslog_first && let Ok(Some(f)) = LAST_STAMP.try_with(|c| cached(c, b, tz, now)) {
        return Some(f);
    }
    let found = scan_fields(b, only, tz, now);
    if syslog_first
        && let Some((f, fields)) = found
        && f.start == 0
    {
        // parse_syslog reads at most 6 bytes past the stamp (a year after the time): the
        // same bytes up to there are the same stamp.
        let len = f.end + 6;
        if let Some(src) = b.get(..len).filter(|_| len <= STAMP_BYTES) {
            let mut bytes = [0u8; STAMP_BYTES];
            bytes[..len].copy_from_slice(src);
            // The seconds are the stamp's last two bytes when it ends `:SS` (no fraction,
            // no year after it).
            let sec_at = (f.end >= 3 && src[f.end - 3] == b':').then(|| f.end - 2);
            let _ = LAST_STAMP.try_with(|c| {
                c.set(LastStamp {
                    bytes,
                    len,
                    tz,
                    now,
                    found: f,
                    seconds: fields.zip(sec_at),
                })
            });
        }
    }
    found.map(|r| r.0)
}

/// The cached stamp's answer for `b` when `b` starts with its bytes, or with them but for
/// the seconds' two digits (a new second of the same minute: the fields with the new
/// seconds, resolved, and kept for the next line).
fn cached(c: &Cell<LastStamp>, b: &[u8], tz: Tz, now: i64) -> Option<Found> {
    let l = c.get();
    if l.tz != tz || l.now != now || l.len == 0 {
        return None;
    }
    if super::chain::has_at(b, 0, &l.bytes[..l.len]) {
        return Some(l.found);
    }
    let (mut fields, at) = l.seconds?;
    let (d1, d2) = (
        b.get(at)?.wrapping_sub(b'0'),
        b.get(at + 1)?.wrapping_sub(b'0'),
    );
    let sec = u32::from(d1) * 10 + u32::from(d2);
    if d1 > 9
        || d2 > 9
        || sec > 60
        || !super::chain::has_at(b, 0, &l.bytes[..at])
        || !super::chain::has_at(b, at + 2, &l.bytes[at + 2..l.len])
    {
        return None;
    }
    // As parse_hms reads them.
    fields.sec = sec.min(59);
    let found = Found {
        time: resolve(&fields, tz, now),
        ..l.found
    };
    let mut next = l;
    next.bytes[at] = b[at];
    next.bytes[at + 1] = b[at + 1];
    next.found = found;
    c.set(next);
    Some(found)
}

/// Most bytes a cached syslog stamp (with what follows it that the parse looks at) takes.
const STAMP_BYTES: usize = 48;

/// The last syslog stamp found at a line start: the line's first `len` bytes, and what was
/// found there with this zone and `now`.
#[derive(Clone, Copy)]
struct LastStamp {
    bytes: [u8; STAMP_BYTES],
    len: usize,
    tz: Tz,
    now: i64,
    found: Found,
    /// The stamp's fields, and where its seconds are when they are its last two bytes.
    seconds: Option<(Fields, usize)>,
}

thread_local! {
    static LAST_STAMP: Cell<LastStamp> = const {
        Cell::new(LastStamp {
            bytes: [0; STAMP_BYTES],
            len: 0,
            tz: Tz::Fixed(0),
            now: 0,
            found: Found { start: 0, end: 0, time: 0 },
            seconds: None,
        })
    };
}

/// [`scan`] without its cache: what it must give.
#[cfg(test)]
fn scan_uncached(b: &[u8], only: Option<Format>, tz: Tz, now: i64) -> Option<Found> {
    scan_fields(b, only, tz, now).map(|r| r.0)
}

/// The leftmost stamp, with the fields read when the stamp has no zone of its own.
fn scan_fields(
    b: &[u8],
    only: Option<Format>,
    tz: Tz,
    now: i64,
) -> Option<(Found, Option<Fields>)> {
    for i in 0..b.len() {
        let c = b[i];
        // Stamps start at a word start: the line start or after a non-alphanumeric byte.
        if i > 0 && b[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let near_start = i == 0 || (i == 1 && matches!(b[0], b'[' | b'('));
        let hit = if c.is_ascii_digit() {
            try_digit_formats(b, i, only, near_start)
        } else if c.is_ascii_uppercase() {
            if only.is_none() || only == Some(Format::Syslog) {
                parse_syslog(b, i)
            } else {
                None
            }
        } else if c == b'@' && near_start && matches!(only, None | Some(Format::Tai64n)) {
            parse_tai64n(b, i).map(|(t, end)| (Stamp::Abs(t), end))
        } else {
            None
        };
        if let Some((stamp, end)) = hit {
            let (time, fields) = match stamp {
                Stamp::Abs(t) => (t, None),
                Stamp::Fields(f) => (resolve(&f, tz, now), Some(f)),
            };
            let found = Found {
                start: i,
                end,
                time,
            };
            return Some((found, fields));
        }
    }
    None
}

enum Stamp {
    Abs(i64),
    Fields(Fields),
}

fn try_digit_formats(
    b: &[u8],
    i: usize,
    only: Option<Format>,
    near_start: bool,
) -> Option<(Stamp, usize)> {
    // What each format needs of the digit run at `i` and the byte after it (a necessary
    // condition only): most digits in a line (addresses, ids) fit none, and skip the tries.
    let n = b[i..]
        .iter()
        .take(12)
        .take_while(|c| c.is_ascii_digit())
        .count();
    let c = byte_at(b, i + n);
    let fits = (n == 4 && matches!(c, b'-' | b'/'))
        || (n <= 2 && matches!(c, b'/' | b'-'))
        || (n == 6 && c == b' ')
        || n == 10
        || n == 11;
    if !fits {
        return None;
    }
    let want = |f: Format| only.is_none() || only == Some(f);
    if want(Format::Iso8601)
        && let Some((f, e)) = parse_iso(b, i)
    {
        return Some((Stamp::Fields(f), e));
    }
    if want(Format::NginxError)
        && let Some((f, e)) = parse_slash_ymd(b, i)
    {
        return Some((Stamp::Fields(f), e));
    }
    if want(Format::Access)
        && let Some((f, e)) = parse_access(b, i)
    {
        return Some((Stamp::Fields(f), e));
    }
    if near_start
        && only.is_none()
        && let Some((f, e)) = parse_mysql(b, i)
    {
        return Some((Stamp::Fields(f), e));
    }
    if near_start
        && want(Format::Epoch)
        && let Some((t, e)) = parse_epoch(b, i)
    {
        return Some((Stamp::Abs(t), e));
    }
    None
}

/// `n` digits at `i` as a number.
fn digits(b: &[u8], i: usize, n: usize) -> Option<u32> {
    let s = b.get(i..i + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// 1 or 2 digits (a space-padded or unpadded day/hour).
fn digits12(b: &[u8], i: usize) -> Option<(u32, usize)> {
    let d1 = digits(b, i, 1)?;
    match digits(b, i + 1, 1) {
        Some(d2) => Some((d1 * 10 + d2, i + 2)),
        None => Some((d1, i + 1)),
    }
}

fn is_digit_at(b: &[u8], i: usize) -> bool {
    b.get(i).is_some_and(u8::is_ascii_digit)
}

fn byte_at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// `HH:MM:SS` at `i` with an optional `.fff`/`,fff` fraction; returns the end.
fn parse_hms(b: &[u8], i: usize, f: &mut Fields) -> Option<usize> {
    let (h, j) = digits12(b, i)?;
    if byte_at(b, j) != b':' {
        return None;
    }
    let m = digits(b, j + 1, 2)?;
    if byte_at(b, j + 3) != b':' {
        return None;
    }
    let s = digits(b, j + 4, 2)?;
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    f.hour = h;
    f.min = m;
    f.sec = s.min(59);
    let mut e = j + 6;
    if matches!(byte_at(b, e), b'.' | b',') && is_digit_at(b, e + 1) {
        e += 1;
        while is_digit_at(b, e) {
            e += 1;
        }
    }
    Some(e)
}

/// `Z`, `UTC`, `±HH:MM`, `±HHMM`, `±HH` at `i`: (seconds east, bytes used).
fn parse_offset(b: &[u8], i: usize) -> Option<(i32, usize)> {
    match byte_at(b, i) {
        b'Z' => Some((0, 1)),
        b'U' if b.get(i..i + 3) == Some(b"UTC") => Some((0, 3)),
        s @ (b'+' | b'-') => {
            let h = digits(b, i + 1, 2)?;
            let (m, used) = if byte_at(b, i + 3) == b':' {
                (digits(b, i + 4, 2)?, 6)
            } else if let Some(m) = digits(b, i + 3, 2) {
                (m, 5)
            } else {
                (0, 3)
            };
            if h > 14 || m > 59 {
                return None;
            }
            let off = (h * 3600 + m * 60) as i32;
            Some((if s == b'-' { -off } else { off }, used))
        }
        _ => None,
    }
}

/// ISO 8601 / RFC 3339: `2026-11-22T04:16:03.5+01:00`, `2026-11-22 04:16:03,123 Z`.
fn parse_iso(b: &[u8], i: usize) -> Option<(Fields, usize)> {
    let mut f = Fields {
        year: Some(i64::from(digits(b, i, 4)?)),
        ..Fields::default()
    };
    if byte_at(b, i + 4) != b'-' || byte_at(b, i + 7) != b'-' {
        return None;
    }
    f.month = digits(b, i + 5, 2)?;
    f.day = digits(b, i + 8, 2)?;
    if !matches!(byte_at(b, i + 10), b'T' | b' ') {
        return None;
    }
    // MariaDB pads a one-digit hour with a second space: `2026-11-22  4:16:03`.
    let t = if byte_at(b, i + 10) == b' ' && byte_at(b, i + 11) == b' ' {
        i + 12
    } else {
        i + 11
    };
    let mut e = parse_hms(b, t, &mut f)?;
    if let Some((off, used)) = parse_offset(b, e) {
        f.offset = Some(off);
        e += used;
    } else if byte_at(b, e) == b' '
        && let Some((off, used)) = parse_offset(b, e + 1)
        && matches!(byte_at(b, e + 1), b'+' | b'-' | b'Z' | b'U')
        && !byte_at(b, e + 1 + used).is_ascii_alphanumeric()
    {
        f.offset = Some(off);
        e += 1 + used;
    }
    valid(&f).then_some((f, e))
}

/// nginx error log: `2026/11/22 04:16:03`.
fn parse_slash_ymd(b: &[u8], i: usize) -> Option<(Fields, usize)> {
    let mut f = Fields {
        year: Some(i64::from(digits(b, i, 4)?)),
        ..Fields::default()
    };
    if byte_at(b, i + 4) != b'/' || byte_at(b, i + 7) != b'/' {
        return None;
    }
    f.month = digits(b, i + 5, 2)?;
    f.day = digits(b, i + 8, 2)?;
    if !matches!(byte_at(b, i + 10), b' ' | b'T') {
        return None;
    }
    let e = parse_hms(b, i + 11, &mut f)?;
    valid(&f).then_some((f, e))
}

/// Apache/nginx access log `22/Nov/2026:04:16:03 +0000`; BIND and Roundcube
/// `22-Nov-2026 04:16:03.123`, `22-Nov-2026 04:16:03 +0000`.
fn parse_access(b: &[u8], i: usize) -> Option<(Fields, usize)> {
    let mut f = Fields::default();
    let (d, j) = digits12(b, i)?;
    f.day = d;
    let sep = byte_at(b, j);
    if sep != b'/' && sep != b'-' {
        return None;
    }
    f.month = month(b, j + 1)?;
    if byte_at(b, j + 4) != sep {
        return None;
    }
    f.year = Some(i64::from(digits(b, j + 5, 4)?));
    if !matches!(byte_at(b, j + 9), b':' | b' ') {
        return None;
    }
    let mut e = parse_hms(b, j + 10, &mut f)?;
    if byte_at(b, e) == b' '
        && let Some((off, used)) = parse_offset(b, e + 1)
    {
        f.offset = Some(off);
        e += 1 + used;
    }
    valid(&f).then_some((f, e))
}

/// MySQL 5.x error log: `261122  4:16:03` (two-digit year).
fn parse_mysql(b: &[u8], i: usize) -> Option<(Fields, usize)> {
    let mut f = Fields {
        year: Some(2000 + i64::from(digits(b, i, 2)?)),
        month: digits(b, i + 2, 2)?,
        day: digits(b, i + 4, 2)?,
        ..Fields::default()
    };
    if byte_at(b, i + 6) != b' ' {
        return None;
    }
    let mut j = i + 7;
    if byte_at(b, j) == b' ' {
        j += 1;
    }
    let e = parse_hms(b, j, &mut f)?;
    valid(&f).then_some((f, e))
}

/// Epoch seconds (10-11 digits) with an optional fraction, near the line start.
fn parse_epoch(b: &[u8], i: usize) -> Option<(i64, usize)> {
    let mut e = i;
    let mut v: i64 = 0;
    while is_digit_at(b, e) && e - i < 12 {
        v = v * 10 + i64::from(b[e] - b'0');
        e += 1;
    }
    if !(10..=11).contains(&(e - i)) || is_digit_at(b, e) {
        return None;
    }
    if byte_at(b, e) == b'.' && is_digit_at(b, e + 1) {
        e += 1;
        while is_digit_at(b, e) {
            e += 1;
        }
    }
    if byte_at(b, e).is_ascii_alphanumeric() {
        return None;
    }
    Some((v, e))
}

/// TAI64N label `@4000000065...` (24 hex digits): TAI seconds since 1970 + 2^62.
fn parse_tai64n(b: &[u8], i: usize) -> Option<(i64, usize)> {
    let hex = b.get(i + 1..i + 25)?;
    let mut secs: u64 = 0;
    for &c in &hex[..16] {
        secs = secs * 16 + u64::from((c as char).to_digit(16)?);
    }
    if !hex[16..].iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let secs = secs.checked_sub(1 << 62)?;
    // TAI runs ahead of UTC by the leap seconds (37 since 2017); daemontools' tai64nlocal
    // subtracts 10, fail2ban does the same, so a stamp means the same wall time in both.
    Some((secs as i64 - 10, i + 25))
}

const FULL_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn month(b: &[u8], i: usize) -> Option<u32> {
    let s = lower3(b, i)?;
    MONTHS_LOWER
        .iter()
        .position(|m| **m == s)
        .map(|p| p as u32 + 1)
}

const MONTHS_LOWER: [&[u8; 3]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];
const WEEKDAYS_LOWER: [&[u8; 3]; 7] = [b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun"];

/// The 3 bytes at `i` with ASCII letters lowered (`| 0x20`: a byte that is not a letter
/// never becomes one, so comparing with lowercase names is `eq_ignore_ascii_case`).
fn lower3(b: &[u8], i: usize) -> Option<[u8; 3]> {
    let s = b.get(i..i + 3)?;
    Some([s[0] | 0x20, s[1] | 0x20, s[2] | 0x20])
}

/// Syslog `Nov 22 04:16:03` (no year), ctime `Sun Nov 22 04:16:03[.f] 2026`, also with a
/// year after the day (`Nov 22 2026 04:16:03`).
fn parse_syslog(b: &[u8], i: usize) -> Option<(Stamp, usize)> {
    let mut j = i;
    let s = lower3(b, i)?;
    if WEEKDAYS_LOWER.iter().any(|w| **w == s) {
        // Weekday names are written as 3 letters or in full; skip either, then spaces.
        j += 3;
        while byte_at(b, j).is_ascii_alphabetic() {
            j += 1;
        }
        if matches!(byte_at(b, j), b',') {
            j += 1;
        }
        if byte_at(b, j) != b' ' {
            return None;
        }
        j += 1;
    }
    let mut f = Fields {
        month: month(b, j)?,
        ..Fields::default()
    };
    let word_end = (j..b.len())
        .find(|&k| !b[k].is_ascii_alphabetic())
        .unwrap_or(b.len());
    let word = &b[j..word_end];
    // "Nov" or the full name "November", nothing else ("Novel").
    let full = FULL_MONTHS[f.month as usize - 1].as_bytes();
    if word.len() != 3 && !word.eq_ignore_ascii_case(full) {
        return None;
    }
    j = word_end;
    if byte_at(b, j) != b' ' {
        return None;
    }
    j += 1;
    if byte_at(b, j) == b' ' {
        j += 1;
    }
    let (d, k) = digits12(b, j)?;
    f.day = d;
    if byte_at(b, k) != b' ' {
        return None;
    }
    let mut k = k + 1;
    if let Some(y) = digits(b, k, 4)
        && byte_at(b, k + 4) == b' '
    {
        f.year = Some(i64::from(y));
        k += 5;
    }
    let mut e = parse_hms(b, k, &mut f)?;
    if f.year.is_none()
        && byte_at(b, e) == b' '
        && let Some(y) = digits(b, e + 1, 4)
        && !byte_at(b, e + 5).is_ascii_alphanumeric()
        && byte_at(b, e + 5) != b':'
    {
        f.year = Some(i64::from(y));
        e += 5;
    }
    valid(&f).then_some((Stamp::Fields(f), e))
}

fn valid(f: &Fields) -> bool {
    (1..=12).contains(&f.month) && (1..=31).contains(&f.day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn naive(y: i64, f: &Fields) -> i64 {
    days_from_civil(y, f.month, f.day) * 86_400
        + i64::from(f.hour) * 3600
        + i64::from(f.min) * 60
        + i64::from(f.sec)
}

fn to_unix(y: i64, f: &Fields, tz: Tz) -> i64 {
    let n = naive(y, f);
    match f.offset {
        Some(o) => n - i64::from(o),
        None => n - tz.offset_for(n),
    }
}

/// Fields to Unix seconds. A missing year is fail2ban's guess: this year, or last year
/// when that would put the line more than a day in the future (December lines read in
/// January).
fn resolve(f: &Fields, tz: Tz, now: i64) -> i64 {
    // Lines come in time order, many per minute under attack: the last minute's start is
    // kept (with the year guessed for it, if it was), and a line's time is that plus its
    // seconds. Exact: zone offsets change on whole minutes. The year before is worked out
    // only for the rare line more than a day ahead (its zone offset a year back would also
    // push the current spans out of the offset cache).
    let minute = Fields { sec: 0, ..*f };
    let sec = i64::from(f.sec);
    let at = |(this, guessed): MinuteStart| match guessed {
        Some(y) if this + sec > now + 86_400 => to_unix(y - 1, &minute, tz) + sec,
        _ => this + sec,
    };
    if let Ok(Some((lf, lt, ln, base))) = LAST_MINUTE.try_with(Cell::get)
        && lf == minute
        && lt == tz
        && ln == now
    {
        return at(base);
    }
    let base = match minute.year {
        Some(y) => (to_unix(y, &minute, tz), None),
        None => {
            let year = guessed_year(tz, now);
            (to_unix(year, &minute, tz), Some(year))
        }
    };
    let _ = LAST_MINUTE.try_with(|c| c.set(Some((minute, tz, now, base))));
    at(base)
}

thread_local! {
    /// The last (minute's fields, zone, now) resolved: that minute's start, and the year it
    /// was guessed to be in (None: the stamp has its year).
    static LAST_MINUTE: Cell<Option<(Fields, Tz, i64, MinuteStart)>> =
        const { Cell::new(None) };
}

/// A minute's first second, and the year guessed for it.
type MinuteStart = (i64, Option<i64>);

/// The year a year-less stamp is first taken to be in: now's, in the stamp's zone.
fn guessed_year(tz: Tz, now: i64) -> i64 {
    civil_from_days((now + tz.offset_for(now)).div_euclid(86_400)).0
}

/// [`resolve`] without its cache: what it must give.
#[cfg(test)]
fn resolve_uncached(f: &Fields, tz: Tz, now: i64) -> i64 {
    if let Some(y) = f.year {
        return to_unix(y, f, tz);
    }
    let year = guessed_year(tz, now);
    let t = to_unix(year, f, tz);
    if t > now + 86_400 {
        to_unix(year - 1, f, tz)
    } else {
        t
    }
}

/// Formats Unix seconds as RFC 3339 UTC (`2026-11-22T04:16:03Z`).
pub fn rfc3339(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// A `datepattern` in strftime style (`%Y-%m-%d %H:%M:%S`), translated to a regex with one
/// named group per field. `{^LN-BEG}` (fail2ban's "at the line start") becomes `^`.
#[derive(Debug, Clone)]
pub struct DatePattern {
    re: Regex,
}

impl DatePattern {
    pub fn new(p: &str) -> Result<DatePattern, String> {
        let mut out = String::new();
        let mut rest = p;
        if let Some(r) = rest.strip_prefix("{^LN-BEG}") {
            out.push('^');
            rest = r;
        }
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let mut spec = chars.next().ok_or("datepattern ends with a lone %")?;
            if spec == 'E' || spec == 'O' {
                // %ExY / %Oy style modifiers: same field, strict width.
                spec = chars.next().ok_or("datepattern ends in a % modifier")?;
                if spec == 'x' {
                    spec = chars.next().ok_or("datepattern ends in %Ex")?;
                }
            }
            let g = match spec {
                'Y' => "(?P<Y>\\d{4})",
                'y' => "(?P<y>\\d{2})",
                'm' => "(?P<m>\\d{1,2})",
                'd' | 'e' => "(?P<d>[ \\d]?\\d)",
                'H' => "(?P<H>[ \\d]?\\d)",
                'I' => "(?P<I>[ \\d]?\\d)",
                'M' => "(?P<M>\\d{2})",
                'S' => "(?P<S>\\d{2})",
                'f' => "(?P<f>\\d+)",
                'b' | 'B' | 'h' => "(?P<b>[A-Za-z]{3,9})",
                'a' | 'A' => "(?:[A-Za-z]{3,9})",
                'p' => "(?P<p>[AaPp][Mm])",
                'z' => "(?P<z>Z|[+-]\\d{2}(?::?\\d{2})?)",
                'Z' => "(?P<Z>[A-Z]{1,5})",
                's' => "(?P<s>\\d{9,11})",
                '%' => "%",
                other => return Err(format!("datepattern: unsupported field %{other}")),
            };
            out.push_str(g);
        }
        let re = Regex::new(&out).map_err(|e| format!("datepattern: {e}"))?;
        Ok(DatePattern { re })
    }

    fn find(&self, line: &str, tz: Tz, now: i64) -> Option<Found> {
        let c = self.re.captures(line)?;
        let m = c.get(0)?;
        let num = |n: &str| {
            c.name(n)
                .and_then(|v| v.as_str().trim().parse::<u32>().ok())
        };
        let found = |time| {
            Some(Found {
                start: m.start(),
                end: m.end(),
                time,
            })
        };
        if let Some(s) = c.name("s").and_then(|v| v.as_str().parse::<i64>().ok()) {
            return found(s);
        }
        let mut f = Fields {
            year: num("Y")
                .map(i64::from)
                .or_else(|| num("y").map(|y| 2000 + i64::from(y))),
            month: match c.name("b") {
                Some(b) => month(b.as_str().as_bytes(), 0)?,
                None => num("m").unwrap_or(1),
            },
            day: num("d").unwrap_or(1),
            hour: num("H").unwrap_or(0),
            min: num("M").unwrap_or(0),
            sec: num("S").unwrap_or(0),
            offset: None,
        };
        if let Some(h) = num("I") {
            let pm = c
                .name("p")
                .is_some_and(|p| p.as_str().eq_ignore_ascii_case("pm"));
            f.hour = h % 12 + if pm { 12 } else { 0 };
        }
        if let Some(z) = c.name("z") {
            f.offset = parse_offset(z.as_str().as_bytes(), 0).map(|(o, _)| o);
        } else if c
            .name("Z")
            .is_some_and(|z| matches!(z.as_str(), "UTC" | "GMT" | "Z"))
        {
            f.offset = Some(0);
        }
        if !valid(&f) || f.hour > 23 || f.min > 59 || f.sec > 60 {
            return None;
        }
        found(resolve(&f, tz, now))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const UTC: Tz = Tz::Fixed(0);
    // 2026-11-22T12:00:00Z
    const NOW: i64 = 1_795_348_800;

    fn t(s: &str) -> i64 {
        // RFC 3339 UTC test helper built on the same civil arithmetic.
        let (f, _) = parse_iso(s.as_bytes(), 0).unwrap();
        to_unix(f.year.unwrap(), &f, UTC)
    }

    fn find(line: &str) -> Option<(String, i64)> {
        DateMode::Auto
            .find(line, UTC, NOW)
            .map(|f| (line[f.start..f.end].to_string(), f.time))
    }

    /// The cached syslog stamp gives what a fresh scan gives, line after line, when the
    /// next line shares the stamp's bytes but not what follows it (a year, a fraction, a
    /// digit), or changes the zone or `now`.
    #[test]
    fn cached_stamp_is_a_fresh_scan() {
        let lines = [
            "Nov 22 04:16:03 web1 sshd[1]: x",
            "Nov 22 04:16:03 2025 web1 sshd[1]: x",
            "Nov 22 04:16:03 20251 web1",
            "Nov 22 04:16:03.5 web1 sshd[1]: x",
            "Nov 22 04:16:03,25 web1",
            "Nov 22 04:16:03 web2 sshd[1]: x",
            "Nov 22 04:16:04 web1 sshd[1]: x",
            "Nov 22 04:16:59 web1 sshd[1]: x",
            "Nov 22 04:16:60 web1 sshd[1]: x",
            "Nov 22 04:16:61 web1 sshd[1]: x",
            "Nov 22 04:16:6x web1 sshd[1]: x",
            "Nov 22 04:16:07 2025 web1 sshd[1]: x",
            "Nov 22 04:16:07 web2 sshd[1]: x",
            "Nov 22 04:17:03 web1 sshd[1]: x",
            "Dec 31 23:59:58 web1 sshd[1]: x",
            "Nov 22 04:16:03",
            "Nov 22 04:16:03 w",
            "Sun Nov 22 04:16:03 2026 web1",
            "Sun Nov 22 04:16:03.123456 2026 web1 x",
            "Nov 22 04:16:0 web1 sshd[1]: x",
            "Dec 31 23:59:59 web1 sshd[1]: x",
            "November 22 04:16:03 web1",
        ];
        let zones = [UTC, Tz::Fixed(3600)];
        let nows = [NOW, NOW + 86_400 * 40];
        let mut next = {
            let mut s = 0x2545_f491_4f6c_dd1du64;
            move || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            }
        };
        let mut hits = 0;
        for _ in 0..20_000 {
            let line = lines[(next() % lines.len() as u64) as usize];
            let tz = zones[(next() % 4 == 0) as usize];
            let now = nows[(next() % 4 == 0) as usize];
            let before = LAST_STAMP.with(Cell::get);
            let got = scan(line.as_bytes(), None, tz, now);
            let after = LAST_STAMP.with(Cell::get);
            hits += usize::from(before.len > 0 && before.bytes == after.bytes && got.is_some());
            assert_eq!(got, scan_uncached(line.as_bytes(), None, tz, now), "{line}");
        }
        assert!(hits > 1_000, "{hits}");
    }

    /// The minute cache gives the uncached answer: lines a few seconds apart and jumps,
    /// with and without a year, around the guessed year's end (a December line read in
    /// January), in several zones and `now`s.
    #[test]
    fn cached_minute_is_a_fresh_resolve() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % n
        };
        // 2027-01-01T00:00:30Z: a year-less "Dec 31/Jan 1/Jan 2" straddles the guess.
        let nows = [NOW, 1_798_761_630, 1_798_761_630 - 86_400];
        let zones = [UTC, Tz::Fixed(3600), Tz::Fixed(-34_200), Tz::Local];
        let mut f = Fields {
            year: None,
            month: 12,
            day: 31,
            hour: 23,
            min: 59,
            sec: 0,
            offset: None,
        };
        let mut seen_minutes = 0;
        for _ in 0..50_000 {
            match next(40) {
                0 => {
                    f.month = 1 + next(12) as u32;
                    f.day = 1 + next(28) as u32;
                    f.hour = next(24) as u32;
                    seen_minutes += 1;
                }
                1 => f.min = next(60) as u32,
                2 => f.year = [None, Some(2026), Some(2027)][next(3) as usize],
                3 => f.offset = [None, Some(0), Some(-18_000)][next(3) as usize],
                4 => (f.month, f.day, f.hour, f.min) = (12, 31, 23, 59),
                5 => (f.month, f.day, f.hour, f.min) = (1, 1, 0, 0),
                // A day past the second `now`, in UTC: the guess flips within the minute.
                6 => (f.month, f.day, f.hour, f.min) = (1, 2, 0, 0),
                _ => f.sec = next(61) as u32,
            }
            let tz = zones[next(zones.len() as u64) as usize];
            let now = nows[(next(8) == 0) as usize + (next(8) == 0) as usize];
            assert_eq!(
                resolve(&f, tz, now),
                resolve_uncached(&f, tz, now),
                "{f:?} {tz:?} {now}"
            );
        }
        assert!(seen_minutes > 100);
    }

    #[test]
    fn civil_round_trip() {
        for z in [-1_000_000, -1, 0, 1, 365, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(NOW), "2026-11-22T12:00:00Z");
    }

    #[test]
    fn syslog_and_year_inference() {
        let (s, v) = find("Nov 22 04:16:03 host sshd[1]: x").unwrap();
        assert_eq!(s, "Nov 22 04:16:03");
        assert_eq!(v, t("2026-11-22T04:16:03Z"));
        // Single-digit day, space padded.
        let (s, v) = find("Nov  2 04:16:03 host x").unwrap();
        assert_eq!(s, "Nov  2 04:16:03");
        assert_eq!(v, t("2026-11-02T04:16:03Z"));
        // Tomorrow is still this year (within a day), later dates are last year's.
        assert_eq!(
            find("Nov 23 04:00:00 h").unwrap().1,
            t("2026-11-23T04:00:00Z")
        );
        assert_eq!(
            find("Dec 31 23:59:59 h").unwrap().1,
            t("2025-12-31T23:59:59Z")
        );
        // January lines read on 1 Jan stay in the new year; December ones go back.
        let jan1 = t("2027-01-01T00:10:00Z");
        let d = DateMode::Auto.find("Dec 31 23:59:00 h", UTC, jan1).unwrap();
        assert_eq!(d.time, t("2026-12-31T23:59:00Z"));
        let d = DateMode::Auto.find("Jan  1 00:05:00 h", UTC, jan1).unwrap();
        assert_eq!(d.time, t("2027-01-01T00:05:00Z"));
    }

    #[test]
    fn ctime_with_year_and_fraction() {
        let (s, v) = find("[Sun Nov 22 04:16:03.123456 2026] [auth_basic:error] x").unwrap();
        assert_eq!(s, "Sun Nov 22 04:16:03.123456 2026");
        assert_eq!(v, t("2026-11-22T04:16:03Z"));
        let (_, v) = find("Tue Mar 24 18:30:01 2015 x").unwrap();
        assert_eq!(v, t("2015-03-24T18:30:01Z"));
    }

    #[test]
    fn iso_8601_forms() {
        for (line, want, cut) in [
            (
                "2026-11-22T04:16:03Z NOTICE",
                "2026-11-22T04:16:03Z",
                "2026-11-22T04:16:03Z",
            ),
            (
                "2026-11-22T05:16:03+01:00 x",
                "2026-11-22T04:16:03Z",
                "2026-11-22T05:16:03+01:00",
            ),
            (
                "2026-11-22T05:16:03.123456+0100 x",
                "2026-11-22T04:16:03Z",
                "2026-11-22T05:16:03.123456+0100",
            ),
            (
                "2026-11-21 23:16:03,5 -05:00 x",
                "2026-11-22T04:16:03Z",
                "2026-11-21 23:16:03,5 -05:00",
            ),
            (
                "2026-11-22 04:16:03 x",
                "2026-11-22T04:16:03Z",
                "2026-11-22 04:16:03",
            ),
        ] {
            let (s, v) = find(line).unwrap();
            assert_eq!(s, cut, "{line}");
            assert_eq!(v, t(want), "{line}");
        }
    }

    #[test]
    fn access_nginx_error_mysql() {
        let line = r#"198.18.0.7 - - [22/Nov/2026:05:16:03 +0100] "GET / HTTP/1.1" 404"#;
        let (s, v) = find(line).unwrap();
        assert_eq!(s, "22/Nov/2026:05:16:03 +0100");
        assert_eq!(v, t("2026-11-22T04:16:03Z"));
        let (s, v) = find("2026/11/22 04:16:03 [error] 12#12: *3 x").unwrap();
        assert_eq!(s, "2026/11/22 04:16:03");
        assert_eq!(v, t("2026-11-22T04:16:03Z"));
        let (s, v) = find("22-Nov-2026 04:16:03.123 security: x").unwrap();
        assert_eq!(s, "22-Nov-2026 04:16:03.123");
        assert_eq!(v, t("2026-11-22T04:16:03Z"));
        let (s, _) = find("[22-Nov-2026 04:16:03 UTC]: <x> y").unwrap();
        assert_eq!(s, "22-Nov-2026 04:16:03 UTC");
        let (s, v) = find("261122  4:16:03 [Warning] x").unwrap();
        assert_eq!(s, "261122  4:16:03");
        assert_eq!(v, t("2026-11-22T04:16:03Z"));
    }

    #[test]
    fn epoch_and_tai64n() {
        let (s, v) = find("1795321563.123 host x").unwrap();
        assert_eq!(s, "1795321563.123");
        assert_eq!(v, 1_795_321_563);
        let (_, v) = find("[1795321563] x").unwrap();
        assert_eq!(v, 1_795_321_563);
        // Numbers later in the line are not epochs.
        assert!(find("x id 1795321563").is_none());
        // TAI64N: 2^62 + 10 + unix seconds.
        let label = format!("@{:016x}{:08x} x", (1u64 << 62) + 10 + 1_795_321_563, 7);
        let (_, v) = find(&label).unwrap();
        assert_eq!(v, 1_795_321_563);
    }

    #[test]
    fn zones_for_naive_stamps() {
        let p = Tz::parse("+0200").unwrap();
        assert_eq!(p, Tz::Fixed(7200));
        assert_eq!(Tz::parse("-05:30"), Some(Tz::Fixed(-(5 * 3600 + 1800))));
        assert_eq!(Tz::parse("UTC"), Some(Tz::Fixed(0)));
        assert_eq!(Tz::parse("local"), Some(Tz::Local));
        assert_eq!(Tz::parse("Mars/Olympus"), None);
        let d = DateMode::Auto
            .find("2026-11-22 06:16:03 x", p, NOW)
            .unwrap();
        assert_eq!(d.time, t("2026-11-22T04:16:03Z"));
        // An explicit zone in the stamp wins over the filter's timezone.
        let d = DateMode::Auto
            .find("2026-11-22T04:16:03Z x", p, NOW)
            .unwrap();
        assert_eq!(d.time, t("2026-11-22T04:16:03Z"));
        // Local is whatever libc says; with TZ unset on these machines, that is UTC.
        let l = DateMode::Auto
            .find("2026-11-22 04:16:03 x", Tz::Local, NOW)
            .unwrap();
        assert_eq!(l.time, t("2026-11-22T04:16:03Z") - local_offset(l.time));
    }

    #[test]
    fn no_date_and_near_misses() {
        for line in [
            "",
            "no date here",
            "Novel 22 04:16:03",
            "2026-13-22T04:16:03Z",
            "Nov 22 25:16:03",
            "version 1.2.3",
        ] {
            assert!(find(line).is_none(), "{line}");
        }
    }

    #[test]
    fn explicit_patterns() {
        let m = DateMode::parse(Some("%d.%m.%Y %H:%M:%S")).unwrap();
        let d = m.find("x 22.11.2026 04:16:03 y", UTC, NOW).unwrap();
        assert_eq!(d.time, t("2026-11-22T04:16:03Z"));
        assert_eq!((d.start, d.end), (2, 21));
        let m = DateMode::parse(Some("{^LN-BEG}%b %d %I:%M:%S %p %Y")).unwrap();
        let d = m.find("Nov 22 04:16:03 PM 2026 y", UTC, NOW).unwrap();
        assert_eq!(d.time, t("2026-11-22T16:16:03Z"));
        assert!(m.find("y Nov 22 04:16:03 PM 2026", UTC, NOW).is_none());
        let m = DateMode::parse(Some("epoch")).unwrap();
        assert!(m.find("2026-11-22T04:16:03Z x", UTC, NOW).is_none());
        assert!(DateMode::parse(Some("%Q")).is_err());
        assert!(matches!(
            DateMode::parse(Some("none")).unwrap(),
            DateMode::Never
        ));
    }

    #[test]
    fn cached_local_offset_is_libcs() {
        // Back and forth over span edges, as lines and the year guess's "now" alternate.
        for t in [
            NOW,
            NOW + 899,
            NOW - 1,
            NOW + 3600,
            NOW,
            0,
            -1,
            NOW + 86_400 * 200,
        ] {
            assert_eq!(local_offset(t), local_offset_libc(t), "{t}");
            assert_eq!(local_offset(t), local_offset_libc(t), "{t} cached");
        }
    }
}
