//! Writes: a part's creates, sets and deletes gathered into one batch.

use super::*;

/// A part's writes as one batch, with the rows they were applied for.
pub(crate) struct Written {
    pub batch: quiver_storage::WriteBatch,
    /// Properties set or removed.
    pub props: i64,
    /// The rows, when asked to keep them (clauses after the writes read them).
    pub rows: Vec<Row>,
}

impl Ctx<'_> {
    /// Applies `writes` for every row into one batch (nothing is committed).
    pub(crate) fn write(&self, writes: &[Write], rows: RowIter<'_>, keep: bool) -> Result<Written> {
        let mut kept = Vec::new();
        let mut w = Writer {
            ctx: self,
            batch: self.db.batch(),
            props: 0,
            deleted: FxHashSet::default(),
            bare: Vec::new(),
            new_nodes: Vec::new(),
            new_edges: Vec::new(),
        };
        for row in rows {
            let row = row?;
            for op in writes {
                w.apply(op, &row)?;
            }
            if keep {
                self.cap(kept.len() + 1)?;
                kept.push(row);
            } else {
                self.recycle(row);
            }
        }
        let Writer {
            mut batch,
            props,
            deleted,
            mut bare,
            ..
        } = w;
        bare.sort_unstable();
        bare.dedup();
        for (ty, id) in bare {
            let left = [Direction::Out, Direction::In]
                .into_iter()
                .flat_map(|d| {
                    self.snap
                        .all_neighbors(ty, id, d)
                        .into_iter()
                        .map(move |(rel, n)| match d {
                            Direction::Out => (rel, id, n),
                            Direction::In => (rel, n, id),
                        })
                })
                .filter(|e| !deleted.contains(e))
                .count();
            if left > 0 {
                return Err(runtime(format!(
                    "cannot delete node '{}': it still has {left} edges (use DETACH DELETE)",
                    self.snap.node_key(ty, id).unwrap_or("?")
                )));
            }
            batch.delete_node(ty, id);
        }
        Ok(Written {
            batch,
            props,
            rows: kept,
        })
    }

    /// Fills each slot of `fills` that is null in a row with the node or
    /// edge its target names in the snapshot (the part's writes applied).
    pub(crate) fn fill(&self, fills: &[(usize, Target)], rows: &mut [Row]) -> Result<()> {
        let key = |e: &CExpr, row: &Row| -> Result<Option<String>> {
            Ok(match self.eval(e, row)? {
                Value::Str(s) => Some(s),
                _ => None,
            })
        };
        let id = |src: &NodeSrc, row: &Row| -> Result<Option<u32>> {
            Ok(match src {
                NodeSrc::Bound(s) => match row[*s] {
                    Value::Node { id, .. } => Some(id),
                    _ => None,
                },
                NodeSrc::New { ty, key: k } => key(k, row)?.and_then(|k| self.snap.node_id(*ty, &k)),
            })
        };
        for row in rows {
            for (slot, target) in fills {
                if !matches!(row[*slot], Value::Null) {
                    continue;
                }
                row[*slot] = match target {
                    Target::Node { ty, key: k } => {
                        match key(k, row)?.and_then(|k| self.snap.node_id(*ty, &k)) {
                            Some(id) => Value::Node { ty: *ty, id },
                            None => Value::Null,
                        }
                    }
                    Target::Edge { rel, src, dst } => match (id(src, row)?, id(dst, row)?) {
                        (Some(s), Some(d)) if self.snap.has_edge(*rel, s, d) => Value::Edge {
                            rel: *rel,
                            src: s,
                            dst: d,
                        },
                        _ => Value::Null,
                    },
                    Target::Slot(_) => continue,
                };
            }
        }
        Ok(())
    }

    /// DETACH DELETE: the node and every edge it has.
    pub(super) fn detach_delete(&self, batch: &mut quiver_storage::WriteBatch, ty: u32, id: u32) {
        for d in [Direction::Out, Direction::In] {
            for (rel, n) in self.snap.all_neighbors(ty, id, d) {
                let (s, t) = if d == Direction::Out { (id, n) } else { (n, id) };
                batch.delete_edge(rel, s, t);
            }
        }
        batch.delete_node(ty, id);
    }
}

/// A statement's batch while its rows are applied, with what the statement
/// itself has done so far (reads see the snapshot from before it).
struct Writer<'c> {
    ctx: &'c Ctx<'c>,
    batch: quiver_storage::WriteBatch,
    props: i64,
    /// Edges this statement deletes, and the nodes it deletes without
    /// DETACH: those must have no edges left once the statement's own
    /// deletes are counted, whatever their order.
    deleted: FxHashSet<(u32, u32, u32)>,
    bare: Vec<(u32, u32)>,
    /// Nodes and edges MERGE created, so that a later row finds them.
    /// Per node type, the keys; per relation, source key → destination keys
    /// (looked up by `&str`, so a row that finds one allocates nothing).
    new_nodes: Vec<FxHashSet<String>>,
    new_edges: Vec<FxHashMap<String, FxHashSet<String>>>,
}

/// A node or an edge a SET or REMOVE changes.
enum Place {
    Node(u32, NodeRef),
    Edge(u32, NodeRef, NodeRef),
}

impl Writer<'_> {
    fn key(&self, e: &CExpr, row: &Row) -> Result<String> {
        match self.ctx.eval(e, row)? {
            Value::Str(s) => Ok(s),
            other => Err(runtime(format!("a node key is a string, not {}", kind(&other)))),
        }
    }

    /// An end of relation `def` (`None` when a matched end is null).
    fn end(
        &self,
        src: &NodeSrc,
        want: u32,
        row: &Row,
        def: &quiver_storage::RelationDef,
    ) -> Result<Option<NodeRef>> {
        let c = self.ctx.snap.catalog();
        let rel = &def.name;
        let (ty, r) = match src {
            NodeSrc::New { ty, key } => (*ty, NodeRef::Key(self.key(key, row)?)),
            NodeSrc::Bound(s) => match row[*s] {
                Value::Node { ty, id } => (ty, NodeRef::Id(id)),
                Value::Null => return Ok(None),
                ref other => return Err(runtime(format!("{rel} joins nodes, not {}", kind(other)))),
            },
        };
        if ty != want {
            return Err(runtime(format!(
                "{rel} joins {} to {}: a {} cannot be an end of it",
                c.type_name(def.src),
                c.type_name(def.dst),
                c.type_name(ty)
            )));
        }
        Ok(Some(r))
    }

    /// Both ends of an edge of `rel`, or `None` when one is null.
    fn ends(&self, rel: u32, src: &NodeSrc, dst: &NodeSrc, row: &Row) -> Result<Option<(NodeRef, NodeRef)>> {
        let def = &self.ctx.snap.catalog().relations[rel as usize];
        Ok(self
            .end(src, def.src, row, def)?
            .zip(self.end(dst, def.dst, row, def)?))
    }

    /// A node's id in the statement's snapshot, whether named by id or by key.
    fn id_of(&self, ty: u32, r: &NodeRef) -> Option<u32> {
        match r {
            NodeRef::Id(id) => Some(*id),
            NodeRef::Key(k) => self.ctx.snap.node_id(ty, k),
        }
    }

    /// A node's key, for recognising it whether named by id or by key.
    fn key_text<'k>(&'k self, ty: u32, r: &'k NodeRef) -> &'k str {
        match r {
            NodeRef::Key(k) => k,
            NodeRef::Id(id) => self.ctx.snap.node_key(ty, *id).unwrap_or_default(),
        }
    }

    fn place(&self, t: &Target, row: &Row) -> Result<Option<Place>> {
        Ok(match t {
            Target::Slot(s) => match row[*s] {
                Value::Node { ty, id } => Some(Place::Node(ty, NodeRef::Id(id))),
                Value::Edge { rel, src, dst } => Some(Place::Edge(rel, NodeRef::Id(src), NodeRef::Id(dst))),
                Value::Null => None,
                ref other => {
                    return Err(runtime(format!(
                        "SET and REMOVE work on nodes and edges, not {}",
                        kind(other)
                    )))
                }
            },
            Target::Node { ty, key } => Some(Place::Node(*ty, NodeRef::Key(self.key(key, row)?))),
            Target::Edge { rel, src, dst } => self
                .ends(*rel, src, dst, row)?
                .map(|(s, d)| Place::Edge(*rel, s, d)),
        })
    }

    /// `SET place.prop = v`; null removes a node's property.
    fn set(&mut self, place: Place, prop: &str, v: Value) -> Result<()> {
        match place {
            Place::Node(ty, node) => match v {
                Value::Null => {
                    self.batch.remove_property(ty, node, prop);
                }
                v => {
                    self.batch.set_property(ty, node, prop, stored(v, prop)?);
                }
            },
            // An edge's one property is its weight.
            Place::Edge(rel, s, d) if prop == "weight" => {
                let w = match v {
                    v @ (Value::Int(_) | Value::Float(_)) => v.as_f64().unwrap_or(0.0) as f32,
                    other => {
                        return Err(runtime(format!(
                            "an edge's weight is a number, not {}",
                            kind(&other)
                        )))
                    }
                };
                self.batch.insert_edge(rel, s, d, Some(w));
            }
            Place::Edge(..) => return Err(runtime(format!("an edge has a weight and no property `{prop}`"))),
        }
        self.props += 1;
        Ok(())
    }

    fn apply(&mut self, w: &Write, row: &Row) -> Result<()> {
        let ctx = self.ctx;
        match w {
            Write::Node { ty, key, props: ps } => {
                let k = self.key(key, row)?;
                let mut set = Vec::new();
                for (name, e) in ps {
                    set.push((name, stored(ctx.eval(e, row)?, name)?));
                }
                if set.is_empty() {
                    self.batch.insert_node(*ty, k);
                    return Ok(());
                }
                self.batch.insert_node(*ty, k.as_str());
                for (name, v) in set {
                    self.batch.set_property(*ty, NodeRef::Key(k.clone()), name, v);
                    self.props += 1;
                }
            }
            Write::Edge {
                rel,
                src,
                dst,
                weight,
            } => {
                let Some((s, d)) = self.ends(*rel, src, dst, row)? else {
                    return Err(runtime(
                        "CREATE: an end of the relationship is null (an OPTIONAL MATCH that found nothing?)",
                    ));
                };
                let w = weight
                    .as_ref()
                    .map(|e| ctx.eval(e, row))
                    .transpose()?
                    .and_then(|v| v.as_f64());
                // Edges are a set: creating one that exists, without a
                // weight, changes nothing (its weight stays), however its
                // ends were given (bound, or by key).
                let def = &ctx.snap.catalog().relations[*rel as usize];
                if let (None, Some(si), Some(di)) = (w, self.id_of(def.src, &s), self.id_of(def.dst, &d)) {
                    if ctx.snap.has_edge(*rel, si, di) && !self.deleted.contains(&(*rel, si, di)) {
                        return Ok(());
                    }
                }
                self.batch.insert_edge(*rel, s, d, w.map(|w| w as f32));
            }
            Write::Delete { target, detach } => {
                let edges = match ctx.eval(target, row)? {
                    Value::List(l) => l.to_vec(),
                    other => vec![other],
                };
                for e in edges {
                    match e {
                        Value::Edge { rel, src, dst } => {
                            self.batch.delete_edge(rel, src, dst);
                            self.deleted.insert((rel, src, dst));
                        }
                        Value::Node { ty, id } if *detach => ctx.detach_delete(&mut self.batch, ty, id),
                        Value::Node { ty, id } => self.bare.push((ty, id)),
                        Value::Null => {}
                        other => {
                            return Err(runtime(format!(
                                "DELETE takes nodes and edges, not {}",
                                kind(&other)
                            )))
                        }
                    }
                }
            }
            Write::Set { target, prop, value } => {
                if let Some(place) = self.place(target, row)? {
                    let v = ctx.eval(value, row)?;
                    self.set(place, prop, v)?;
                }
            }
            Write::SetMap { target, value } => {
                let Some(place) = self.place(target, row)? else {
                    return Ok(());
                };
                let map = match ctx.eval(value, row)? {
                    Value::Map(m) => m,
                    Value::Null => return Ok(()),
                    other => return Err(runtime(format!("SET += takes a map, not {}", kind(&other)))),
                };
                for (prop, v) in map.iter() {
                    let again = match &place {
                        Place::Node(ty, node) => Place::Node(*ty, node.clone()),
                        Place::Edge(rel, s, d) => Place::Edge(*rel, s.clone(), d.clone()),
                    };
                    // `SET n += row` with the row's own key: the key stays as it is.
                    if let (Place::Node(ty, node), "key") = (&again, prop.as_str()) {
                        if v.as_str() == Some(self.key_text(*ty, node)) {
                            continue;
                        }
                        return Err(runtime("a node's key cannot be changed"));
                    }
                    self.set(again, prop, v.clone())?;
                }
            }
            Write::Remove { target, prop } => match self.place(target, row)? {
                Some(Place::Node(ty, node)) => {
                    self.batch.remove_property(ty, node, prop);
                    self.props += 1;
                }
                Some(Place::Edge(..)) => return Err(runtime("REMOVE works on node properties, not edges")),
                None => {}
            },
            Write::Merge(m) => self.merge(m, row)?,
            Write::Foreach {
                list,
                slot,
                ops,
                writes,
            } => {
                let items = match ctx.eval(list, row)? {
                    Value::List(l) => l,
                    Value::Null => return Ok(()),
                    other => return Err(runtime(format!("FOREACH takes a list, not {}", kind(&other)))),
                };
                for x in items.iter() {
                    // Nested FOREACH multiplies: the timeout and a bound on the batch hold.
                    ctx.tick()?;
                    ctx.cap_values(1, self.batch.len())?;
                    let mut r = row.clone();
                    r[*slot] = x.clone();
                    for sub in ctx.pipeline(ops, r) {
                        let sub = sub?;
                        for w in writes {
                            self.apply(w, &sub)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Finds or creates a MERGE's nodes, then its edge, then applies ON
    /// CREATE or ON MATCH.
    fn merge(&mut self, m: &Merge, row: &Row) -> Result<()> {
        let ctx = self.ctx;
        let mut created = false;
        for n in &m.nodes {
            let ty = n.ty as usize;
            if matches!(row[n.slot], Value::Node { .. }) {
                continue;
            }
            // A key this statement merged already: found without a copy.
            if let Value::Str(k) = &*ctx.eval_ref(&n.key, row)? {
                if self.new_nodes.get(ty).is_some_and(|s| s.contains(k)) {
                    continue;
                }
            }
            let k = self.key(&n.key, row)?;
            if ctx.snap.node_id(n.ty, &k).is_some() {
                return Err(runtime(format!(
                    "MERGE: {} '{k}' exists with other property values than the pattern's (merge on the key and SET the rest)",
                    ctx.snap.catalog().type_name(n.ty)
                )));
            }
            if !n.implied {
                self.batch.insert_node(n.ty, k.as_str());
            }
            for (name, e) in &n.props {
                let v = stored(ctx.eval(e, row)?, name)?;
                self.batch.set_property(n.ty, NodeRef::Key(k.clone()), name, v);
                self.props += 1;
            }
            if self.new_nodes.len() <= ty {
                self.new_nodes.resize_with(ty + 1, Default::default);
            }
            self.new_nodes[ty].insert(k);
            created = true;
        }
        if let Some(e) = &m.edge {
            let Some((s, d)) = self.ends(e.rel, &e.src, &e.dst, row)? else {
                return Err(runtime("MERGE: an end of the relationship is null"));
            };
            let def = &ctx.snap.catalog().relations[e.rel as usize];
            let (sk, dk) = (self.key_text(def.src, &s), self.key_text(def.dst, &d));
            let rel = e.rel as usize;
            let seen = self
                .new_edges
                .get(rel)
                .and_then(|m| m.get(sk))
                .is_some_and(|to| to.contains(dk));
            created = !matches!(row[e.slot], Value::Edge { .. }) && !seen;
            if created {
                let (sk, dk) = (sk.to_string(), dk.to_string());
                if self.new_edges.len() <= rel {
                    self.new_edges.resize_with(rel + 1, Default::default);
                }
                self.new_edges[rel].entry(sk).or_default().insert(dk);
                self.batch.insert_edge(e.rel, s, d, None);
            }
        }
        for w in if created { &m.on_create } else { &m.on_match } {
            self.apply(w, row)?;
        }
        Ok(())
    }
}

/// A query value as a stored property.
pub(super) fn stored(v: Value, name: &str) -> Result<quiver_storage::Value> {
    Ok(match v {
        Value::Str(s) => quiver_storage::Value::Str(s),
        Value::Int(i) => quiver_storage::Value::Int(i),
        Value::Float(x) => quiver_storage::Value::Float(x),
        Value::Bool(b) => quiver_storage::Value::Bool(b),
        other => {
            return Err(runtime(format!(
                "property `{name}` can hold a string, number or boolean, not {}",
                kind(&other)
            )))
        }
    })
}
