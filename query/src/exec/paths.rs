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
    /// `all` every one of the least length), by a breadth-first search
    /// that stops at the level reaching the target; the nodes it visits
    /// are held to the row cap.
    pub(super) fn shortest(
        &self,
        step: &Step,
        (min, max): (u32, Option<u32>),
        all: bool,
        path: Option<usize>,
        row: Row,
    ) -> Result<Vec<Row>> {
        let (start, target) = (row[step.from].clone(), row[step.to].clone());
        if !matches!(start, Value::Node { .. }) || !matches!(target, Value::Node { .. }) {
            return Ok(Vec::new());
        }
        let mut single = step.clone();
        (single.into, single.to_types) = (false, None);
        // Per node reached: the (node, edge) pairs it was first reached from.
        let mut parents: FxHashMap<Value, Vec<(Value, Value)>> = FxHashMap::default();
        parents.insert(start.clone(), Vec::new());
        let mut frontier = vec![start.clone()];
        let mut depth = 0;
        // From a node to itself: the empty path, or none (Neo4j refuses such
        // a search; the shortest cycle is not a shortest path).
        if start == target && min > 0 {
            return Ok(Vec::new());
        }
        let mut found = start == target;
        while !found {
            if frontier.is_empty() || max.is_some_and(|m| depth >= m) {
                return Ok(Vec::new());
            }
            depth += 1;
            let mut level: FxHashMap<Value, Vec<(Value, Value)>> = FxHashMap::default();
            let mut next = Vec::new();
            let mut probe = row.clone();
            for at in &frontier {
                self.tick()?;
                probe[single.from] = at.clone();
                self.expand(&single, &probe, &mut |e, n| {
                    if parents.contains_key(&n) {
                        return Ok(());
                    }
                    let from = level.entry(n.clone()).or_insert_with(|| {
                        next.push(n.clone());
                        Vec::new()
                    });
                    if from.is_empty() || all {
                        from.push((at.clone(), e));
                    }
                    Ok(())
                })?;
            }
            self.cap(parents.len() + level.len())?;
            found = level.contains_key(&target);
            parents.extend(level);
            frontier = next;
        }
        // Every path back from the target, each reversed into a row.
        let mut out = Vec::new();
        let mut stack = vec![(target.clone(), Vec::new())];
        while let Some((at, tail)) = stack.pop() {
            self.tick()?;
            if at == start {
                let mut nodes_edges = vec![start.clone()];
                let mut edges = Vec::new();
                for (e, n) in tail.iter().rev() {
                    edges.push(Value::clone(e));
                    nodes_edges.push(Value::clone(e));
                    nodes_edges.push(Value::clone(n));
                }
                let mut r = self.copy(&row);
                r[step.edge] = Value::List(edges.into());
                if let Some(p) = path {
                    r[p] = Value::Path(nodes_edges.into());
                }
                out.push(r);
                self.cap(out.len())?;
                continue;
            }
            for (prev, e) in parents[&at].iter().rev() {
                let mut t = tail.clone();
                t.push((e.clone(), at.clone()));
                stack.push((prev.clone(), t));
            }
        }
        Ok(out)
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
