//! Expressions compiled against the statement's slots.

use super::*;

impl Planner<'_> {
    pub(super) fn expr(&mut self, e: &Expr) -> Result<CExpr> {
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
                        format!("`{0}` is created by this clause: read it in a later one (WITH {0} ... or RETURN)", n.text),
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
            Expr::Case {
                subject,
                whens,
                otherwise,
            } => CExpr::Case {
                subject: subject.as_ref().map(|s| self.expr(s).map(Box::new)).transpose()?,
                whens: whens
                    .iter()
                    .map(|(w, t)| Ok((self.expr(w)?, self.expr(t)?)))
                    .collect::<Result<_>>()?,
                otherwise: otherwise
                    .as_ref()
                    .map(|e| self.expr(e).map(Box::new))
                    .transpose()?,
            },
            Expr::Pattern(p) => {
                // Variables new in the pattern are local to it.
                let saved = self.vars.clone();
                self.outer = self.vars.keys().cloned().collect();
                let mut ops = Vec::new();
                let mut edges = Vec::new();
                let r = self.path(p, &HashMap::new(), &mut edges, &mut ops);
                self.vars = saved;
                r?;
                CExpr::Exists(ops)
            }
            Expr::Subquery {
                count,
                patterns,
                filter,
            } => {
                let saved = self.vars.clone();
                let mut ops = Vec::new();
                let r = self.matches(patterns, filter.as_deref(), &mut ops);
                self.vars = saved;
                r?;
                match count {
                    true => CExpr::Count(ops),
                    false => CExpr::Exists(ops),
                }
            }
            Expr::PatternComp { pattern, filter, map } => {
                let saved = self.vars.clone();
                let mut ops = Vec::new();
                let r = self
                    .matches(std::slice::from_ref(pattern), filter.as_deref(), &mut ops)
                    .and_then(|()| self.expr(map));
                self.vars = saved;
                CExpr::PatternList {
                    map: Box::new(r?),
                    ops,
                }
            }
            Expr::ListComp {
                var,
                list,
                filter,
                map,
            } => {
                let list = Box::new(self.expr(list)?);
                let slot = self.slot();
                let saved = self.vars.clone();
                self.bind(var.text.clone(), slot);
                let mut inner =
                    |e: &Option<Box<Expr>>| e.as_ref().map(|e| self.expr(e).map(Box::new)).transpose();
                let r = inner(filter).and_then(|f| Ok((f, inner(map)?)));
                self.vars = saved;
                let (filter, map) = r?;
                CExpr::ListComp {
                    list,
                    slot,
                    filter,
                    map,
                }
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
                    "tolower" => (Func::ToLower, 1, 1),
                    "toupper" => (Func::ToUpper, 1, 1),
                    "trim" => (Func::Trim, 1, 1),
                    "substring" => (Func::Substring, 2, 3),
                    "split" => (Func::Split, 2, 2),
                    "replace" => (Func::Replace, 3, 3),
                    "head" => (Func::Head, 1, 1),
                    "last" => (Func::Last, 1, 1),
                    "range" => (Func::Range, 2, 3),
                    "keys" => (Func::Keys, 1, 1),
                    "nodes" => (Func::Nodes, 1, 1),
                    "relationships" | "rels" => (Func::Relationships, 1, 1),
                    "properties" => (Func::Properties, 1, 1),
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
