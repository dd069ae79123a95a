//! The clauses of a query in order: reading clauses into operators, write
//! clauses into writes, a new part where a clause reads after writes,
//! FOREACH and `CALL { ... }` subqueries.

use super::*;

impl Planner<'_> {
    pub(super) fn clauses(&mut self, clauses: &[Clause], plan: &mut Plan) -> Result<()> {
        let writing = clauses.iter().any(Clause::writes);
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
            let only_merges = plan.writes.iter().all(|w| matches!(w, Write::Merge(_)));
            let merge_after = matches!(c, Clause::Merge { .. }) && !only_merges;
            if (!c.writes() || merge_after) && !plan.writes.is_empty() {
                self.end_part(plan);
            }
            match c {
                Clause::Match {
                    optional: false,
                    patterns,
                    filter,
                } => self.matches(patterns, filter.as_ref(), &mut plan.ops)?,
                Clause::Match {
                    optional: true,
                    patterns,
                    filter,
                } => {
                    let mut ops = Vec::new();
                    self.matches(patterns, filter.as_ref(), &mut ops)?;
                    plan.ops.push(Op::Optional(ops));
                }
                Clause::Call {
                    name,
                    args,
                    yields,
                    filter,
                } => {
                    let (op, cols) = self.call(name, args, yields, filter.as_ref())?;
                    plan.ops.extend(op);
                    plan.call_columns = cols;
                }
                Clause::Subquery(body) => plan.ops.push(self.subquery(body)?),
                Clause::Unwind { expr, alias } => {
                    let expr = self.expr(expr)?;
                    let slot = self.slot();
                    self.bind(alias.text.clone(), slot);
                    plan.ops.push(Op::Unwind { expr, slot });
                }
                Clause::With { proj, filter } => {
                    plan.ops.push(self.with(proj)?);
                    if let Some(f) = filter {
                        plan.ops.push(Op::Filter(self.expr(f)?));
                    }
                }
                Clause::Return(proj) => plan.ret = Some(self.ret(proj)?),
                Clause::Union { .. } => {
                    return Err(sem(Pos::default(), "UNION joins whole queries, not subqueries"))
                }
                write => self.write_clause(write, &mut plan.ops, &mut plan.writes)?,
            }
            let last = i + 1 == clauses.len();
            if last && plan.ret.is_none() && plan.writes.is_empty() && !matches!(c, Clause::Call { .. }) {
                return Err(sem(
                    Pos::default(),
                    "a query ends with RETURN, CALL or a write clause (CREATE, MERGE, DELETE, SET, REMOVE, FOREACH)",
                ));
            }
        }
        Ok(())
    }

    /// A write clause: its writes, and the look-ups a MERGE makes first.
    fn write_clause(&mut self, c: &Clause, ops: &mut Vec<Op>, writes: &mut Vec<Write>) -> Result<()> {
        match c {
            Clause::Create(patterns) => self.create(patterns, writes)?,
            Clause::Merge {
                pattern,
                on_create,
                on_match,
            } => {
                let mut w = self.merge(pattern, on_create, on_match, ops)?;
                // Nodes merged bare in this MERGE or earlier in this part, at
                // an end of this edge: when new, the edge's write creates them.
                if let Write::Merge(m) = &mut w {
                    if m.edge.is_some() {
                        for n in m.nodes.iter_mut().filter(|n| n.props.is_empty()) {
                            n.implied = true;
                        }
                    }
                    for end in m.edge.iter().flat_map(|e| e.ends) {
                        for earlier in writes.iter_mut() {
                            if let Write::Merge(e) = earlier {
                                if e.on_create.is_empty() {
                                    for n in
                                        e.nodes.iter_mut().filter(|n| n.slot == end && n.props.is_empty())
                                    {
                                        n.implied = true;
                                    }
                                }
                            }
                        }
                    }
                }
                writes.push(w);
            }
            Clause::Delete { detach, targets } => {
                for t in targets {
                    writes.push(Write::Delete {
                        target: self.expr(t)?,
                        detach: *detach,
                    });
                }
            }
            Clause::Set(items) => self.set_items(items, writes)?,
            Clause::Remove(items) => {
                for (var, prop) in items {
                    if prop.text == "key" {
                        return Err(sem(prop.pos, "a node's key cannot be removed"));
                    }
                    writes.push(Write::Remove {
                        target: self.target(var)?,
                        prop: prop.text.clone(),
                    });
                }
            }
            Clause::Foreach { var, list, body } => {
                let list = self.expr(list)?;
                let slot = self.slot();
                let saved = (self.vars.clone(), self.created.clone(), self.merged.clone());
                self.bind(var.text.clone(), slot);
                let (mut inner_ops, mut inner) = (Vec::new(), Vec::new());
                let r = body.iter().try_for_each(|c| match c.writes() {
                    true => self.write_clause(c, &mut inner_ops, &mut inner),
                    false => Err(sem(
                        Pos::default(),
                        "FOREACH runs write clauses only (CREATE, MERGE, SET, REMOVE, DELETE, FOREACH)",
                    )),
                });
                (self.vars, self.created, self.merged) = saved;
                r?;
                writes.push(Write::Foreach {
                    list,
                    slot,
                    ops: inner_ops,
                    writes: inner,
                });
            }
            _ => return Err(sem(Pos::default(), "not a write clause")),
        }
        Ok(())
    }

    /// `CALL { ... }`: planned with only the variables its importing `WITH`
    /// names in scope (none without one); its RETURN's columns become
    /// variables of the query.
    fn subquery(&mut self, body: &[Clause]) -> Result<Op> {
        if body.iter().any(Clause::writes) {
            return Err(sem(
                Pos::default(),
                "CALL { ... } subqueries only read here: write in the enclosing query",
            ));
        }
        let importing = match body.first() {
            Some(Clause::With { proj, filter: None }) => {
                !proj.star
                    && proj.order.is_empty()
                    && proj.skip.is_none()
                    && proj.limit.is_none()
                    && proj
                        .items
                        .iter()
                        .all(|(e, a)| matches!(e, Expr::Var(_)) && a.is_none())
            }
            _ => false,
        };
        let saved = std::mem::take(&mut self.vars);
        if importing {
            self.vars = saved.clone();
        }
        let mut sub = Plan::default();
        let r = self.clauses(body, &mut sub);
        self.vars = saved;
        r?;
        let Some(ret) = sub.ret else {
            return Err(sem(Pos::default(), "a CALL { ... } subquery ends with RETURN"));
        };
        let mut slots = Vec::new();
        for c in &ret.columns {
            if self.vars.contains_key(c) {
                return Err(sem(
                    Pos::default(),
                    format!(
                        "CALL {{ ... }} returns `{c}`, which is already bound: RETURN it AS another name"
                    ),
                ));
            }
            let s = self.slot();
            self.bind(c.clone(), s);
            slots.push(s);
        }
        Ok(Op::Subquery {
            ops: sub.ops,
            ret,
            slots,
        })
    }
}
