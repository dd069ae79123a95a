//! Reading: snapshots, the merged view of base and delta that readers hold.

use super::*;

impl Database {
    /// A node property, read from sled.
    pub fn property(&self, ty: u32, id: u32, name: &str) -> Result<Option<Value>> {
        match self
            .sled
            .get(keys::property(ty, id, name))
            .in_catalog(&self.catalog_dir())?
        {
            Some(v) => Ok(Some(Value::decode(&v, &self.dir.join(CATALOG_DIR))?)),
            None => Ok(None),
        }
    }

    /// All properties of a node, by name.
    pub fn properties(&self, ty: u32, id: u32) -> Result<Vec<(String, Value)>> {
        let prefix = keys::property_prefix(ty, id);
        let path = self.dir.join(CATALOG_DIR);
        let mut out = Vec::new();
        for kv in self.sled.scan_prefix(&prefix) {
            let (k, v) = kv.in_catalog(&self.catalog_dir())?;
            let name = std::str::from_utf8(&k[prefix.len()..])
                .map_err(|_| CorruptionError::new(&path, "property name is not UTF-8"))?;
            out.push((name.to_string(), Value::decode(&v, &path)?));
        }
        Ok(out)
    }
}

/// Neighbour ids, sorted: borrowed from the mapped base when the node has no
/// pending changes, merged otherwise.
#[derive(Debug)]
pub enum Neighbors<'a> {
    /// Straight from the base segment.
    Base(&'a [u32]),
    /// Base merged with the delta.
    Merged(Vec<u32>),
}

impl std::ops::Deref for Neighbors<'_> {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        match self {
            Neighbors::Base(s) => s,
            Neighbors::Merged(v) => v,
        }
    }
}

/// An immutable, consistent view of the database.
#[derive(Clone)]
pub struct Snapshot {
    pub(crate) state: Arc<State>,
}

impl Snapshot {
    /// The catalog this snapshot sees.
    pub fn catalog(&self) -> &Catalog {
        &self.state.catalog
    }

    /// Number of nodes of type `ty`.
    pub fn node_count(&self, ty: u32) -> u32 {
        self.state
            .catalog
            .node_types
            .get(ty as usize)
            .map_or(0, |t| t.count)
    }

    /// Dense id of a key (`None` for deleted nodes).
    pub fn node_id(&self, ty: u32, key: &str) -> Option<u32> {
        self.any_node_id(ty, key).filter(|&id| !self.is_deleted(ty, id))
    }

    /// Dense id of a key, deleted nodes included.
    pub(super) fn any_node_id(&self, ty: u32, key: &str) -> Option<u32> {
        self.state
            .base
            .lookup(ty, key)
            .or_else(|| self.state.delta.nodes.get(ty as usize)?.by_key.get(key).copied())
    }

    /// Whether node `id` of type `ty` was deleted. Ids are not reused: a
    /// deleted node keeps its id and key, and creating its key again brings
    /// it back without edges or properties.
    pub fn is_deleted(&self, ty: u32, id: u32) -> bool {
        self.state.delta.is_deleted(ty, id)
    }

    /// Ids of type `ty` that are deleted, ascending.
    pub fn deleted_ids(&self, ty: u32) -> impl Iterator<Item = u32> + '_ {
        self.state
            .delta
            .deleted
            .get(ty as usize)
            .into_iter()
            .flat_map(|b| b.iter())
    }

    /// Number of nodes of type `ty` that are not deleted.
    pub fn live_node_count(&self, ty: u32) -> u32 {
        let gone = self
            .state
            .delta
            .deleted
            .get(ty as usize)
            .map_or(0, |b| b.len() as u32);
        self.node_count(ty) - gone
    }

    /// Key of a dense id.
    pub fn node_key(&self, ty: u32, id: u32) -> Option<&str> {
        let base = &self.state.base;
        if id < base.count(ty) {
            return base.key(ty, id);
        }
        let nd = self.state.delta.nodes.get(ty as usize)?;
        nd.keys.get((id - base.count(ty)) as usize).map(|k| &**k)
    }

    pub(super) fn rel(&self, rel: u32) -> Option<&RelationDef> {
        self.state.catalog.relations.get(rel as usize)
    }

    /// Neighbours of `node` through relation `rel` in direction `d`, sorted.
    /// The node's type is the relation's source (out) or destination (in) type.
    pub fn neighbors(&self, rel: u32, node: u32, d: Direction) -> Neighbors<'_> {
        let Some(r) = self.rel(rel) else {
            return Neighbors::Base(&[]);
        };
        let ty = match d {
            Direction::Out => r.src,
            Direction::In => r.dst,
        };
        let (base, _) = self.state.base.neighbors(ty, d, node, rel);
        match self.state.delta.get(d, ty, node, rel) {
            None => Neighbors::Base(base),
            Some(ch) => {
                let mut v: Vec<u32> = base
                    .iter()
                    .copied()
                    .filter(|x| !ch.removed.contains(*x))
                    .collect();
                v.extend(ch.added.iter());
                v.sort_unstable();
                Neighbors::Merged(v)
            }
        }
    }

    /// Out-neighbours by relation.
    pub fn out_neighbors(&self, rel: u32, node: u32) -> Neighbors<'_> {
        self.neighbors(rel, node, Direction::Out)
    }

    /// In-neighbours by relation.
    pub fn in_neighbors(&self, rel: u32, node: u32) -> Neighbors<'_> {
        self.neighbors(rel, node, Direction::In)
    }

    /// Relations through which node `node` of type `ty` has neighbours in
    /// direction `d`, in relation-id order.
    pub fn relations_of(&self, ty: u32, node: u32, d: Direction) -> Vec<u32> {
        let mut rels: Vec<u32> = self
            .state
            .base
            .all_neighbors(ty, d, node)
            .map(|(r, _)| r)
            .collect();
        if let Some(m) = self.state.delta.node_rels(d, ty, node) {
            rels.extend(m.keys());
            rels.sort_unstable();
            rels.dedup();
            rels.retain(|&r| !self.neighbors(r, node, d).is_empty());
        }
        rels
    }

    /// Neighbours across all relations: `(relation, neighbour)` pairs.
    pub fn all_neighbors(&self, ty: u32, node: u32, d: Direction) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for r in self.relations_of(ty, node, d) {
            out.extend(self.neighbors(r, node, d).iter().map(|&x| (r, x)));
        }
        out
    }

    /// Degree by relation, without materialising the neighbour list.
    pub fn degree(&self, rel: u32, node: u32, d: Direction) -> u64 {
        let Some(r) = self.rel(rel) else { return 0 };
        let ty = if d == Direction::Out { r.src } else { r.dst };
        let base = self.state.base.neighbors(ty, d, node, rel).0.len() as u64;
        match self.state.delta.get(d, ty, node, rel) {
            None => base,
            Some(ch) => base + ch.added.len() - ch.removed.len(),
        }
    }

    /// Degree across all relations.
    pub fn total_degree(&self, ty: u32, node: u32, d: Direction) -> u64 {
        let base = self.state.base.degree(ty, d, node);
        match self.state.delta.node_rels(d, ty, node) {
            None => base,
            Some(m) => m
                .values()
                .fold(base, |acc, ch| acc + ch.added.len() - ch.removed.len()),
        }
    }

    pub(crate) fn edge_ctx(&self, catalog: &Catalog, rel: u32, src: u32, dst: u32) -> EdgeCtx {
        let r = &catalog.relations[rel as usize];
        let (nbrs, ws) = self.state.base.neighbors(r.src, Direction::Out, src, rel);
        let base = nbrs
            .binary_search(&dst)
            .ok()
            .map(|i| ws.get(i).copied().unwrap_or(1.0));
        EdgeCtx {
            rel,
            src_type: r.src,
            dst_type: r.dst,
            src,
            dst,
            base,
        }
    }

    pub(super) fn edge_weight_in(&self, catalog: &Catalog, rel: u32, src: u32, dst: u32) -> Option<f32> {
        let ctx = self.edge_ctx(catalog, rel, src, dst);
        let d = self.state.delta.get(Direction::Out, ctx.src_type, src, rel);
        let present = match (ctx.base, d) {
            (Some(_), Some(ch)) => !ch.removed.contains(dst),
            (Some(_), None) => true,
            (None, Some(ch)) => ch.added.contains(dst),
            (None, None) => false,
        };
        present.then(|| {
            self.state
                .delta
                .weights
                .get(&(rel, src, dst))
                .copied()
                .or(ctx.base)
                .unwrap_or(1.0)
        })
    }

    /// The weight of edge `src -rel-> dst`, or `None` when there is no such edge.
    pub fn edge_weight(&self, rel: u32, src: u32, dst: u32) -> Option<f32> {
        if rel as usize >= self.state.catalog.relations.len() {
            return None;
        }
        self.edge_weight_in(&self.state.catalog, rel, src, dst)
    }

    /// Whether edge `src -rel-> dst` exists.
    pub fn has_edge(&self, rel: u32, src: u32, dst: u32) -> bool {
        self.edge_weight(rel, src, dst).is_some()
    }

    /// Every edge with its weight, by source type, source, relation, destination.
    pub(crate) fn edges(&self) -> impl Iterator<Item = WEdge> + '_ {
        let types = self.state.catalog.node_types.len() as u32;
        (0..types).flat_map(move |t| {
            (0..self.node_count(t)).flat_map(move |node| {
                self.relations_of(t, node, Direction::Out)
                    .into_iter()
                    .flat_map(move |rel| {
                        let nbrs: Vec<u32> = self.out_neighbors(rel, node).to_vec();
                        nbrs.into_iter().map(move |dst| WEdge {
                            rel,
                            src: node,
                            dst,
                            weight: self.edge_weight(rel, node, dst).unwrap_or(1.0),
                        })
                    })
            })
        })
    }

    /// Number of distinct edges.
    pub fn edge_count(&self) -> u64 {
        let types = self.state.catalog.node_types.len() as u32;
        let base: u64 = (0..types).map(|t| self.state.base.edge_count(t)).sum();
        (base as i64 + self.state.delta.net_edges()) as u64
    }
}
