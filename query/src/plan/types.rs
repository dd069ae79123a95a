//! The plan's types: compiled expressions, operators, writes, and the
//! plan of a query as its parts.

use std::collections::HashMap;

use quiver_storage::Direction;

use crate::ast::{BinOp, Dir};
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
    /// The number of rows the sub-plan yields for this row (`COUNT { }`).
    Count(Vec<Op>),
    /// `[x IN list WHERE p | e]`, the element in `slot`.
    ListComp {
        list: Box<CExpr>,
        slot: usize,
        filter: Option<Box<CExpr>>,
        map: Option<Box<CExpr>>,
    },
    /// `[(a)-->(b) WHERE p | e]`: `map` over the sub-plan's rows.
    PatternList {
        ops: Vec<Op>,
        map: Box<CExpr>,
    },
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
    Nodes,
    Relationships,
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
    /// number in that slot; with `paths`, the number of two-step paths
    /// instead (from the middle nodes' degrees).
    TwoHop {
        a: Step,
        b: Step,
        count: Option<usize>,
        paths: bool,
    },
    /// Keeps rows where the expression is true.
    Filter(CExpr),
    /// Binds `slot` to the path through the node slots and edge slots (a
    /// variable-length step's edge list, `true` when it was expanded from
    /// its right end and so lists its edges right to left).
    Path {
        slot: usize,
        nodes: Vec<usize>,
        edges: Vec<(usize, bool)>,
    },
    /// `shortestPath` / `allShortestPaths` between two bound nodes: a
    /// breadth-first search along `step` (from `step.from` to `step.to`),
    /// `step.edge` the edge list, `path` the path.
    Shortest {
        step: Step,
        min: u32,
        max: Option<u32>,
        all: bool,
        path: Option<usize>,
    },
    /// `WITH`: the rows projected (grouped, sorted, paged like `RETURN`)
    /// into fresh slots; every other slot of a new row is null.
    With { ret: Ret, slots: Vec<usize> },
    /// `CALL { ... }`: per row, the subquery's rows (its operators, then
    /// its RETURN) into `slots`; a row for each.
    Subquery {
        ops: Vec<Op>,
        ret: Ret,
        slots: Vec<usize>,
    },
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
    /// Created, when new, by a later MERGE's edge in the same part (it has
    /// no properties to set first): the batch needs no write of its own.
    pub implied: bool,
}

/// The edge of a one-hop MERGE: `slot` holds it when the snapshot has it.
#[derive(Debug, Clone)]
pub(crate) struct MergeEdge {
    pub slot: usize,
    pub rel: u32,
    pub src: NodeSrc,
    pub dst: NodeSrc,
    /// The slots its two ends are read from.
    pub ends: [usize; 2],
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
    /// `FOREACH`: for each element of the list (in `slot`), the rows of
    /// `ops` (a MERGE's look-ups), each with `writes` applied.
    Foreach {
        list: CExpr,
        slot: usize,
        ops: Vec<Op>,
        writes: Vec<Write>,
    },
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
#[derive(Debug, Clone, Default)]
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

impl CExpr {
    /// The value of a slot expression in `row`, borrowed.
    pub(crate) fn slot_in<'r>(&self, row: &'r [Value]) -> Option<&'r Value> {
        match self {
            CExpr::Slot(s) => row.get(*s),
            _ => None,
        }
    }
}

impl Plan {
    /// The names of the columns the plan returns (RETURN's, or a closing CALL's).
    pub(crate) fn columns(&self) -> Vec<String> {
        match &self.ret {
            Some(r) => r.columns.clone(),
            None => self.call_columns.iter().map(|(c, _)| c.clone()).collect(),
        }
    }
}
