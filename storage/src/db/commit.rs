//! Writing: the atomic commit of a write batch, schema changes, and base
//! rebuilds (compaction, import, and large batches).

use super::*;
use batch::Op;
use rustc_hash::FxHashMap;

/// An edge: (relation, source id, destination id).
type EdgeKey = (u32, u32, u32);
/// The final state of the edges a batch touches: `Some(weight)` present, `None` absent.
type EdgeStates = FxHashMap<EdgeKey, Option<f32>>;

/// Nodes and edges a batch touches past which it is committed as a new
/// base generation ([`Database::commit`]).
pub const LARGE_COMMIT: usize = 50_000;

impl Database {
    /// Adds a node type and returns its id.
    pub fn create_node_type(&self, name: &str) -> Result<u32> {
        check_name("type", name, MAX_NAME)?;
        let _w = self.writer.lock();
        let mut catalog = (*self.catalog()).clone();
        if catalog.node_type(name).is_ok() {
            return Err(StorageError::DuplicateType(name.to_string()));
        }
        catalog.node_types.push(NodeTypeDef {
            name: name.to_string(),
            count: 0,
        });
        self.commit_catalog(catalog)?;
        Ok(self.catalog().node_types.len() as u32 - 1)
    }

    /// Adds a relation type from node type `src` to node type `dst` (by name).
    pub fn create_relation_type(&self, name: &str, src: &str, dst: &str) -> Result<u32> {
        check_name("relation", name, usize::MAX)?;
        let _w = self.writer.lock();
        let mut catalog = (*self.catalog()).clone();
        if catalog.relation(name).is_ok() {
            return Err(StorageError::DuplicateType(name.to_string()));
        }
        let (src, dst) = (catalog.node_type(src)?, catalog.node_type(dst)?);
        catalog.relations.push(RelationDef {
            name: name.to_string(),
            src,
            dst,
        });
        self.commit_catalog(catalog)?;
        Ok(self.catalog().relations.len() as u32 - 1)
    }

    /// Writes a catalog on its own; the caller holds the writer lock.
    pub(crate) fn commit_catalog(&self, catalog: Catalog) -> Result<()> {
        self.sled
            .insert(keys::CATALOG, catalog.encode())
            .in_catalog(&self.catalog_dir())?;
        let mut st = self.state.write();
        Arc::make_mut(&mut st).catalog = Arc::new(catalog);
        Ok(())
    }

    /// Starts an empty write batch.
    pub fn batch(&self) -> WriteBatch {
        WriteBatch::default()
    }

    /// Applies a batch atomically: readers see all of it or none of it, and
    /// after a crash it is wholly there or wholly absent. When `commit`
    /// returns, the batch is in sled's log buffers, not necessarily on disk:
    /// it becomes durable at sled's next background flush (every 500 ms) or
    /// when [`Database::flush`] returns, whichever is first; a crash before
    /// then loses whole batches, newest first. Nothing is applied if any
    /// operation is invalid. A batch touching more than [`LARGE_COMMIT`]
    /// nodes and edges becomes a new base generation (written, synced and
    /// switched to in one sled batch, durable when `commit` returns), so
    /// that it leaves no delta behind.
    pub fn commit(&self, batch: WriteBatch) -> Result<CommitInfo> {
        let _w = self.writer.lock();
        self.commit_locked(batch)
    }

    /// [`Database::commit`]; the caller holds the writer lock.
    pub(super) fn commit_locked(&self, batch: WriteBatch) -> Result<CommitInfo> {
        let snap = self.snapshot();
        let Resolved {
            mut catalog,
            new_keys,
            edges,
            order,
            props,
            deaths,
        } = resolve(&snap, batch.ops)?;
        let mut b = sled::Batch::default();
        self.node_records(&mut b, &props, &deaths)?;
        // A batch this large would cost sled some kilobytes of memory a
        // record, and leave a delta that every open replays and every read
        // merges: it becomes a new base generation instead, as an import does.
        if order.len() + new_keys.len() > LARGE_COMMIT {
            return self.commit_as_base(&snap, catalog, new_keys, (&edges, &order), b, &deaths);
        }
        for (ty, id, key) in &new_keys {
            b.insert(keys::node_id(*ty, *id), key.as_bytes());
        }
        let changes = edge_changes(&snap, &mut catalog, &edges, &order);
        for &(ctx, state) in &changes {
            let k = keys::edge(ctx.rel, ctx.src, ctx.dst);
            match (ctx.base, state) {
                (Some(bw), Some(w)) if bw == w => b.remove(k),
                (None, None) => b.remove(k),
                _ => b.insert(k, keys::edge_value(state)),
            }
        }
        b.insert(keys::CATALOG, catalog.encode());
        self.sled.apply_batch(b).in_catalog(&self.catalog_dir())?;
        let info = CommitInfo {
            nodes_created: new_keys.len() as u64 + deaths.values().filter(|d| !**d).count() as u64,
            nodes_deleted: deaths.values().filter(|d| **d).count() as u64,
            edges_changed: changes.len() as u64,
        };
        *self.state.write() = Arc::new(next_state(&snap, catalog, new_keys, changes, &deaths));
        Ok(info)
    }

    /// The sled records of a batch's node changes: properties set and
    /// removed, tombstones of deleted nodes (their properties with them) and
    /// of revived ones.
    fn node_records(
        &self,
        b: &mut sled::Batch,
        props: &[(u32, u32, String, Option<Value>)],
        deaths: &FxHashMap<(u32, u32), bool>,
    ) -> Result<()> {
        for (ty, id, name, value) in props {
            match value {
                Some(v) => b.insert(keys::property(*ty, *id, name), v.encode()),
                None => b.remove(keys::property(*ty, *id, name)),
            }
        }
        for (&(ty, id), &dead) in deaths {
            if dead {
                b.insert(keys::deleted(ty, id), &[][..]);
                for k in self.sled.scan_prefix(keys::property_prefix(ty, id)).keys() {
                    b.remove(k.in_catalog(&self.catalog_dir())?);
                }
            } else {
                b.remove(keys::deleted(ty, id));
            }
        }
        Ok(())
    }

    /// Commits a large batch as a new base generation: the snapshot's edges
    /// with the batch's final edge states, the new keys after the old ones,
    /// and `b` (the node records) in the same sled batch that switches the
    /// catalog, so that the commit stays atomic.
    fn commit_as_base(
        &self,
        snap: &Snapshot,
        catalog: Catalog,
        new_keys: Vec<(u32, u32, String)>,
        (edges, order): (&EdgeStates, &[EdgeKey]),
        b: sled::Batch,
        deaths: &FxHashMap<(u32, u32), bool>,
    ) -> Result<CommitInfo> {
        let changed = order
            .iter()
            .filter(|&&(rel, src, dst)| {
                snap.edge_weight_in(&catalog, rel, src, dst) != edges[&(rel, src, dst)]
            })
            .count();
        let mut sorter = EdgeSorter::new(&self.dir, DEFAULT_CHUNK_EDGES);
        for e in snap
            .edges()
            .filter(|e| !edges.contains_key(&(e.rel, e.src, e.dst)))
        {
            sorter.push(e)?;
        }
        for &(rel, src, dst) in order {
            if let Some(weight) = edges[&(rel, src, dst)] {
                sorter.push(WEdge {
                    rel,
                    src,
                    dst,
                    weight,
                })?;
            }
        }
        let sorted = sorter.finish()?;
        // Ids were given in order within each type.
        let mut keys_by_type = vec![Vec::new(); catalog.node_types.len()];
        let created = new_keys.len() as u64;
        for (ty, _, key) in new_keys {
            keys_by_type[ty as usize].push(key);
        }
        let mut deleted = snap.state.delta.deleted.clone();
        deleted.resize_with(catalog.node_types.len(), RoaringBitmap::new);
        for (&(ty, id), &dead) in deaths {
            match dead {
                true => deleted[ty as usize].insert(id),
                false => deleted[ty as usize].remove(id),
            };
        }
        self.rebuild_base(snap, catalog, &keys_by_type, &sorted, (changed > 0, b, deleted))?;
        Ok(CommitInfo {
            nodes_created: created + deaths.values().filter(|d| !**d).count() as u64,
            nodes_deleted: deaths.values().filter(|d| **d).count() as u64,
            edges_changed: changed as u64,
        })
    }

    /// Folds the delta into a new base generation (a compaction).
    pub fn compact(&self) -> Result<()> {
        let _w = self.writer.lock();
        let snap = self.snapshot();
        let delta = !snap.state.delta.is_empty();
        if !delta && snap.catalog().generation > 0 {
            return Ok(());
        }
        let edges = self.sorter_with(&snap, DEFAULT_CHUNK_EDGES)?.finish()?;
        let deleted = snap.state.delta.deleted.clone();
        self.rebuild_base(
            &snap,
            (*snap.state.catalog).clone(),
            &[],
            &edges,
            (delta, sled::Batch::default(), deleted),
        )
    }

    /// An edge sorter that already holds every edge of `snap`, so that edges
    /// pushed later override them.
    pub(crate) fn sorter_with(&self, snap: &Snapshot, chunk_edges: usize) -> Result<EdgeSorter> {
        let mut sorter = EdgeSorter::new(&self.dir, chunk_edges);
        for e in snap.edges() {
            sorter.push(e)?;
        }
        Ok(sorter)
    }

    /// Writes a new base from the keys of `snap` plus `new_keys` (per type,
    /// continuing the ids of `catalog`, which already counts them) and `edges`
    /// (all of them, sorted), then commits it and clears the delta in one sled
    /// batch, `b` (records to write with it) included; `changed` says whether
    /// the edges differ from `snap`'s, `deleted` is the nodes deleted after it.
    /// The caller holds the writer lock.
    pub(crate) fn rebuild_base(
        &self,
        snap: &Snapshot,
        mut catalog: Catalog,
        new_keys: &[Vec<String>],
        edges: &[WEdge],
        (changed, mut b, deleted): (bool, sled::Batch, Vec<RoaringBitmap>),
    ) -> Result<()> {
        let types = catalog.node_types.len();
        let mut keys_by_type: Vec<Vec<&str>> = Vec::with_capacity(types);
        for t in 0..types as u32 {
            let old = snap.node_count(t);
            let mut ks: Vec<&str> = (0..old).filter_map(|id| snap.node_key(t, id)).collect();
            if ks.len() != old as usize {
                return Err(CorruptionError::new(
                    self.dir.join(CATALOG_DIR),
                    format!("type {t} has ids without keys"),
                )
                .into());
            }
            ks.extend(new_keys.get(t as usize).into_iter().flatten().map(String::as_str));
            keys_by_type.push(ks);
        }
        let gen = catalog.generation + 1;
        let refs = base::write_base(&self.dir, gen, &catalog, &keys_by_type, edges)?;
        let old_files: Vec<String> = catalog.base.iter().map(|r| r.file.clone()).collect();
        catalog.generation = gen;
        catalog.base = refs.to_vec();
        catalog.base_counts = keys_by_type.iter().map(|k| k.len() as u32).collect();
        if changed {
            catalog.edge_version += 1;
        }
        let base = Base::open(&self.dir, &catalog)?;
        for prefix in [keys::NODE_ID, keys::EDGE] {
            for k in self.sled.scan_prefix([prefix]).keys() {
                b.remove(k.in_catalog(&self.catalog_dir())?);
            }
        }
        b.insert(keys::CATALOG, catalog.encode());
        self.sled.apply_batch(b).in_catalog(&self.catalog_dir())?;
        self.sled.flush().in_catalog(&self.catalog_dir())?;
        *self.state.write() = Arc::new(State {
            catalog: Arc::new(catalog),
            base: Arc::new(base),
            delta: Arc::new(Delta {
                deleted,
                ..Default::default()
            }),
        });
        for f in old_files {
            // Readers may still map the old files; unlinking keeps their maps valid.
            let _ = fs::remove_file(self.dir.join(f));
        }
        Ok(())
    }
}

/// A batch resolved against a snapshot: what it does, before anything is written.
pub(super) struct Resolved {
    /// The catalog with the batch's new nodes counted.
    pub catalog: Catalog,
    /// (type, id, key) of each node the batch creates.
    pub new_keys: Vec<(u32, u32, String)>,
    /// Final state of each touched edge, and the order they were first touched in.
    pub edges: EdgeStates,
    pub order: Vec<EdgeKey>,
    /// (type, id, name, value); `None` removes the property.
    pub props: Vec<(u32, u32, String, Option<Value>)>,
    /// Nodes this batch deletes (true) or brings back (false).
    pub deaths: FxHashMap<(u32, u32), bool>,
}

/// Resolves a batch's operations in order against `snap`: keys to ids (new
/// keys get the next ids), each edge's final state, the properties set and
/// the nodes deleted. Nothing is applied if any operation is invalid.
pub(super) fn resolve(snap: &Snapshot, ops: Vec<Op>) -> Result<Resolved> {
    let mut catalog = (*snap.state.catalog).clone();
    let mut new_nodes: Vec<FxHashMap<String, u32>> = vec![FxHashMap::default(); catalog.node_types.len()];
    let mut new_keys: Vec<(u32, u32, String)> = Vec::new();
    // Final state of each touched edge: Some(weight) present, None absent.
    let mut edges: EdgeStates = FxHashMap::default();
    let mut order: Vec<(u32, u32, u32)> = Vec::new();
    // (type, id, name, value); `None` removes the property.
    let mut props: Vec<(u32, u32, String, Option<Value>)> = Vec::new();
    // Nodes this batch deletes (true) or brings back (false).
    let mut deaths: FxHashMap<(u32, u32), bool> = FxHashMap::default();
    let mut id_of = |catalog: &mut Catalog,
                     deaths: &mut FxHashMap<(u32, u32), bool>,
                     ty: u32,
                     node: &NodeRef,
                     create: bool|
     -> Result<u32> {
        let def = catalog
            .node_types
            .get(ty as usize)
            .ok_or_else(|| StorageError::UnknownNodeType(format!("#{ty}")))?;
        let dead = |deaths: &FxHashMap<(u32, u32), bool>, id: u32| {
            deaths
                .get(&(ty, id))
                .copied()
                .unwrap_or_else(|| snap.is_deleted(ty, id))
        };
        let not_found = |key: String| StorageError::NodeNotFound {
            node_type: def.name.clone(),
            key,
        };
        match node {
            NodeRef::Id(id) if *id < def.count && dead(deaths, *id) => {
                Err(not_found(snap.node_key(ty, *id).unwrap_or("?").to_string()))
            }
            NodeRef::Id(id) if *id < def.count => Ok(*id),
            NodeRef::Id(id) => Err(StorageError::InvalidId {
                node_type: def.name.clone(),
                id: *id,
                count: def.count,
            }),
            NodeRef::Key(k) => {
                // The batch's own new keys first: a batch names them again and again.
                if let Some(id) = new_nodes[ty as usize]
                    .get(k.as_str())
                    .copied()
                    .or_else(|| snap.any_node_id(ty, k))
                {
                    if !dead(deaths, id) {
                        return Ok(id);
                    }
                    if !create {
                        return Err(not_found(k.clone()));
                    }
                    deaths.insert((ty, id), false);
                    return Ok(id);
                }
                if !create {
                    return Err(not_found(k.clone()));
                }
                check_key(k)?;
                let id = def.count;
                catalog.node_types[ty as usize].count += 1;
                new_nodes[ty as usize].insert(k.clone(), id);
                new_keys.push((ty, id, k.clone()));
                Ok(id)
            }
        }
    };
    for op in ops {
        match op {
            Op::Node { ty, key } => {
                id_of(&mut catalog, &mut deaths, ty, &NodeRef::Key(key), true)?;
            }
            Op::Edge {
                rel,
                src,
                dst,
                weight,
            } => {
                let (src_ty, dst_ty) = catalog
                    .relations
                    .get(rel as usize)
                    .map(|r| (r.src, r.dst))
                    .ok_or_else(|| StorageError::UnknownRelation(format!("#{rel}")))?;
                let create = weight.is_some();
                let ends = id_of(&mut catalog, &mut deaths, src_ty, &src, create)
                    .and_then(|s| Ok((s, id_of(&mut catalog, &mut deaths, dst_ty, &dst, create)?)));
                let (s, d) = match ends {
                    // Deleting an edge whose endpoint does not exist changes nothing.
                    Err(StorageError::NodeNotFound { .. }) if !create => continue,
                    other => other?,
                };
                if let Some(w) = weight {
                    check_weight(w)?;
                }
                if edges.insert((rel, s, d), weight).is_none() {
                    order.push((rel, s, d));
                }
            }
            Op::Property {
                ty,
                node,
                name,
                value,
            } => {
                let id = id_of(&mut catalog, &mut deaths, ty, &node, false)?;
                if let Some(Value::Float(f)) = value {
                    if !f.is_finite() {
                        return Err(StorageError::InvalidInput(format!(
                            "property `{name}` is not finite"
                        )));
                    }
                }
                props.push((ty, id, name, value));
            }
            Op::DeleteNode { ty, node } => {
                let id = match id_of(&mut catalog, &mut deaths, ty, &node, false) {
                    Err(StorageError::NodeNotFound { .. }) => continue,
                    other => other?,
                };
                // Its edges go with it: those stored and those this batch added.
                let touches = |rel: u32, s: u32, d: u32| {
                    let r = &catalog.relations[rel as usize];
                    (r.src == ty && s == id) || (r.dst == ty && d == id)
                };
                for (&(rel, s, d), state) in edges.iter_mut() {
                    if touches(rel, s, d) {
                        *state = None;
                    }
                }
                for dir in [Direction::Out, Direction::In] {
                    for (rel, n) in snap.all_neighbors(ty, id, dir) {
                        let key = if dir == Direction::Out {
                            (rel, id, n)
                        } else {
                            (rel, n, id)
                        };
                        if edges.insert(key, None).is_none() {
                            order.push(key);
                        }
                    }
                }
                props.retain(|p| (p.0, p.1) != (ty, id));
                deaths.insert((ty, id), true);
            }
        }
    }
    Ok(Resolved {
        catalog,
        new_keys,
        edges,
        order,
        props,
        deaths,
    })
}

/// The edges whose presence or weight a resolved batch changes, each with
/// where it stands in the base; counts a new edge version when there are any.
pub(super) fn edge_changes(
    snap: &Snapshot,
    catalog: &mut Catalog,
    edges: &EdgeStates,
    order: &[EdgeKey],
) -> Vec<(EdgeCtx, Option<f32>)> {
    let changes: Vec<_> = order
        .iter()
        .filter(|&&(rel, src, dst)| snap.edge_weight_in(catalog, rel, src, dst) != edges[&(rel, src, dst)])
        .map(|&(rel, src, dst)| (snap.edge_ctx(catalog, rel, src, dst), edges[&(rel, src, dst)]))
        .collect();
    if !changes.is_empty() {
        catalog.edge_version += 1;
    }
    changes
}

/// The in-memory state after a batch: `snap`'s with the new keys, the edge
/// changes and the deaths in its delta.
pub(super) fn next_state(
    snap: &Snapshot,
    catalog: Catalog,
    new_keys: Vec<(u32, u32, String)>,
    changes: Vec<(EdgeCtx, Option<f32>)>,
    deaths: &FxHashMap<(u32, u32), bool>,
) -> State {
    let mut st = (*snap.state).clone();
    let delta = Arc::make_mut(&mut st.delta);
    delta
        .nodes
        .resize_with(catalog.node_types.len(), NodeDelta::default);
    for (ty, _, key) in new_keys {
        let nd = &mut delta.nodes[ty as usize];
        let key: Box<str> = key.into();
        nd.by_key
            .insert(key.clone(), catalog.base_count(ty) + nd.keys.len() as u32);
        nd.keys.push(key);
    }
    for (ctx, state) in changes {
        delta.set_edge(ctx, state);
    }
    delta
        .deleted
        .resize_with(catalog.node_types.len(), RoaringBitmap::new);
    for (&(ty, id), &dead) in deaths {
        if dead {
            delta.deleted[ty as usize].insert(id);
        } else {
            delta.deleted[ty as usize].remove(id);
        }
    }
    st.catalog = Arc::new(catalog);
    st
}
