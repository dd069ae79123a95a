//! The operators: scans, expansions (one hop, variable length, between two
//! bound nodes) and the per-row operators, pulled lazily by the pipeline.

use super::*;

impl Ctx<'_> {
    /// The rows the operators produce from one input row.
    pub(crate) fn pipeline<'s>(&'s self, ops: &'s [Op], input: Row) -> RowIter<'s> {
        self.pipeline_from(ops, Box::new(std::iter::once(Ok(input))))
    }

    /// The rows the operators produce from the input rows (taken together:
    /// an aggregate in a `WITH` sees them all).
    pub(crate) fn pipeline_from<'s>(&'s self, ops: &'s [Op], mut it: RowIter<'s>) -> RowIter<'s> {
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
                Op::With { ret, slots } => {
                    it = self.with(ret, slots, it);
                    continue;
                }
                Op::Unwind { expr, slot } => {
                    it = Box::new(it.flat_map(move |r| self.unwind(expr, *slot, r)));
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

    /// `WITH`: each projected row in fresh slots. Plain projections stream;
    /// aggregates, sorting, DISTINCT and paging take every row first.
    fn with<'s>(&'s self, ret: &'s Ret, slots: &'s [usize], rows: RowIter<'s>) -> RowIter<'s> {
        let place = move |vals: Vec<Value>| {
            let mut r = vec![Value::Null; self.width];
            for (s, v) in slots.iter().zip(vals) {
                r[*s] = v;
            }
            r
        };
        let plain = !ret.distinct
            && ret.order.is_empty()
            && ret.skip.is_none()
            && ret.limit.is_none()
            && ret.items.iter().all(|i| i.is_ok());
        if plain {
            return Box::new(rows.map(move |r| Ok(place(self.items(ret, &r?)?))));
        }
        let mut rows = Some(rows);
        Box::new(std::iter::once(()).flat_map(move |()| -> RowIter<'s> {
            let Some(rows) = rows.take() else {
                return Box::new(std::iter::empty());
            };
            match self.project(ret, rows) {
                Ok(out) => Box::new(out.into_iter().map(move |vals| Ok(place(vals)))),
                Err(e) => Box::new(std::iter::once(Err(e))),
            }
        }))
    }

    /// Every live node of the types, one row each, produced lazily.
    pub(super) fn scan<'s>(&'s self, r: Result<Row>, slot: usize, types: Option<&'s [u32]>) -> RowIter<'s> {
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

    pub(super) fn apply(&self, op: &Op, row: Row) -> Result<Vec<Row>> {
        self.tick()?;
        let with = |row: &Row, slot: usize, v: Value| {
            let mut r = row.clone();
            r[slot] = v;
            r
        };
        let all_types = || 0..self.snap.catalog().node_types.len() as u32;
        Ok(match op {
            Op::Scan { .. } => unreachable!("scans run lazily in the pipeline"),
            Op::Path { slot, nodes, edges } => {
                let p = self.path(nodes, edges, &row)?;
                vec![with(&row, *slot, p)]
            }
            Op::Shortest {
                step,
                min,
                max,
                all,
                path,
            } => self.shortest(step, (*min, *max), *all, *path, row)?,
            Op::Subquery { ops, ret, slots } => {
                let found = self.project(ret, self.pipeline(ops, row.clone()))?;
                self.cap(found.len())?;
                found
                    .into_iter()
                    .map(|vals| {
                        let mut r = self.copy(&row);
                        for (s, v) in slots.iter().zip(vals) {
                            r[*s] = v;
                        }
                        r
                    })
                    .collect()
            }
            Op::ByKey { slot, types, key } => {
                // The key read in place (`row.key` of `UNWIND $rows AS row`), not copied.
                let found: Vec<Value> = {
                    let v = self.eval_ref(key, &row)?;
                    let k = match &*v {
                        Value::Str(s) => s.as_str(),
                        Value::Null => return Ok(Vec::new()),
                        other => return Err(runtime(format!("a node key is a string, not {}", kind(other)))),
                    };
                    let node = |ty: u32| {
                        Some(Value::Node {
                            ty,
                            id: self.snap.node_id(ty, k)?,
                        })
                    };
                    match types.as_deref() {
                        Some(types) => types.iter().filter_map(|&ty| node(ty)).collect(),
                        None => all_types().filter_map(node).collect(),
                    }
                };
                match found.len() {
                    0 => {
                        self.recycle(row);
                        Vec::new()
                    }
                    // One node (a MERGE's look-up, a pattern's `(a:User {key: ..})`): the row itself.
                    1 => {
                        let mut row = row;
                        row[*slot] = found.into_iter().next().unwrap_or(Value::Null);
                        vec![row]
                    }
                    _ => found.into_iter().map(|n| with(&row, *slot, n)).collect(),
                }
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
            Op::With { .. } => unreachable!("WITH runs in the pipeline"),
            Op::Intersect { a, b } => self.intersect(a, b, row)?,
            Op::TwoHop {
                a,
                b,
                count: Some(slot),
                paths: true,
            } => {
                let n = self.two_hop_paths(a, b, &row)?;
                vec![with(&row, *slot, Value::Int(n as i64))]
            }
            Op::TwoHop { a, b, count, .. } => {
                let ends = self.two_hop(a, b, &row)?;
                let n: u64 = ends.iter().map(|e| e.count).sum();
                match count {
                    Some(slot) => vec![with(&row, *slot, Value::Int(n as i64))],
                    None => {
                        self.cap(n as usize)?;
                        ends.iter()
                            .flat_map(|e| e.ids().map(move |id| Value::Node { ty: e.ty, id }))
                            .map(|v| with(&row, b.to, v))
                            .collect()
                    }
                }
            }
            // One look-up (a MERGE's): no pipeline to build.
            Op::Optional(ops)
                if matches!(
                    ops.as_slice(),
                    [Op::ByKey { .. }] | [Op::Expand(Step { into: true, .. })]
                ) =>
            {
                let out = self.apply(&ops[0], self.copy(&row))?;
                match out.is_empty() {
                    true => vec![row],
                    false => {
                        self.recycle(row);
                        out
                    }
                }
            }
            Op::Optional(ops) => {
                let mut out = Vec::new();
                for r in self.pipeline(ops, row.clone()) {
                    out.push(r?);
                    self.cap(out.len())?;
                }
                if out.is_empty() {
                    out.push(row);
                }
                out
            }
            Op::Unwind { .. } => unreachable!("UNWIND runs lazily in the pipeline"),
            Op::Filter(e) => match self.eval(e, &row)? {
                Value::Bool(true) => vec![row],
                _ => {
                    self.recycle(row);
                    Vec::new()
                }
            },
            Op::Call {
                proc,
                args,
                out,
                exclude,
            } => {
                let args = args
                    .iter()
                    .map(|a| self.eval(a, &row))
                    .collect::<Result<Vec<_>>>()?;
                self.call(*proc, &args, *exclude)?
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
    pub(super) fn step_rels(&self, step: &Step, ty: u32, id: u32) -> Vec<(u32, Direction)> {
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

    /// `UNWIND`: a row per element, made lazily from the row pool (a
    /// batch of 100,000 parameter rows holds one row at a time).
    fn unwind<'s>(&'s self, expr: &'s CExpr, slot: usize, r: Result<Row>) -> RowIter<'s> {
        let row = match r {
            Ok(row) => row,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let items = match self.eval(expr, &row) {
            Ok(Value::List(items)) => items,
            Ok(Value::Null) => return Box::new(std::iter::empty()),
            Ok(one) => Arc::from([one]),
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        if let Err(e) = self.cap(items.len()) {
            return Box::new(std::iter::once(Err(e)));
        }
        Box::new((0..items.len()).map(move |i| {
            let mut r = self.copy(&row);
            r[slot] = items[i].clone();
            Ok(r)
        }))
    }

    /// Calls `f(edge, node)` for each edge of `step` from the row's `from` node.
    pub(super) fn expand(
        &self,
        step: &Step,
        row: &Row,
        f: &mut dyn FnMut(Value, Value) -> Result<()>,
    ) -> Result<()> {
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
    pub(super) fn expand_lazy<'s>(&'s self, step: &'s Step, r: Result<Row>) -> RowIter<'s> {
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
    pub(super) fn unique(&self, step: &Step, row: &Row, e: &Value) -> bool {
        step.uniq.iter().all(|&s| match &row[s] {
            Value::List(l) => !l.contains(e),
            other => other != e,
        })
    }

    pub(super) fn intersect(&self, a: &Step, b: &Step, row: Row) -> Result<Vec<Row>> {
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
}

/// The rows of one expansion, one neighbour at a time (see `expand_lazy`).
pub(super) struct Expansion<'s, 'a> {
    pub(super) ctx: &'s Ctx<'a>,
    pub(super) step: &'s Step,
    pub(super) row: Row,
    pub(super) id: u32,
    /// Per relation and direction: (relation, direction, type reached, skip self-loops, neighbours).
    pub(super) lists: Vec<(u32, Direction, u32, bool, Neighbors<'s>)>,
    pub(super) list: usize,
    pub(super) at: usize,
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
