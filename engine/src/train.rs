//! The trainer: Algorithm 1 of the TwHIN talk (PyTorch-BigGraph's) over the
//! stored buckets. Each epoch walks the P×P buckets; a bucket's edges are
//! grouped by relation, shuffled and cut into chunks; each chunk is trained on
//! both sides (corrupting tails, then heads) against its own edges and a set of
//! uniform negatives drawn from the partitions of the current bucket, as PBG
//! does, so that a chunk's scores form one dense `c × (c + n)` block.
//!
//! Updates are applied after each chunk, once per distinct row with the
//! gradients of that row summed (as autograd would), single-threaded and
//! therefore deterministic for a seed.

use std::collections::HashMap;
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

/// One side's buffers: queries, candidates, scores and their gradients.
#[derive(Default)]
struct Side {
    q: Vec<f32>,
    k: Vec<f32>,
    s: Vec<f32>,
    g: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
    /// (node type, row) of each candidate.
    rows: Vec<(u32, u32)>,
    loss: f64,
}

/// Buffers reused across chunks.
#[derive(Default)]
struct Work {
    sides: [Side; 2],
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
pub fn train(
    db: &Database,
    config: &TrainConfig,
    on_epoch: &mut (dyn FnMut(&EpochStats) + Send),
) -> Result<Model> {
    config.validate()?;
    let buckets = db.buckets(config.partitions)?;
    let snap = db.snapshot();
    let catalog = snap.catalog();
    let counts: Vec<u32> = (0..catalog.node_types.len() as u32)
        .map(|t| snap.node_count(t))
        .collect();
    let mut model = Model::init(config, &counts, catalog.relations.len());
    let ends: Vec<(u32, u32)> = catalog.relations.iter().map(|r| (r.src, r.dst)).collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut work = Work::default();
    let p = config.partitions;
    // The loop runs on a worker of rayon's pool, so that `join` in a chunk
    // hands one side to the other worker instead of waking two threads.
    rayon::scope(|_| {
        for epoch in 0..config.epochs {
            let started = Instant::now();
            let (mut loss, mut edges) = (0f64, 0u64);
            for i in 0..p {
                for j in 0..p {
                    let (l, n) = train_bucket(&mut model, &buckets, &ends, (i, j), &mut rng, &mut work);
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
    });
    Ok(model)
}

fn train_bucket(
    model: &mut Model,
    buckets: &Buckets,
    ends: &[(u32, u32)],
    (i, j): (u32, u32),
    rng: &mut Xoshiro256PlusPlus,
    work: &mut Work,
) -> (f64, u64) {
    let edges = buckets.bucket(i, j);
    let weights = buckets.weights(i, j);
    // Group by relation, shuffle within each, cut into chunks, shuffle the chunks.
    let mut by_rel: Vec<u32> = (0..edges.len() as u32).collect();
    by_rel.sort_unstable_by_key(|&e| edges[e as usize].rel);
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < by_rel.len() {
        let rel = edges[by_rel[start] as usize].rel;
        let end = start
            + by_rel[start..]
                .iter()
                .take_while(|&&e| edges[e as usize].rel == rel)
                .count();
        let group = &mut by_rel[start..end];
        for a in (1..group.len()).rev() {
            group.swap(a, below(rng, a as u32 + 1) as usize);
        }
        for c in (start..end).step_by(model.config.chunk_size) {
            chunks.push(c..(c + model.config.chunk_size).min(end));
        }
        start = end;
    }
    for a in (1..chunks.len()).rev() {
        chunks.swap(a, below(rng, a as u32 + 1) as usize);
    }
    let mut loss = 0.0;
    for range in chunks {
        let idx = &by_rel[range];
        let rel = edges[idx[0] as usize].rel;
        let (src_t, dst_t) = ends[rel as usize];
        let heads: Vec<u32> = idx.iter().map(|&e| edges[e as usize].src).collect();
        let tails: Vec<u32> = idx.iter().map(|&e| edges[e as usize].dst).collect();
        work.w.clear();
        work.w.extend(idx.iter().filter_map(|&e| weights.get(e as usize)));
        let tail_negs = buckets.partition_range(dst_t, j);
        let head_negs = buckets.partition_range(src_t, i);
        loss += train_chunk(
            model,
            rel,
            (src_t, dst_t),
            &heads,
            &tails,
            (head_negs, tail_negs),
            rng,
            work,
        );
    }
    (loss, edges.len() as u64)
}

/// Trains one chunk of edges sharing relation `rel`; returns its loss. The
/// two sides (corrupted tails, corrupted heads) are computed in parallel and
/// their gradients summed in a fixed order, so results do not depend on timing.
#[allow(clippy::too_many_arguments)]
fn train_chunk(
    model: &mut Model,
    rel: u32,
    (src_t, dst_t): (u32, u32),
    heads: &[u32],
    tails: &[u32],
    (head_negs, tail_negs): (std::ops::Range<u32>, std::ops::Range<u32>),
    rng: &mut Xoshiro256PlusPlus,
    work: &mut Work,
) -> f64 {
    let (d, n) = (model.config.dim, model.config.uniform_negatives);
    // Side 0 corrupts tails: queries h + r against tails; side 1 corrupts
    // heads: queries t − r (distance) or t (dot) against heads.
    let plan = [
        (heads, src_t, tails, dst_t, &tail_negs),
        (tails, dst_t, heads, src_t, &head_negs),
    ];
    for (side, &(_, _, k_nodes, k_type, negs)) in work.sides.iter_mut().zip(&plan) {
        side.rows.clear();
        side.rows.extend(k_nodes.iter().map(|&x| (k_type, x)));
        for _ in 0..n {
            side.rows
                .push((k_type, negs.start + below(rng, negs.end - negs.start)));
        }
    }
    let [s0, s1] = &mut work.sides;
    let (m, w) = (&*model, &work.w);
    rayon::join(
        || forward_backward(m, rel, 0, plan[0].0, plan[0].1, w, s0),
        || forward_backward(m, rel, 1, plan[1].0, plan[1].1, w, s1),
    );
    work.slots.clear();
    work.grads.clear();
    work.rel_grad.clear();
    work.rel_grad.resize(d, 0.0);
    let distance = model.config.score != Score::Dot;
    let mut loss = 0.0;
    for (index, &(q_nodes, q_type, ..)) in plan.iter().enumerate() {
        let side = std::mem::take(&mut work.sides[index]);
        loss += side.loss;
        // Chain rule: q = h + r (side 0) or t − r (side 1, distance) or t (side 1, dot).
        let sign = match (index, distance) {
            (0, _) => 1.0,
            (_, true) => -1.0,
            (_, false) => 0.0,
        };
        for (a, &x) in q_nodes.iter().enumerate() {
            let g = &side.dq[a * d..(a + 1) * d];
            work.grad(q_type, x, g);
            for (rg, gv) in work.rel_grad.iter_mut().zip(g) {
                *rg += sign * gv;
            }
        }
        for (a, &(t, x)) in side.rows.iter().enumerate() {
            work.grad(t, x, &side.dk[a * d..(a + 1) * d]);
        }
        work.sides[index] = side;
    }
    apply(model, rel, work);
    loss
}

/// Scores, loss and gradients of one side of a chunk, into `side`.
fn forward_backward(
    model: &Model,
    rel: u32,
    index: usize,
    q_nodes: &[u32],
    q_type: u32,
    w: &[f32],
    side: &mut Side,
) {
    let cfg = &model.config;
    let (d, c) = (cfg.dim, q_nodes.len());
    let m = side.rows.len();
    let r = model.relation(rel);
    side.q.clear();
    for &x in q_nodes {
        let e = model.node(q_type, x);
        match (index, cfg.score != Score::Dot) {
            (0, _) => side.q.extend(e.iter().zip(r).map(|(a, b)| a + b)),
            (_, true) => side.q.extend(e.iter().zip(r).map(|(a, b)| a - b)),
            (_, false) => side.q.extend_from_slice(e),
        }
    }
    side.k.clear();
    for &(t, x) in &side.rows {
        side.k.extend_from_slice(model.node(t, x));
    }
    side.s.resize(c * m, 0.0);
    side.g.resize(c * m, 0.0);
    kernels::scores(cfg.score, &side.q, &side.k, d, &mut side.s);
    side.loss = kernels::loss(
        cfg.loss,
        cfg.margin,
        &side.s,
        c,
        m,
        cfg.batch_negatives,
        w,
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
}

fn step(opt: Optimizer, lr: f32, row: &mut [f32], state: &mut f32, g: &[f32]) {
    let scale = match opt {
        Optimizer::Sgd => lr,
        Optimizer::Adagrad => {
            *state += kernels::dot(g, g) / g.len() as f32;
            lr / (state.sqrt() + 1e-10)
        }
    };
    for (x, gv) in row.iter_mut().zip(g) {
        *x -= scale * gv;
    }
}

fn apply(model: &mut Model, rel: u32, work: &Work) {
    let cfg = model.config.clone();
    let d = cfg.dim;
    for (&(t, x), &slot) in &work.slots {
        let (t, x) = (t as usize, x as usize);
        let row = &mut model.nodes[t][x * d..(x + 1) * d];
        step(
            cfg.optimizer,
            cfg.lr,
            row,
            &mut model.node_state[t][x],
            &work.grads[slot * d..(slot + 1) * d],
        );
        if let (Some(max), true) = (cfg.max_norm, cfg.score != Score::Dot) {
            let norm = kernels::dot(row, row).sqrt();
            if norm > max {
                row.iter_mut().for_each(|v| *v *= max / norm);
            }
        }
    }
    let r = rel as usize;
    let lr = cfg.relation_lr.unwrap_or(cfg.lr);
    if lr > 0.0 {
        step(
            cfg.optimizer,
            lr,
            &mut model.relations[r * d..(r + 1) * d],
            &mut model.relation_state[r],
            &work.rel_grad,
        );
    }
}
