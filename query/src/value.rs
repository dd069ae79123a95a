//! Values that flow through queries, and result rows with their printing as
//! a table, JSON or CSV.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use quiver_storage::Snapshot;

/// A value in a query: a literal, a property, a node or an edge.
#[derive(Debug, Clone)]
pub enum Value {
    /// Missing or unknown.
    Null,
    /// Boolean.
    Bool(bool),
    /// 64-bit integer.
    Int(i64),
    /// 64-bit float.
    Float(f64),
    /// Text.
    Str(String),
    /// A node: its type id and dense id.
    Node {
        /// Node type id.
        ty: u32,
        /// Dense id within the type.
        id: u32,
    },
    /// An edge `src -rel-> dst` (dense ids of the relation's source and destination types).
    Edge {
        /// Relation id.
        rel: u32,
        /// Source node id.
        src: u32,
        /// Destination node id.
        dst: u32,
    },
    /// A list (the edges of a variable-length pattern, `collect`, literals),
    /// shared: rows that carry it (`WITH collect(x) AS l UNWIND l AS y`)
    /// hold one copy, not one each.
    List(Arc<[Value]>),
    /// A map (`{name: 'a', age: 3}`, a parameter's rows), ordered by key;
    /// shared like a list (`UNWIND $rows AS r` hands each row its map
    /// without copying it).
    Map(Arc<BTreeMap<String, Value>>),
    /// A path (`p = (a)-->(b)`, `shortestPath(...)`): its nodes and edges
    /// alternating, node first and last.
    Path(Arc<[Value]>),
}

impl Value {
    /// The text, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number as f64, if this is an integer or a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(x) => Some(*x),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Node { .. } => 0,
            Value::Edge { .. } => 1,
            Value::Map(_) => 2,
            Value::List(_) => 3,
            Value::Path(_) => 4,
            Value::Str(_) => 5,
            Value::Bool(_) => 6,
            Value::Int(_) | Value::Float(_) => 7,
            Value::Null => 8,
        }
    }

    /// A total order for sorting, DISTINCT and grouping: numbers compare by
    /// value (integers and floats together; -0.0 equals 0.0, and NaN sorts
    /// above every number and equals itself, as openCypher orders them),
    /// nulls sort last.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        use Value::*;
        match (self, other) {
            (Int(a), Int(b)) => a.cmp(b),
            (Int(_) | Float(_), Int(_) | Float(_)) => {
                let (a, b) = (self.as_f64().unwrap_or(0.0), other.as_f64().unwrap_or(0.0));
                match (a.is_nan(), b.is_nan()) {
                    (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
                    (x, y) => x.cmp(&y),
                }
            }
            (Str(a), Str(b)) => a.cmp(b),
            (Bool(a), Bool(b)) => a.cmp(b),
            (Node { ty: a, id: b }, Node { ty: c, id: d }) => (a, b).cmp(&(c, d)),
            (
                Edge {
                    rel: a,
                    src: b,
                    dst: c,
                },
                Edge {
                    rel: x,
                    src: y,
                    dst: z,
                },
            ) => (a, b, c).cmp(&(x, y, z)),
            (List(a), List(b)) | (Path(a), Path(b)) => {
                for (x, y) in a.iter().zip(b.iter()) {
                    let o = x.total_cmp(y);
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                a.len().cmp(&b.len())
            }
            (Map(a), Map(b)) => {
                for ((ka, va), (kb, vb)) in a.iter().zip(b.iter()) {
                    let o = ka.cmp(kb).then_with(|| va.total_cmp(vb));
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                a.len().cmp(&b.len())
            }
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        // Nodes and edges, the common case while matching, compare directly.
        match (self, other) {
            (Value::Node { ty: a, id: b }, Value::Node { ty: c, id: d }) => a == c && b == d,
            (
                Value::Edge {
                    rel: a,
                    src: b,
                    dst: c,
                },
                Value::Edge {
                    rel: x,
                    src: y,
                    dst: z,
                },
            ) => a == x && b == y && c == z,
            _ => self.total_cmp(other) == Ordering::Equal,
        }
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, h: &mut H) {
        match self {
            Value::Null => 0u8.hash(h),
            Value::Bool(b) => b.hash(h),
            // Integers and floats that are equal must hash alike.
            Value::Int(i) => (*i as f64).to_bits().hash(h),
            Value::Float(x) => match x {
                x if x.is_nan() => f64::NAN.to_bits().hash(h),
                0.0 => 0.0f64.to_bits().hash(h),
                x => x.to_bits().hash(h),
            },
            Value::Str(s) => s.hash(h),
            Value::Node { ty, id } => (ty, id).hash(h),
            Value::Edge { rel, src, dst } => (rel, src, dst).hash(h),
            Value::List(l) | Value::Path(l) => l.hash(h),
            Value::Map(m) => m.hash(h),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl Value {
    /// A parameter from JSON: objects become maps, arrays lists, numbers
    /// integers when they are whole and fit, floats otherwise.
    pub fn from_json(j: serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s),
            J::Array(a) => Value::List(a.into_iter().map(Value::from_json).collect()),
            J::Object(o) => Value::Map(Arc::new(
                o.into_iter().map(|(k, v)| (k, Value::from_json(v))).collect(),
            )),
        }
    }
}

/// Query parameters by name (without the `$`).
pub type Params = std::collections::HashMap<String, Value>;

/// The rows a query returned, with the snapshot they were read from (to
/// name the nodes and edges in them).
#[derive(Clone)]
pub struct Rows {
    /// Column names: the `RETURN` aliases, or the expressions as written.
    pub columns: Vec<String>,
    /// The rows, one value per column.
    pub rows: Vec<Vec<Value>>,
    pub(crate) snapshot: Snapshot,
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows")
            .field("columns", &self.columns)
            .field("rows", &self.rows)
            .finish()
    }
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The value in `row` under column `name`.
    pub fn get(&self, row: usize, name: &str) -> Option<&Value> {
        let c = self.columns.iter().position(|c| c == name)?;
        self.rows.get(row)?.get(c)
    }

    fn node_key(&self, ty: u32, id: u32) -> &str {
        self.snapshot.node_key(ty, id).unwrap_or("?")
    }

    /// How a value reads in a table: nodes as `(:User 'alice')`, edges as
    /// `[:Follows 'alice'->'bob']`.
    pub fn display(&self, v: &Value) -> String {
        let c = self.snapshot.catalog();
        match v {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(x) => format_float(*x),
            Value::Str(s) => s.clone(),
            Value::Node { ty, id } => format!("(:{} '{}')", c.type_name(*ty), self.node_key(*ty, *id)),
            Value::Edge { rel, src, dst } => {
                let r = &c.relations[*rel as usize];
                format!(
                    "[:{} '{}'->'{}']",
                    r.name,
                    self.node_key(r.src, *src),
                    self.node_key(r.dst, *dst)
                )
            }
            Value::List(l) => {
                let items: Vec<String> = l.iter().map(|x| self.display_quoted(x)).collect();
                format!("[{}]", items.join(", "))
            }
            Value::Path(p) => {
                // (:User 'a')-[:Follows]->(:User 'b')<-[:Follows]-(:User 'c')
                let mut out = self.display(&p[0]);
                for w in p[1..].chunks(2) {
                    let (Value::Edge { rel, dst, .. }, Some(Value::Node { ty, id })) = (&w[0], w.get(1))
                    else {
                        continue;
                    };
                    let r = &c.relations[*rel as usize];
                    let (forward, name) = (dst == id && r.dst == *ty, &r.name);
                    out += &match forward {
                        true => format!("-[:{name}]->"),
                        false => format!("<-[:{name}]-"),
                    };
                    out += &self.display(&w[1]);
                }
                out
            }
            Value::Map(m) => {
                let items: Vec<String> = m
                    .iter()
                    .map(|(k, x)| format!("{k}: {}", self.display_quoted(x)))
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
        }
    }

    fn display_quoted(&self, v: &Value) -> String {
        match v {
            Value::Str(s) => format!("'{s}'"),
            _ => self.display(v),
        }
    }

    /// A value as JSON: nodes as `{"type": .., "key": ..}`, edges as
    /// `{"type": .., "src": .., "dst": ..}`.
    pub fn json_value(&self, v: &Value) -> serde_json::Value {
        use serde_json::json;
        let c = self.snapshot.catalog();
        match v {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => json!(b),
            Value::Int(i) => json!(i),
            Value::Float(x) => json!(x),
            Value::Str(s) => json!(s),
            Value::Node { ty, id } => json!({"type": c.type_name(*ty), "key": self.node_key(*ty, *id)}),
            Value::Edge { rel, src, dst } => {
                let r = &c.relations[*rel as usize];
                json!({"type": r.name, "src": self.node_key(r.src, *src), "dst": self.node_key(r.dst, *dst)})
            }
            Value::List(l) => serde_json::Value::Array(l.iter().map(|x| self.json_value(x)).collect()),
            Value::Path(p) => json!({
                "nodes": p.iter().step_by(2).map(|x| self.json_value(x)).collect::<Vec<_>>(),
                "relationships": p.iter().skip(1).step_by(2).map(|x| self.json_value(x)).collect::<Vec<_>>(),
            }),
            Value::Map(m) => {
                serde_json::Value::Object(m.iter().map(|(k, x)| (k.clone(), self.json_value(x))).collect())
            }
        }
    }

    /// A JSON array with one object per row, keyed by column name.
    pub fn to_json(&self) -> String {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                let m: serde_json::Map<String, serde_json::Value> = self
                    .columns
                    .iter()
                    .zip(r)
                    .map(|(c, v)| (c.clone(), self.json_value(v)))
                    .collect();
                serde_json::Value::Object(m)
            })
            .collect();
        serde_json::Value::Array(rows).to_string()
    }

    /// RFC 4180 CSV with a header line.
    pub fn to_csv(&self) -> String {
        let field = |s: &str| {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let mut out = String::new();
        let line = |cells: Vec<String>| cells.iter().map(|c| field(c)).collect::<Vec<_>>().join(",");
        out.push_str(&line(self.columns.clone()));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r.iter().map(|v| self.display(v)).collect()));
            out.push('\n');
        }
        out
    }

    /// A boxed table, with the row count under it.
    pub fn to_table(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|v| self.display(v).replace('\n', "\\n")).collect())
            .collect();
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for r in &cells {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let rule = |out: &mut String| {
            out.push('+');
            for w in &widths {
                out.push_str(&"-".repeat(w + 2));
                out.push('+');
            }
            out.push('\n');
        };
        let row = |out: &mut String, r: &[String]| {
            out.push('|');
            for (w, c) in widths.iter().zip(r) {
                let _ = write!(out, " {c}{} |", " ".repeat(w - c.chars().count()));
            }
            out.push('\n');
        };
        let mut out = String::new();
        rule(&mut out);
        row(&mut out, &self.columns);
        rule(&mut out);
        for r in &cells {
            row(&mut out, r);
        }
        rule(&mut out);
        let n = self.rows.len();
        let _ = writeln!(out, "{n} row{}", if n == 1 { "" } else { "s" });
        out
    }
}

/// Floats print as the shortest text that reads back to the same value,
/// always with a point: `0.3333333333333333`, `1.0`, `1.0e20`, `1.0e-45`.
pub(crate) fn format_float(x: f64) -> String {
    let s = format!("{x:?}");
    match s.split_once('e') {
        Some((mantissa, exp)) if !mantissa.contains('.') => format!("{mantissa}.0e{exp}"),
        _ => s,
    }
}
