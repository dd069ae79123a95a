//! The syntax tree, and its printing back to query text (`print.rs`:
//! parse, print and parse again gives the same tree; places are not compared).

use crate::error::Pos;

mod print;

/// A name as written, with its place (ignored by `==`).
#[derive(Debug, Clone, Eq)]
pub struct Name {
    /// The text.
    pub text: String,
    /// Where it starts.
    pub pos: Pos,
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// A statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `CREATE NODE TYPE User`.
    CreateNodeType(Name),
    /// `CREATE RELATION TYPE Follows (User -> User)`.
    CreateRelationType {
        /// Relation name.
        name: Name,
        /// Source node type.
        src: Name,
        /// Destination node type.
        dst: Name,
    },
    /// `SHOW TYPES`.
    ShowTypes,
    /// `EXPLAIN query`: the plan, not the rows.
    Explain(Vec<Clause>),
    /// Clauses run in order, rows flowing from one to the next.
    Query(Vec<Clause>),
}

/// One clause of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Clause {
    /// `[OPTIONAL] MATCH pattern, ... [WHERE expr]`.
    Match {
        /// `OPTIONAL MATCH`: a row without a match continues with nulls.
        optional: bool,
        /// Comma-separated path patterns.
        patterns: Vec<PathPattern>,
        /// Filter (part of the match: with OPTIONAL, a row it rejects gets nulls).
        filter: Option<Expr>,
    },
    /// `CALL proc(args) [YIELD a [AS b], ...]`.
    Call {
        /// Procedure name, dotted (`quiver.nearest`).
        name: Name,
        /// Arguments.
        args: Vec<Expr>,
        /// Yielded columns and their variable names.
        yields: Vec<(Name, Option<Name>)>,
        /// `WHERE` after `YIELD`.
        filter: Option<Expr>,
    },
    /// `CREATE pattern, ...`.
    Create(Vec<PathPattern>),
    /// `[DETACH] DELETE expr, ...`.
    Delete {
        /// `DETACH DELETE` (nodes lose their edges) rather than `DELETE`.
        detach: bool,
        /// Edges or nodes to delete.
        targets: Vec<Expr>,
    },
    /// `SET n.prop = value, n += map, ...`.
    Set(Vec<SetItem>),
    /// `MERGE pattern [ON CREATE SET ...] [ON MATCH SET ...]`.
    Merge {
        /// One node, or one hop between two nodes.
        pattern: PathPattern,
        /// Applied when the pattern was created.
        on_create: Vec<SetItem>,
        /// Applied when the pattern was found.
        on_match: Vec<SetItem>,
    },
    /// `WITH items [ORDER BY ...] [SKIP n] [LIMIT n] [WHERE expr]`: the rows
    /// continue with the projected variables only.
    With {
        /// What is carried on (aliases name the variables).
        proj: Projection,
        /// Filter over the projected variables.
        filter: Option<Expr>,
    },
    /// `REMOVE n.prop, ...`.
    Remove(Vec<(Name, Name)>),
    /// `RETURN ...`.
    Return(Projection),
    /// `FOREACH (x IN list | clause ...)`: the write clauses once per element.
    Foreach {
        /// The element's variable (local to the body).
        var: Name,
        /// The list.
        list: Expr,
        /// Write clauses (CREATE, MERGE, SET, REMOVE, DELETE, FOREACH).
        body: Vec<Clause>,
    },
    /// `CALL { clause ... }`: a subquery run once per row, its RETURN's
    /// columns added to the row (an importing `WITH a, b` first makes it
    /// see those variables).
    Subquery(Vec<Clause>),
    /// `UNION` (`all`: `UNION ALL`) between two queries that end with RETURN.
    Union {
        /// Keep duplicate rows.
        all: bool,
    },
    /// `UNWIND list AS name`: a row per element.
    Unwind {
        /// The list (a scalar gives one row, null none).
        expr: Expr,
        /// The element's variable.
        alias: Name,
    },
}

impl Clause {
    /// Whether the clause writes the graph.
    pub(crate) fn writes(&self) -> bool {
        match self {
            Clause::Create(_)
            | Clause::Delete { .. }
            | Clause::Set(_)
            | Clause::Merge { .. }
            | Clause::Remove(_)
            | Clause::Foreach { .. } => true,
            Clause::Subquery(body) => body.iter().any(Clause::writes),
            _ => false,
        }
    }
}

/// One assignment of `SET` (and of MERGE's `ON CREATE SET`, `ON MATCH SET`).
#[derive(Debug, Clone, PartialEq)]
pub enum SetItem {
    /// `n.prop = value`.
    Prop(Name, Name, Expr),
    /// `n += map`: a property per key of the map.
    Map(Name, Expr),
}

/// What `RETURN` produces.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// `RETURN DISTINCT`.
    pub distinct: bool,
    /// `RETURN *`, `WITH *, ...`: every variable in scope, by name.
    pub star: bool,
    /// Expressions and their aliases.
    pub items: Vec<(Expr, Option<Name>)>,
    /// `ORDER BY` keys; `true` for descending.
    pub order: Vec<(Expr, bool)>,
    /// `SKIP n`.
    pub skip: Option<Expr>,
    /// `LIMIT n`.
    pub limit: Option<Expr>,
}

/// `(a:Label {k: v})-[r:T]->(b)...`.
#[derive(Debug, Clone, PartialEq)]
pub struct PathPattern {
    /// `p = ...`: the variable the whole path is bound to.
    pub var: Option<Name>,
    /// `shortestPath(...)` (`Some(false)`) or `allShortestPaths(...)` (`Some(true)`).
    pub shortest: Option<bool>,
    /// The first node.
    pub start: NodePattern,
    /// Each relationship and the node after it.
    pub steps: Vec<(RelPattern, NodePattern)>,
}

/// `(var:Label {prop: value})`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePattern {
    /// Variable.
    pub var: Option<Name>,
    /// Node type.
    pub label: Option<Name>,
    /// Property constraints (`key` is the node's key).
    pub props: Vec<(Name, Expr)>,
    /// Where the pattern starts (compared through `Name`s only).
    pub pos: Name,
}

/// Direction of a relationship pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// `-[]->`.
    Out,
    /// `<-[]-`.
    In,
    /// `-[]-`.
    Both,
}

/// `-[var:T1|T2*min..max]->`.
#[derive(Debug, Clone, PartialEq)]
pub struct RelPattern {
    /// Variable.
    pub var: Option<Name>,
    /// Allowed relation types (empty: any).
    pub types: Vec<Name>,
    /// Direction.
    pub dir: Dir,
    /// Variable length: `*` gives `(None, None)`, `*2` gives `(Some(2), Some(2))`.
    pub hops: Option<(Option<u32>, Option<u32>)>,
    /// Where the pattern starts.
    pub pos: Name,
}

/// Literal values.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// `null`.
    Null,
    /// `true`, `false`.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// String.
    Str(String),
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `OR`.
    Or,
    /// `XOR`.
    Xor,
    /// `AND`.
    And,
    /// `=`.
    Eq,
    /// `<>`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `IN`.
    In,
    /// `STARTS WITH`.
    StartsWith,
    /// `ENDS WITH`.
    EndsWith,
    /// `CONTAINS`.
    Contains,
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Mod,
}

impl BinOp {
    /// Precedence, loosest first (see [`Expr::prec`]).
    pub(crate) fn prec(self) -> u8 {
        use BinOp::*;
        match self {
            Or => 1,
            Xor => 2,
            And => 3,
            Eq | Ne | Lt | Le | Gt | Ge | In | StartsWith | EndsWith | Contains => 5,
            Add | Sub => 6,
            Mul | Div | Mod => 7,
        }
    }

    pub(crate) fn text(self) -> &'static str {
        use BinOp::*;
        match self {
            Or => "OR",
            Xor => "XOR",
            And => "AND",
            Eq => "=",
            Ne => "<>",
            Lt => "<",
            Le => "<=",
            Gt => ">",
            Ge => ">=",
            In => "IN",
            StartsWith => "STARTS WITH",
            EndsWith => "ENDS WITH",
            Contains => "CONTAINS",
            Add => "+",
            Sub => "-",
            Mul => "*",
            Div => "/",
            Mod => "%",
        }
    }
}

/// Expressions.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal.
    Lit(Lit),
    /// `$name`.
    Param(Name),
    /// A variable.
    Var(Name),
    /// `expr.name`.
    Prop(Box<Expr>, Name),
    /// `[a, b]`.
    List(Vec<Expr>),
    /// `{k: v}`.
    Map(Vec<(Name, Expr)>),
    /// `NOT e`.
    Not(Box<Expr>),
    /// `-e`.
    Neg(Box<Expr>),
    /// `a op b`.
    Bin(BinOp, Box<Expr>, Box<Expr>),
    /// `e IS NULL` (`false`) or `e IS NOT NULL` (`true`).
    IsNull(Box<Expr>, bool),
    /// `f(args)`, `f(DISTINCT x)`, `count(*)` (no args, `star`).
    Call {
        /// Function name, dotted.
        name: Name,
        /// `DISTINCT` before the arguments.
        distinct: bool,
        /// `*` as the argument.
        star: bool,
        /// Arguments.
        args: Vec<Expr>,
    },
    /// A pattern used as a predicate: true when it has a match.
    Pattern(PathPattern),
    /// `[x IN list WHERE p | e]`: `e` (or `x`) for each element where `p` holds.
    ListComp {
        /// The element's variable (local to the comprehension).
        var: Name,
        /// The list.
        list: Box<Expr>,
        /// `WHERE p`.
        filter: Option<Box<Expr>>,
        /// `| e`.
        map: Option<Box<Expr>>,
    },
    /// `[(a)-->(b) WHERE p | e]`: `e` for each match of the pattern.
    PatternComp {
        /// The pattern; its new variables are local to the comprehension.
        pattern: PathPattern,
        /// `WHERE p`.
        filter: Option<Box<Expr>>,
        /// `| e`.
        map: Box<Expr>,
    },
    /// `EXISTS { [MATCH] pattern, ... [WHERE p] }` (`count`: `COUNT { ... }`,
    /// the number of matches).
    Subquery {
        /// `COUNT` rather than `EXISTS`.
        count: bool,
        /// The patterns; their new variables are local to the subquery.
        patterns: Vec<PathPattern>,
        /// `WHERE p`.
        filter: Option<Box<Expr>>,
    },
    /// `CASE [subject] WHEN w THEN t ... [ELSE e] END`: with a subject, the
    /// first `t` whose `w` equals it; without, the first whose `w` is true;
    /// else `e` (or null).
    Case {
        /// The value compared with each `WHEN` (the simple form).
        subject: Option<Box<Expr>>,
        /// (`WHEN`, `THEN`) pairs, at least one.
        whens: Vec<(Expr, Expr)>,
        /// `ELSE`.
        otherwise: Option<Box<Expr>>,
    },
}
