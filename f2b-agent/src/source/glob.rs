//! Log path patterns: `*`, `?`, `[...]` (with `!`/`^` negation and ranges) and `\` escapes,
//! per path component, like a shell. Re-expanded on every poll, so files that appear later are
//! picked up. Also says which directories to watch so that creations are seen.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// True when `pattern` has glob syntax; a literal path is followed as it is.
pub fn is_glob(pattern: &str) -> bool {
    pattern.bytes().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// Paths matching `pattern` right now (sorted, regular files and anything else: the caller
/// filters), and the directories whose changes could change that answer.
pub fn expand(pattern: &str, dirs: &mut BTreeSet<PathBuf>) -> Vec<String> {
    let absolute = pattern.starts_with('/');
    let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let base = if absolute {
        PathBuf::from("/")
    } else {
        PathBuf::from(".")
    };
    let mut out = Vec::new();
    walk(&base, absolute, &comps, dirs, &mut out);
    out.sort();
    out.dedup();
    out
}

fn join(dir: &Path, absolute: bool, name: &str) -> PathBuf {
    if !absolute && dir == Path::new(".") {
        PathBuf::from(name)
    } else {
        dir.join(name)
    }
}

fn walk(
    dir: &Path,
    absolute: bool,
    comps: &[&str],
    dirs: &mut BTreeSet<PathBuf>,
    out: &mut Vec<String>,
) {
    let Some((first, rest)) = comps.split_first() else {
        return;
    };
    if !is_glob(first) {
        let lit = unescape(first);
        let next = join(dir, absolute, &lit);
        if rest.is_empty() {
            dirs.insert(dir.to_path_buf());
            out.push(next.to_string_lossy().into_owned());
        } else if next.is_dir() {
            walk(&next, absolute, rest, dirs, out);
        } else {
            // Not there yet: watch the nearest existing directory so its creation is seen.
            dirs.insert(dir.to_path_buf());
        }
        return;
    }
    dirs.insert(dir.to_path_buf());
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        if !matches(first.as_bytes(), name.as_bytes()) {
            continue;
        }
        let next = join(dir, absolute, &name);
        if rest.is_empty() {
            out.push(next.to_string_lossy().into_owned());
        } else if next.is_dir() {
            walk(&next, absolute, rest, dirs, out);
        }
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Shell-style match of one path component. A leading `.` must be matched literally.
pub fn matches(pat: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pat.first() != Some(&b'.') {
        return false;
    }
    let (mut p, mut n) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, name index it matched up to).
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pat.get(p) {
            Some(b'*') => {
                star = Some((p + 1, n));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => match class(pat, p, name[n]) {
                Some((true, end)) => Some(end),
                Some((false, _)) => None,
                // An unclosed `[` is a literal.
                None => (name[n] == b'[').then_some(p + 1),
            },
            Some(b'\\') if p + 1 < pat.len() => (pat[p + 1] == name[n]).then_some(p + 2),
            Some(&c) => (c == name[n]).then_some(p + 1),
            None => None,
        };
        match step {
            Some(np) => {
                p = np;
                n += 1;
            }
            None => match star {
                Some((sp, sn)) => {
                    p = sp;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pat[start] == b'['`: (matched, index after `]`),
/// or None when the class is not closed.
fn class(pat: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pat.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let lo = *pat.get(i)?;
        if lo == b']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if pat.get(i + 1) == Some(&b'-') && pat.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = pat[i + 2];
            hit |= lo <= c && c <= hi;
            i += 3;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_matching() {
        let m = |p: &str, n: &str| matches(p.as_bytes(), n.as_bytes());
        assert!(m("*.log", "auth.log"));
        assert!(!m("*.log", "auth.log.1"));
        assert!(m("auth.log*", "auth.log.1"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("[ab]x", "bx"));
        assert!(!m("[!ab]x", "bx"));
        assert!(m("[a-c]*", "clog"));
        assert!(!m("*.log", ".hidden.log"));
        assert!(m(".*.log", ".hidden.log"));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(!m("*a*b", "xxaxxbxx"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "x"));
        assert!(m("[x", "[x"));
    }

    #[test]
    fn expands_and_reports_dirs() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir(root.join("a")).unwrap();
        fs::create_dir(root.join("b")).unwrap();
        fs::write(root.join("a/x.log"), "").unwrap();
        fs::write(root.join("b/x.log"), "").unwrap();
        fs::write(root.join("b/y.txt"), "").unwrap();
        let mut dirs = BTreeSet::new();
        let pat = format!("{}/*/x.log", root.display());
        let got = expand(&pat, &mut dirs);
        assert_eq!(
            got,
            vec![
                format!("{}/a/x.log", root.display()),
                format!("{}/b/x.log", root.display())
            ]
        );
        assert!(dirs.contains(root));
        assert!(dirs.contains(&root.join("a")));
        let mut dirs = BTreeSet::new();
        let pat = format!("{}/missing/*.log", root.display());
        assert!(expand(&pat, &mut dirs).is_empty());
        assert!(dirs.contains(root), "{dirs:?}");
    }
}
