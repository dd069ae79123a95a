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
/// validation), of another relation than `only_relations`, or outside a
/// refresh's scope.
pub(super) fn trains(cfg: &TrainConfig, e: &BucketEdge) -> bool {
    in_scope(cfg, e)
        && !cfg
            .validation
            .as_ref()
            .is_some_and(|v| v.holds(e.rel, e.src, e.dst))
        && cfg.scope.as_ref().is_none_or(|s| s.0.trains(e))
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

/// The loss weights of bucket (i, j)'s edges under `cfg.weights`, times
/// their relation's weight (`per_relation`, empty: all 1).
pub(super) fn edge_weights(
    cfg: &TrainConfig,
    means: &[f32],
    per_relation: &[f32],
    buckets: &Buckets,
    (i, j): (u32, u32),
) -> Vec<f32> {
    let stored = buckets.weights(i, j);
    let edges = buckets.bucket(i, j);
    let mut w: Vec<f32> = match cfg.weights {
        EdgeWeights::Ignore => Vec::new(),
        EdgeWeights::Raw => stored.to_vec(),
        EdgeWeights::Log1p => stored.iter().map(|&w| w.max(0.0).ln_1p()).collect(),
        EdgeWeights::Normalize => edges
            .iter()
            .zip(stored)
            .map(|(e, &w)| w / means.get(e.rel as usize).copied().unwrap_or(1.0))
            .collect(),
    };
    if !per_relation.is_empty() {
        if w.is_empty() {
            w = vec![1.0; edges.len()];
        }
        for (w, e) in w.iter_mut().zip(edges) {
            *w *= per_relation[e.rel as usize];
        }
    }
    w
}

/// Per relation id, its loss weight from `cfg.relation_weights` (empty
/// when none is set); a name that is no relation is an error.
pub(super) fn relation_factors(cfg: &TrainConfig, catalog: &quiver_storage::Catalog) -> Result<Vec<f32>> {
    if cfg.relation_weights.is_empty() {
        return Ok(Vec::new());
    }
    let mut factors = vec![1.0; catalog.relations.len()];
    for (name, &w) in &cfg.relation_weights {
        let r = catalog
            .relation(name)
            .map_err(|_| EngineError::Config(format!("relation_weights: no relation named `{name}`")))?;
        factors[r as usize] = w;
    }
    Ok(factors)
}

/// Per relation id, how many times an epoch trains each of its edges on
/// average under `cfg.relation_balance` (empty: once each): with n_r the
/// relation's trained edges and E their sum, m_r = E·n_r^(α−1) / Σ n^α.
pub(super) fn relation_rates(cfg: &TrainConfig, buckets: &Buckets, relations: usize) -> Vec<f64> {
    if cfg.relation_balance >= 1.0 {
        return Vec::new();
    }
    let mut n = vec![0u64; relations];
    for e in buckets.edges().iter().filter(|e| trains(cfg, e)) {
        n[e.rel as usize] += 1;
    }
    let a = cfg.relation_balance as f64;
    let total: u64 = n.iter().sum();
    let norm: f64 = n.iter().filter(|&&c| c > 0).map(|&c| (c as f64).powf(a)).sum();
    n.iter()
        .map(|&c| match c {
            0 => 1.0,
            c => total as f64 * (c as f64).powf(a - 1.0) / norm,
        })
        .collect()
}

/// A bucket's edges (each as many times as its relation's rate in `rates`
/// draws, [`relation_rates`]; empty: once) grouped by relation (with
/// `mix_relations`, by the relation's (head type, tail type) in `ends`),
/// shuffled within each group,
/// cut into chunks of `chunk_size`, and the chunks shuffled: (edge order,
/// the chunks of pass `pass`, every `passes`-th one). After pass 0 `rng` is
/// reseeded, so that each pass draws its own negatives.
pub(super) fn plan_chunks(
    cfg: &TrainConfig,
    edges: &[BucketEdge],
    (ends, rates): (&[(u32, u32)], &[f64]),
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
    if !rates.is_empty() {
        // Each edge ⌊m⌋ times, once more with probability frac(m).
        order = order
            .into_iter()
            .flat_map(|e| {
                let m = rates[edges[e as usize].rel as usize];
                let extra = ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < m.fract();
                std::iter::repeat_n(e, m as usize + usize::from(extra))
            })
            .collect();
    }
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

/// PBG's inside-out order: layer k holds the buckets whose larger index is k,
/// starting next to the previous layer, so consecutive buckets share a partition.
pub(crate) fn bucket_order(p: u32) -> Vec<(u32, u32)> {
    let mut order = Vec::with_capacity((p * p) as usize);
    for k in 0..p {
        for j in (0..k).rev() {
            order.push((k, j));
            order.push((j, k));
        }
        order.push((k, k));
    }
    order
}

/// The partitions bucket (i, j) trains: i of its relations' source types, j
/// of their destination types.
pub(super) fn bucket_partitions(
    ctx: &RunCtx<'_>,
    bucket: &[BucketEdge],
    (i, j): (u32, u32),
) -> Result<Vec<PartId>> {
    let mut needed: Vec<PartId> = Vec::new();
    for e in bucket {
        let (s, t) = ctx.ends[e.rel as usize];
        if e.src / ctx.part_size[s as usize] != i || e.dst / ctx.part_size[t as usize] != j {
            return Err(EngineError::Model {
                name: ctx.name.to_string(),
                message: format!("bucket ({i}, {j}) holds an edge outside its partitions"),
            });
        }
        for part in [PartId { ty: s, part: i }, PartId { ty: t, part: j }] {
            if !needed.contains(&part) {
                needed.push(part);
            }
        }
    }
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A graph of 4,000 edges of relation `big` and 400 of `small`.
    fn skewed(dir: &std::path::Path) -> Database {
        let db = Database::create(dir.join("db")).unwrap();
        db.create_node_type("N").unwrap();
        let big = db.create_relation_type("big", "N", "N").unwrap();
        let small = db.create_relation_type("small", "N", "N").unwrap();
        let mut b = db.batch();
        for i in 0..4000u32 {
            b.insert_edge(big, format!("n{}", i % 200), format!("n{}", i / 200 + 200), None);
        }
        for i in 0..400u32 {
            b.insert_edge(small, format!("n{}", i % 20), format!("n{}", i / 20 + 300), None);
        }
        db.commit(b).unwrap();
        db
    }

    /// Counts of each relation in the edge order of one bucket visit.
    fn counted(cfg: &TrainConfig, buckets: &Buckets, seed: u64) -> [usize; 2] {
        let rates = relation_rates(cfg, buckets, 2);
        let edges = buckets.bucket(0, 0);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let (order, chunks) = plan_chunks(cfg, edges, (&[(0, 0), (0, 0)], &rates), &mut rng, 0);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), order.len());
        let mut n = [0; 2];
        for &e in &order {
            n[edges[e as usize].rel as usize] += 1;
        }
        n
    }

    #[test]
    fn relation_balance_samples_each_relation_by_its_count_to_the_power_alpha() {
        let dir = tempfile::tempdir().unwrap();
        let db = skewed(dir.path());
        let buckets = db.buckets(1).unwrap();
        let off = TrainConfig::default();
        assert!(relation_rates(&off, &buckets, 2).is_empty());
        assert_eq!(counted(&off, &buckets, 1), [4000, 400]);
        // α = 0.5: shares ∝ √4000 : √400, the epoch's size unchanged:
        // m_big = 4400 / (√4000 · (√4000 + √400)) = 0.8357, m_small = 2.6428.
        let half = TrainConfig {
            relation_balance: 0.5,
            ..Default::default()
        };
        let rates = relation_rates(&half, &buckets, 2);
        assert!(
            (rates[0] - 0.8357).abs() < 1e-4 && (rates[1] - 2.6428).abs() < 1e-4,
            "{rates:?}"
        );
        let (mut big, mut small) = (0, 0);
        for seed in 0..20 {
            let [b, s] = counted(&half, &buckets, seed);
            (big, small) = (big + b, small + s);
        }
        // 20 visits: expected 66,858 and 21,142 (binomial sd about 105 and 85).
        assert!((big as f64 - 66_858.0).abs() < 500.0, "{big}");
        assert!((small as f64 - 21_142.0).abs() < 400.0, "{small}");
    }

    #[test]
    fn relation_weights_scale_the_loss_of_their_edges() {
        let dir = tempfile::tempdir().unwrap();
        let db = skewed(dir.path());
        let buckets = db.buckets(1).unwrap();
        let cfg = TrainConfig {
            relation_weights: [("small".to_string(), 0.25)].into(),
            ..Default::default()
        };
        let factors = relation_factors(&cfg, &db.catalog()).unwrap();
        assert_eq!(factors, [1.0, 0.25]);
        let w = edge_weights(&cfg, &[], &factors, &buckets, (0, 0));
        let edges = buckets.bucket(0, 0);
        assert_eq!(w.len(), edges.len());
        for (e, w) in edges.iter().zip(&w) {
            assert_eq!(*w, [1.0, 0.25][e.rel as usize]);
        }
        let bad = TrainConfig {
            relation_weights: [("nope".to_string(), 2.0)].into(),
            ..Default::default()
        };
        let err = relation_factors(&bad, &db.catalog()).unwrap_err().to_string();
        assert!(err.contains("no relation named `nope`"), "{err}");
    }
}
