//! MATCH patterns: nodes by key, then a start node, then expansions
//! outwards, intersections between bound nodes, and their filters.

use super::*;

impl Planner<'_> {
    pub(super) fn matches(
        &mut self,
        patterns: &[PathPattern],
        filter: Option<&Expr>,
        ops: &mut Vec<Op>,
    ) -> Result<()> {
        self.outer = self.vars.keys().cloned().collect();
        // `v.key = constant` in WHERE works like `{key: constant}` in the pattern.
        let mut where_keys: HashMap<String, &Expr> = HashMap::new();
        if let Some(f) = filter {
            for c in conjuncts(f) {
                if let Expr::Bin(BinOp::Eq, a, b) = c {
                    for (x, y) in [(a, b), (b, a)] {
                        if let Expr::Prop(v, k) = &**x {
                            if let Expr::Var(v) = &**v {
                                if k.text == "key" && self.outer_only(y) {
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
            if p.shortest.is_some() {
                self.shortest(p, &where_keys, ops)?;
                continue;
            }
            let at = self.path(p, &where_keys, &mut edges, ops)?;
            if let Some(v) = &p.var {
                let nodes = at
                    .nodes
                    .into_iter()
                    .collect::<Option<Vec<usize>>>()
                    .ok_or_else(|| {
                        sem(
                            v.pos,
                            format!("`{}` names a path whose parts are not connected", v.text),
                        )
                    })?;
                let slot = self.slot();
                self.bind(v.text.clone(), slot);
                ops.push(Op::Path {
                    slot,
                    nodes,
                    edges: at.edges,
                });
            }
        }
        if let Some(f) = filter {
            ops.push(Op::Filter(self.expr(f)?));
        }
        Ok(())
    }

    pub(super) fn key_of<'e>(
        &self,
        n: &'e NodePattern,
        where_keys: &HashMap<String, &'e Expr>,
    ) -> Option<&'e Expr> {
        n.props
            .iter()
            .find(|(k, _)| k.text == "key")
            .map(|(_, v)| v)
            .filter(|v| self.outer_only(v))
            .or_else(|| where_keys.get(&n.var.as_ref()?.text).copied())
    }

    pub(super) fn types_of(&self, n: &NodePattern) -> Result<Option<Vec<u32>>> {
        n.label
            .as_ref()
            .map(|l| self.node_type(l).map(|t| vec![t]))
            .transpose()
    }

    /// Binds node pattern `n` (not yet bound) by key or scan.
    pub(super) fn bind_node(
        &mut self,
        n: &NodePattern,
        key: Option<&Expr>,
        ops: &mut Vec<Op>,
    ) -> Result<usize> {
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
    pub(super) fn node_filters(&mut self, n: &NodePattern, slot: usize, ops: &mut Vec<Op>) -> Result<()> {
        for (k, v) in &n.props {
            if k.text == "key"
                && self.outer_only(v)
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

    pub(super) fn rels_of(&self, r: &RelPattern) -> Result<Option<Vec<u32>>> {
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

    /// Plans a path pattern; where each of its nodes and edges went.
    pub(super) fn path(
        &mut self,
        p: &PathPattern,
        where_keys: &HashMap<String, &Expr>,
        edges: &mut Vec<usize>,
        ops: &mut Vec<Op>,
    ) -> Result<PathSlots> {
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
        let mut reversed = vec![false; n - 1];
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
                reversed[j] = from > to;
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
                        reversed[k] = to < from;
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
        Ok(PathSlots {
            nodes: slot,
            edges: rel_slots.into_iter().zip(reversed).collect(),
        })
    }

    /// `shortestPath((a)-[:R*..k]-(b))`: both ends bound (earlier, by key, or
    /// by a scan), then a breadth-first search between them per row.
    fn shortest(
        &mut self,
        p: &PathPattern,
        where_keys: &HashMap<String, &Expr>,
        ops: &mut Vec<Op>,
    ) -> Result<()> {
        let [(r, end)] = p.steps.as_slice() else {
            return Err(sem(
                p.start.pos.pos,
                "shortestPath takes one relationship between two nodes: shortestPath((a)-[:R*..10]-(b))",
            ));
        };
        let (min, max) = match r.hops {
            None => (1, Some(1)),
            Some((lo, hi)) => (lo.unwrap_or(1), hi),
        };
        if min > 1 {
            return Err(sem(
                r.pos.pos,
                "shortestPath starts at 0 or 1 hop: -[*..10]- or -[*0..10]-",
            ));
        }
        let mut ends = Vec::new();
        for np in [&p.start, end] {
            let bound = np.var.as_ref().and_then(|v| self.vars.get(&v.text).copied());
            ends.push(match bound {
                Some(s) => {
                    if let Some(types) = self.types_of(np)? {
                        ops.push(Op::CheckType { slot: s, types });
                    }
                    self.node_filters(np, s, ops)?;
                    s
                }
                None => {
                    let key = self.key_of(np, where_keys);
                    self.bind_node(np, key, ops)?
                }
            });
        }
        let edge = self.slot();
        if let Some(v) = &r.var {
            self.bind(v.text.clone(), edge);
        }
        let path = p.var.as_ref().map(|v| {
            let s = self.slot();
            self.bind(v.text.clone(), s);
            s
        });
        let step = Step {
            from: ends[0],
            to: ends[1],
            edge,
            rels: self.rels_of(r)?,
            dir: r.dir,
            to_types: self.types_of(end)?,
            into: true,
            uniq: Vec::new(),
        };
        ops.push(Op::Shortest {
            step,
            min,
            max,
            all: p.shortest == Some(true),
            path,
        });
        Ok(())
    }
}

/// Where a planned path's nodes (`None`: not reached) and edges are, for
/// its path variable.
pub(super) struct PathSlots {
    pub nodes: Vec<Option<usize>>,
    pub edges: Vec<(usize, bool)>,
}

pub(crate) fn flip(d: Dir) -> Dir {
    match d {
        Dir::Out => Dir::In,
        Dir::In => Dir::Out,
        Dir::Both => Dir::Both,
    }
}
