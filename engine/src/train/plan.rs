//! What a bucket visit trains: its edges grouped by relation and cut into
//! chunks, each edge's loss weight, and where uniform negatives are drawn.

use super::*;

/// A partition of a node type: its rows `Settings::part_range(ty, part)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct PartId {
    pub(super) ty: u32,
    pub(super) part: u32,
}

impl PartId {
    /// Its slot among the resident partitions (P per node type).
    pub(super) fn slot(self, partitions: u32) -> usize {
        (self.ty * partitions + self.part) as usize
    }

    /// The partition in resident slot `slot`.
    pub(super) fn of_slot(slot: usize, partitions: u32) -> Self {
        PartId {
            ty: (slot / partitions as usize) as u32,
            part: (slot % partitions as usize) as u32,
        }
    }

    /// Its stored part's key.
    pub(super) fn key(self) -> String {
        part_key(self.ty as usize, self.part)
    }
}

/// Where a candidate's row lives: a node of a partition the bucket holds,
/// or a slot among a node type's pooled rows (the pools of the partitions
/// it does not hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Row {
    Node { ty: u32, id: u32 },
    Pooled { ty: u32, slot: u32 },
}

pub(super) fn below(rng: &mut Xoshiro256PlusPlus, n: u32) -> u32 {
    (((rng.next_u64() >> 32) * n as u64) >> 32) as u32
}

/// Where a bucket draws its uniform negatives of node type `t` from: every
/// partition of `t` it holds (for a relation within one type, both i and j).
pub(super) fn negative_pool(buckets: &Buckets, needed: &[PartId], t: u32) -> Vec<Range<u32>> {
    needed
        .iter()
        .filter(|id| id.ty == t)
        .map(|id| buckets.partition_range(t, id.part))
        .collect()
}

/// A uniform negative of node type `t`: a node of `pool`, or, with the share
/// `outside` of `t`'s rows that the bucket does not hold (0 without a foreign
/// sample), one of the `sampled` pooled rows.
pub(super) fn draw(
    t: u32,
    pool: &[Range<u32>],
    (outside, sampled): (u32, u32),
    rng: &mut Xoshiro256PlusPlus,
) -> Row {
    let held: u32 = pool.iter().map(|r| r.end - r.start).sum();
    let mut x = below(rng, held + outside);
    if x >= held {
        return Row::Pooled {
            ty: t,
            slot: below(rng, sampled),
        };
    }
    for r in pool {
        if x < r.end - r.start {
            return Row::Node {
                ty: t,
                id: r.start + x,
            };
        }
        x -= r.end - r.start;
    }
    unreachable!("a draw below the pool's size falls in one of its ranges")
}

/// A chunk: positions `range` of the bucket's grouped edge order.
pub(super) type Chunk = Range<usize>;

/// False for edges the run leaves out: held out (for recall or as
/// validation), or of another relation than `only_relations`.
pub(super) fn trains(cfg: &TrainConfig, e: &BucketEdge) -> bool {
    in_scope(cfg, e)
        && !cfg
            .validation
            .as_ref()
            .is_some_and(|v| v.holds(e.rel, e.src, e.dst))
}

/// False for edges the run never looks at: held out for recall, or of
/// another relation than `only_relations` (validation edges come from the rest).
pub(super) fn in_scope(cfg: &TrainConfig, e: &BucketEdge) -> bool {
    !cfg.holdout.as_ref().is_some_and(|h| h.holds(e.rel, e.src, e.dst))
        && (cfg.only_relations.is_empty() || cfg.only_relations.contains(&e.rel))
}

/// A bucket visit's work: its edges in relation-grouped order and the chunks
/// (ranges of that order) this visit trains.
pub(super) struct Visit {
    pub(super) bucket: (u32, u32),
    /// The partitions (node type, partition) it trains.
    pub(super) needed: Vec<PartId>,
    pub(super) order: Vec<u32>,
    pub(super) chunks: Vec<Chunk>,
    /// Each edge's weight in the loss, by its index in the bucket
    /// ([`TrainConfig::weights`]); empty: all 1.
    pub(super) weights: Vec<f32>,
}

/// Per relation, its stored weights' (smallest, largest, mean); for a
/// relation without edges (0, 0, 1).
pub(super) fn weight_stats(buckets: &Buckets, relations: usize) -> Vec<(f32, f32, f32)> {
    let mut acc = vec![(f32::INFINITY, 0f32, 0f64, 0u64); relations];
    let p = buckets.partitions();
    for i in 0..p {
        for j in 0..p {
            for (e, &w) in buckets.bucket(i, j).iter().zip(buckets.weights(i, j)) {
                let a = &mut acc[e.rel as usize];
                *a = (a.0.min(w), a.1.max(w), a.2 + w as f64, a.3 + 1);
            }
        }
    }
    acc.into_iter()
        .map(|(lo, hi, sum, n)| match n {
            0 => (0.0, 0.0, 1.0),
            _ if sum > 0.0 => (lo, hi, (sum / n as f64) as f32),
            _ => (lo, hi, 1.0),
        })
        .collect()
}

/// The loss weights of bucket (i, j)'s edges under `cfg.weights`.
pub(super) fn edge_weights(
    cfg: &TrainConfig,
    means: &[f32],
    buckets: &Buckets,
    (i, j): (u32, u32),
) -> Vec<f32> {
    let stored = buckets.weights(i, j);
    let edges = buckets.bucket(i, j);
    match cfg.weights {
        EdgeWeights::Ignore => Vec::new(),
        EdgeWeights::Raw => stored.to_vec(),
        EdgeWeights::Log1p => stored.iter().map(|&w| w.max(0.0).ln_1p()).collect(),
        EdgeWeights::Normalize => edges
            .iter()
            .zip(stored)
            .map(|(e, &w)| w / means.get(e.rel as usize).copied().unwrap_or(1.0))
            .collect(),
    }
}

/// A bucket's edges grouped by relation (with `mix_relations`, by the
/// relation's (head type, tail type) in `ends`), shuffled within each group,
/// cut into chunks of `chunk_size`, and the chunks shuffled: (edge order,
/// the chunks of pass `pass`, every `passes`-th one). After pass 0 `rng` is
/// reseeded, so that each pass draws its own negatives.
pub(super) fn plan_chunks(
    cfg: &TrainConfig,
    edges: &[BucketEdge],
    ends: &[(u32, u32)],
    rng: &mut Xoshiro256PlusPlus,
    pass: usize,
) -> (Vec<u32>, Vec<Chunk>) {
    let group = |e: u32| {
        let rel = edges[e as usize].rel;
        match cfg.mix_relations {
            true => ends[rel as usize],
            false => (rel, 0),
        }
    };
    let mut order: Vec<u32> = (0..edges.len() as u32)
        .filter(|&e| trains(cfg, &edges[e as usize]))
        .collect();
    order.sort_unstable_by_key(|&e| group(e));
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let key = group(order[start]);
        let end = start + order[start..].iter().take_while(|&&e| group(e) == key).count();
        let group = &mut order[start..end];
        for a in (1..group.len()).rev() {
            group.swap(a, below(rng, a as u32 + 1) as usize);
        }
        for c in (start..end).step_by(cfg.chunk_size) {
            chunks.push(c..(c + cfg.chunk_size).min(end));
        }
        start = end;
    }
    for a in (1..chunks.len()).rev() {
        chunks.swap(a, below(rng, a as u32 + 1) as usize);
    }
    if cfg.passes > 1 {
        chunks = chunks.into_iter().skip(pass).step_by(cfg.passes).collect();
    }
    if pass > 0 {
        *rng = Xoshiro256PlusPlus::seed_from_u64(
            rng.next_u64() ^ (pass as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
    }
    (order, chunks)
}
