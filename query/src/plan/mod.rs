//! The planner: turns clauses into a list of operators over rows of slots
//! (one slot per variable), resolving names against the catalog.
//!
//! For each path pattern it first binds every node given by key (one row
//! each), then starts from a bound node (or the smallest label scan) and
//! expands outwards. A node between two bound nodes is found by intersecting
//! the two sorted neighbour lists instead of expanding and checking.

use std::collections::HashMap;

use quiver_storage::{Catalog, Direction, Snapshot};

use crate::ast::*;
use crate::error::{Pos, QueryError, Result};
use crate::value::Value;

mod clauses;
mod explain;
mod expr;
mod pattern;
mod two_hop;
mod writes;

use clauses::*;
pub(crate) use explain::explain;

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
    Case {
        subject: Option<Box<CExpr>>,
        whens: Vec<(CExpr, CExpr)>,
        otherwise: Option<Box<CExpr>>,
    },
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
    ToLower,
    ToUpper,
    Trim,
    Substring,
    Split,
    Replace,
    Head,
    Last,
    Range,
    Keys,
    Properties,
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
    Refresh,
    Index,
    Nearest,
    Predict,
    PredictHead,
}

impl Proc {
    /// The procedure of a `CALL` name (case-insensitive).
    pub(crate) fn named(name: &str) -> Option<Proc> {
        Some(match name.to_ascii_lowercase().as_str() {
            "quiver.train" => Proc::Train,
            "quiver.refresh" => Proc::Refresh,
            "quiver.index" => Proc::Index,
            "quiver.nearest" => Proc::Nearest,
            "quiver.predict" => Proc::Predict,
            "quiver.predict_head" => Proc::PredictHead,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Proc::Train => "quiver.train",
            Proc::Refresh => "quiver.refresh",
            Proc::Index => "quiver.index",
            Proc::Nearest => "quiver.nearest",
            Proc::Predict => "quiver.predict",
            Proc::PredictHead => "quiver.predict_head",
        }
    }

    pub(crate) fn columns(self) -> &'static [&'static str] {
        match self {
            Proc::Train => &["model", "epochs", "edges", "seconds", "loss"],
            Proc::Refresh => &["model", "from", "epochs", "edges", "seconds"],
            Proc::Index => &["model", "type", "rows", "seconds"],
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
    /// The operators of an OPTIONAL MATCH: their rows, or the input row
    /// itself (its new slots still null) when they give none.
    Optional(Vec<Op>),
    /// A row per element of the list (`UNWIND`).
    Unwind { expr: CExpr, slot: usize },
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
    /// The distinct nodes two steps from `a.from` (`a.to`, the edges and
    /// the middle node stay null), or with `count`, one row with their
    /// number in that slot.
    TwoHop { a: Step, b: Step, count: Option<usize> },
    /// Keeps rows where the expression is true.
    Filter(CExpr),
    /// `WITH`: the rows projected (grouped, sorted, paged like `RETURN`)
    /// into fresh slots; every other slot of a new row is null.
    With { ret: Ret, slots: Vec<usize> },
    /// A procedure; its columns go to the slots. With `exclude`, a
    /// neighbour search leaves out the nodes joined to its first argument
    /// by the relation (`WHERE NOT (u)-[:R]->(node)`, searched with the
    /// filter rather than filtered after, so k rows still come back).
    Call {
        proc: Proc,
        args: Vec<CExpr>,
        out: Vec<(usize, usize)>,
        exclude: Option<(u32, Direction)>,
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

/// What a SET or REMOVE changes: a matched node or edge, or one this
/// statement creates or merges (named by its key, as it may have no id yet).
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Slot(usize),
    Node { ty: u32, key: CExpr },
    Edge { rel: u32, src: NodeSrc, dst: NodeSrc },
}

/// A node a MERGE finds or creates: `slot` holds it when the statement's
/// snapshot has it with the pattern's properties.
#[derive(Debug, Clone)]
pub(crate) struct MergeNode {
    pub slot: usize,
    pub ty: u32,
    pub key: CExpr,
    pub props: Vec<(String, CExpr)>,
}

/// The edge of a one-hop MERGE: `slot` holds it when the snapshot has it.
#[derive(Debug, Clone)]
pub(crate) struct MergeEdge {
    pub slot: usize,
    pub rel: u32,
    pub src: NodeSrc,
    pub dst: NodeSrc,
}

/// A MERGE: its nodes, then its edge; the pattern was created when its
/// edge (or, without one, its node) was.
#[derive(Debug, Clone)]
pub(crate) struct Merge {
    pub nodes: Vec<MergeNode>,
    pub edge: Option<MergeEdge>,
    pub on_create: Vec<Write>,
    pub on_match: Vec<Write>,
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
    /// `SET t.prop = value` (null removes the property).
    Set {
        target: Target,
        prop: String,
        value: CExpr,
    },
    /// `SET t += map`, a map known only when the row is.
    SetMap {
        target: Target,
        value: CExpr,
    },
    /// REMOVE of a node's property.
    Remove {
        target: Target,
        prop: String,
    },
    Merge(Box<Merge>),
}

/// A part of a query that writes and is read after: its rows, with its
/// writes applied, feed the next part, which sees those writes.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub ops: Vec<Op>,
    pub writes: Vec<Write>,
    /// Slots filled, where null, once the writes are applied: the nodes
    /// and edges the part created or merged, found by key in the new view.
    pub fills: Vec<(usize, Target)>,
}

/// A compiled query.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The parts before the last, each ending with writes.
    pub before: Vec<Part>,
    /// The last part's reading operators and writes.
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
    /// Variables bound to nodes and edges CREATE makes in the current part:
    /// written by key, readable only in a later part.
    created: HashMap<String, Target>,
    /// Variables bound to nodes and edges MERGE finds or creates: readable
    /// (null when created), written by key.
    merged: HashMap<String, Target>,
    /// Variables bound before the MATCH being planned.
    outer: std::collections::HashSet<String>,
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
        merged: HashMap::new(),
        outer: Default::default(),
        names: HashMap::new(),
        width: 0,
    };
    let mut plan = Plan {
        before: Vec::new(),
        ops: Vec::new(),
        writes: Vec::new(),
        ret: None,
        call_columns: Vec::new(),
        width: 0,
        names: HashMap::new(),
    };
    let writing = clauses.iter().any(|c| {
        matches!(
            c,
            Clause::Create(_)
                | Clause::Delete { .. }
                | Clause::Set(_)
                | Clause::Merge { .. }
                | Clause::Remove(_)
        )
    });
    for (i, c) in clauses.iter().enumerate() {
        if let (true, Clause::Call { name, .. }) = (writing, c) {
            if let Some(proc @ (Proc::Train | Proc::Refresh | Proc::Index)) = Proc::named(&name.text) {
                return Err(sem(
                    name.pos,
                    format!(
                        "{} stores a model or an index and runs as a statement of its own, not with CREATE, MERGE, SET, REMOVE or DELETE",
                        proc.name()
                    ),
                ));
            }
        }
        // A clause that reads after writes starts a new part, which sees them.
        let reading = matches!(
            c,
            Clause::Match { .. }
                | Clause::Call { .. }
                | Clause::Unwind { .. }
                | Clause::With { .. }
                | Clause::Return(_)
        );
        let only_merges = plan.writes.iter().all(|w| matches!(w, Write::Merge(_)));
        if (reading || (matches!(c, Clause::Merge { .. }) && !only_merges)) && !plan.writes.is_empty() {
            p.end_part(&mut plan);
        }
        match c {
            Clause::Match {
                optional: false,
                patterns,
                filter,
            } => p.matches(patterns, filter.as_ref(), &mut plan.ops)?,
            Clause::Match {
                optional: true,
                patterns,
                filter,
            } => {
                let mut ops = Vec::new();
                p.matches(patterns, filter.as_ref(), &mut ops)?;
                plan.ops.push(Op::Optional(ops));
            }
            Clause::Call {
                name,
                args,
                yields,
                filter,
            } => {
                let (op, cols) = p.call(name, args, yields, filter.as_ref())?;
                plan.ops.extend(op);
                plan.call_columns = cols;
            }
            Clause::Unwind { expr, alias } => {
                let expr = p.expr(expr)?;
                let slot = p.slot();
                p.bind(alias.text.clone(), slot);
                plan.ops.push(Op::Unwind { expr, slot });
            }
            Clause::With { proj, filter } => {
                plan.ops.push(p.with(proj)?);
                if let Some(f) = filter {
                    plan.ops.push(Op::Filter(p.expr(f)?));
                }
            }
            Clause::Create(patterns) => p.create(patterns, &mut plan.writes)?,
            Clause::Merge {
                pattern,
                on_create,
                on_match,
            } => {
                let w = p.merge(pattern, on_create, on_match, &mut plan.ops)?;
                plan.writes.push(w);
            }
            Clause::Delete { detach, targets } => {
                for t in targets {
                    plan.writes.push(Write::Delete {
                        target: p.expr(t)?,
                        detach: *detach,
                    });
                }
            }
            Clause::Set(items) => p.set_items(items, &mut plan.writes)?,
            Clause::Remove(items) => {
                for (var, prop) in items {
                    if prop.text == "key" {
                        return Err(sem(prop.pos, "a node's key cannot be removed"));
                    }
                    plan.writes.push(Write::Remove {
                        target: p.target(var)?,
                        prop: prop.text.clone(),
                    });
                }
            }
            Clause::Return(proj) => plan.ret = Some(p.ret(proj)?),
        }
        let last = i + 1 == clauses.len();
        if last && plan.ret.is_none() && plan.writes.is_empty() && !matches!(c, Clause::Call { .. }) {
            return Err(sem(
                Pos::default(),
                "a query ends with RETURN, CALL or a write clause (CREATE, MERGE, DELETE, SET, REMOVE)",
            ));
        }
    }
    plan.width = p.width;
    plan.names = p.names;
    two_hop::rewrite(&mut plan, p.width);
    Ok(plan)
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

impl Planner<'_> {
    /// Closes the current part (its operators and writes) before a clause
    /// that reads its writes: the variables it created or merged become
    /// ordinary ones, filled from the new view.
    fn end_part(&mut self, plan: &mut Plan) {
        let mut written: Vec<(String, Target)> = self.created.drain().chain(self.merged.drain()).collect();
        written.sort_by(|a, b| a.0.cmp(&b.0));
        let mut fills = Vec::new();
        for (name, target) in written {
            let slot = match self.vars.get(&name) {
                Some(&s) => s,
                None => {
                    let s = self.slot();
                    self.bind(name, s);
                    s
                }
            };
            fills.push((slot, target));
        }
        plan.before.push(Part {
            ops: std::mem::take(&mut plan.ops),
            writes: std::mem::take(&mut plan.writes),
            fills,
        });
    }

    /// True when `e` reads only variables bound before the current MATCH
    /// (so it can be evaluated first, as a node key to look up).
    fn outer_only(&self, e: &Expr) -> bool {
        match e {
            Expr::Lit(_) | Expr::Param(_) => true,
            Expr::Var(n) => self.outer.contains(&n.text),
            Expr::Prop(x, _) | Expr::Neg(x) | Expr::Not(x) | Expr::IsNull(x, _) => self.outer_only(x),
            Expr::List(l) => l.iter().all(|x| self.outer_only(x)),
            Expr::Map(m) => m.iter().all(|(_, x)| self.outer_only(x)),
            Expr::Bin(_, a, b) => self.outer_only(a) && self.outer_only(b),
            Expr::Call { args, .. } => agg_of(e).is_none() && args.iter().all(|x| self.outer_only(x)),
            _ => false,
        }
    }

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
}
