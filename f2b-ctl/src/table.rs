//! A small aligned-text table: header row, columns two spaces apart, numbers right-aligned,
//! no trailing whitespace.

/// How a column's cells line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Debug)]
pub struct Table {
    headers: Vec<String>,
    aligns: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with the given `(header, alignment)` columns.
    pub fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            headers: columns.iter().map(|(h, _)| h.to_string()).collect(),
            aligns: columns.iter().map(|(_, a)| *a).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines, each ending in `\n`.
    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i] - width(cell);
                match self.aligns[i] {
                    Align::Left => {
                        line.push_str(cell);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(&[
            ("IP", Align::Left),
            ("BANS", Align::Right),
            ("JAIL", Align::Left),
        ]);
        t.row(["198.18.0.7", "2", "sshd"]);
        t.row(["fd00:f2b::1", "1,234", "manual"]);
        assert_eq!(
            t.render(),
            "IP            BANS  JAIL\n\
             198.18.0.7       2  sshd\n\
             fd00:f2b::1  1,234  manual\n"
        );
    }

    #[test]
    fn no_trailing_spaces_and_short_rows_padded() {
        let mut t = Table::new(&[("A", Align::Left), ("B", Align::Left)]);
        t.row(["longer-than-a"]);
        t.row(["x", "y"]);
        let out = t.render();
        assert!(out.lines().all(|l| !l.ends_with(' ')), "{out:?}");
        assert_eq!(out, "A              B\nlonger-than-a\nx              y\n");
    }

    #[test]
    fn counts_characters_not_bytes() {
        let mut t = Table::new(&[("N", Align::Left), ("V", Align::Right)]);
        t.row(["é", "1"]);
        t.row(["ab", "22"]);
        assert_eq!(t.render(), "N    V\né    1\nab  22\n");
    }
}
