//! What a model has seen: the graph's edges and live nodes at the state it
//! was trained on, stored as the model's part [`SEEN_KEY`], and the changes
//! between that state and the database's now, counted exactly (inserts,
//! deletes, compactions and imports in between).
//!
//! The part's sections (u32 arrays): 0 the header `[edge_version low,
//! edge_version high, T, count_0 .. count_{T−1}]`; 1 per node type the start
//! of its deleted ids in section 2 (T + 1 offsets); 2 the deleted ids; 3 the
//! edges as `(rel, src, dst)` triples in the order of [`Snapshot::edges`]
//! (source type, source, relation, destination), so that the changes are one
//! merge of two sorted sequences.

use std::cmp::Ordering;

use crate::buckets::{BucketEdge, Buckets};
use crate::db::{Database, Snapshot};
use crate::error::{CorruptionError, Result, StorageError};

/// Part key of a model's record of the graph it was trained on.
pub const SEEN_KEY: &str = "edges";

/// The changes to the graph since a model's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Edges present now and not then, in [`Snapshot::edges`] order.
    pub edges_added: Vec<BucketEdge>,
    /// Edges present then and not now, in the same order.
    pub edges_deleted: Vec<BucketEdge>,
    /// Per node type: ids live now that were not then (created, or deleted
    /// then and created again).
    pub nodes_added: Vec<Vec<u32>>,
    /// Per node type: ids live then and deleted now.
    pub nodes_deleted: Vec<Vec<u32>>,
}

impl Changes {
    /// True when the graph is as the model saw it.
    pub fn is_empty(&self) -> bool {
        self.edges_added.is_empty()
            && self.edges_deleted.is_empty()
            && self.nodes_added.iter().all(Vec::is_empty)
            && self.nodes_deleted.iter().all(Vec::is_empty)
    }

    /// Edges added and deleted.
    pub fn edges_changed(&self) -> u64 {
        (self.edges_added.len() + self.edges_deleted.len()) as u64
    }
}

/// Sort key of an edge in [`Snapshot::edges`] order, given each relation's source type.
fn order(src_type: &[u32], e: &BucketEdge) -> (u32, u32, u32, u32) {
    (
        src_type.get(e.rel as usize).copied().unwrap_or(u32::MAX),
        e.src,
        e.rel,
        e.dst,
    )
}

/// The buckets' edges in [`Snapshot::edges`] order: per source type and
/// source partition, a merge of the P buckets of that row (each sorted by
/// source type, source, relation, destination).
fn sorted_edges<'a>(
    buckets: &'a Buckets,
    src_type: &'a [u32],
    types: u32,
) -> impl Iterator<Item = BucketEdge> + 'a {
    let p = buckets.partitions();
    (0..types).flat_map(move |t| {
        (0..p).flat_map(move |i| {
            let mut runs: Vec<&[BucketEdge]> = (0..p)
                .map(|j| {
                    let b = buckets.bucket(i, j);
                    let lo = b.partition_point(|e| order(src_type, e).0 < t);
                    let hi = b.partition_point(|e| order(src_type, e).0 <= t);
                    &b[lo..hi]
                })
                .filter(|r| !r.is_empty())
                .collect();
            std::iter::from_fn(move || {
                let (at, _) = runs
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, r)| order(src_type, &r[0]))?;
                let e = runs[at][0];
                runs[at] = &runs[at][1..];
                if runs[at].is_empty() {
                    runs.swap_remove(at);
                }
                Some(e)
            })
        })
    })
}

fn src_types(snap: &Snapshot) -> Vec<u32> {
    snap.catalog().relations.iter().map(|r| r.src).collect()
}

impl Database {
    /// Records `buckets` (the edges a model was trained on) and the nodes
    /// deleted now as what model `name` has seen: part [`SEEN_KEY`], written
    /// and committed as one part, replacing any.
    pub fn record_seen(&self, name: &str, buckets: &Buckets) -> Result<()> {
        let snap = self.snapshot();
        let counts = buckets.node_counts();
        let version = buckets.edge_version();
        let mut header = vec![version as u32, (version >> 32) as u32, counts.len() as u32];
        header.extend_from_slice(counts);
        let mut offsets = vec![0u32];
        let mut deleted = Vec::new();
        for (t, &n) in counts.iter().enumerate() {
            deleted.extend(snap.deleted_ids(t as u32).filter(|&id| id < n));
            offsets.push(deleted.len() as u32);
        }
        let src_type = src_types(&snap);
        let edges = buckets.edge_count() as usize;
        let lens = [4 * header.len(), 4 * offsets.len(), 4 * deleted.len(), 12 * edges];
        self.save_model_blob(name, SEEN_KEY, &lens, |mut s| -> Result<()> {
            let out = s.pop().unwrap_or_default();
            let packed: &mut [BucketEdge] = bytemuck::try_cast_slice_mut(out)
                .map_err(|_| StorageError::InvalidInput("edge section misaligned".into()))?;
            for (slot, e) in packed
                .iter_mut()
                .zip(sorted_edges(buckets, &src_type, counts.len() as u32))
            {
                *slot = e;
            }
            for (dst, src) in s.into_iter().zip([&header, &offsets, &deleted]) {
                dst.copy_from_slice(bytemuck::cast_slice(src));
            }
            Ok(())
        })
    }

    /// The changes since the state model `name` was trained on; `None` when
    /// it has no record of it (imported, or trained before models recorded it).
    pub fn changes_since(&self, name: &str) -> Result<Option<Changes>> {
        let Some(part) = self.model_blob(name, SEEN_KEY)? else {
            return Ok(None);
        };
        let bad = || -> StorageError {
            CorruptionError::new(
                self.path(),
                format!("model `{name}`: its record of the graph is malformed"),
            )
            .into()
        };
        let words =
            |i: usize| -> Result<&[u32]> { bytemuck::try_cast_slice(part.bytes(i)).map_err(|_| bad()) };
        let (header, offsets, deleted) = (words(0)?, words(1)?, words(2)?);
        let edges: &[BucketEdge] = bytemuck::try_cast_slice(part.bytes(3)).map_err(|_| bad())?;
        let t = *header.get(2).ok_or_else(bad)? as usize;
        let counts = header.get(3..3 + t).ok_or_else(bad)?;
        if offsets.len() != t + 1
            || offsets.windows(2).any(|w| w[0] > w[1])
            || offsets[t] as usize != deleted.len()
        {
            return Err(bad());
        }
        let version = u64::from(header[0]) | u64::from(header[1]) << 32;
        let snap = self.snapshot();
        let mut changes = Changes::default();
        for (ty, &count) in counts.iter().enumerate() {
            let was_deleted = &deleted[offsets[ty] as usize..offsets[ty + 1] as usize];
            let now = snap.node_count(ty as u32);
            let gone = |id: u32| snap.is_deleted(ty as u32, id);
            changes.nodes_added.push(
                (was_deleted.iter().copied().filter(|&id| !gone(id)))
                    .chain((count..now).filter(|&id| !gone(id)))
                    .collect(),
            );
            changes.nodes_deleted.push(
                snap.deleted_ids(ty as u32)
                    .filter(|&id| id < count && was_deleted.binary_search(&id).is_err())
                    .collect(),
            );
        }
        for ty in t as u32..snap.catalog().node_types.len() as u32 {
            changes.nodes_added.push(
                (0..snap.node_count(ty))
                    .filter(|&id| !snap.is_deleted(ty, id))
                    .collect(),
            );
            changes.nodes_deleted.push(Vec::new());
        }
        if version != snap.catalog().edge_version {
            let src_type = src_types(&snap);
            let mut old = edges.iter().copied().peekable();
            for w in snap.edges() {
                let e = BucketEdge {
                    rel: w.rel,
                    src: w.src,
                    dst: w.dst,
                };
                while let Some(o) = old.next_if(|o| order(&src_type, o) < order(&src_type, &e)) {
                    changes.edges_deleted.push(o);
                }
                match old.peek() {
                    Some(o) if order(&src_type, o).cmp(&order(&src_type, &e)) == Ordering::Equal => {
                        old.next();
                    }
                    _ => changes.edges_added.push(e),
                }
            }
            changes.edges_deleted.extend(old);
        }
        Ok(Some(changes))
    }
}
