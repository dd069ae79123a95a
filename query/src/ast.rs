//! The syntax tree, and its printing back to query text (parse, print and
//! parse again gives the same tree; places are not compared).

use std::fmt::{self, Display, Formatter, Write};

use crate::error::Pos;

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

/// One assignment of `SET` (and of MERGE's `ON CREATE SET`, `ON MATCH SET`).
#[derive(Debug, Clone, PartialEq)]
pub enum SetItem {
    /// `n.prop = value`.
    Prop(Name, Name, Expr),
    /// `n += map`: a property per key of the map.
    Map(Name, Expr),
}

impl Display for SetItem {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            SetItem::Prop(v, p, e) => {
                name(f, v)?;
                f.write_char('.')?;
                name(f, p)?;
                write!(f, " = {e}")
            }
            SetItem::Map(v, e) => {
                name(f, v)?;
                write!(f, " += {e}")
            }
        }
    }
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

/// Names print back-quoted so that any text, keywords included, reads back.
fn name(f: &mut Formatter<'_>, n: &Name) -> fmt::Result {
    write!(f, "`{}`", n.text)
}

fn list<T>(
    f: &mut Formatter<'_>,
    items: &[T],
    each: impl Fn(&mut Formatter<'_>, &T) -> fmt::Result,
) -> fmt::Result {
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        each(f, x)?;
    }
    Ok(())
}

fn props(f: &mut Formatter<'_>, p: &[(Name, Expr)]) -> fmt::Result {
    f.write_char('{')?;
    list(f, p, |f, (k, v)| {
        name(f, k)?;
        write!(f, ": {v}")
    })?;
    f.write_char('}')
}

impl Display for Lit {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Lit::Null => f.write_str("null"),
            Lit::Bool(b) => write!(f, "{b}"),
            Lit::Int(i) => write!(f, "{i}"),
            Lit::Float(x) => write!(f, "{x:?}"),
            Lit::Str(s) => {
                f.write_char('\'')?;
                for c in s.chars() {
                    match c {
                        '\'' => f.write_str("\\'")?,
                        '\\' => f.write_str("\\\\")?,
                        '\n' => f.write_str("\\n")?,
                        '\r' => f.write_str("\\r")?,
                        '\t' => f.write_str("\\t")?,
                        '\0' => f.write_str("\\0")?,
                        c => f.write_char(c)?,
                    }
                }
                f.write_char('\'')
            }
        }
    }
}

impl Expr {
    /// How tightly the expression binds: `OR` 1, `XOR` 2, `AND` 3, `NOT` 4,
    /// comparisons and `IS NULL` 5, `+ -` 6, `* / %` 7, unary `-` 8,
    /// `.property` 9, everything else 10.
    fn prec(&self) -> u8 {
        match self {
            Expr::Bin(op, ..) => op.prec(),
            Expr::Not(_) => 4,
            Expr::IsNull(..) => 5,
            Expr::Neg(_) => 8,
            Expr::Prop(..) => 9,
            _ => 10,
        }
    }

    /// Prints with the fewest parentheses that parse back to this tree, so
    /// the text never nests deeper than the text it was parsed from.
    fn write(&self, f: &mut Formatter<'_>, min: u8) -> fmt::Result {
        let wrap = self.prec() < min;
        if wrap {
            f.write_char('(')?;
        }
        match self {
            Expr::Lit(l) => write!(f, "{l}")?,
            Expr::Param(n) => write!(f, "${}", n.text)?,
            Expr::Var(n) => name(f, n)?,
            Expr::Prop(e, n) => {
                e.write(f, 9)?;
                f.write_char('.')?;
                name(f, n)?;
            }
            Expr::List(items) => {
                f.write_char('[')?;
                list(f, items, |f, e| write!(f, "{e}"))?;
                f.write_char(']')?;
            }
            Expr::Map(p) => props(f, p)?,
            Expr::Not(e) => {
                f.write_str("NOT ")?;
                e.write(f, 4)?;
            }
            Expr::Neg(e) => {
                f.write_char('-')?;
                e.write(f, 8)?;
            }
            Expr::Bin(op, a, b) => {
                // Left-associative: the right operand binds one level tighter.
                a.write(f, op.prec())?;
                write!(f, " {} ", op.text())?;
                b.write(f, op.prec() + 1)?;
            }
            Expr::IsNull(e, not) => {
                e.write(f, 5)?;
                write!(f, " IS {}NULL", if *not { "NOT " } else { "" })?;
            }
            Expr::Call {
                name,
                distinct,
                star,
                args,
            } => {
                write!(f, "{}(", name.text)?;
                if *distinct {
                    f.write_str("DISTINCT ")?;
                }
                if *star {
                    f.write_char('*')?;
                }
                list(f, args, |f, e| write!(f, "{e}"))?;
                f.write_char(')')?;
            }
            Expr::Pattern(p) => write!(f, "{p}")?,
            Expr::Case {
                subject,
                whens,
                otherwise,
            } => {
                f.write_str("CASE")?;
                if let Some(s) = subject {
                    write!(f, " {s}")?;
                }
                for (w, t) in whens {
                    write!(f, " WHEN {w} THEN {t}")?;
                }
                if let Some(e) = otherwise {
                    write!(f, " ELSE {e}")?;
                }
                f.write_str(" END")?;
            }
        }
        if wrap {
            f.write_char(')')?;
        }
        Ok(())
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.write(f, 0)
    }
}

impl Display for NodePattern {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_char('(')?;
        if let Some(v) = &self.var {
            name(f, v)?;
        }
        if let Some(l) = &self.label {
            f.write_char(':')?;
            name(f, l)?;
        }
        if !self.props.is_empty() {
            f.write_char(' ')?;
            props(f, &self.props)?;
        }
        f.write_char(')')
    }
}

impl Display for RelPattern {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(if self.dir == Dir::In { "<-[" } else { "-[" })?;
        if let Some(v) = &self.var {
            name(f, v)?;
        }
        for (i, t) in self.types.iter().enumerate() {
            f.write_char(if i == 0 { ':' } else { '|' })?;
            name(f, t)?;
        }
        if let Some((lo, hi)) = self.hops {
            f.write_char('*')?;
            if let Some(lo) = lo {
                write!(f, "{lo}")?;
            }
            if lo != hi || lo.is_none() {
                f.write_str("..")?;
                if let Some(hi) = hi {
                    write!(f, "{hi}")?;
                }
            }
        }
        f.write_str(if self.dir == Dir::Out { "]->" } else { "]-" })
    }
}

impl Display for PathPattern {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.start)?;
        for (r, n) in &self.steps {
            write!(f, "{r}{n}")?;
        }
        Ok(())
    }
}

fn clauses(f: &mut Formatter<'_>, cs: &[Clause]) -> fmt::Result {
    for (i, c) in cs.iter().enumerate() {
        if i > 0 {
            f.write_char(' ')?;
        }
        write!(f, "{c}")?;
    }
    Ok(())
}

impl Display for Clause {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Clause::Match {
                optional,
                patterns,
                filter,
            } => {
                f.write_str(if *optional { "OPTIONAL MATCH " } else { "MATCH " })?;
                list(f, patterns, |f, p| write!(f, "{p}"))?;
                if let Some(w) = filter {
                    write!(f, " WHERE {w}")?;
                }
                Ok(())
            }
            Clause::Call {
                name: proc,
                args,
                yields,
                filter,
            } => {
                write!(f, "CALL {}(", proc.text)?;
                list(f, args, |f, e| write!(f, "{e}"))?;
                f.write_char(')')?;
                if !yields.is_empty() {
                    f.write_str(" YIELD ")?;
                    list(f, yields, |f, (y, alias)| {
                        name(f, y)?;
                        if let Some(a) = alias {
                            f.write_str(" AS ")?;
                            name(f, a)?;
                        }
                        Ok(())
                    })?;
                }
                if let Some(w) = filter {
                    write!(f, " WHERE {w}")?;
                }
                Ok(())
            }
            Clause::Create(ps) => {
                f.write_str("CREATE ")?;
                list(f, ps, |f, p| write!(f, "{p}"))
            }
            Clause::Delete { detach, targets } => {
                f.write_str(if *detach { "DETACH DELETE " } else { "DELETE " })?;
                list(f, targets, |f, e| write!(f, "{e}"))
            }
            Clause::Remove(items) => {
                f.write_str("REMOVE ")?;
                list(f, items, |f, (v, p)| {
                    name(f, v)?;
                    f.write_char('.')?;
                    name(f, p)
                })
            }
            Clause::Unwind { expr, alias } => {
                write!(f, "UNWIND {expr} AS ")?;
                name(f, alias)
            }
            Clause::Set(items) => {
                f.write_str("SET ")?;
                list(f, items, |f, i| write!(f, "{i}"))
            }
            Clause::Merge {
                pattern,
                on_create,
                on_match,
            } => {
                write!(f, "MERGE {pattern}")?;
                for (what, items) in [("CREATE", on_create), ("MATCH", on_match)] {
                    if !items.is_empty() {
                        write!(f, " ON {what} SET ")?;
                        list(f, items, |f, i| write!(f, "{i}"))?;
                    }
                }
                Ok(())
            }
            Clause::With { proj, filter } => {
                f.write_str("WITH ")?;
                write!(f, "{proj}")?;
                if let Some(w) = filter {
                    write!(f, " WHERE {w}")?;
                }
                Ok(())
            }
            Clause::Return(p) => write!(f, "RETURN {p}"),
            Clause::Union { all } => f.write_str(if *all { "UNION ALL" } else { "UNION" }),
        }
    }
}

impl Display for Projection {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.distinct {
            f.write_str("DISTINCT ")?;
        }
        if self.star {
            f.write_str(if self.items.is_empty() { "*" } else { "*, " })?;
        }
        list(f, &self.items, |f, (e, alias)| {
            write!(f, "{e}")?;
            if let Some(a) = alias {
                f.write_str(" AS ")?;
                name(f, a)?;
            }
            Ok(())
        })?;
        if !self.order.is_empty() {
            f.write_str(" ORDER BY ")?;
            list(f, &self.order, |f, (e, desc)| {
                write!(f, "{e}{}", if *desc { " DESC" } else { "" })
            })?;
        }
        if let Some(s) = &self.skip {
            write!(f, " SKIP {s}")?;
        }
        if let Some(l) = &self.limit {
            write!(f, " LIMIT {l}")?;
        }
        Ok(())
    }
}

impl Display for Statement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Statement::CreateNodeType(n) => {
                f.write_str("CREATE NODE TYPE ")?;
                name(f, n)
            }
            Statement::CreateRelationType { name: n, src, dst } => {
                f.write_str("CREATE RELATION TYPE ")?;
                name(f, n)?;
                f.write_str(" (")?;
                name(f, src)?;
                f.write_str(" -> ")?;
                name(f, dst)?;
                f.write_char(')')
            }
            Statement::ShowTypes => f.write_str("SHOW TYPES"),
            Statement::Explain(cs) => {
                f.write_str("EXPLAIN ")?;
                clauses(f, cs)
            }
            Statement::Query(cs) => clauses(f, cs),
        }
    }
}
