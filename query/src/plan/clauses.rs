//! CALL, WITH and RETURN: procedure calls and their columns, and
//! projections with aggregates and sort keys.

use super::*;

/// A clause's output columns: names and slots.
type Columns = Vec<(String, usize)>;

impl Planner<'_> {
    pub(super) fn call(
        &mut self,
        name: &Name,
        args: &[Expr],
        yields: &[(Name, Option<Name>)],
        filter: Option<&Expr>,
    ) -> Result<(Vec<Op>, Columns)> {
        let proc = match Proc::named(&name.text) {
            Some(p) => p,
            None => {
                return Err(sem(
                    name.pos,
                    format!(
                        "unknown procedure `{}` (known: quiver.train, quiver.refresh, quiver.index, quiver.nearest, quiver.predict, quiver.predict_head)",
                        name.text
                    ),
                ))
            }
        };
        let (lo, hi) = match proc {
            Proc::Train | Proc::Refresh | Proc::Index => (0, 1),
            Proc::Nearest => (2, 3),
            Proc::Predict | Proc::PredictHead => (3, 4),
        };
        if args.len() < lo || args.len() > hi {
            return Err(sem(
                name.pos,
                format!("{} takes {lo} to {hi} arguments, found {}", name.text, args.len()),
            ));
        }
        // Settings are a map: a list or a number would read as nothing.
        if let (Proc::Train | Proc::Refresh | Proc::Index, Some(a)) = (proc, args.first()) {
            if !matches!(a, Expr::Map(_) | Expr::Param(_)) {
                return Err(sem(
                    name.pos,
                    format!(
                        "{} takes a map of settings, e.g. {{dim: 200, epochs: 10}}",
                        name.text
                    ),
                ));
            }
        }
        let arg_exprs = args;
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
        let node_var = picked
            .iter()
            .find(|(i, _)| cols[*i] == "node")
            .map(|(_, v)| v.clone());
        let mut out = Vec::new();
        let mut columns = Vec::new();
        for (i, var) in picked {
            let s = self.slot();
            self.bind(var.clone(), s);
            out.push((i, s));
            columns.push((var, s));
        }
        let searches = matches!(proc, Proc::Nearest | Proc::Predict | Proc::PredictHead);
        let exclude = match (searches, filter, arg_exprs.first(), node_var) {
            (true, Some(f), Some(Expr::Var(from)), Some(node)) => self.not_joined(f, &from.text, &node),
            _ => None,
        };
        let mut ops = vec![Op::Call {
            proc,
            args,
            out,
            exclude,
        }];
        if let (None, Some(f)) = (exclude, filter) {
            ops.push(Op::Filter(self.expr(f)?));
        }
        Ok((ops, columns))
    }

    /// `(relation, direction)` when `filter` is `NOT (from)-[:R]->(node)`
    /// (or `<-`, or written from `node`'s end): a neighbour search can
    /// leave those nodes out as it searches.
    fn not_joined(&self, filter: &Expr, from: &str, node: &str) -> Option<(u32, Direction)> {
        let Expr::Not(inner) = filter else { return None };
        let Expr::Pattern(p) = inner.as_ref() else {
            return None;
        };
        let [(rel, end)] = &p.steps[..] else { return None };
        let plain = |n: &NodePattern| n.label.is_none() && n.props.is_empty();
        let ([r], None, None) = (&rel.types[..], &rel.var, rel.hops) else {
            return None;
        };
        if !plain(&p.start) || !plain(end) {
            return None;
        }
        let (a, b) = (
            p.start.var.as_ref()?.text.as_str(),
            end.var.as_ref()?.text.as_str(),
        );
        let rel_id = self.catalog.relations.iter().position(|d| d.name == r.text)? as u32;
        let dir = match (rel.dir, (a, b) == (from, node), (a, b) == (node, from)) {
            (Dir::Out, true, _) | (Dir::In, _, true) => Direction::Out,
            (Dir::In, true, _) | (Dir::Out, _, true) => Direction::In,
            _ => return None,
        };
        Some((rel_id, dir))
    }

    /// `WITH`: a projection like RETURN's whose columns become the only
    /// variables in scope.
    pub(super) fn with(&mut self, p: &Projection) -> Result<Op> {
        let p = &self.star(p)?;
        for (e, alias) in &p.items {
            if alias.is_none() && !matches!(e, Expr::Var(_)) {
                return Err(sem(
                    Pos::default(),
                    format!(
                        "WITH {0}: an expression carried on needs a name: WITH {0} AS name",
                        column_name(e)
                    ),
                ));
            }
        }
        let ret = self.ret(p)?;
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = ret.columns.iter().find(|c| !seen.insert(*c)) {
            return Err(sem(Pos::default(), format!("WITH names `{dup}` twice")));
        }
        self.vars.clear();
        self.merged.clear();
        let slots = ret
            .columns
            .iter()
            .map(|c| {
                let s = self.slot();
                self.bind(c.clone(), s);
                s
            })
            .collect();
        Ok(Op::With { ret, slots })
    }

    /// `*` in a projection: every variable in scope, by name, before the
    /// items (the projection itself, borrowed, without one).
    fn star<'p>(&self, p: &'p Projection) -> Result<std::borrow::Cow<'p, Projection>> {
        if !p.star {
            return Ok(std::borrow::Cow::Borrowed(p));
        }
        let mut p = p.clone();
        p.star = false;
        let mut names: Vec<&String> = self.vars.keys().collect();
        if names.is_empty() {
            return Err(sem(
                Pos::default(),
                "`*` needs variables in scope: there are none",
            ));
        }
        names.sort();
        let all = names.into_iter().map(|n| {
            let var = Name {
                text: n.clone(),
                pos: Pos::default(),
            };
            (Expr::Var(var), None)
        });
        p.items = all.chain(p.items).collect();
        Ok(std::borrow::Cow::Owned(p))
    }

    pub(super) fn ret(&mut self, p: &Projection) -> Result<Ret> {
        let p = &self.star(p)?;
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
}

pub(super) fn agg_of(e: &Expr) -> Option<(AggKind, bool, bool, &[Expr])> {
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
pub(super) fn column_name(e: &Expr) -> String {
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
