//! The planner: turns clauses into a list of operators over rows of slots
//! (one slot per variable), resolving names against the catalog.
//!
//! For each path pattern it first binds every node given by key (one row
//! each), then starts from a bound node (or the smallest label scan) and
//! expands outwards. A node between two bound nodes is found by intersecting
//! the two sorted neighbour lists instead of expanding and checking.

use std::collections::HashMap;

use quiver_storage::{Catalog, Snapshot};

use crate::ast::*;
use crate::error::{Pos, QueryError, Result};
use crate::value::Value;

/// A compiled expression.
#[derive(Debug, Clone)]
pub(crate) enum CExpr {
    Const(Value),
    Param(String),
    Slot(usize),
    Prop(Box<CExpr>, String),
    List(Vec<CExpr>),
    Map(Vec<(String, CExpr)>),
    Not(Box<CExpr>),
    Neg(Box<CExpr>),
    Bin(BinOp, Box<CExpr>, Box<CExpr>),
    IsNull(Box<CExpr>, bool),
    Func(Func, Vec<CExpr>),
    /// True when the sub-plan yields a row for this row.
    Exists(Vec<Op>),
}

/// Scalar functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Type,
    Id,
    Labels,
    Size,
    Coalesce,
    Abs,
    ToInteger,
    ToFloat,
    ToString,
    StartNode,
    EndNode,
    Score,
    Embed,
}

/// Aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggKind {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    Collect,
}

/// Procedures callable with `CALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proc {
    Train,
    Nearest,
    Predict,
    PredictHead,
}

impl Proc {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Proc::Train => "quiver.train",
            Proc::Nearest => "quiver.nearest",
            Proc::Predict => "quiver.predict",
            Proc::PredictHead => "quiver.predict_head",
        }
    }

    pub(crate) fn columns(self) -> &'static [&'static str] {
        match self {
            Proc::Train => &["model", "epochs", "edges", "seconds", "loss"],
            _ => &["node", "score"],
        }
    }
}

/// Which relations an expansion follows.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub from: usize,
    pub to: usize,
    pub edge: usize,
    /// `None`: every relation.
    pub rels: Option<Vec<u32>>,
    /// Direction as seen from `from`.
    pub dir: Dir,
    /// Allowed types of the node reached (`None`: any).
    pub to_types: Option<Vec<u32>>,
    /// `to` is already bound: check instead of expand.
    pub into: bool,
    /// Edge slots of the same MATCH the new edge must differ from.
    pub uniq: Vec<usize>,
}

/// One operator; each maps a row to zero or more rows.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Every node of the types (`None`: all).
    Scan { slot: usize, types: Option<Vec<u32>> },
    /// The nodes with this key among the types.
    ByKey {
        slot: usize,
        types: Option<Vec<u32>>,
        key: CExpr,
    },
    /// Keeps rows whose node in `slot` has one of the types.
    CheckType { slot: usize, types: Vec<u32> },
    /// One hop.
    Expand(Step),
    /// `min..=max` hops, edges distinct along the path; the edge slot gets the list.
    VarExpand { step: Step, min: u32, max: Option<u32> },
    /// A node adjacent to two bound nodes: the intersection of both neighbour lists.
    Intersect { a: Step, b: Step },
    /// Keeps rows where the expression is true.
    Filter(CExpr),
    /// A procedure; its columns go to the slots.
    Call {
        proc: Proc,
        args: Vec<CExpr>,
        out: Vec<(usize, usize)>,
    },
}

/// An aggregate in a `RETURN` item.
#[derive(Debug, Clone)]
pub(crate) struct Agg {
    pub kind: AggKind,
    pub distinct: bool,
    /// `None` for `count(*)`.
    pub arg: Option<CExpr>,
}

/// A compiled `RETURN`.
#[derive(Debug, Clone)]
pub(crate) struct Ret {
    pub distinct: bool,
    pub columns: Vec<String>,
    /// Per column: a plain expression or an aggregate.
    pub items: Vec<Result<CExpr, Agg>>,
    /// Sort keys: a column index or an expression over the input row.
    pub order: Vec<(Result<usize, CExpr>, bool)>,
    pub skip: Option<CExpr>,
    pub limit: Option<CExpr>,
}

/// Where a node written by CREATE comes from.
#[derive(Debug, Clone)]
pub(crate) enum NodeSrc {
    Bound(usize),
    New { ty: u32, key: CExpr },
}

/// A write, applied for each row.
#[derive(Debug, Clone)]
pub(crate) enum Write {
    Node {
        ty: u32,
        key: CExpr,
        props: Vec<(String, CExpr)>,
    },
    Edge {
        rel: u32,
        src: NodeSrc,
        dst: NodeSrc,
        weight: Option<CExpr>,
    },
    Delete {
        target: CExpr,
        detach: bool,
    },
    Set {
        slot: usize,
        prop: String,
        value: CExpr,
    },
}

/// A compiled query.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub ops: Vec<Op>,
    pub writes: Vec<Write>,
    pub ret: Option<Ret>,
    /// Columns when the query ends with CALL (yielded variables).
    pub call_columns: Vec<(String, usize)>,
    pub width: usize,
    pub names: HashMap<usize, String>,
}

struct Planner<'a> {
    catalog: &'a Catalog,
    snap: &'a Snapshot,
    vars: HashMap<String, usize>,
    /// Variables bound to nodes created by CREATE: (type, key expression).
    created: HashMap<String, (u32, CExpr)>,
    /// Every variable's name by slot, for EXPLAIN.
    names: HashMap<usize, String>,
    width: usize,
}

fn sem(pos: Pos, m: impl Into<String>) -> QueryError {
    QueryError::semantic(pos, m)
}

pub(crate) fn plan(clauses: &[Clause], catalog: &Catalog, snap: &Snapshot) -> Result<Plan> {
    let mut p = Planner {
        catalog,
        snap,
        vars: HashMap::new(),
        created: HashMap::new(),
        names: HashMap::new(),
        width: 0,
    };
    let mut plan = Plan {
        ops: Vec::new(),
        writes: Vec::new(),
        ret: None,
        call_columns: Vec::new(),
        width: 0,
        names: HashMap::new(),
    };
    for (i, c) in clauses.iter().enumerate() {
        let reading = matches!(c, Clause::Match { .. } | Clause::Call { .. });
        if reading && !plan.writes.is_empty() {
            return Err(sem(
                clause_pos(c),
                "reading clauses cannot follow CREATE, DELETE or SET",
            ));
        }
        match c {
            Clause::Match { patterns, filter } => p.matches(patterns, filter.as_ref(), &mut plan.ops)?,
            Clause::Call { name, args, yields } => {
                let (op, cols) = p.call(name, args, yields)?;
                plan.ops.push(op);
                plan.call_columns = cols;
            }
            Clause::Create(patterns) => p.create(patterns, &mut plan.writes)?,
            Clause::Delete { detach, targets } => {
                for t in targets {
                    plan.writes.push(Write::Delete {
                        target: p.expr(t)?,
                        detach: *detach,
                    });
                }
            }
            Clause::Set(items) => {
                for (var, prop, e) in items {
                    let slot = p.var(var)?;
                    if prop.text == "key" {
                        return Err(sem(prop.pos, "a node's key cannot be changed"));
                    }
                    plan.writes.push(Write::Set {
                        slot,
                        prop: prop.text.clone(),
                        value: p.expr(e)?,
                    });
                }
            }
            Clause::Return(proj) => {
                if !plan.writes.is_empty() {
                    return Err(sem(
                        Pos::default(),
                        "RETURN after CREATE, DELETE or SET is not supported: run the read as its own query",
                    ));
                }
                plan.ret = Some(p.ret(proj)?);
            }
        }
        let last = i + 1 == clauses.len();
        if last && plan.ret.is_none() && plan.writes.is_empty() && !matches!(c, Clause::Call { .. }) {
            return Err(sem(
                Pos::default(),
                "a query ends with RETURN, CALL or a write clause (CREATE, DELETE, SET)",
            ));
        }
    }
    plan.width = p.width;
    plan.names = p.names;
    Ok(plan)
}

fn clause_pos(c: &Clause) -> Pos {
    match c {
        Clause::Match { patterns, .. } => patterns[0].start.pos.pos,
        Clause::Call { name, .. } => name.pos,
        _ => Pos::default(),
    }
}

/// Splits an AND tree into its conjuncts.
fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Bin(BinOp::And, a, b) => {
            let mut v = conjuncts(a);
            v.extend(conjuncts(b));
            v
        }
        _ => vec![e],
    }
}

fn mentions_vars(e: &Expr) -> bool {
    match e {
        Expr::Lit(_) | Expr::Param(_) => false,
        Expr::List(l) => l.iter().any(mentions_vars),
        Expr::Neg(a) | Expr::Not(a) => mentions_vars(a),
        Expr::Bin(_, a, b) => mentions_vars(a) || mentions_vars(b),
        _ => true,
    }
}

impl Planner<'_> {
    fn bind(&mut self, name: String, slot: usize) {
        self.names.insert(slot, name.clone());
        self.vars.insert(name, slot);
    }

    fn slot(&mut self) -> usize {
        self.width += 1;
        self.width - 1
    }

    fn var(&self, n: &Name) -> Result<usize> {
        self.vars
            .get(&n.text)
            .copied()
            .ok_or_else(|| sem(n.pos, format!("unknown variable `{}`", n.text)))
    }

    fn node_type(&self, n: &Name) -> Result<u32> {
        self.catalog
            .node_types
            .iter()
            .position(|t| t.name == n.text)
            .map(|t| t as u32)
            .ok_or_else(|| sem(n.pos, format!("unknown node type `{}`", n.text)))
    }

    fn relation(&self, n: &Name) -> Result<u32> {
        self.catalog
            .relations
            .iter()
            .position(|r| r.name == n.text)
            .map(|r| r as u32)
            .ok_or_else(|| sem(n.pos, format!("unknown relation type `{}`", n.text)))
    }

    fn rel_name_expr(&mut self, e: &Expr) -> Result<CExpr> {
        // A relation named by a literal is checked now; other expressions at run time.
        if let Expr::Lit(Lit::Str(s)) = e {
            if !self.catalog.relations.iter().any(|r| &r.name == s) {
                return Err(sem(Pos::default(), format!("unknown relation type `{s}`")));
            }
        }
        self.expr(e)
    }

    fn matches(&mut self, patterns: &[PathPattern], filter: Option<&Expr>, ops: &mut Vec<Op>) -> Result<()> {
        // `v.key = constant` in WHERE works like `{key: constant}` in the pattern.
        let mut where_keys: HashMap<String, &Expr> = HashMap::new();
        if let Some(f) = filter {
            for c in conjuncts(f) {
                if let Expr::Bin(BinOp::Eq, a, b) = c {
                    for (x, y) in [(a, b), (b, a)] {
                        if let Expr::Prop(v, k) = &**x {
                            if let Expr::Var(v) = &**v {
                                if k.text == "key" && !mentions_vars(y) {
                                    where_keys.insert(v.text.clone(), y);
                                }
                            }
                        }
                    }
                }
            }
        }
        let mut edges = Vec::new();
        for p in patterns {
            self.path(p, &where_keys, &mut edges, ops)?;
        }
        if let Some(f) = filter {
            ops.push(Op::Filter(self.expr(f)?));
        }
        Ok(())
    }

    fn key_of<'e>(&self, n: &'e NodePattern, where_keys: &HashMap<String, &'e Expr>) -> Option<&'e Expr> {
        n.props
            .iter()
            .find(|(k, _)| k.text == "key")
            .map(|(_, v)| v)
            .filter(|v| !mentions_vars(v))
            .or_else(|| where_keys.get(&n.var.as_ref()?.text).copied())
    }

    fn types_of(&self, n: &NodePattern) -> Result<Option<Vec<u32>>> {
        n.label
            .as_ref()
            .map(|l| self.node_type(l).map(|t| vec![t]))
            .transpose()
    }

    /// Binds node pattern `n` (not yet bound) by key or scan.
    fn bind_node(&mut self, n: &NodePattern, key: Option<&Expr>, ops: &mut Vec<Op>) -> Result<usize> {
        let slot = self.slot();
        if let Some(v) = &n.var {
            self.bind(v.text.clone(), slot);
        }
        let types = self.types_of(n)?;
        ops.push(match key {
            Some(k) => Op::ByKey {
                slot,
                types,
                key: self.expr(k)?,
            },
            None => Op::Scan { slot, types },
        });
        self.node_filters(n, slot, ops)?;
        Ok(slot)
    }

    /// Property constraints other than the key, and the key when it mentions variables.
    fn node_filters(&mut self, n: &NodePattern, slot: usize, ops: &mut Vec<Op>) -> Result<()> {
        for (k, v) in &n.props {
            if k.text == "key"
                && !mentions_vars(v)
                && ops
                    .iter()
                    .any(|o| matches!(o, Op::ByKey { slot: s, .. } if *s == slot))
            {
                continue;
            }
            let lhs = CExpr::Prop(Box::new(CExpr::Slot(slot)), k.text.clone());
            ops.push(Op::Filter(CExpr::Bin(
                BinOp::Eq,
                Box::new(lhs),
                Box::new(self.expr(v)?),
            )));
        }
        Ok(())
    }

    fn rels_of(&self, r: &RelPattern) -> Result<Option<Vec<u32>>> {
        if r.types.is_empty() {
            return Ok(None);
        }
        let mut rels = r
            .types
            .iter()
            .map(|t| self.relation(t))
            .collect::<Result<Vec<_>>>()?;
        rels.sort_unstable();
        rels.dedup();
        Ok(Some(rels))
    }

    fn path(
        &mut self,
        p: &PathPattern,
        where_keys: &HashMap<String, &Expr>,
        edges: &mut Vec<usize>,
        ops: &mut Vec<Op>,
    ) -> Result<()> {
        let nodes: Vec<&NodePattern> = std::iter::once(&p.start)
            .chain(p.steps.iter().map(|(_, n)| n))
            .collect();
        let n = nodes.len();
        // Slot of each node once bound.
        let mut slot: Vec<Option<usize>> = vec![None; n];
        let bound_var =
            |pl: &Self, np: &NodePattern| np.var.as_ref().and_then(|v| pl.vars.get(&v.text).copied());
        for (i, np) in nodes.iter().enumerate() {
            if let Some(s) = bound_var(self, np) {
                slot[i] = Some(s);
                if let Some(types) = self.types_of(np)? {
                    ops.push(Op::CheckType { slot: s, types });
                }
                self.node_filters(np, s, ops)?;
            }
        }
        // Nodes given by key, most selective first.
        for (i, np) in nodes.iter().enumerate() {
            if slot[i].is_none() {
                if let Some(k) = self.key_of(np, where_keys) {
                    if let Some(s) = bound_var(self, np) {
                        slot[i] = Some(s); // the same variable earlier in this path
                        continue;
                    }
                    slot[i] = Some(self.bind_node(np, Some(k), ops)?);
                }
            }
        }
        if slot.iter().all(|s| s.is_none()) {
            // Start from the smallest label scan.
            let size = |np: &NodePattern| match np.label.as_ref().and_then(|l| self.node_type(l).ok()) {
                Some(t) => self.snap.node_count(t) as u64,
                None => u64::MAX,
            };
            let start = (0..n).min_by_key(|&i| size(nodes[i])).unwrap_or(0);
            slot[start] = Some(self.bind_node(nodes[start], None, ops)?);
        }
        let rel_slots: Vec<usize> = p
            .steps
            .iter()
            .map(|(r, _)| {
                let s = self.slot();
                if let Some(v) = &r.var {
                    self.bind(v.text.clone(), s);
                }
                s
            })
            .collect();
        // Expand from bound nodes until every node is bound.
        let mut done = vec![false; n - 1];
        while done.iter().any(|d| !d) {
            let mut progressed = false;
            for j in 0..n - 1 {
                if done[j] {
                    continue;
                }
                let (a, b) = (j, j + 1);
                let (from, to, dir) = match (slot[a], slot[b]) {
                    (Some(_), _) => (a, b, p.steps[j].0.dir),
                    (None, Some(_)) => (b, a, flip(p.steps[j].0.dir)),
                    (None, None) => continue,
                };
                let r = &p.steps[j].0;
                let into = slot[to].is_some();
                let to_slot = match slot[to] {
                    Some(s) => s,
                    None => match bound_var(self, nodes[to]) {
                        Some(s) => s, // the same variable appears twice in the path
                        None => {
                            let s = self.slot();
                            if let Some(v) = &nodes[to].var {
                                self.bind(v.text.clone(), s);
                            }
                            s
                        }
                    },
                };
                let into = into
                    || nodes[to].var.as_ref().is_some_and(|v| {
                        slot.iter()
                            .enumerate()
                            .any(|(i, s)| i != to && *s == Some(to_slot) && nodes[i].var.as_ref() == Some(v))
                    });
                let step = Step {
                    from: slot[from].unwrap_or(0),
                    to: to_slot,
                    edge: rel_slots[j],
                    rels: self.rels_of(r)?,
                    dir,
                    to_types: self.types_of(nodes[to])?,
                    into,
                    uniq: edges.clone(),
                };
                edges.push(rel_slots[j]);
                done[j] = true;
                progressed = true;
                // A node between two bound ones: intersect (single hops only).
                let next = if to > from { to + 1 } else { to.wrapping_sub(1) };
                let k = if to > from { to } else { to.wrapping_sub(1) };
                let other = (next < n && !into && r.hops.is_none())
                    .then(|| slot[next])
                    .flatten();
                if let (Some(other_slot), Some(k)) = (other, (k < n - 1).then_some(k)) {
                    let r2 = &p.steps[k].0;
                    if !done[k] && r2.hops.is_none() {
                        let dir2 = if to > from { flip(r2.dir) } else { r2.dir };
                        let b_step = Step {
                            from: other_slot,
                            to: to_slot,
                            edge: rel_slots[k],
                            rels: self.rels_of(r2)?,
                            dir: dir2,
                            to_types: step.to_types.clone(),
                            into: false,
                            uniq: edges.clone(),
                        };
                        edges.push(rel_slots[k]);
                        done[k] = true;
                        ops.push(Op::Intersect { a: step, b: b_step });
                        slot[to] = Some(to_slot);
                        self.node_filters(nodes[to], to_slot, ops)?;
                        continue;
                    }
                }
                ops.push(match r.hops {
                    None => Op::Expand(step),
                    Some((lo, hi)) => {
                        let min = lo.unwrap_or(1);
                        if hi.is_some_and(|h| h < min) {
                            return Err(sem(r.pos.pos, "the upper hop bound is below the lower one"));
                        }
                        Op::VarExpand { step, min, max: hi }
                    }
                });
                if slot[to].is_none() {
                    slot[to] = Some(to_slot);
                    self.node_filters(nodes[to], to_slot, ops)?;
                }
            }
            if !progressed {
                // A path part not connected to any bound node cannot occur in one path.
                break;
            }
        }
        Ok(())
    }

    fn call(
        &mut self,
        name: &Name,
        args: &[Expr],
        yields: &[(Name, Option<Name>)],
    ) -> Result<(Op, Vec<(String, usize)>)> {
        let proc = match name.text.to_ascii_lowercase().as_str() {
            "quiver.train" => Proc::Train,
            "quiver.nearest" => Proc::Nearest,
            "quiver.predict" => Proc::Predict,
            "quiver.predict_head" => Proc::PredictHead,
            _ => {
                return Err(sem(
                    name.pos,
                    format!(
                        "unknown procedure `{}` (known: quiver.train, quiver.nearest, quiver.predict, quiver.predict_head)",
                        name.text
                    ),
                ))
            }
        };
        let (lo, hi) = match proc {
            Proc::Train => (0, 1),
            Proc::Nearest => (2, 3),
            Proc::Predict | Proc::PredictHead => (3, 4),
        };
        if args.len() < lo || args.len() > hi {
            return Err(sem(
                name.pos,
                format!("{} takes {lo} to {hi} arguments, found {}", name.text, args.len()),
            ));
        }
        // Settings are a map literal: a list or a number would read as nothing.
        if let (Proc::Train, Some(a)) = (proc, args.first()) {
            if !matches!(a, Expr::Map(_)) {
                return Err(sem(
                    name.pos,
                    format!(
                        "{} takes a map of settings, e.g. {{dim: 200, epochs: 10}}",
                        name.text
                    ),
                ));
            }
        }
        let args = args
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if i == 1 && matches!(proc, Proc::Predict | Proc::PredictHead) {
                    self.rel_name_expr(a)
                } else {
                    self.expr(a)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let cols = proc.columns();
        let picked: Vec<(usize, String)> = if yields.is_empty() {
            cols.iter().enumerate().map(|(i, c)| (i, c.to_string())).collect()
        } else {
            yields
                .iter()
                .map(|(y, alias)| {
                    let i = cols.iter().position(|c| *c == y.text).ok_or_else(|| {
                        sem(
                            y.pos,
                            format!("{} yields {}, not `{}`", name.text, cols.join(", "), y.text),
                        )
                    })?;
                    Ok((i, alias.as_ref().unwrap_or(y).text.clone()))
                })
                .collect::<Result<_>>()?
        };
        let mut out = Vec::new();
        let mut columns = Vec::new();
        for (i, var) in picked {
            let s = self.slot();
            self.bind(var.clone(), s);
            out.push((i, s));
            columns.push((var, s));
        }
        Ok((Op::Call { proc, args, out }, columns))
    }

    fn create(&mut self, patterns: &[PathPattern], writes: &mut Vec<Write>) -> Result<()> {
        for p in patterns {
            let mut srcs = Vec::new();
            for np in std::iter::once(&p.start).chain(p.steps.iter().map(|(_, n)| n)) {
                srcs.push(self.create_node(np, writes)?);
            }
            for (i, (r, _)) in p.steps.iter().enumerate() {
                if r.types.len() != 1 || r.hops.is_some() {
                    return Err(sem(
                        r.pos.pos,
                        "CREATE needs exactly one relation type and one hop: -[:Follows]->",
                    ));
                }
                let rel = self.relation(&r.types[0])?;
                let (src, dst) = match r.dir {
                    Dir::Out => (srcs[i].clone(), srcs[i + 1].clone()),
                    Dir::In => (srcs[i + 1].clone(), srcs[i].clone()),
                    Dir::Both => return Err(sem(r.pos.pos, "CREATE needs a direction: -> or <-")),
                };
                writes.push(Write::Edge {
                    rel,
                    src,
                    dst,
                    weight: None,
                });
            }
        }
        Ok(())
    }

    fn create_node(&mut self, np: &NodePattern, writes: &mut Vec<Write>) -> Result<NodeSrc> {
        if let Some(v) = &np.var {
            if let Some((ty, key)) = self.created.get(&v.text) {
                return Ok(NodeSrc::New {
                    ty: *ty,
                    key: key.clone(),
                });
            }
            if let Some(&s) = self.vars.get(&v.text) {
                if np.label.is_some() || !np.props.is_empty() {
                    return Err(sem(
                        np.pos.pos,
                        format!("`{}` is already bound; CREATE cannot relabel it", v.text),
                    ));
                }
                return Ok(NodeSrc::Bound(s));
            }
        }
        let label = np.label.as_ref().ok_or_else(|| {
            sem(
                np.pos.pos,
                "a created node needs a type: CREATE (:User {key: 'alice'})",
            )
        })?;
        let ty = self.node_type(label)?;
        let key = np.props.iter().find(|(k, _)| k.text == "key").ok_or_else(|| {
            sem(
                np.pos.pos,
                "a created node needs a key: CREATE (:User {key: 'alice'})",
            )
        })?;
        let key = self.expr(&key.1)?;
        let props = np
            .props
            .iter()
            .filter(|(k, _)| k.text != "key")
            .map(|(k, v)| Ok((k.text.clone(), self.expr(v)?)))
            .collect::<Result<Vec<_>>>()?;
        writes.push(Write::Node {
            ty,
            key: key.clone(),
            props,
        });
        if let Some(v) = &np.var {
            self.created.insert(v.text.clone(), (ty, key.clone()));
        }
        Ok(NodeSrc::New { ty, key })
    }

    fn ret(&mut self, p: &Projection) -> Result<Ret> {
        let mut columns = Vec::new();
        let mut items = Vec::new();
        for (e, alias) in &p.items {
            columns.push(match alias {
                Some(a) => a.text.clone(),
                None => column_name(e),
            });
            items.push(match agg_of(e) {
                Some((kind, distinct, star, args)) => {
                    if args.len() + usize::from(star) != 1 {
                        return Err(sem(
                            Pos::default(),
                            format!("{} takes one argument", column_name(e)),
                        ));
                    }
                    Err(Agg {
                        kind,
                        distinct,
                        arg: args.first().map(|a| self.expr(a)).transpose()?,
                    })
                }
                None => Ok(self.expr(e)?),
            });
        }
        let aggregating = items.iter().any(|i| i.is_err());
        let mut order = Vec::new();
        for (e, desc) in &p.order {
            let col = p.items.iter().position(|(x, _)| x == e).or_else(|| match e {
                Expr::Var(v) => p
                    .items
                    .iter()
                    .position(|(_, a)| a.as_ref().is_some_and(|a| a.text == v.text)),
                _ => None,
            });
            order.push((
                match col {
                    Some(c) => Ok(c),
                    None if aggregating || p.distinct => {
                        return Err(sem(
                            Pos::default(),
                            format!(
                                "ORDER BY {}: with DISTINCT or aggregates, sort by a returned column",
                                column_name(e)
                            ),
                        ))
                    }
                    None => Err(self.expr(e)?),
                },
                *desc,
            ));
        }
        Ok(Ret {
            distinct: p.distinct,
            columns,
            items,
            order,
            skip: p.skip.as_ref().map(|e| self.expr(e)).transpose()?,
            limit: p.limit.as_ref().map(|e| self.expr(e)).transpose()?,
        })
    }

    fn expr(&mut self, e: &Expr) -> Result<CExpr> {
        Ok(match e {
            Expr::Lit(l) => CExpr::Const(match l {
                Lit::Null => Value::Null,
                Lit::Bool(b) => Value::Bool(*b),
                Lit::Int(i) => Value::Int(*i),
                Lit::Float(x) => Value::Float(*x),
                Lit::Str(s) => Value::Str(s.clone()),
            }),
            Expr::Param(n) => CExpr::Param(n.text.clone()),
            Expr::Var(n) => {
                if self.created.contains_key(&n.text) {
                    return Err(sem(
                        n.pos,
                        format!("`{}` is created by this query and cannot be read in it", n.text),
                    ));
                }
                CExpr::Slot(self.var(n)?)
            }
            Expr::Prop(x, n) => CExpr::Prop(Box::new(self.expr(x)?), n.text.clone()),
            Expr::List(l) => CExpr::List(l.iter().map(|x| self.expr(x)).collect::<Result<_>>()?),
            Expr::Map(m) => CExpr::Map(
                m.iter()
                    .map(|(k, v)| Ok((k.text.clone(), self.expr(v)?)))
                    .collect::<Result<_>>()?,
            ),
            Expr::Not(x) => CExpr::Not(Box::new(self.expr(x)?)),
            Expr::Neg(x) => CExpr::Neg(Box::new(self.expr(x)?)),
            Expr::Bin(op, a, b) => CExpr::Bin(*op, Box::new(self.expr(a)?), Box::new(self.expr(b)?)),
            Expr::IsNull(x, not) => CExpr::IsNull(Box::new(self.expr(x)?), *not),
            Expr::Pattern(p) => {
                // Variables new in the pattern are local to it.
                let saved = self.vars.clone();
                let mut ops = Vec::new();
                let mut edges = Vec::new();
                let r = self.path(p, &HashMap::new(), &mut edges, &mut ops);
                self.vars = saved;
                r?;
                CExpr::Exists(ops)
            }
            Expr::Call { name, args, .. } => {
                if agg_of(e).is_some() {
                    return Err(sem(
                        name.pos,
                        format!("{} is an aggregate: use it as a RETURN item", name.text),
                    ));
                }
                let (f, lo, hi) = match name.text.to_ascii_lowercase().as_str() {
                    "type" => (Func::Type, 1, 1),
                    "id" => (Func::Id, 1, 1),
                    "labels" => (Func::Labels, 1, 1),
                    "size" | "length" => (Func::Size, 1, 1),
                    "coalesce" => (Func::Coalesce, 1, usize::MAX),
                    "abs" => (Func::Abs, 1, 1),
                    "tointeger" => (Func::ToInteger, 1, 1),
                    "tofloat" => (Func::ToFloat, 1, 1),
                    "tostring" => (Func::ToString, 1, 1),
                    "startnode" => (Func::StartNode, 1, 1),
                    "endnode" => (Func::EndNode, 1, 1),
                    "quiver.score" => (Func::Score, 3, 4),
                    "quiver.embed" => (Func::Embed, 1, 2),
                    _ => return Err(sem(name.pos, format!("unknown function `{}`", name.text))),
                };
                if args.len() < lo || args.len() > hi {
                    let takes = match (lo, hi) {
                        (lo, usize::MAX) => format!("at least {lo}"),
                        (lo, hi) if lo == hi => lo.to_string(),
                        (lo, hi) => format!("{lo} to {hi}"),
                    };
                    return Err(sem(
                        name.pos,
                        format!("{} takes {takes} arguments, found {}", name.text, args.len()),
                    ));
                }
                let args = args
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        if f == Func::Score && i == 1 {
                            self.rel_name_expr(a)
                        } else {
                            self.expr(a)
                        }
                    })
                    .collect::<Result<_>>()?;
                CExpr::Func(f, args)
            }
        })
    }
}

fn flip(d: Dir) -> Dir {
    match d {
        Dir::Out => Dir::In,
        Dir::In => Dir::Out,
        Dir::Both => Dir::Both,
    }
}

fn agg_of(e: &Expr) -> Option<(AggKind, bool, bool, &[Expr])> {
    let Expr::Call {
        name,
        distinct,
        star,
        args,
    } = e
    else {
        return None;
    };
    let kind = match name.text.to_ascii_lowercase().as_str() {
        "count" => AggKind::Count,
        "sum" => AggKind::Sum,
        "avg" => AggKind::Avg,
        "min" => AggKind::Min,
        "max" => AggKind::Max,
        "collect" => AggKind::Collect,
        _ => return None,
    };
    Some((kind, *distinct, *star, args))
}

/// A column named after its expression: `b.key`, `count(*)`.
fn column_name(e: &Expr) -> String {
    match e {
        Expr::Var(n) => n.text.clone(),
        Expr::Prop(x, n) => format!("{}.{}", column_name(x), n.text),
        Expr::Call { name, star: true, .. } => format!("{}(*)", name.text),
        Expr::Call {
            name, args, distinct, ..
        } => {
            let a: Vec<String> = args.iter().map(column_name).collect();
            format!(
                "{}({}{})",
                name.text,
                if *distinct { "DISTINCT " } else { "" },
                a.join(", ")
            )
        }
        Expr::Lit(Lit::Str(s)) => format!("'{s}'"),
        Expr::Param(p) => format!("${}", p.text),
        other => other.to_string().replace('`', ""),
    }
}

/// The plan as text, one operator per line (EXPLAIN).
pub(crate) fn explain(plan: &Plan, catalog: &Catalog) -> Vec<String> {
    let names = &plan.names;
    let var = |s: &usize| names.get(s).cloned().unwrap_or_else(|| format!("_{s}"));
    let types = |t: &Option<Vec<u32>>| match t {
        None => String::new(),
        Some(t) => t.iter().map(|t| format!(":{}", catalog.type_name(*t))).collect(),
    };
    let rels = |r: &Option<Vec<u32>>| match r {
        None => String::new(),
        Some(r) => {
            let n: Vec<&str> = r
                .iter()
                .map(|r| catalog.relations[*r as usize].name.as_str())
                .collect();
            format!(":{}", n.join("|"))
        }
    };
    let step = |s: &Step, hops: &str| {
        let (l, r) = match s.dir {
            Dir::Out => ("-", "->"),
            Dir::In => ("<-", "-"),
            Dir::Both => ("-", "-"),
        };
        format!(
            "({}){l}[{}{}{hops}]{r}({}{})",
            var(&s.from),
            var(&s.edge),
            rels(&s.rels),
            var(&s.to),
            types(&s.to_types)
        )
    };
    let mut out = Vec::new();
    for op in &plan.ops {
        out.push(match op {
            Op::Scan { slot, types: t } => format!("NodeScan ({}{})", var(slot), types(t)),
            Op::ByKey { slot, types: t, .. } => format!("NodeByKey ({}{} {{key}})", var(slot), types(t)),
            Op::CheckType { slot, types: t } => {
                format!("CheckType ({}{})", var(slot), types(&Some(t.clone())))
            }
            Op::Expand(s) if s.into => format!("ExpandInto {}", step(s, "")),
            Op::Expand(s) => format!("Expand {}", step(s, "")),
            Op::VarExpand { step: s, min, max } => {
                let hi = max.map_or(String::new(), |m| m.to_string());
                format!("VarExpand {}", step(s, &format!("*{min}..{hi}")))
            }
            Op::Intersect { a, b } => format!("Intersect {} and {}", step(a, ""), step(b, "")),
            Op::Filter(_) => "Filter".to_string(),
            Op::Call { proc, .. } => format!("Call {proc:?}"),
        });
    }
    if !plan.writes.is_empty() {
        out.push(format!(
            "Write ({} operations per row, one batch)",
            plan.writes.len()
        ));
    }
    if let Some(r) = &plan.ret {
        let aggregating = r.items.iter().any(|i| i.is_err());
        out.push(format!(
            "{}{}{}{}",
            if aggregating { "Aggregate" } else { "Project" },
            if r.distinct { " DISTINCT" } else { "" },
            if r.order.is_empty() { "" } else { " Sort" },
            if r.limit.is_some() { " Limit" } else { "" }
        ));
    }
    out
}
