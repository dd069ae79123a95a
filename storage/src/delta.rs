//! The delta: nodes and edge changes committed since the base was built. It
//! lives in sled (`i` and `e` keys) for durability and in memory, where reads
//! merge it with the base. Neighbour changes are roaring bitmaps per
//! (node, relation, direction): `added` holds edges the base lacks, `removed`
//! base edges that were deleted, so `added ∩ base = ∅` and `removed ⊆ base`.

use std::collections::{BTreeMap, HashMap};

use roaring::RoaringBitmap;

use crate::base::Direction;

#[derive(Clone, Default, Debug)]
pub(crate) struct DeltaSet {
    pub added: RoaringBitmap,
    pub removed: RoaringBitmap,
}

#[derive(Clone, Default, Debug)]
pub(crate) struct NodeDelta {
    pub by_key: rustc_hash::FxHashMap<Box<str>, u32>,
    /// `keys[i]` is the key of id `base_count + i`.
    pub keys: Vec<Box<str>>,
}

#[derive(Clone, Default, Debug)]
pub(crate) struct Delta {
    /// Per direction: (node type, node) → relation → changes.
    pub adj: [HashMap<(u32, u32), BTreeMap<u32, DeltaSet>>; 2],
    /// Weights of present edges that differ from the base (or from 1 for added edges).
    pub weights: HashMap<(u32, u32, u32), f32>,
    /// Per node type.
    pub nodes: Vec<NodeDelta>,
    /// Deleted nodes per type. Ids are never reused (embeddings are indexed
    /// by id), so deletions outlive compaction: they stay in sled (`x` keys)
    /// and are carried into every new delta.
    pub deleted: Vec<RoaringBitmap>,
}

/// Where an edge stands relative to the base.
#[derive(Clone, Copy)]
pub(crate) struct EdgeCtx {
    pub rel: u32,
    pub src_type: u32,
    pub dst_type: u32,
    pub src: u32,
    pub dst: u32,
    /// The edge's weight in the base, if the base has it.
    pub base: Option<f32>,
}

impl Delta {
    pub(crate) fn is_empty(&self) -> bool {
        self.adj[0].is_empty() && self.weights.is_empty() && self.nodes.iter().all(|n| n.keys.is_empty())
    }

    pub(crate) fn is_deleted(&self, ty: u32, id: u32) -> bool {
        self.deleted.get(ty as usize).is_some_and(|b| b.contains(id))
    }

    pub(crate) fn get(&self, d: Direction, ty: u32, node: u32, rel: u32) -> Option<&DeltaSet> {
        let m = &self.adj[d as usize];
        if m.is_empty() {
            return None;
        }
        m.get(&(ty, node))?.get(&rel)
    }

    pub(crate) fn node_rels(&self, d: Direction, ty: u32, node: u32) -> Option<&BTreeMap<u32, DeltaSet>> {
        self.adj[d as usize].get(&(ty, node))
    }

    /// Number of edge changes held, one per sled record: added and removed
    /// edges, plus weight changes of base edges (`src_type` maps a relation
    /// to its source node type).
    pub(crate) fn edge_changes(&self, src_type: impl Fn(u32) -> u32) -> u64 {
        let presence: u64 = self.adj[0]
            .values()
            .flat_map(|m| m.values())
            .map(|s| s.added.len() + s.removed.len())
            .sum();
        let reweighted = self
            .weights
            .keys()
            .filter(|&&(rel, src, dst)| {
                self.get(Direction::Out, src_type(rel), src, rel)
                    .is_none_or(|s| !s.added.contains(dst))
            })
            .count();
        presence + reweighted as u64
    }

    /// Edges added minus base edges removed.
    pub(crate) fn net_edges(&self) -> i64 {
        self.adj[0]
            .values()
            .flat_map(|m| m.values())
            .map(|s| s.added.len() as i64 - s.removed.len() as i64)
            .sum()
    }

    /// Makes the edge present with `weight` (`Some`) or absent (`None`).
    pub(crate) fn set_edge(&mut self, e: EdgeCtx, state: Option<f32>) {
        let present = state.is_some();
        for (d, ty, node, nbr) in [(0, e.src_type, e.src, e.dst), (1, e.dst_type, e.dst, e.src)] {
            let map = &mut self.adj[d];
            let rels = map.entry((ty, node)).or_default();
            let set = rels.entry(e.rel).or_default();
            match (e.base.is_some(), present) {
                (true, true) => set.removed.remove(nbr),
                (true, false) => set.removed.insert(nbr),
                (false, true) => set.added.insert(nbr),
                (false, false) => set.added.remove(nbr),
            };
            if set.added.is_empty() && set.removed.is_empty() {
                rels.remove(&e.rel);
                if rels.is_empty() {
                    map.remove(&(ty, node));
                }
            }
        }
        let key = (e.rel, e.src, e.dst);
        match state {
            Some(w) if w != e.base.unwrap_or(1.0) => {
                self.weights.insert(key, w);
            }
            _ => {
                self.weights.remove(&key);
            }
        }
    }
}
