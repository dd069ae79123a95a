//! Edge buckets for partitioned training (PyTorch-BigGraph style).
//!
//! Each node type's ids split into P contiguous ranges of `ceil(count / P)`
//! ids; bucket (i, j) holds the edges whose source lies in partition i of its
//! type and destination in partition j of its type, as packed `(rel, src, dst)`
//! u32 triples. Buckets are built from the adjacency on demand by
//! [`Database::buckets`] and stored as a segment; when edges have changed since
//! (the catalog's `edge_version` moved on) the next call rebuilds them, so
//! training always sees buckets equal to the adjacency.

use std::ops::Range;

use crate::catalog::BucketRef;
use crate::db::{Database, Snapshot};
use crate::error::{Result, StorageError};
use crate::segment::{Kind, Segment, SegmentWriter};

/// One edge as stored in a bucket: 12 bytes, no padding, GPU-ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct BucketEdge {
    /// Relation id.
    pub rel: u32,
    /// Source node id (within the relation's source type).
    pub src: u32,
    /// Destination node id (within the relation's destination type).
    pub dst: u32,
}

/// Memory-mapped buckets for one partition count.
pub struct Buckets {
    segment: Segment,
    partitions: u32,
    /// Node counts per type at build time (they fix the partition ranges).
    counts: Vec<u32>,
    /// Edge offsets of the P² buckets, plus the end.
    offsets: Vec<u64>,
    edge_version: u64,
}

/// First id of each partition's range is `p * part_size(count, P)`.
fn part_size(count: u32, partitions: u32) -> u32 {
    count.div_ceil(partitions).max(1)
}

impl Buckets {
    /// Number of partitions per node type.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Node counts per type the partitions were cut from (nodes created
    /// later, without edges, are in no bucket).
    pub fn node_counts(&self) -> &[u32] {
        &self.counts
    }

    /// The catalog `edge_version` these buckets reflect.
    pub fn edge_version(&self) -> u64 {
        self.edge_version
    }

    /// Partition of node `id` of type `ty`.
    pub fn partition_of(&self, ty: u32, id: u32) -> u32 {
        id / part_size(
            self.counts.get(ty as usize).copied().unwrap_or(0),
            self.partitions,
        )
    }

    /// Ids of type `ty` in partition `p`.
    pub fn partition_range(&self, ty: u32, p: u32) -> Range<u32> {
        let n = self.counts.get(ty as usize).copied().unwrap_or(0);
        let s = part_size(n, self.partitions);
        (p.saturating_mul(s)).min(n)..(p.saturating_add(1).saturating_mul(s)).min(n)
    }

    fn range(&self, i: u32, j: u32) -> Range<usize> {
        let b = (i * self.partitions + j) as usize;
        match (self.offsets.get(b), self.offsets.get(b + 1)) {
            (Some(&a), Some(&e)) if i < self.partitions && j < self.partitions => a as usize..e as usize,
            _ => 0..0,
        }
    }

    /// Edges of bucket (i, j), in source order: (source type, source, relation, destination).
    pub fn bucket(&self, i: u32, j: u32) -> &[BucketEdge] {
        &self.edges()[self.range(i, j)]
    }

    /// Every bucket's edges, bucket (0, 0), (0, 1), ... after another.
    pub fn edges(&self) -> &[BucketEdge] {
        bytemuck::try_cast_slice(self.segment.bytes(2)).unwrap_or(&[])
    }

    /// Weights of bucket (i, j)'s edges, or an empty slice when all are 1.
    pub fn weights(&self, i: u32, j: u32) -> &[f32] {
        self.segment.array::<f32>(3).get(self.range(i, j)).unwrap_or(&[])
    }

    /// Total number of edges.
    pub fn edge_count(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// The whole edge array as bytes, e.g. for one upload to a GPU.
    pub fn as_bytes(&self) -> &[u8] {
        self.segment.bytes(2)
    }

    fn open(db: &Database, r: &BucketRef, snap: &Snapshot) -> Result<Self> {
        let segment = Segment::open(db.path(), &r.segment, Kind::Buckets)?;
        let meta = segment.check_array::<u32>(0)?;
        let offsets = segment.check_array::<u64>(1)?.to_vec();
        let edges: &[BucketEdge] = bytemuck::try_cast_slice(segment.bytes(2))
            .map_err(|_| segment.corrupt("edge section is not an array of triples"))?;
        let weights = segment.check_array::<f32>(3)?;
        let p = r.partitions as usize;
        let catalog = snap.catalog();
        let bad = |m: &str| -> StorageError { segment.corrupt(m.to_string()).into() };
        if meta.len() < 2 || meta[0] != r.partitions || meta[1] as usize != meta.len() - 2 {
            return Err(bad("bad header"));
        }
        let counts = meta[2..].to_vec();
        if offsets.len() != p * p + 1 || offsets[0] != 0 || offsets[p * p] != edges.len() as u64 {
            return Err(bad("bucket offsets do not cover the edges"));
        }
        if offsets.windows(2).any(|w| w[0] > w[1]) || (!weights.is_empty() && weights.len() != edges.len()) {
            return Err(bad("bucket offsets decrease or weights do not match"));
        }
        // Id limits per relation; one branch-free pass over the edges.
        let count = |t: u32| counts.get(t as usize).copied().unwrap_or(0);
        let limits: Vec<(u32, u32)> = catalog
            .relations
            .iter()
            .map(|rd| (count(rd.src), count(rd.dst)))
            .collect();
        let ok = edges.iter().fold(true, |ok, e| {
            let (s, d) = limits.get(e.rel as usize).copied().unwrap_or((0, 0));
            ok & (e.src < s) & (e.dst < d)
        });
        if !ok {
            return Err(bad("edge refers to a missing relation or node"));
        }
        Ok(Self {
            segment,
            partitions: r.partitions,
            counts,
            offsets,
            edge_version: r.edge_version,
        })
    }
}

impl Database {
    /// The edge buckets for `partitions` partitions per node type, built (and
    /// stored) first if there are none for this P or edges changed since.
    pub fn buckets(&self, partitions: u32) -> Result<Buckets> {
        if partitions == 0 || partitions > 4096 {
            return Err(StorageError::InvalidInput(format!(
                "partition count {partitions} is not in 1..=4096"
            )));
        }
        let _w = self.writer.lock();
        let snap = self.snapshot();
        let mut catalog = snap.catalog().clone();
        if let Some(r) = catalog.buckets.iter().find(|b| b.partitions == partitions) {
            if r.edge_version == catalog.edge_version {
                return Buckets::open(self, r, &snap);
            }
        }
        let counts: Vec<u32> = (0..catalog.node_types.len() as u32)
            .map(|t| snap.node_count(t))
            .collect();
        let p = partitions as usize;
        let part = |ty: u32, id: u32| (id / part_size(counts[ty as usize], partitions)) as usize;
        let bucket_of = |e: &crate::base::WEdge| {
            let r = &catalog.relations[e.rel as usize];
            part(r.src, e.src) * p + part(r.dst, e.dst)
        };
        // Counting sort by bucket in two passes over the adjacency, written in
        // place into the mapped segment: memory does not grow with the edges.
        let mut offsets = vec![0u64; p * p + 1];
        let mut weighted = false;
        for e in snap.edges() {
            offsets[bucket_of(&e) + 1] += 1;
            weighted |= e.weight != 1.0;
        }
        for b in 0..p * p {
            offsets[b + 1] += offsets[b];
        }
        let total = offsets[p * p] as usize;
        let mut meta = vec![partitions, counts.len() as u32];
        meta.extend(&counts);
        let name = format!("buckets-p{partitions}-v{}", catalog.edge_version);
        let lens = [
            4 * meta.len(),
            8 * offsets.len(),
            size_of::<BucketEdge>() * total,
            if weighted { 4 * total } else { 0 },
        ];
        let mut w = SegmentWriter::create(self.path(), &name, Kind::Buckets, &lens)?;
        {
            let mut secs = w.sections().into_iter();
            let mut section = || secs.next().unwrap_or_default();
            section().copy_from_slice(bytemuck::cast_slice(&meta));
            section().copy_from_slice(bytemuck::cast_slice(&offsets));
            let packed: &mut [BucketEdge] = bytemuck::cast_slice_mut(section());
            let weights: &mut [f32] = bytemuck::cast_slice_mut(section());
            let mut next = offsets.clone();
            for e in snap.edges() {
                let b = bucket_of(&e);
                let at = next[b] as usize;
                next[b] += 1;
                packed[at] = BucketEdge {
                    rel: e.rel,
                    src: e.src,
                    dst: e.dst,
                };
                if let Some(slot) = weights.get_mut(at) {
                    *slot = e.weight;
                }
            }
        }
        let segment = w.finish()?;
        let r = BucketRef {
            partitions,
            edge_version: catalog.edge_version,
            segment,
        };
        let old: Vec<String> = catalog
            .buckets
            .iter()
            .filter(|b| b.partitions == partitions && b.segment.file != name)
            .map(|b| b.segment.file.clone())
            .collect();
        catalog.buckets.retain(|b| b.partitions != partitions);
        catalog.buckets.push(r.clone());
        self.commit_catalog(catalog)?;
        self.flush()?;
        for f in old {
            let _ = std::fs::remove_file(self.path().join(f));
        }
        Buckets::open(self, &r, &snap)
    }
}
