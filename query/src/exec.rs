//! The executor: operators pull rows lazily from the ones before them, so a
//! `LIMIT` without sorting stops the whole pipeline early. Every operator
//! ticks a counter that checks the timeout, and buffers are held to the row cap.

use std::cell::Cell;
use std::collections::HashMap;

use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_engine::Model;
use quiver_storage::{Database, Direction, Neighbors, NodeRef, Snapshot};

use crate::ast::{BinOp, Dir};
use crate::error::{runtime, QueryError, Result};
use crate::plan::{Agg, AggKind, CExpr, Func, NodeSrc, Op, Plan, Proc, Ret, Step, Write};
use crate::value::{format_float, Params, Value};

/// One row: a value per slot.
pub(crate) type Row = Vec<Value>;
type RowIter<'a> = Box<dyn Iterator<Item = Result<Row>> + 'a>;

/// Loads models on first use and keeps them while their stored parts are
/// unchanged; beside each, the model extended with rows inferred for nodes
/// created since training, kept while the graph's edges and node counts are.
pub(crate) type ModelCache = parking_lot::Mutex<HashMap<String, CachedModel>>;

#[derive(Clone)]
pub(crate) struct CachedModel {
    parts: Vec<String>,
    base: Arc<Model>,
    extended: Option<(Vec<String>, Arc<Model>)>,
}

pub(crate) struct Ctx<'a> {
    pub db: &'a Database,
    pub snap: &'a Snapshot,
    pub params: &'a Params,
    pub models: &'a ModelCache,
    pub start: Instant,
    pub timeout: Option<Duration>,
    pub max_rows: u64,
    pub ticks: Cell<u64>,
    /// Rows dropped by the aggregate and filters, reused by expansions so
    /// that a row costs no allocation in the steady state.
    pub pool: std::cell::RefCell<Vec<Row>>,
}

impl Ctx<'_> {
    fn tick(&self) -> Result<()> {
        let t = self.ticks.get() + 1;
        self.ticks.set(t);
        if t.is_multiple_of(256) {
            if let Some(limit) = self.timeout {
                if self.start.elapsed() > limit {
                    return Err(QueryError::Timeout(limit.as_millis() as u64));
                }
            }
        }
        Ok(())
    }

    /// A copy of `row` in a recycled buffer.
    fn copy(&self, row: &Row) -> Row {
        match self.pool.borrow_mut().pop() {
            Some(mut r) => {
                r.clone_from(row);
                r
            }
            None => row.clone(),
        }
    }

    /// Hands a finished row back for reuse.
    fn recycle(&self, row: Row) {
        let mut pool = self.pool.borrow_mut();
        if pool.len() < 1024 {
            pool.push(row);
        }
    }

    fn cap(&self, n: usize) -> Result<()> {
        if n as u64 > self.max_rows {
            return Err(QueryError::RowCap(self.max_rows));
        }
        Ok(())
    }

    /// The rows the operators produce from one input row.
    pub(crate) fn pipeline<'s>(&'s self, ops: &'s [Op], input: Row) -> RowIter<'s> {
        let mut it: RowIter<'s> = Box::new(std::iter::once(Ok(input)));
        for op in ops {
            match op {
                Op::Scan { slot, types } => {
                    it = Box::new(it.flat_map(move |r| self.scan(r, *slot, types.as_deref())));
                    continue;
                }
                Op::Expand(step) if !step.into => {
                    it = Box::new(it.flat_map(move |r| self.expand_lazy(step, r)));
                    continue;
                }
                Op::VarExpand { step, min, max } => {
                    it = Box::new(it.flat_map(move |r| self.var_expand(step, *min, *max, r)));
                    continue;
                }
                _ => {}
            }
            it = Box::new(it.flat_map(move |r| -> RowIter<'s> {
                let out = r.and_then(|row| self.apply(op, row));
                match out {
                    Ok(rows) => Box::new(rows.into_iter().map(Ok)),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                }
            }));
        }
        it
    }

    /// Every live node of the types, one row each, produced lazily.
    fn scan<'s>(&'s self, r: Result<Row>, slot: usize, types: Option<&'s [u32]>) -> RowIter<'s> {
        let row = match r {
            Ok(row) => row,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let all: Vec<u32> = match types {
            Some(t) => t.to_vec(),
            None => (0..self.snap.catalog().node_types.len() as u32).collect(),
        };
        Box::new(
            all.into_iter()
                .flat_map(move |ty| (0..self.snap.node_count(ty)).map(move |id| (ty, id)))
                .filter(|&(ty, id)| !self.snap.is_deleted(ty, id))
                .map(move |(ty, id)| {
                    self.tick()?;
                    let mut r = row.clone();
                    r[slot] = Value::Node { ty, id };
                    Ok(r)
                }),
        )
    }

    fn apply(&self, op: &Op, row: Row) -> Result<Vec<Row>> {
        self.tick()?;
        let with = |row: &Row, slot: usize, v: Value| {
            let mut r = row.clone();
            r[slot] = v;
            r
        };
        let all_types = || 0..self.snap.catalog().node_types.len() as u32;
        Ok(match op {
            Op::Scan { .. } => unreachable!("scans run lazily in the pipeline"),
            Op::ByKey { slot, types, key } => {
                let k = match self.eval(key, &row)? {
                    Value::Str(s) => s,
                    Value::Null => return Ok(Vec::new()),
                    other => return Err(runtime(format!("a node key is a string, not {}", kind(&other)))),
                };
                let types: Vec<u32> = types.clone().unwrap_or_else(|| all_types().collect());
                types
                    .into_iter()
                    .filter_map(|ty| {
                        Some(with(
                            &row,
                            *slot,
                            Value::Node {
                                ty,
                                id: self.snap.node_id(ty, &k)?,
                            },
                        ))
                    })
                    .collect()
            }
            Op::CheckType { slot, types } => match row[*slot] {
                Value::Node { ty, .. } if types.contains(&ty) => vec![row],
                _ => Vec::new(),
            },
            Op::Expand(step) => {
                let mut out = Vec::new();
                self.expand(step, &row, &mut |edge, to| {
                    let mut r = self.copy(&row);
                    r[step.edge] = edge;
                    r[step.to] = to;
                    out.push(r);
                    Ok(())
                })?;
                out
            }
            Op::VarExpand { .. } => unreachable!("variable-length expansions run lazily in the pipeline"),
            Op::Intersect { a, b } => self.intersect(a, b, row)?,
            Op::Filter(e) => match self.eval(e, &row)? {
                Value::Bool(true) => vec![row],
                _ => {
                    self.recycle(row);
                    Vec::new()
                }
            },
            Op::Call { proc, args, out } => {
                let args = args
                    .iter()
                    .map(|a| match proc {
                        Proc::Train => self.eval_arg(a, &row),
                        _ => self.eval(a, &row),
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.call(*proc, &args)?
                    .into_iter()
                    .map(|vals| {
                        let mut r = row.clone();
                        for &(col, slot) in out {
                            r[slot] = vals[col].clone();
                        }
                        r
                    })
                    .collect()
            }
        })
    }

    /// The (relation, direction) pairs a step follows from node `(ty, id)`.
    fn step_rels(&self, step: &Step, ty: u32, id: u32) -> Vec<(u32, Direction)> {
        let c = self.snap.catalog();
        let mut out = Vec::new();
        for d in [Direction::Out, Direction::In] {
            let wanted = match step.dir {
                Dir::Out => d == Direction::Out,
                Dir::In => d == Direction::In,
                Dir::Both => true,
            };
            if !wanted {
                continue;
            }
            match &step.rels {
                None => out.extend(self.snap.relations_of(ty, id, d).into_iter().map(|r| (r, d))),
                Some(rels) => out.extend(rels.iter().filter_map(|&r| {
                    let def = c.relations.get(r as usize)?;
                    let from = if d == Direction::Out { def.src } else { def.dst };
                    (from == ty).then_some((r, d))
                })),
            }
        }
        out
    }

    /// Calls `f(edge, node)` for each edge of `step` from the row's `from` node.
    fn expand(&self, step: &Step, row: &Row, f: &mut dyn FnMut(Value, Value) -> Result<()>) -> Result<()> {
        let Value::Node { ty, id } = row[step.from] else {
            return Ok(());
        };
        let target = if step.into {
            match row[step.to] {
                Value::Node { ty, id } => Some((ty, id)),
                _ => return Ok(()),
            }
        } else {
            None
        };
        let c = self.snap.catalog();
        for (rel, d) in self.step_rels(step, ty, id) {
            let def = &c.relations[rel as usize];
            let to_ty = if d == Direction::Out { def.dst } else { def.src };
            if step.to_types.as_ref().is_some_and(|t| !t.contains(&to_ty)) {
                continue;
            }
            let edge = |n: u32| match d {
                Direction::Out => Value::Edge { rel, src: id, dst: n },
                Direction::In => Value::Edge { rel, src: n, dst: id },
            };
            // An undirected step meets a self-loop from both sides; keep it once.
            let twice = |n: u32| step.dir == Dir::Both && d == Direction::In && n == id && def.src == def.dst;
            let nbrs = self.snap.neighbors(rel, id, d);
            match target {
                Some((tty, tid)) => {
                    if tty == to_ty && !twice(tid) && nbrs.binary_search(&tid).is_ok() {
                        let e = edge(tid);
                        if self.unique(step, row, &e) {
                            f(e, Value::Node { ty: tty, id: tid })?;
                        }
                    }
                }
                None => {
                    for &n in nbrs.iter() {
                        self.tick()?;
                        let e = edge(n);
                        if !twice(n) && self.unique(step, row, &e) {
                            f(e, Value::Node { ty: to_ty, id: n })?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The rows of a one-hop expansion to unbound nodes, produced one at a
    /// time: each consumer hands its row back to the pool before the next is
    /// made, so the steady state copies into one warm buffer.
    fn expand_lazy<'s>(&'s self, step: &'s Step, r: Result<Row>) -> RowIter<'s> {
        let row = match r {
            Ok(row) => row,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let Value::Node { ty, id } = row[step.from] else {
            return Box::new(std::iter::empty());
        };
        let c = self.snap.catalog();
        let lists = self
            .step_rels(step, ty, id)
            .into_iter()
            .filter_map(|(rel, d)| {
                let def = &c.relations[rel as usize];
                let to_ty = if d == Direction::Out { def.dst } else { def.src };
                step.to_types
                    .as_ref()
                    .is_none_or(|t| t.contains(&to_ty))
                    .then(|| {
                        // An undirected step meets a self-loop from both sides; keep it once.
                        let skip_self = step.dir == Dir::Both && d == Direction::In && def.src == def.dst;
                        (rel, d, to_ty, skip_self, self.snap.neighbors(rel, id, d))
                    })
            })
            .collect();
        Box::new(Expansion {
            ctx: self,
            step,
            row,
            id,
            lists,
            list: 0,
            at: 0,
        })
    }

    /// Whether `e` differs from the edges already bound in the same MATCH.
    fn unique(&self, step: &Step, row: &Row, e: &Value) -> bool {
        step.uniq.iter().all(|&s| match &row[s] {
            Value::List(l) => !l.contains(e),
            other => other != e,
        })
    }

    /// Trails (no edge twice) from the row's start node, depth first and
    /// lazily, so `LIMIT` stops the walk; the trails it yields, and the
    /// neighbour lists it holds, are each bounded by the row cap.
    fn var_expand<'s>(&'s self, step: &'s Step, min: u32, max: Option<u32>, r: Result<Row>) -> RowIter<'s> {
        let row = match r {
            Ok(row) => row,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let start = row[step.from].clone();
        if !matches!(start, Value::Node { .. }) {
            return Box::new(std::iter::empty());
        }
        let mut single = step.clone();
        single.into = false;
        single.to_types = None;
        Box::new(Trails {
            ctx: self,
            single,
            step,
            min,
            max,
            row,
            reached: Some(start),
            frames: Vec::new(),
            path: Vec::new(),
            on_path: Default::default(),
            held: 0,
            emitted: 0,
            failed: false,
        })
    }

    fn intersect(&self, a: &Step, b: &Step, row: Row) -> Result<Vec<Row>> {
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        self.expand(a, &row, &mut |e, n| {
            ea.push((n, e));
            Ok(())
        })?;
        self.expand(b, &row, &mut |e, n| {
            eb.push((n, e));
            Ok(())
        })?;
        ea.sort_by(|x, y| x.0.total_cmp(&y.0));
        eb.sort_by(|x, y| x.0.total_cmp(&y.0));
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < ea.len() && j < eb.len() {
            self.tick()?;
            match ea[i].0.total_cmp(&eb[j].0) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    // Every pairing of the edges that reach this node.
                    let node = ea[i].0.clone();
                    let j0 = j;
                    while i < ea.len() && ea[i].0 == node {
                        j = j0;
                        while j < eb.len() && eb[j].0 == node {
                            if ea[i].1 != eb[j].1 {
                                let mut r = row.clone();
                                r[a.edge] = ea[i].1.clone();
                                r[b.edge] = eb[j].1.clone();
                                r[a.to] = node.clone();
                                out.push(r);
                            }
                            j += 1;
                        }
                        i += 1;
                    }
                }
            }
        }
        Ok(out)
    }

    fn param(&self, name: &str) -> Result<Value> {
        self.params
            .get(name)
            .cloned()
            .ok_or_else(|| runtime(format!("missing parameter ${name}")))
    }

    pub(crate) fn eval(&self, e: &CExpr, row: &Row) -> Result<Value> {
        Ok(match e {
            CExpr::Const(v) => v.clone(),
            CExpr::Param(p) => self.param(p)?,
            CExpr::Slot(s) => row[*s].clone(),
            CExpr::Prop(x, name) => self.prop(self.eval(x, row)?, name)?,
            CExpr::List(l) => Value::List(l.iter().map(|x| self.eval(x, row)).collect::<Result<_>>()?),
            CExpr::Map(_) => return Err(runtime("a map is only allowed as quiver.train's settings")),
            CExpr::Not(x) => match self.eval(x, row)? {
                Value::Bool(b) => Value::Bool(!b),
                Value::Null => Value::Null,
                other => return Err(runtime(format!("NOT needs a boolean, not {}", kind(&other)))),
            },
            CExpr::Neg(x) => match self.eval(x, row)? {
                Value::Int(i) => Value::Int(i.checked_neg().ok_or_else(|| runtime("integer overflow"))?),
                Value::Float(f) => Value::Float(-f),
                Value::Null => Value::Null,
                other => return Err(runtime(format!("cannot negate {}", kind(&other)))),
            },
            CExpr::IsNull(x, not) => Value::Bool(matches!(self.eval(x, row)?, Value::Null) != *not),
            CExpr::Bin(op, a, b) => self.binary(*op, a, b, row)?,
            CExpr::Func(f, args) => self.func(*f, args, row)?,
            CExpr::Exists(ops) => match self.pipeline(ops, row.clone()).next() {
                Some(Err(e)) => return Err(e),
                found => Value::Bool(found.is_some()),
            },
        })
    }

    fn prop(&self, v: Value, name: &str) -> Result<Value> {
        Ok(match v {
            Value::Null => Value::Null,
            Value::Node { ty, id } => {
                if name == "key" {
                    self.snap.node_key(ty, id).map_or(Value::Null, Value::from)
                } else {
                    match self.db.property(ty, id, name)? {
                        None => Value::Null,
                        Some(quiver_storage::Value::Str(s)) => Value::Str(s),
                        Some(quiver_storage::Value::Int(i)) => Value::Int(i),
                        Some(quiver_storage::Value::Float(x)) => Value::Float(x),
                        Some(quiver_storage::Value::Bool(b)) => Value::Bool(b),
                    }
                }
            }
            Value::Edge { rel, src, dst } => match name {
                "weight" => self
                    .snap
                    .edge_weight(rel, src, dst)
                    .map_or(Value::Null, |w| Value::Float(w as f64)),
                _ => Value::Null,
            },
            other => {
                return Err(runtime(format!(
                    "cannot read property `{name}` of {}",
                    kind(&other)
                )))
            }
        })
    }

    fn binary(&self, op: BinOp, a: &CExpr, b: &CExpr, row: &Row) -> Result<Value> {
        use Value::*;
        let truth = |v: Value| -> Result<Option<bool>> {
            match v {
                Bool(b) => Ok(Some(b)),
                Null => Ok(None),
                other => Err(runtime(format!(
                    "{} needs booleans, not {}",
                    op.text(),
                    kind(&other)
                ))),
            }
        };
        let tri = |x: Option<bool>| x.map_or(Null, Bool);
        match op {
            BinOp::And => {
                let l = truth(self.eval(a, row)?)?;
                if l == Some(false) {
                    return Ok(Bool(false));
                }
                let r = truth(self.eval(b, row)?)?;
                return Ok(match (l, r) {
                    (_, Some(false)) => Bool(false),
                    (Some(true), Some(true)) => Bool(true),
                    _ => Null,
                });
            }
            BinOp::Or => {
                let l = truth(self.eval(a, row)?)?;
                if l == Some(true) {
                    return Ok(Bool(true));
                }
                let r = truth(self.eval(b, row)?)?;
                return Ok(match (l, r) {
                    (_, Some(true)) => Bool(true),
                    (Some(false), Some(false)) => Bool(false),
                    _ => Null,
                });
            }
            BinOp::Xor => {
                let (l, r) = (truth(self.eval(a, row)?)?, truth(self.eval(b, row)?)?);
                return Ok(tri(l.zip(r).map(|(x, y)| x != y)));
            }
            _ => {}
        }
        let (l, r) = (self.eval(a, row)?, self.eval(b, row)?);
        if matches!(l, Null) || matches!(r, Null) {
            return Ok(match (op, &r) {
                (BinOp::In, List(items)) if items.is_empty() => Bool(false),
                _ => Null,
            });
        }
        let num = |v: &Value| matches!(v, Int(_) | Float(_));
        let comparable = (num(&l) && num(&r)) || std::mem::discriminant(&l) == std::mem::discriminant(&r);
        let ord = l.total_cmp(&r);
        Ok(match op {
            BinOp::Eq => Bool(comparable && ord.is_eq()),
            BinOp::Ne => Bool(!(comparable && ord.is_eq())),
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                if !comparable || matches!(l, List(_) | Node { .. } | Edge { .. }) {
                    return Ok(Null);
                }
                Bool(match op {
                    BinOp::Lt => ord.is_lt(),
                    BinOp::Le => ord.is_le(),
                    BinOp::Gt => ord.is_gt(),
                    _ => ord.is_ge(),
                })
            }
            BinOp::In => match r {
                List(items) => {
                    if items.iter().any(|x| {
                        (num(x) && num(&l) || std::mem::discriminant(x) == std::mem::discriminant(&l))
                            && *x == l
                    }) {
                        Bool(true)
                    } else if items.iter().any(|x| matches!(x, Null)) {
                        Null
                    } else {
                        Bool(false)
                    }
                }
                other => {
                    return Err(runtime(format!(
                        "IN needs a list on its right, not {}",
                        kind(&other)
                    )))
                }
            },
            BinOp::StartsWith | BinOp::EndsWith | BinOp::Contains => match (&l, &r) {
                (Str(x), Str(y)) => Bool(match op {
                    BinOp::StartsWith => x.starts_with(y.as_str()),
                    BinOp::EndsWith => x.ends_with(y.as_str()),
                    _ => x.contains(y.as_str()),
                }),
                _ => Null,
            },
            _ => arith(op, l, r)?,
        })
    }

    fn func(&self, f: Func, args: &[CExpr], row: &Row) -> Result<Value> {
        let vals = args
            .iter()
            .map(|a| self.eval(a, row))
            .collect::<Result<Vec<_>>>()?;
        let c = self.snap.catalog();
        let bad = |what: &str| Err(runtime(format!("{f:?} needs {what}, not {}", kind(&vals[0]))));
        Ok(match (f, &vals[0]) {
            (Func::Coalesce, _) => vals
                .iter()
                .find(|v| !matches!(v, Value::Null))
                .cloned()
                .unwrap_or(Value::Null),
            (_, Value::Null) => Value::Null,
            (Func::Type, Value::Edge { rel, .. }) => Value::Str(c.relations[*rel as usize].name.clone()),
            (Func::Type, _) => return bad("an edge"),
            (Func::Id, Value::Node { id, .. }) => Value::Int(*id as i64),
            (Func::Id, _) => return bad("a node"),
            (Func::Labels, Value::Node { ty, .. }) => {
                Value::List(vec![Value::Str(c.type_name(*ty).to_string())])
            }
            (Func::Labels, _) => return bad("a node"),
            (Func::Size, Value::List(l)) => Value::Int(l.len() as i64),
            (Func::Size, Value::Str(s)) => Value::Int(s.chars().count() as i64),
            (Func::Size, _) => return bad("a list or a string"),
            (Func::Abs, Value::Int(i)) => {
                Value::Int(i.checked_abs().ok_or_else(|| runtime("integer overflow"))?)
            }
            (Func::Abs, Value::Float(x)) => Value::Float(x.abs()),
            (Func::Abs, _) => return bad("a number"),
            (Func::ToInteger, Value::Int(i)) => Value::Int(*i),
            (Func::ToInteger, Value::Float(x)) if x.is_finite() => Value::Int(*x as i64),
            (Func::ToInteger, Value::Str(s)) => s.trim().parse().map_or(Value::Null, Value::Int),
            (Func::ToInteger, _) => return bad("a number or a string"),
            (Func::ToFloat, v @ (Value::Int(_) | Value::Float(_))) => Value::Float(v.as_f64().unwrap_or(0.0)),
            (Func::ToFloat, Value::Str(s)) => s.trim().parse().map_or(Value::Null, Value::Float),
            (Func::ToFloat, _) => return bad("a number or a string"),
            (Func::ToString, Value::Str(s)) => Value::Str(s.clone()),
            (Func::ToString, Value::Int(i)) => Value::Str(i.to_string()),
            (Func::ToString, Value::Float(x)) => Value::Str(format_float(*x)),
            (Func::ToString, Value::Bool(b)) => Value::Str(b.to_string()),
            (Func::ToString, _) => return bad("a number, a boolean or a string"),
            (Func::StartNode | Func::EndNode, Value::Edge { rel, src, dst }) => {
                let def = &c.relations[*rel as usize];
                if f == Func::StartNode {
                    Value::Node {
                        ty: def.src,
                        id: *src,
                    }
                } else {
                    Value::Node {
                        ty: def.dst,
                        id: *dst,
                    }
                }
            }
            (Func::StartNode | Func::EndNode, _) => return bad("an edge"),
            (Func::Score, _) => {
                let m = self.model(vals.get(3), false)?;
                let (h, rel, t) = (
                    self.node_arg(&vals[0])?,
                    self.rel_arg(&vals[1])?,
                    self.node_arg(&vals[2])?,
                );
                if matches!(vals[2], Value::Null) {
                    return Ok(Value::Null);
                }
                let q = m.tail_query(rel, &self.row(&m, h));
                Value::Float(m.compare(&q, &self.row(&m, t)) as f64)
            }
            (Func::Embed, _) => {
                let m = self.model(vals.get(1), false)?;
                let node = self.node_arg(&vals[0])?;
                Value::List(
                    self.row(&m, node)
                        .iter()
                        .map(|&x| Value::Float(x as f64))
                        .collect(),
                )
            }
        })
    }

    fn node_arg(&self, v: &Value) -> Result<(u32, u32)> {
        match v {
            Value::Node { ty, id } => Ok((*ty, *id)),
            Value::Null => Ok((u32::MAX, 0)),
            other => Err(runtime(format!("expected a node, not {}", kind(other)))),
        }
    }

    fn rel_arg(&self, v: &Value) -> Result<u32> {
        let Value::Str(name) = v else {
            return Err(runtime(format!("expected a relation type name, not {}", kind(v))));
        };
        self.snap
            .catalog()
            .relations
            .iter()
            .position(|r| &r.name == name)
            .map(|r| r as u32)
            .ok_or_else(|| runtime(format!("unknown relation type `{name}`")))
    }

    /// A node's row: trained, or inferred from its neighbours now (cold
    /// start) for a node created since training (zeros when none has a row).
    fn row<'m>(&self, m: &'m Model, (ty, id): (u32, u32)) -> std::borrow::Cow<'m, [f32]> {
        if id < m.rows(ty) {
            std::borrow::Cow::Borrowed(m.node(ty, id))
        } else {
            std::borrow::Cow::Owned(m.infer(self.snap, ty, id).unwrap_or_else(|| vec![0.0; m.dim()]))
        }
    }

    /// The named model, or the only one / the one named `default`; with
    /// `new_nodes`, extended with rows for every node created since training
    /// (for procedures that rank all nodes of a type).
    fn model(&self, name: Option<&Value>, new_nodes: bool) -> Result<Arc<Model>> {
        let c = self.snap.catalog();
        let name = match name {
            Some(Value::Str(s)) => s.clone(),
            Some(other) => return Err(runtime(format!("a model name is a string, not {}", kind(other)))),
            None if c.models.iter().any(|m| m.name == "default") => "default".into(),
            None if c.models.len() == 1 => c.models[0].name.clone(),
            None if c.models.is_empty() => {
                return Err(runtime("no trained model: run CALL quiver.train({...}) first"))
            }
            None => {
                return Err(runtime(
                    "several models are stored: name one as the last argument",
                ))
            }
        };
        let info = self.db.model_info(&name)?;
        let parts: Vec<String> = info
            .parts
            .iter()
            .map(|(k, s)| format!("{k}:{}:{}", s.file, s.crc))
            .collect();
        // Loads happen outside the lock: readers never wait on another's load.
        let cached = self
            .models
            .lock()
            .get(&name)
            .filter(|c| c.parts == parts)
            .cloned();
        let mut entry = match cached {
            Some(c) => c,
            None => CachedModel {
                parts,
                base: Arc::new(Model::load(self.db, &name)?),
                extended: None,
            },
        };
        let result = if new_nodes {
            let mut graph = vec![format!("edges:{}", c.edge_version)];
            graph
                .extend((0..c.node_types.len() as u32).map(|t| format!("nodes:{}", self.snap.node_count(t))));
            match &entry.extended {
                Some((g, m)) if *g == graph => m.clone(),
                _ => {
                    let mut m = (*entry.base).clone();
                    m.extend_to(self.snap);
                    let m = Arc::new(m);
                    entry.extended = Some((graph, m.clone()));
                    m
                }
            }
        } else {
            entry.base.clone()
        };
        self.models.lock().insert(name, entry);
        Ok(result)
    }

    fn call(&self, proc: Proc, args: &[Value]) -> Result<Vec<Vec<Value>>> {
        let name = proc.name();
        let count = |v: &Value| match v {
            Value::Int(k) if *k >= 0 => Ok(usize::try_from(*k).unwrap_or(usize::MAX)),
            Value::Int(k) => Err(runtime(format!(
                "{name}: the number of results must not be negative, not {k}"
            ))),
            other => Err(runtime(format!(
                "{name}: the number of results is an integer, not {}",
                kind(other)
            ))),
        };
        // The node argument: a node, or null (no rows, as for a missing match).
        let node = |v: &Value| match v {
            Value::Node { ty, id } => Ok(Some((*ty, *id))),
            Value::Null => Ok(None),
            other => Err(runtime(format!(
                "{name}: the first argument is a node, not {}",
                kind(other)
            ))),
        };
        let scored = |ty: u32, best: Vec<(u32, f32)>| -> Vec<Vec<Value>> {
            best.into_iter()
                .map(|(id, s)| vec![Value::Node { ty, id }, Value::Float(s as f64)])
                .collect()
        };
        match proc {
            Proc::Train => self.train(args.first()),
            Proc::Nearest => {
                let k = count(&args[1])?;
                let m = self.model(args.get(2), true)?;
                let Some((ty, id)) = node(&args[0])? else {
                    return Ok(Vec::new());
                };
                Ok(scored(ty, m.top_k(m.node(ty, id), ty, k, &|x| x == id)))
            }
            Proc::Predict | Proc::PredictHead => {
                let k = count(&args[2])?;
                let m = self.model(args.get(3), true)?;
                let Some((ty, id)) = node(&args[0])? else {
                    return Ok(Vec::new());
                };
                let rel = self.rel_arg(&args[1])?;
                let def = &self.snap.catalog().relations[rel as usize];
                let (from, to) = if proc == Proc::Predict {
                    (def.src, def.dst)
                } else {
                    (def.dst, def.src)
                };
                if ty != from {
                    return Err(runtime(format!(
                        "{} joins {} to {}: the node given is a {}",
                        def.name,
                        self.snap.catalog().type_name(def.src),
                        self.snap.catalog().type_name(def.dst),
                        self.snap.catalog().type_name(ty)
                    )));
                }
                let q = if proc == Proc::Predict {
                    m.tail_query(rel, m.node(ty, id))
                } else {
                    m.head_query(rel, m.node(ty, id))
                };
                // A node is not its own answer (no self-loops among the predictions).
                Ok(scored(to, m.top_k(&q, to, k, &|x| from == to && x == id)))
            }
        }
    }

    fn train(&self, config: Option<&Value>) -> Result<Vec<Vec<Value>>> {
        let mut name = "default".to_string();
        let mut obj = serde_json::Map::new();
        let known = serde_json::to_value(quiver_engine::TrainConfig::default()).unwrap_or_default();
        if let Some(v) = config {
            let Value::List(pairs) = v else {
                return Err(runtime("quiver.train takes a map: {dim: 200, epochs: 10, ...}"));
            };
            for p in pairs {
                // The planner passes a map literal, which `eval_arg` makes [key, value] pairs.
                let Value::List(kv) = p else {
                    return Err(runtime("quiver.train takes a map: {dim: 200, epochs: 10, ...}"));
                };
                let [Value::Str(k), v] = kv.as_slice() else {
                    return Err(runtime("quiver.train takes a map: {dim: 200, epochs: 10, ...}"));
                };
                if k == "model" {
                    name = v
                        .as_str()
                        .ok_or_else(|| runtime("model: expected a string"))?
                        .to_string();
                    continue;
                }
                if known.get(k).is_none() {
                    return Err(runtime(format!("quiver.train: unknown setting `{k}`")));
                }
                obj.insert(k.clone(), json_of(v));
            }
        }
        let cfg: quiver_engine::TrainConfig = serde_json::from_value(serde_json::Value::Object(obj))
            .map_err(|e| runtime(format!("quiver.train: {e}")))?;
        let mut last = None;
        let t = Instant::now();
        quiver_engine::train_on(self.db, &name, &cfg, &quiver_engine::Device::Cpu, &mut |e| {
            if let quiver_engine::TrainEvent::Epoch(s) = e {
                last = Some(*s);
            }
        })?;
        Ok(vec![vec![
            Value::Str(name),
            Value::Int(cfg.epochs as i64),
            Value::Int(last.map_or(0, |s| s.edges) as i64),
            Value::Float(t.elapsed().as_secs_f64()),
            last.map_or(Value::Null, |s| Value::Float(s.loss)),
        ]])
    }

    /// Evaluates `quiver.train`'s argument: a map becomes a list of [key, value] pairs.
    pub(crate) fn eval_arg(&self, e: &CExpr, row: &Row) -> Result<Value> {
        match e {
            CExpr::Map(m) => Ok(Value::List(
                m.iter()
                    .map(|(k, v)| Ok(Value::List(vec![Value::Str(k.clone()), self.eval(v, row)?])))
                    .collect::<Result<_>>()?,
            )),
            other => self.eval(other, row),
        }
    }

    /// Runs `RETURN`.
    pub(crate) fn project(&self, ret: &Ret, mut rows: RowIter<'_>) -> Result<Vec<Vec<Value>>> {
        let empty = Row::new();
        let konst = |e: &Option<CExpr>, what: &str| -> Result<Option<usize>> {
            match e {
                None => Ok(None),
                Some(e) => match self.eval(e, &empty)? {
                    Value::Int(n) if n >= 0 => Ok(Some(n as usize)),
                    Value::Int(n) => Err(runtime(format!("{what} needs a non-negative integer, found {n}"))),
                    other => Err(runtime(format!(
                        "{what} needs a non-negative integer, not {}",
                        kind(&other)
                    ))),
                },
            }
        };
        let skip = konst(&ret.skip, "SKIP")?.unwrap_or(0);
        let limit = konst(&ret.limit, "LIMIT")?;
        let aggregating = ret.items.iter().any(|i| i.is_err());
        let mut seen = FxHashSet::default();
        // Without sorting or aggregates, rows stream and the pipeline stops at the limit.
        if !aggregating && ret.order.is_empty() {
            let mut out = Vec::new();
            let mut skipped = 0;
            while limit.is_none_or(|l| out.len() < l) {
                let Some(row) = rows.next().transpose()? else {
                    break;
                };
                let vals = self.items(ret, &row)?;
                if ret.distinct && !seen.insert(vals.clone()) {
                    continue;
                }
                if skipped < skip {
                    skipped += 1;
                    continue;
                }
                out.push(vals);
                self.cap(out.len())?;
            }
            return Ok(out);
        }
        let mut keyed: Vec<(Vec<Value>, Vec<Value>)> = Vec::new();
        if aggregating {
            let mut groups: FxHashMap<Vec<Value>, usize> = FxHashMap::default();
            let mut states: Vec<(Vec<Value>, Vec<AggState>)> = Vec::new();
            let grouped = ret.items.iter().any(|i| i.is_ok());
            for row in rows {
                let row = row?;
                let key: Vec<Value> = if grouped {
                    ret.items
                        .iter()
                        .filter_map(|i| i.as_ref().ok())
                        .map(|e| self.eval(e, &row))
                        .collect::<Result<_>>()?
                } else {
                    Vec::new()
                };
                // Without grouping keys every row falls in the one group.
                let g = match if key.is_empty() && !states.is_empty() {
                    Some(&0)
                } else {
                    groups.get(&key)
                } {
                    Some(&g) => g,
                    None => {
                        let aggs = ret
                            .items
                            .iter()
                            .filter_map(|i| i.as_ref().err())
                            .map(AggState::new)
                            .collect();
                        states.push((key.clone(), aggs));
                        groups.insert(key, states.len() - 1);
                        self.cap(states.len())?;
                        states.len() - 1
                    }
                };
                let aggs = ret.items.iter().filter_map(|i| i.as_ref().err());
                for (st, agg) in states[g].1.iter_mut().zip(aggs) {
                    let v = match &agg.arg {
                        None => Value::Bool(true),
                        Some(e) => self.eval(e, &row)?,
                    };
                    st.add(v)?;
                }
                self.recycle(row);
            }
            if states.is_empty() && ret.items.iter().all(|i| i.is_err()) {
                let aggs = ret
                    .items
                    .iter()
                    .filter_map(|i| i.as_ref().err())
                    .map(AggState::new)
                    .collect();
                states.push((Vec::new(), aggs));
            }
            for (key, aggs) in states {
                let (mut k, mut a) = (key.into_iter(), aggs.into_iter());
                let vals: Vec<Value> = ret
                    .items
                    .iter()
                    .map(|i| match i {
                        Ok(_) => k.next().unwrap_or(Value::Null),
                        Err(_) => a.next().map_or(Value::Null, AggState::finish),
                    })
                    .collect();
                if ret.distinct && !seen.insert(vals.clone()) {
                    continue;
                }
                let sort = ret
                    .order
                    .iter()
                    .map(|(o, _)| vals[*o.as_ref().unwrap_or(&0)].clone())
                    .collect();
                keyed.push((sort, vals));
            }
        } else {
            for row in rows {
                let row = row?;
                let vals = self.items(ret, &row)?;
                if ret.distinct && !seen.insert(vals.clone()) {
                    continue;
                }
                let sort = ret
                    .order
                    .iter()
                    .map(|(o, _)| match o {
                        Ok(c) => Ok(vals[*c].clone()),
                        Err(e) => self.eval(e, &row),
                    })
                    .collect::<Result<_>>()?;
                keyed.push((sort, vals));
                self.cap(keyed.len())?;
            }
        }
        if !ret.order.is_empty() {
            keyed.sort_by(|(a, _), (b, _)| {
                for (i, (_, desc)) in ret.order.iter().enumerate() {
                    let o = a[i].total_cmp(&b[i]);
                    let o = if *desc { o.reverse() } else { o };
                    if o.is_ne() {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
        }
        let out: Vec<Vec<Value>> = keyed
            .into_iter()
            .skip(skip)
            .take(limit.unwrap_or(usize::MAX))
            .map(|(_, v)| v)
            .collect();
        self.cap(out.len())?;
        Ok(out)
    }

    fn items(&self, ret: &Ret, row: &Row) -> Result<Vec<Value>> {
        ret.items
            .iter()
            .map(|i| match i {
                Ok(e) => self.eval(e, row),
                Err(_) => Ok(Value::Null),
            })
            .collect()
    }

    /// Applies the plan's writes for every row, in one batch.
    pub(crate) fn write(&self, plan: &Plan, rows: RowIter<'_>) -> Result<Vec<Vec<Value>>> {
        let c = self.snap.catalog();
        let mut batch = self.db.batch();
        let mut props = 0i64;
        let key_of = |e: &CExpr, row: &Row| -> Result<String> {
            match self.eval(e, row)? {
                Value::Str(s) => Ok(s),
                other => Err(runtime(format!("a node key is a string, not {}", kind(&other)))),
            }
        };
        let node_ref = |src: &NodeSrc,
                        want: u32,
                        row: &Row,
                        def: &quiver_storage::RelationDef|
         -> Result<Option<NodeRef>> {
            let rel = &def.name;
            let (ty, r) = match src {
                NodeSrc::New { ty, key } => (*ty, NodeRef::Key(key_of(key, row)?)),
                NodeSrc::Bound(s) => match row[*s] {
                    Value::Node { ty, id } => (ty, NodeRef::Id(id)),
                    Value::Null => return Ok(None),
                    ref other => return Err(runtime(format!("{rel} joins nodes, not {}", kind(other)))),
                },
            };
            if ty != want {
                return Err(runtime(format!(
                    "{rel} joins {} to {}: a {} cannot be an end of it",
                    c.type_name(def.src),
                    c.type_name(def.dst),
                    c.type_name(ty)
                )));
            }
            Ok(Some(r))
        };
        for row in rows {
            let row = row?;
            for w in &plan.writes {
                match w {
                    Write::Node { ty, key, props: ps } => {
                        let k = key_of(key, &row)?;
                        batch.insert_node(*ty, &k);
                        for (name, e) in ps {
                            batch.set_property(
                                *ty,
                                NodeRef::Key(k.clone()),
                                name,
                                stored(self.eval(e, &row)?, name)?,
                            );
                            props += 1;
                        }
                    }
                    Write::Edge {
                        rel,
                        src,
                        dst,
                        weight,
                    } => {
                        let def = &c.relations[*rel as usize];
                        let (Some(s), Some(d)) = (
                            node_ref(src, def.src, &row, def)?,
                            node_ref(dst, def.dst, &row, def)?,
                        ) else {
                            continue;
                        };
                        let w = weight
                            .as_ref()
                            .map(|e| self.eval(e, &row))
                            .transpose()?
                            .and_then(|v| v.as_f64());
                        batch.insert_edge(*rel, s, d, w.map(|w| w as f32));
                    }
                    Write::Delete { target, detach } => {
                        let v = self.eval(target, &row)?;
                        let edges = match v {
                            Value::List(l) => l,
                            other => vec![other],
                        };
                        for e in edges {
                            match e {
                                Value::Edge { rel, src, dst } => {
                                    batch.delete_edge(rel, src, dst);
                                }
                                Value::Node { ty, id } => self.delete_node(&mut batch, ty, id, *detach)?,
                                Value::Null => {}
                                other => {
                                    return Err(runtime(format!(
                                        "DELETE takes nodes and edges, not {}",
                                        kind(&other)
                                    )))
                                }
                            }
                        }
                    }
                    Write::Set { slot, prop, value } => match row[*slot] {
                        Value::Node { ty, id } => {
                            batch.set_property(
                                ty,
                                NodeRef::Id(id),
                                prop,
                                stored(self.eval(value, &row)?, prop)?,
                            );
                            props += 1;
                        }
                        Value::Null => {}
                        ref other => return Err(runtime(format!("SET works on nodes, not {}", kind(other)))),
                    },
                }
            }
        }
        let info = self.db.commit(batch)?;
        Ok(vec![vec![
            Value::Int(info.nodes_created as i64),
            Value::Int(info.nodes_deleted as i64),
            Value::Int(info.edges_changed as i64),
            Value::Int(props),
        ]])
    }

    fn delete_node(
        &self,
        batch: &mut quiver_storage::WriteBatch,
        ty: u32,
        id: u32,
        detach: bool,
    ) -> Result<()> {
        let degree =
            self.snap.total_degree(ty, id, Direction::Out) + self.snap.total_degree(ty, id, Direction::In);
        if degree > 0 && !detach {
            return Err(runtime(format!(
                "cannot delete node '{}': it still has {degree} edges (use DETACH DELETE)",
                self.snap.node_key(ty, id).unwrap_or("?")
            )));
        }
        for d in [Direction::Out, Direction::In] {
            for (rel, n) in self.snap.all_neighbors(ty, id, d) {
                let (s, t) = if d == Direction::Out { (id, n) } else { (n, id) };
                batch.delete_edge(rel, s, t);
            }
        }
        batch.delete_node(ty, id);
        Ok(())
    }
}

/// A query value as a stored property.
fn stored(v: Value, name: &str) -> Result<quiver_storage::Value> {
    Ok(match v {
        Value::Str(s) => quiver_storage::Value::Str(s),
        Value::Int(i) => quiver_storage::Value::Int(i),
        Value::Float(x) => quiver_storage::Value::Float(x),
        Value::Bool(b) => quiver_storage::Value::Bool(b),
        other => {
            return Err(runtime(format!(
                "property `{name}` can hold a string, number or boolean, not {}",
                kind(&other)
            )))
        }
    })
}

fn json_of(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Float(x) => (*x).into(),
        Value::Str(s) => s.clone().into(),
        Value::List(l) => l.iter().map(json_of).collect(),
        Value::Node { .. } | Value::Edge { .. } => serde_json::Value::Null,
    }
}

/// What kind of value, for error messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Int(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Str(_) => "a string",
        Value::Node { .. } => "a node",
        Value::Edge { .. } => "an edge",
        Value::List(_) => "a list",
    }
}

fn arith(op: BinOp, l: Value, r: Value) -> Result<Value> {
    use Value::*;
    let overflow = || runtime("integer overflow");
    Ok(match (op, l, r) {
        (BinOp::Add, Str(a), Str(b)) => Str(a + &b),
        (BinOp::Add, List(mut a), List(b)) => {
            a.extend(b);
            List(a)
        }
        (_, Int(a), Int(b)) => Int(match op {
            BinOp::Add => a.checked_add(b).ok_or_else(overflow)?,
            BinOp::Sub => a.checked_sub(b).ok_or_else(overflow)?,
            BinOp::Mul => a.checked_mul(b).ok_or_else(overflow)?,
            BinOp::Div => a.checked_div(b).ok_or_else(|| runtime("division by zero"))?,
            _ => a.checked_rem(b).ok_or_else(|| runtime("division by zero"))?,
        }),
        (_, a @ (Int(_) | Float(_)), b @ (Int(_) | Float(_))) => {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            Float(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                _ => x % y,
            })
        }
        (op, a, b) => {
            return Err(runtime(format!(
                "cannot apply {} to {} and {}",
                op.text(),
                kind(&a),
                kind(&b)
            )))
        }
    })
}

/// Running state of one aggregate in one group.
enum AggState {
    Count(u64, Option<FxHashSet<Value>>),
    Sum(Value),
    Avg(f64, u64),
    Min(Option<Value>),
    Max(Option<Value>),
    Collect(Vec<Value>, Option<FxHashSet<Value>>),
}

impl AggState {
    fn new(a: &Agg) -> Self {
        let set = a.distinct.then(FxHashSet::default);
        match a.kind {
            AggKind::Count => AggState::Count(0, set),
            AggKind::Sum => AggState::Sum(Value::Int(0)),
            AggKind::Avg => AggState::Avg(0.0, 0),
            AggKind::Min => AggState::Min(None),
            AggKind::Max => AggState::Max(None),
            AggKind::Collect => AggState::Collect(Vec::new(), set),
        }
    }

    fn add(&mut self, v: Value) -> Result<()> {
        if matches!(v, Value::Null) {
            return Ok(());
        }
        match self {
            AggState::Count(n, set) => {
                if set.as_mut().is_none_or(|s| s.insert(v)) {
                    *n += 1;
                }
            }
            AggState::Sum(s) => *s = arith(BinOp::Add, std::mem::replace(s, Value::Null), v)?,
            AggState::Avg(s, n) => {
                *s += v
                    .as_f64()
                    .ok_or_else(|| runtime(format!("avg needs numbers, not {}", kind(&v))))?;
                *n += 1;
            }
            AggState::Min(m) => {
                if m.as_ref().is_none_or(|x| v.total_cmp(x).is_lt()) {
                    *m = Some(v);
                }
            }
            AggState::Max(m) => {
                if m.as_ref().is_none_or(|x| v.total_cmp(x).is_gt()) {
                    *m = Some(v);
                }
            }
            AggState::Collect(l, set) => {
                if set.as_mut().is_none_or(|s| s.insert(v.clone())) {
                    l.push(v);
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Value {
        match self {
            AggState::Count(n, _) => Value::Int(n as i64),
            AggState::Sum(s) => s,
            AggState::Avg(_, 0) => Value::Null,
            AggState::Avg(s, n) => Value::Float(s / n as f64),
            AggState::Min(m) | AggState::Max(m) => m.unwrap_or(Value::Null),
            AggState::Collect(l, _) => Value::List(l),
        }
    }
}

/// The rows of one expansion, one neighbour at a time (see `expand_lazy`).
struct Expansion<'s, 'a> {
    ctx: &'s Ctx<'a>,
    step: &'s Step,
    row: Row,
    id: u32,
    /// Per relation and direction: (relation, direction, type reached, skip self-loops, neighbours).
    lists: Vec<(u32, Direction, u32, bool, Neighbors<'s>)>,
    list: usize,
    at: usize,
}

impl Iterator for Expansion<'_, '_> {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Result<Row>> {
        loop {
            let (rel, d, to_ty, skip_self, nbrs) = self.lists.get(self.list)?;
            let Some(&n) = nbrs.get(self.at) else {
                self.list += 1;
                self.at = 0;
                continue;
            };
            self.at += 1;
            if let Err(e) = self.ctx.tick() {
                return Some(Err(e));
            }
            let (rel, id) = (*rel, self.id);
            let e = match d {
                Direction::Out => Value::Edge { rel, src: id, dst: n },
                Direction::In => Value::Edge { rel, src: n, dst: id },
            };
            if (*skip_self && n == id) || !self.ctx.unique(self.step, &self.row, &e) {
                continue;
            }
            let mut r = self.ctx.copy(&self.row);
            r[self.step.edge] = e;
            r[self.step.to] = Value::Node { ty: *to_ty, id: n };
            return Some(Ok(r));
        }
    }
}

/// The walk of a variable-length expansion: an explicit stack instead of
/// recursion, so no graph is deep enough to overflow the thread's stack.
struct Trails<'s, 'a> {
    ctx: &'s Ctx<'a>,
    /// One hop of the step (no target check, any type).
    single: Step,
    step: &'s Step,
    min: u32,
    max: Option<u32>,
    row: Row,
    /// A node just reached by the trail in `path`, not yet emitted or expanded.
    reached: Option<Value>,
    /// Per node on the trail, its (edge, neighbour) pairs and the next one to take.
    frames: Vec<(Vec<(Value, Value)>, usize)>,
    path: Vec<Value>,
    /// The edges of `path`, for the no-edge-twice test in constant time.
    on_path: rustc_hash::FxHashSet<(u32, u32, u32)>,
    /// Pairs held in `frames`.
    held: usize,
    /// Trails emitted: one start node's expansion yields at most the row cap.
    emitted: usize,
    failed: bool,
}

impl Trails<'_, '_> {
    /// Emits the trail to `at` if it qualifies, and pushes `at`'s neighbours.
    fn visit(&mut self, at: Value) -> Result<Option<Row>> {
        self.ctx.tick()?;
        let len = self.path.len() as u32;
        let mut next = Vec::new();
        if self.max.is_none_or(|m| len < m) {
            let mut probe = self.row.clone();
            probe[self.single.from] = at.clone();
            self.ctx.expand(&self.single, &probe, &mut |e, n| {
                next.push((e, n));
                Ok(())
            })?;
        }
        self.held += next.len();
        self.ctx.cap(self.held + self.path.len())?;
        self.frames.push((next, 0));
        let ok_type = match (&at, &self.step.to_types) {
            (Value::Node { ty, .. }, Some(t)) => t.contains(ty),
            _ => true,
        };
        let ok_target = !self.step.into || self.row[self.step.to] == at;
        if len < self.min || !ok_type || !ok_target {
            return Ok(None);
        }
        self.emitted += 1;
        self.ctx.cap(self.emitted)?;
        let mut r = self.row.clone();
        r[self.step.edge] = Value::List(self.path.clone());
        r[self.step.to] = at;
        Ok(Some(r))
    }
}

impl Iterator for Trails<'_, '_> {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Result<Row>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(at) = self.reached.take() {
                match self.visit(at) {
                    Ok(Some(r)) => return Some(Ok(r)),
                    Ok(None) => continue,
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
            }
            let (pairs, i) = self.frames.last_mut()?;
            if let Some((e, n)) = pairs.get(*i).cloned() {
                *i += 1;
                if self.on_path.insert(edge_id(&e)) {
                    self.path.push(e);
                    self.reached = Some(n);
                }
            } else {
                self.held -= pairs.len();
                self.frames.pop();
                // Every frame but the start node's was reached by the trail's last edge.
                if !self.frames.is_empty() {
                    if let Some(e) = self.path.pop() {
                        self.on_path.remove(&edge_id(&e));
                    }
                }
            }
        }
    }
}

/// An edge value's identity (expansions yield only edges).
fn edge_id(e: &Value) -> (u32, u32, u32) {
    match e {
        Value::Edge { rel, src, dst } => (*rel, *src, *dst),
        _ => (u32::MAX, u32::MAX, u32::MAX),
    }
}
