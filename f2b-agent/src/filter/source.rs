//! Line numbers for filter YAML. serde_yaml's `Value` keeps no positions, so the loader
//! asks this small indentation-based scanner where a key or a list item starts. It knows
//! block mappings and block sequences (what filter files use); anything it cannot place
//! falls back to the key's line, then to none.

/// One significant (non-blank, non-comment) line: 1-based number, indent, text.
struct Line<'a> {
    no: usize,
    indent: usize,
    text: &'a str,
}

fn lines(src: &str) -> Vec<Line<'_>> {
    src.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let t = l.trim_start();
            if t.is_empty() || t.starts_with('#') || t == "---" {
                return None;
            }
            Some(Line {
                no: i + 1,
                indent: l.len() - t.len(),
                text: t,
            })
        })
        .collect()
}

fn is_key(text: &str, key: &str) -> bool {
    let unq = text
        .strip_prefix(key)
        .or_else(|| text.strip_prefix(&format!("\"{key}\"")))
        .or_else(|| text.strip_prefix(&format!("'{key}'")));
    unq.is_some_and(|r| r.starts_with(':'))
}

/// Index (into `ls`) of the line holding the key at `path` (e.g. `["modes", "ddos",
/// "failregex"]`).
fn find_key(ls: &[Line<'_>], path: &[&str]) -> Option<usize> {
    let mut from = 0;
    let mut parent_indent: Option<usize> = None;
    let mut found = None;
    for key in path {
        let mut hit = None;
        for (i, l) in ls.iter().enumerate().skip(from) {
            if let Some(p) = parent_indent
                && l.indent <= p
            {
                break;
            }
            if is_key(l.text, key) {
                hit = Some(i);
                break;
            }
        }
        let i = hit?;
        parent_indent = Some(ls[i].indent);
        from = i + 1;
        found = Some(i);
    }
    found
}

/// Line of the key at `path`.
pub fn key_line(src: &str, path: &[&str]) -> Option<usize> {
    let ls = lines(src);
    find_key(&ls, path).map(|i| ls[i].no)
}

/// Line of the `item`-th entry (0-based) of the block sequence at `path`; the key's line
/// for a flow sequence (`[a, b]`) or a scalar.
pub fn item_line(src: &str, path: &[&str], item: usize) -> Option<usize> {
    let ls = lines(src);
    let k = find_key(&ls, path)?;
    let key = &ls[k];
    let mut seen = 0;
    let mut item_indent = None;
    for l in &ls[k + 1..] {
        let is_item = l.text == "-" || l.text.starts_with("- ");
        if l.indent < key.indent || (l.indent == key.indent && !is_item) {
            break;
        }
        if is_item && item_indent.is_none_or(|ii| ii == l.indent) {
            item_indent = Some(l.indent);
            if seen == item {
                return Some(l.no);
            }
            seen += 1;
        }
    }
    Some(key.no)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SRC: &str = "\
# comment
description: x
failregex:
  - a
  # between
  - >-
    b
    continued
ignoreregex:
- c
modes:
  ddos:
    failregex:
      - d
      - e
  extra:
    failregex: [f]
";

    #[test]
    fn finds_items_and_keys() {
        assert_eq!(item_line(SRC, &["failregex"], 0), Some(4));
        assert_eq!(item_line(SRC, &["failregex"], 1), Some(6));
        assert_eq!(item_line(SRC, &["ignoreregex"], 0), Some(10));
        assert_eq!(item_line(SRC, &["modes", "ddos", "failregex"], 1), Some(15));
        assert_eq!(
            item_line(SRC, &["modes", "extra", "failregex"], 0),
            Some(17)
        );
        assert_eq!(key_line(SRC, &["modes", "extra"]), Some(16));
        assert_eq!(key_line(SRC, &["prefregex"]), None);
    }
}
