//! Printing the syntax tree back to query text, with the fewest
//! parentheses and back quotes that parse back to the same tree.

use std::fmt::{self, Display, Formatter, Write};

use super::*;

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
            Expr::ListComp {
                var,
                list,
                filter,
                map,
            } => {
                f.write_char('[')?;
                name(f, var)?;
                write!(f, " IN {list}")?;
                if let Some(w) = filter {
                    write!(f, " WHERE {w}")?;
                }
                if let Some(m) = map {
                    write!(f, " | {m}")?;
                }
                f.write_char(']')?;
            }
            Expr::PatternComp { pattern, filter, map } => {
                write!(f, "[{pattern}")?;
                if let Some(w) = filter {
                    write!(f, " WHERE {w}")?;
                }
                write!(f, " | {map}]")?;
            }
            Expr::Subquery {
                count,
                patterns,
                filter,
            } => {
                f.write_str(if *count { "COUNT { " } else { "EXISTS { " })?;
                list(f, patterns, |f, p| write!(f, "{p}"))?;
                if let Some(w) = filter {
                    write!(f, " WHERE {w}")?;
                }
                f.write_str(" }")?;
            }
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
        if let Some(v) = &self.var {
            name(f, v)?;
            f.write_str(" = ")?;
        }
        match self.shortest {
            Some(false) => f.write_str("shortestPath(")?,
            Some(true) => f.write_str("allShortestPaths(")?,
            None => {}
        }
        write!(f, "{}", self.start)?;
        for (r, n) in &self.steps {
            write!(f, "{r}{n}")?;
        }
        if self.shortest.is_some() {
            f.write_char(')')?;
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
            Clause::Foreach { var, list, body } => {
                f.write_str("FOREACH (")?;
                name(f, var)?;
                write!(f, " IN {list} | ")?;
                clauses(f, body)?;
                f.write_char(')')
            }
            Clause::Subquery(body) => {
                f.write_str("CALL { ")?;
                clauses(f, body)?;
                f.write_str(" }")
            }
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
