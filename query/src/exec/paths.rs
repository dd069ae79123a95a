//! Paths: variable-length expansions (trails, depth first), path values,
//! and shortest paths (breadth first).

use super::*;

impl Ctx<'_> {
    /// Trails (no edge twice) from the row's start node, depth first and
    /// lazily, so `LIMIT` stops the walk; the trails it yields, and the
    /// neighbour lists it holds, are each bounded by the row cap.
    pub(super) fn var_expand<'s>(
        &'s self,
        step: &'s Step,
        min: u32,
        max: Option<u32>,
        r: Result<Row>,
    ) -> RowIter<'s> {
        let row = match r {
            Ok(row) => row,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let start = row[step.from].clone();
        if !matches!(start, Value::Node { .. }) {
            return Box::new(std::iter::empty());
        }
        let mut single = step.clone();
        single.into = false;
        single.to_types = None;
        Box::new(Trails {
            ctx: self,
            single,
            step,
            min,
            max,
            row,
            reached: Some(start),
            frames: Vec::new(),
            path: Vec::new(),
            on_path: Default::default(),
            held: 0,
            emitted: 0,
            failed: false,
        })
    }

    /// The path through the row's node and edge slots (null when a part
    /// of it is, as after an OPTIONAL MATCH that found nothing).
    pub(super) fn path(&self, nodes: &[usize], edges: &[(usize, bool)], row: &Row) -> Result<Value> {
        let mut out = vec![row[nodes[0]].clone()];
        for (j, &(e, reversed)) in edges.iter().enumerate() {
            match &row[e] {
                Value::Edge { .. } => {
                    out.push(row[e].clone());
                    out.push(row[nodes[j + 1]].clone());
                }
                Value::List(l) => {
                    let mut at = row[nodes[j]].clone();
                    let list: Box<dyn Iterator<Item = &Value>> = match reversed {
                        true => Box::new(l.iter().rev()),
                        false => Box::new(l.iter()),
                    };
                    for edge in list {
                        at = self.other_end(edge, &at);
                        out.push(edge.clone());
                        out.push(at.clone());
                    }
                }
                _ => return Ok(Value::Null),
            }
        }
        match out.iter().any(|v| matches!(v, Value::Null)) {
            true => Ok(Value::Null),
            false => Ok(Value::Path(out.into())),
        }
    }

    /// The end of `edge` that is not `at` (`at` itself for a self-loop).
    fn other_end(&self, edge: &Value, at: &Value) -> Value {
        let Value::Edge { rel, src, dst } = *edge else {
            return Value::Null;
        };
        let r = &self.snap.catalog().relations[rel as usize];
        match *at == (Value::Node { ty: r.src, id: src }) {
            true => Value::Node { ty: r.dst, id: dst },
            false => Value::Node { ty: r.src, id: src },
        }
    }

    /// The shortest paths from `step.from` to `step.to` (one, or with
    /// `all` every one of the least length): a breadth-first search from
    /// both ends, a level at a time from the side with the smaller
    /// frontier, stopping at the level where the two meet; the nodes it
    /// visits are held to the row cap.
    pub(super) fn shortest(
        &self,
        step: &Step,
        (min, max): (u32, Option<u32>),
        all: bool,
        path: Option<usize>,
        row: Row,
    ) -> Result<Vec<Row>> {
        let (Value::Node { ty: sty, id: sid }, Value::Node { ty: tty, id: tid }) =
            (&row[step.from], &row[step.to])
        else {
            return Ok(Vec::new());
        };
        let (start, target) = ((*sty, *sid), (*tty, *tid));
        if start == target && min > 0 {
            // Neo4j refuses this search; the shortest cycle is not a shortest path.
            return Ok(Vec::new());
        }
        let mut back = step.clone();
        back.dir = crate::plan::flip(step.dir);
        // Per side: each node reached, its distance and the (node, edge)
        // pairs it was reached from at that distance.
        let mut sides = [Side::new(start), Side::new(target)];
        let mut meets: Vec<NodeId> = Vec::new();
        let mut len = 0;
        while start != target && meets.is_empty() {
            if max.is_some_and(|m| len >= m) {
                return Ok(Vec::new());
            }
            let s = usize::from(sides[1].frontier.len() < sides[0].frontier.len());
            if sides[s].frontier.is_empty() {
                return Ok(Vec::new());
            }
            let dir_step = if s == 0 { step } else { &back };
            let (this, other) = if s == 0 {
                let [a, b] = &mut sides;
                (a, &*b)
            } else {
                let [a, b] = &mut sides;
                (b, &*a)
            };
            this.level(self, dir_step, all, other, &mut meets)?;
            self.cap(sides[0].reached.len() + sides[1].reached.len())?;
            len += 1;
        }
        if start == target {
            meets.push(start);
        }
        // The meeting nodes on a shortest path, then every path through each.
        let total = |m: &NodeId| sides[0].reached[m].0 + sides[1].reached[m].0;
        let best = meets.iter().map(total).min().unwrap_or(0);
        meets.retain(|m| total(m) == best);
        meets.sort_unstable();
        meets.dedup();
        let mut out = Vec::new();
        for m in meets {
            for head in sides[0].chains(m, all, self)? {
                for tail in sides[1].chains(m, all, self)? {
                    let edges: Vec<Value> = head
                        .iter()
                        .rev()
                        .chain(tail.iter())
                        .map(|(e, _)| edge(*e))
                        .collect();
                    // Between the edges, each node the end its edge does not share with the one before.
                    let mut nodes_edges = vec![node(start)];
                    for e in &edges {
                        let next = self.other_end(e, nodes_edges.last().unwrap_or(&Value::Null));
                        nodes_edges.push(e.clone());
                        nodes_edges.push(next);
                    }
                    let mut r = self.copy(&row);
                    r[step.edge] = Value::List(edges.into());
                    if let Some(p) = path {
                        r[p] = Value::Path(nodes_edges.into());
                    }
                    out.push(r);
                    self.cap(out.len())?;
                    if !all {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A node: (type, id).
type NodeId = (u32, u32);
/// An edge: (relation, source id, destination id).
type EdgeId = (u32, u32, u32);

fn node((ty, id): NodeId) -> Value {
    Value::Node { ty, id }
}

fn edge((rel, src, dst): EdgeId) -> Value {
    Value::Edge { rel, src, dst }
}

/// One side of a bidirectional breadth-first search.
struct Side {
    /// Each node reached: its distance, and the (node, edge) pairs it was
    /// reached from at that distance (the first only, unless all are wanted).
    reached: FxHashMap<NodeId, (u32, Vec<(NodeId, EdgeId)>)>,
    frontier: Vec<NodeId>,
}

impl Side {
    fn new(from: NodeId) -> Self {
        Side {
            reached: FxHashMap::from_iter([(from, (0, Vec::new()))]),
            frontier: vec![from],
        }
    }

    /// Expands the frontier by one level along `step`, noting the nodes
    /// the other side has reached.
    fn level(
        &mut self,
        ctx: &Ctx<'_>,
        step: &Step,
        all: bool,
        other: &Side,
        meets: &mut Vec<NodeId>,
    ) -> Result<()> {
        let c = ctx.snap.catalog();
        let mut next = Vec::new();
        for &(ty, id) in &self.frontier {
            ctx.tick()?;
            let depth = self.reached[&(ty, id)].0 + 1;
            for (rel, d) in ctx.step_rels(step, ty, id) {
                let def = &c.relations[rel as usize];
                let to_ty = if d == Direction::Out { def.dst } else { def.src };
                for &n in ctx.snap.neighbors(rel, id, d).iter() {
                    let e = match d {
                        Direction::Out => (rel, id, n),
                        Direction::In => (rel, n, id),
                    };
                    let key = (to_ty, n);
                    match self.reached.get_mut(&key) {
                        Some((dist, from)) if *dist == depth && all => from.push(((ty, id), e)),
                        Some(_) => {}
                        None => {
                            self.reached.insert(key, (depth, vec![((ty, id), e)]));
                            next.push(key);
                            if other.reached.contains_key(&key) {
                                meets.push(key);
                            }
                        }
                    }
                }
            }
        }
        self.frontier = next;
        Ok(())
    }

    /// The edge chains from `m` back to this side's start, nearest first
    /// (one, unless `all`).
    fn chains(&self, m: NodeId, all: bool, ctx: &Ctx<'_>) -> Result<Vec<Vec<(EdgeId, NodeId)>>> {
        let mut done = Vec::new();
        let mut stack = vec![(m, Vec::new())];
        while let Some((at, chain)) = stack.pop() {
            ctx.tick()?;
            let from = &self.reached[&at].1;
            if from.is_empty() {
                done.push(chain);
                ctx.cap(done.len())?;
                continue;
            }
            for &(prev, e) in from.iter().take(if all { usize::MAX } else { 1 }) {
                let mut c = chain.clone();
                c.push((e, prev));
                stack.push((prev, c));
            }
        }
        Ok(done)
    }
}

/// The walk of a variable-length expansion: an explicit stack instead of
/// recursion, so no graph is deep enough to overflow the thread's stack.
pub(super) struct Trails<'s, 'a> {
    pub(super) ctx: &'s Ctx<'a>,
    /// One hop of the step (no target check, any type).
    pub(super) single: Step,
    pub(super) step: &'s Step,
    pub(super) min: u32,
    pub(super) max: Option<u32>,
    pub(super) row: Row,
    /// A node just reached by the trail in `path`, not yet emitted or expanded.
    pub(super) reached: Option<Value>,
    /// Per node on the trail, its (edge, neighbour) pairs and the next one to take.
    pub(super) frames: Vec<(Vec<(Value, Value)>, usize)>,
    pub(super) path: Vec<Value>,
    /// The edges of `path`, for the no-edge-twice test in constant time.
    pub(super) on_path: rustc_hash::FxHashSet<(u32, u32, u32)>,
    /// Pairs held in `frames`.
    pub(super) held: usize,
    /// Trails emitted: one start node's expansion yields at most the row cap.
    pub(super) emitted: usize,
    pub(super) failed: bool,
}

impl Trails<'_, '_> {
    /// Emits the trail to `at` if it qualifies, and pushes `at`'s neighbours.
    pub(super) fn visit(&mut self, at: Value) -> Result<Option<Row>> {
        self.ctx.tick()?;
        let len = self.path.len() as u32;
        let mut next = Vec::new();
        if self.max.is_none_or(|m| len < m) {
            let mut probe = self.row.clone();
            probe[self.single.from] = at.clone();
            self.ctx.expand(&self.single, &probe, &mut |e, n| {
                next.push((e, n));
                Ok(())
            })?;
        }
        self.held += next.len();
        self.ctx.cap(self.held + self.path.len())?;
        self.frames.push((next, 0));
        let ok_type = match (&at, &self.step.to_types) {
            (Value::Node { ty, .. }, Some(t)) => t.contains(ty),
            _ => true,
        };
        let ok_target = !self.step.into || self.row[self.step.to] == at;
        if len < self.min || !ok_type || !ok_target {
            return Ok(None);
        }
        self.emitted += 1;
        self.ctx.cap(self.emitted)?;
        let mut r = self.row.clone();
        r[self.step.edge] = Value::List(self.path.as_slice().into());
        r[self.step.to] = at;
        Ok(Some(r))
    }
}

impl Iterator for Trails<'_, '_> {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Result<Row>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(at) = self.reached.take() {
                match self.visit(at) {
                    Ok(Some(r)) => return Some(Ok(r)),
                    Ok(None) => continue,
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
            }
            let (pairs, i) = self.frames.last_mut()?;
            if let Some((e, n)) = pairs.get(*i).cloned() {
                *i += 1;
                if self.on_path.insert(edge_id(&e)) {
                    self.path.push(e);
                    self.reached = Some(n);
                }
            } else {
                self.held -= pairs.len();
                self.frames.pop();
                // Every frame but the start node's was reached by the trail's last edge.
                if !self.frames.is_empty() {
                    if let Some(e) = self.path.pop() {
                        self.on_path.remove(&edge_id(&e));
                    }
                }
            }
        }
    }
}

/// An edge value's identity (expansions yield only edges).
pub(super) fn edge_id(e: &Value) -> (u32, u32, u32) {
    match e {
        Value::Edge { rel, src, dst } => (*rel, *src, *dst),
        _ => (u32::MAX, u32::MAX, u32::MAX),
    }
}
