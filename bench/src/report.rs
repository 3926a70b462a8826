//! What a run measured, as tables (rendered to bench/REPORT.md and bench/results.json from the
//! same values, so every number in the report is in the JSON), plus series for the plots.

use serde_json::{Map, Value, json};

/// Median, min and max of a sample.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    pub fn of(xs: &[f64]) -> Option<Stat> {
        if xs.is_empty() {
            return None;
        }
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        Some(Stat {
            median,
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

pub struct Table {
    pub id: String,
    pub title: String,
    pub note: String,
    pub cols: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    pub fn new(id: &str, title: &str, cols: &[&str]) -> Table {
        Table {
            id: id.into(),
            title: title.into(),
            note: String::new(),
            cols: cols.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<Value>) {
        debug_assert_eq!(cells.len(), self.cols.len());
        self.rows.push(cells);
    }

    pub fn markdown(&self) -> String {
        let mut s = format!("### {}\n\n", self.title);
        if !self.note.is_empty() {
            s.push_str(&self.note);
            s.push_str("\n\n");
        }
        s.push_str(&format!("| {} |\n", self.cols.join(" | ")));
        s.push_str(&format!(
            "|{}|\n",
            self.cols
                .iter()
                .map(|_| "---")
                .collect::<Vec<_>>()
                .join("|")
        ));
        for r in &self.rows {
            let cells: Vec<String> = r.iter().map(fmt_cell).collect();
            s.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        s.push('\n');
        s
    }

    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let mut m = Map::new();
                for (c, v) in self.cols.iter().zip(r) {
                    m.insert(c.clone(), v.clone());
                }
                Value::Object(m)
            })
            .collect();
        json!({"id": self.id, "title": self.title, "note": self.note, "columns": self.cols, "rows": rows})
    }
}

/// Numbers with 3 significant digits (grouped thousands above 1000), null as "—".
pub fn fmt_cell(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => fmt_num(n.as_f64().unwrap_or(f64::NAN)),
        other => other.to_string(),
    }
}

pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    let a = x.abs();
    if a < 1e15 && x.fract() == 0.0 && a < 1000.0 {
        // Integers (entry counts, trials) stay integers: "1", not "1.00".
        format!("{x:.0}")
    } else if a >= 1000.0 {
        let r = x.round() as i64;
        let s = r.abs().to_string();
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(ch);
        }
        if r < 0 { format!("-{out}") } else { out }
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a == 0.0 {
        "0".into()
    } else {
        format!("{x:.3}")
    }
}

/// A number cell (NaN/inf become null).
pub fn num(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

pub fn opt(x: Option<f64>) -> Value {
    x.map(num).unwrap_or(Value::Null)
}

pub fn text(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

/// A time series for a plot: (x, y) points per named line.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub struct Plot {
    pub file: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}
