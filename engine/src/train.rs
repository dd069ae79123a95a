//! The trainer: Algorithm 1 of the TwHIN talk (PyTorch-BigGraph's) over the
//! stored buckets. Each epoch walks the P×P buckets; a bucket's edges are
//! grouped by relation, shuffled and cut into chunks; each chunk is trained on
//! both sides (corrupting tails, then heads) against its own edges and a set of
//! uniform negatives drawn from the partitions of the current bucket, as PBG
//! does, so that a chunk's scores form one dense `c × (c + n)` block.
//!
//! Threads take turns over a bucket's chunks and update the shared tables
//! without locks (Hogwild, as PBG): rows are read and written through relaxed
//! atomic loads and stores, so a concurrent update may be lost but nothing is
//! torn or undefined. With `threads = 1` a run is deterministic for its seed.
//! Within a chunk, each distinct row gets one update with its gradients summed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Instant;

use quiver_storage::{Buckets, Database};
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::config::{Optimizer, Score, TrainConfig};
use crate::kernels;
use crate::model::Model;
use crate::Result;

/// What one epoch did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochStats {
    /// 0-based epoch.
    pub epoch: usize,
    /// Summed loss over the epoch.
    pub loss: f64,
    /// Positive edges trained.
    pub edges: u64,
    /// Wall time of the epoch.
    pub seconds: f64,
}

/// Views `x` as atomics for shared, lock-free updates.
fn atomics(x: &mut [f32]) -> &[AtomicU32] {
    // SAFETY: `AtomicU32` has the same size and alignment as `u32`, hence as
    // `f32` (4 and 4), and any bit pattern is valid for both. The exclusive
    // borrow of `x` guarantees that, while the view lives, every access to
    // these floats goes through the atomics.
    #[allow(unsafe_code)]
    unsafe {
        &*(x as *mut [f32] as *const [AtomicU32])
    }
}

/// The model's tables, shared by the training threads.
struct Params<'a> {
    d: usize,
    nodes: Vec<&'a [AtomicU32]>,
    node_state: Vec<&'a [AtomicU32]>,
    relations: &'a [AtomicU32],
    relation_state: &'a [AtomicU32],
}

impl Params<'_> {
    fn read(row: &[AtomicU32], out: &mut Vec<f32>) {
        out.extend(row.iter().map(|a| f32::from_bits(a.load(Relaxed))));
    }
    fn node(&self, t: u32, x: u32) -> &[AtomicU32] {
        &self.nodes[t as usize][x as usize * self.d..(x as usize + 1) * self.d]
    }
    fn relation(&self, r: u32) -> &[AtomicU32] {
        &self.relations[r as usize * self.d..(r as usize + 1) * self.d]
    }
}

/// One side's buffers: queries, candidates, scores and their gradients.
#[derive(Default)]
struct Side {
    q: Vec<f32>,
    k: Vec<f32>,
    s: Vec<f32>,
    g: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
}

/// A thread's buffers, reused across chunks.
#[derive(Default)]
struct Work {
    side: Side,
    r: Vec<f32>,
    row: Vec<f32>,
    /// (node type, row) of each candidate.
    rows: Vec<(u32, u32)>,
    w: Vec<f32>,
    /// (node type, row) → slot in `grads`.
    slots: HashMap<(u32, u32), usize>,
    grads: Vec<f32>,
    rel_grad: Vec<f32>,
}

impl Work {
    fn grad(&mut self, ty: u32, row: u32, g: &[f32]) {
        let d = g.len();
        let next = self.slots.len();
        let slot = *self.slots.entry((ty, row)).or_insert(next);
        if slot == next {
            self.grads.resize((slot + 1) * d, 0.0);
        }
        for (a, b) in self.grads[slot * d..(slot + 1) * d].iter_mut().zip(g) {
            *a += b;
        }
    }
}

fn below(rng: &mut Xoshiro256PlusPlus, n: u32) -> u32 {
    (((rng.next_u64() >> 32) * n as u64) >> 32) as u32
}

/// Trains a new model on the database's current edges.
pub fn train(db: &Database, config: &TrainConfig, on_epoch: &mut dyn FnMut(&EpochStats)) -> Result<Model> {
    config.validate()?;
    let buckets = db.buckets(config.partitions)?;
    let snap = db.snapshot();
    let catalog = snap.catalog();
    let counts: Vec<u32> = (0..catalog.node_types.len() as u32)
        .map(|t| snap.node_count(t))
        .collect();
    let mut model = Model::init(config, &counts, catalog.relations.len());
    let ends: Vec<(u32, u32)> = catalog.relations.iter().map(|r| (r.src, r.dst)).collect();
    let threads = match config.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut works: Vec<Work> = (0..threads).map(|_| Work::default()).collect();
    let Model {
        nodes,
        node_state,
        relations,
        relation_state,
        ..
    } = &mut model;
    let params = Params {
        d: config.dim,
        nodes: nodes.iter_mut().map(|t| atomics(t)).collect(),
        node_state: node_state.iter_mut().map(|t| atomics(t)).collect(),
        relations: atomics(relations),
        relation_state: atomics(relation_state),
    };
    let p = config.partitions;
    for epoch in 0..config.epochs {
        let started = Instant::now();
        let (mut loss, mut edges) = (0f64, 0u64);
        for i in 0..p {
            for j in 0..p {
                let (l, n) = train_bucket(&params, config, &buckets, &ends, (i, j), &mut rng, &mut works);
                loss += l;
                edges += n;
            }
        }
        on_epoch(&EpochStats {
            epoch,
            loss,
            edges,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    drop(params);
    Ok(model)
}

/// A chunk: positions `range` of the bucket's relation-grouped edge order.
type Chunk = std::ops::Range<usize>;

fn train_bucket(
    params: &Params<'_>,
    cfg: &TrainConfig,
    buckets: &Buckets,
    ends: &[(u32, u32)],
    (i, j): (u32, u32),
    rng: &mut Xoshiro256PlusPlus,
    works: &mut [Work],
) -> (f64, u64) {
    let edges = buckets.bucket(i, j);
    let weights = buckets.weights(i, j);
    // Group by relation, shuffle within each, cut into chunks, shuffle the chunks.
    let mut order: Vec<u32> = (0..edges.len() as u32).collect();
    order.sort_unstable_by_key(|&e| edges[e as usize].rel);
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let rel = edges[order[start] as usize].rel;
        let end = start
            + order[start..]
                .iter()
                .take_while(|&&e| edges[e as usize].rel == rel)
                .count();
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
    let seeds: Vec<u64> = works.iter().map(|_| rng.next_u64()).collect();
    let stride = works.len();
    let run = |t: usize, work: &mut Work| -> f64 {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seeds[t]);
        let mut loss = 0.0;
        for range in chunks.iter().skip(t).step_by(stride) {
            let idx = &order[range.clone()];
            let rel = edges[idx[0] as usize].rel;
            let (src_t, dst_t) = ends[rel as usize];
            let heads: Vec<u32> = idx.iter().map(|&e| edges[e as usize].src).collect();
            let tails: Vec<u32> = idx.iter().map(|&e| edges[e as usize].dst).collect();
            work.w.clear();
            work.w.extend(idx.iter().filter_map(|&e| weights.get(e as usize)));
            let negs = (
                buckets.partition_range(src_t, i),
                buckets.partition_range(dst_t, j),
            );
            loss += train_chunk(
                params,
                cfg,
                rel,
                (src_t, dst_t),
                &heads,
                &tails,
                negs,
                &mut rng,
                work,
            );
        }
        loss
    };
    let loss = if works.len() == 1 {
        run(0, &mut works[0])
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = works
                .iter_mut()
                .enumerate()
                .map(|(t, w)| s.spawn(move || run(t, w)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(f64::NAN)).sum()
        })
    };
    (loss, edges.len() as u64)
}

/// Trains one chunk of edges sharing relation `rel`; returns its loss.
#[allow(clippy::too_many_arguments)]
fn train_chunk(
    params: &Params<'_>,
    cfg: &TrainConfig,
    rel: u32,
    (src_t, dst_t): (u32, u32),
    heads: &[u32],
    tails: &[u32],
    (head_negs, tail_negs): (std::ops::Range<u32>, std::ops::Range<u32>),
    rng: &mut Xoshiro256PlusPlus,
    work: &mut Work,
) -> f64 {
    let (d, c, n) = (cfg.dim, heads.len(), cfg.uniform_negatives);
    let m = c + n;
    let distance = cfg.score != Score::Dot;
    work.slots.clear();
    work.grads.clear();
    work.rel_grad.clear();
    work.rel_grad.resize(d, 0.0);
    work.r.clear();
    Params::read(params.relation(rel), &mut work.r);
    let mut loss = 0.0;
    // Side 0 corrupts tails: queries h + r against tails; side 1 corrupts
    // heads: queries t − r (distance) or t (dot) against heads.
    for index in 0..2 {
        let (q_nodes, q_type, k_nodes, k_type, negs) = if index == 0 {
            (heads, src_t, tails, dst_t, &tail_negs)
        } else {
            (tails, dst_t, heads, src_t, &head_negs)
        };
        work.rows.clear();
        work.rows.extend(k_nodes.iter().map(|&x| (k_type, x)));
        for _ in 0..n {
            work.rows
                .push((k_type, negs.start + below(rng, negs.end - negs.start)));
        }
        let side = &mut work.side;
        side.q.clear();
        for &x in q_nodes {
            work.row.clear();
            Params::read(params.node(q_type, x), &mut work.row);
            match (index, distance) {
                (0, _) => side.q.extend(work.row.iter().zip(&work.r).map(|(a, b)| a + b)),
                (_, true) => side.q.extend(work.row.iter().zip(&work.r).map(|(a, b)| a - b)),
                (_, false) => side.q.extend_from_slice(&work.row),
            }
        }
        side.k.clear();
        for &(t, x) in &work.rows {
            Params::read(params.node(t, x), &mut side.k);
        }
        side.s.resize(c * m, 0.0);
        side.g.resize(c * m, 0.0);
        kernels::scores(cfg.score, &side.q, &side.k, d, &mut side.s);
        loss += kernels::loss(
            cfg.loss,
            cfg.margin,
            &side.s,
            c,
            m,
            cfg.batch_negatives,
            &work.w,
            &mut side.g,
        );
        side.dq.clear();
        side.dq.resize(c * d, 0.0);
        side.dk.clear();
        side.dk.resize(m * d, 0.0);
        kernels::backward(
            cfg.score,
            &side.q,
            &side.k,
            &side.s,
            &side.g,
            d,
            &mut side.dq,
            &mut side.dk,
        );
        // Chain rule: q = h + r (side 0) or t − r (side 1, distance) or t (side 1, dot).
        let sign = match (index, distance) {
            (0, _) => 1.0,
            (_, true) => -1.0,
            (_, false) => 0.0,
        };
        let (dq, dk) = (
            std::mem::take(&mut work.side.dq),
            std::mem::take(&mut work.side.dk),
        );
        for (a, &x) in q_nodes.iter().enumerate() {
            let g = &dq[a * d..(a + 1) * d];
            work.grad(q_type, x, g);
            for (rg, gv) in work.rel_grad.iter_mut().zip(g) {
                *rg += sign * gv;
            }
        }
        let rows = std::mem::take(&mut work.rows);
        for (a, &(t, x)) in rows.iter().enumerate() {
            work.grad(t, x, &dk[a * d..(a + 1) * d]);
        }
        (work.side.dq, work.side.dk, work.rows) = (dq, dk, rows);
    }
    apply(params, cfg, rel, work);
    loss
}

/// One optimizer step on a shared row; `scratch` receives the row's new value.
fn step(opt: Optimizer, lr: f32, row: &[AtomicU32], state: &AtomicU32, g: &[f32], scratch: &mut Vec<f32>) {
    let scale = match opt {
        Optimizer::Sgd => lr,
        Optimizer::Adagrad => {
            let s = f32::from_bits(state.load(Relaxed)) + kernels::dot(g, g) / g.len() as f32;
            state.store(s.to_bits(), Relaxed);
            lr / (s.sqrt() + 1e-10)
        }
    };
    scratch.clear();
    Params::read(row, scratch);
    for (x, gv) in scratch.iter_mut().zip(g) {
        *x -= scale * gv;
    }
}

fn write(row: &[AtomicU32], values: &[f32]) {
    for (a, v) in row.iter().zip(values) {
        a.store(v.to_bits(), Relaxed);
    }
}

fn apply(params: &Params<'_>, cfg: &TrainConfig, rel: u32, work: &mut Work) {
    let d = cfg.dim;
    let mut scratch = std::mem::take(&mut work.row);
    for (&(t, x), &slot) in &work.slots {
        let (row, state) = (params.node(t, x), &params.node_state[t as usize][x as usize]);
        step(
            cfg.optimizer,
            cfg.lr,
            row,
            state,
            &work.grads[slot * d..(slot + 1) * d],
            &mut scratch,
        );
        if let (Some(max), true) = (cfg.max_norm, cfg.score != Score::Dot) {
            let norm = kernels::dot(&scratch, &scratch).sqrt();
            if norm > max {
                scratch.iter_mut().for_each(|v| *v *= max / norm);
            }
        }
        write(row, &scratch);
    }
    let lr = cfg.relation_lr.unwrap_or(cfg.lr);
    if lr > 0.0 {
        let row = params.relation(rel);
        step(
            cfg.optimizer,
            lr,
            row,
            &params.relation_state[rel as usize],
            &work.rel_grad,
            &mut scratch,
        );
        write(row, &scratch);
    }
    work.row = scratch;
}
