//! The trainer: Algorithm 1 of the TwHIN talk (PyTorch-BigGraph's) over the
//! stored buckets, out of core. Each epoch walks the P×P buckets in
//! inside-out order (consecutive buckets share a partition); for bucket (i, j)
//! only partition i of the source types and partition j of the destination
//! types of its relations are resident, loaded from the model's stored parts
//! (or initialised) and, beyond `memory_budget_mib`, the least recently used
//! others are dropped. After every bucket the partitions it changed, the
//! relation vectors and the position are saved, so a killed run resumes from
//! the last finished bucket ([`resume`]).
//!
//! A bucket's edges are grouped by relation, shuffled and cut into chunks;
//! each chunk is trained on both sides (corrupting tails, then heads) against
//! its own edges and uniform negatives drawn from the bucket's partitions, as
//! PBG does, and from the pools of the others (`foreign_sample / P` rows of
//! each partition, kept in memory), so that a chunk's scores form one dense
//! `c × (c + n)` block and every entity can be a negative.
//! Threads take turns over a bucket's chunks and update the shared tables
//! without locks (Hogwild, as PBG): rows are read and written through relaxed
//! atomic loads and stores, so a concurrent update may be lost but nothing is
//! torn or undefined. With `threads = 1` a run is deterministic for its seed,
//! resumed or not. Within a chunk each distinct row gets one update with its
//! gradients summed.

use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Instant;

use quiver_storage::{BucketEdge, Buckets, Database, Snapshot};
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};

use crate::config::{EdgeWeights, Optimizer, Score, TrainConfig};
use crate::gpu::{GpuContext, StepBatch, StepTables};
use crate::kernels;
use crate::model::{
    init_rows, load_pools, part_key, part_seed, pool_key, Model, Pool, Settings, RELATIONS_KEY,
};
use crate::{Device, EngineError, Result};

/// What one epoch did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochStats {
    /// 0-based epoch.
    pub epoch: usize,
    /// Summed loss over the buckets trained in this epoch.
    pub loss: f64,
    /// Positive edges trained.
    pub edges: u64,
    /// Wall time of the epoch.
    pub seconds: f64,
    /// Share of that time spent loading and saving partitions.
    pub io_share: f64,
    /// Partitions brought into memory (read back or initialised) in this epoch.
    pub loads: u64,
}

/// What a training run reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrainEvent {
    /// Bucket `bucket` of `buckets` in epoch `epoch` is trained and saved;
    /// `edges` and `loss` add up the epoch so far.
    Bucket {
        /// 0-based epoch.
        epoch: usize,
        /// 0-based bucket index in the epoch's order.
        bucket: usize,
        /// Buckets per epoch.
        buckets: usize,
        /// Edges trained in this epoch so far.
        edges: u64,
        /// Loss summed over this epoch so far.
        loss: f64,
    },
    /// An epoch is done.
    Epoch(EpochStats),
    /// Before training: relation `relation`'s edge weights, which the loss
    /// uses ([`TrainConfig::weights`]), span two or more orders of magnitude.
    WeightSpread {
        /// Relation id.
        relation: u32,
        /// Smallest stored weight.
        min: f32,
        /// Largest stored weight.
        max: f32,
    },
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

/// A resident partition of a node type's table and its optimizer state.
struct Part {
    table: Vec<f32>,
    state: Vec<f32>,
    last_used: usize,
}

/// One resident partition as the training threads see it.
struct PartView<'a> {
    t: u32,
    p: u32,
    start: u32,
    table: &'a [AtomicU32],
    state: &'a [AtomicU32],
}

/// The pools of the partitions of node type `t` that a bucket does not hold,
/// trained in place as its negatives (`TrainConfig::foreign_sample`); their
/// rows, in partition order, are the bucket's foreign slots.
struct Foreign<'a> {
    t: u32,
    /// Rows of the partitions pooled.
    total: u32,
    pools: Vec<&'a mut Pool>,
}

impl Foreign<'_> {
    /// Foreign slots.
    fn len(&self) -> u32 {
        self.pools.iter().map(|p| p.len() as u32).sum()
    }
}

/// One pool as the training threads see it: its first slot, node ids (their
/// bits), rows and states.
type PoolView<'a> = (u32, &'a [f32], &'a [AtomicU32], &'a [AtomicU32]);

/// A type's foreign slots as the training threads see them.
struct ForeignView<'a> {
    t: u32,
    total: u32,
    len: u32,
    pools: Vec<PoolView<'a>>,
}

impl ForeignView<'_> {
    /// (node id, row, state) of slot `x`.
    fn slot(&self, x: u32, d: usize, width: usize) -> Option<(u32, &[AtomicU32], &[AtomicU32])> {
        let &(start, ids, rows, states) = self.pools.iter().rev().find(|(start, ..)| *start <= x)?;
        let r = (x - start) as usize;
        Some((
            ids.get(r)?.to_bits(),
            rows.get(r * d..(r + 1) * d)?,
            states.get(r * width..(r + 1) * width)?,
        ))
    }
}

/// Marks a candidate's node type as a foreign sample's, its id as a slot of it.
const FOREIGN: u32 = 1 << 31;

/// The tables a bucket trains, shared by the training threads.
struct Params<'a> {
    d: usize,
    /// Optimizer state floats per row.
    width: usize,
    part_size: &'a [u32],
    views: Vec<PartView<'a>>,
    foreign: Vec<ForeignView<'a>>,
    relations: &'a [AtomicU32],
    relation_state: &'a [AtomicU32],
    /// The warm-start model, when rows are held near it.
    prev: Option<&'a Model>,
}

impl Params<'_> {
    /// Appends a row's values to `out` (zeros if the row is not resident,
    /// which the bucket check before training rules out).
    fn read(&self, row: Option<&[AtomicU32]>, out: &mut Vec<f32>) {
        match row {
            Some(row) => out.extend(row.iter().map(|a| f32::from_bits(a.load(Relaxed)))),
            None => out.extend(std::iter::repeat_n(0.0, self.d)),
        }
    }
    /// Row and state of node `x` of type `t`, or of slot `x` of type
    /// `t & !FOREIGN`'s foreign sample when `t` has the `FOREIGN` bit.
    fn node(&self, t: u32, x: u32) -> Option<(&[AtomicU32], &[AtomicU32])> {
        if t & FOREIGN != 0 {
            let f = self.foreign.iter().find(|f| f.t == t & !FOREIGN)?;
            let (_, row, state) = f.slot(x, self.d, self.width)?;
            return Some((row, state));
        }
        let p = x / self.part_size[t as usize];
        let v = self.views.iter().find(|v| v.t == t && v.p == p)?;
        let r = (x - v.start) as usize;
        Some((
            v.table.get(r * self.d..(r + 1) * self.d)?,
            v.state.get(r * self.width..(r + 1) * self.width)?,
        ))
    }
    /// (node type, node id) of candidate `(t, x)`.
    fn id(&self, t: u32, x: u32) -> (u32, u32) {
        let f = self
            .foreign
            .iter()
            .find(|f| t & FOREIGN != 0 && f.t == t & !FOREIGN);
        match f.and_then(|f| f.slot(x, self.d, self.width)) {
            Some((id, ..)) => (t & !FOREIGN, id),
            None => (t, x),
        }
    }
    /// (rows outside the bucket, rows sampled from them) of node type `t`.
    fn foreign_share(&self, t: u32) -> (u32, u32) {
        self.foreign
            .iter()
            .find(|f| f.t == t)
            .map_or((0, 0), |f| (f.total, f.len))
    }
    fn relation(&self, r: u32) -> Option<(&[AtomicU32], &[AtomicU32])> {
        let r = r as usize;
        Some((
            self.relations.get(r * self.d..(r + 1) * self.d)?,
            self.relation_state.get(r * self.width..(r + 1) * self.width)?,
        ))
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

/// Where a bucket draws its uniform negatives of node type `t` from: every
/// partition of `t` it holds (for a relation within one type, both i and j).
fn negative_pool(buckets: &Buckets, needed: &[(u32, u32)], t: u32) -> Vec<Range<u32>> {
    needed
        .iter()
        .filter(|&&(ty, _)| ty == t)
        .map(|&(_, q)| buckets.partition_range(t, q))
        .collect()
}

/// A uniform negative of node type `t`: a node of `pool`, or, with the share
/// `outside` of `t`'s rows that the bucket does not hold (0 without a foreign
/// sample), one of the `sampled` foreign rows, as `(t | FOREIGN, slot)`.
fn draw(
    t: u32,
    pool: &[Range<u32>],
    (outside, sampled): (u32, u32),
    rng: &mut Xoshiro256PlusPlus,
) -> (u32, u32) {
    let held: u32 = pool.iter().map(|r| r.end - r.start).sum();
    let mut x = below(rng, held + outside);
    if x >= held {
        return (t | FOREIGN, below(rng, sampled));
    }
    for r in pool {
        if x < r.end - r.start {
            return (t, r.start + x);
        }
        x -= r.end - r.start;
    }
    unreachable!("a draw below the pool's size falls in one of its ranges")
}

/// Where a run stands, stored with the model after every bucket.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// Next epoch to train.
    epoch: usize,
    /// Next bucket (index in the epoch's order) to train.
    bucket: usize,
    /// The catalog's edge version the buckets had.
    edge_version: u64,
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

/// Trains model `name` from scratch on the database's current edges
/// (replacing any model of that name) with the CPU backend, saving it after
/// every bucket, and returns it loaded whole (convenient for graphs that
/// fit in memory; [`train_on`] leaves it on disk).
pub fn train(
    db: &Database,
    name: &str,
    config: &TrainConfig,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<Model> {
    train_on(db, name, config, &Device::Cpu, on_event)?;
    Model::load(db, name)
}

/// Trains model `name` on a chosen device (the native CPU kernels, or the
/// WGSL training step on a GPU, `shaders/train.wgsl`), out of core: only
/// the current bucket's partitions and those the memory budget keeps are in
/// memory, and the model stays in the database.
pub fn train_on(
    db: &Database,
    name: &str,
    config: &TrainConfig,
    device: &Device,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<()> {
    config.validate()?;
    let buckets = db.buckets(config.partitions)?;
    // The partitions are the buckets' own: nodes created since they were
    // built (by a concurrent writer) get no rows now and are inferred later.
    let settings = Settings {
        config: config.clone(),
        node_counts: buckets.node_counts().to_vec(),
        relations: db.catalog().relations.len(),
    };
    // Everything that can refuse the run does so before it is registered.
    check_memory(config, &settings.node_counts, threads(config))?;
    let prev = warm_start(db, config)?;
    let start = Progress {
        epoch: 0,
        bucket: 0,
        edge_version: buckets.edge_version(),
    };
    // Registered before the first bucket, so that a run killed at once can resume.
    let settings_json = serde_json::to_string(&settings).map_err(|e| EngineError::Config(e.to_string()))?;
    let start_json = serde_json::to_string(&start).map_err(|e| EngineError::Config(e.to_string()))?;
    db.start_model(name, &settings_json, &start_json)?;
    run(
        db,
        name,
        &settings,
        start,
        &buckets,
        prev.as_ref(),
        device,
        on_event,
    )
}

/// Training threads: the setting, or one per core.
fn threads(cfg: &TrainConfig) -> usize {
    match cfg.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// The model a warm start begins from, checked against the settings.
fn warm_start(db: &Database, cfg: &TrainConfig) -> Result<Option<Model>> {
    let Some(from) = &cfg.warm_start else {
        return Ok(None);
    };
    let m = Model::load(db, from)?;
    if m.dim() != cfg.dim {
        return Err(EngineError::Config(format!(
            "warm start from `{from}`: its dim is {}, this run's {}",
            m.dim(),
            cfg.dim
        )));
    }
    Ok(Some(m))
}

/// Continues an interrupted run of model `name` from its last finished
/// bucket on the CPU backend, and returns the model loaded whole.
pub fn resume(db: &Database, name: &str, on_event: &mut dyn FnMut(&TrainEvent)) -> Result<Model> {
    resume_on(db, name, &Device::Cpu, on_event)?;
    Model::load(db, name)
}

/// [`resume`] on a chosen device, leaving the model in the database.
pub fn resume_on(
    db: &Database,
    name: &str,
    device: &Device,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<()> {
    let info = db.model_info(name)?;
    let bad = |m: &str| EngineError::Model {
        name: name.to_string(),
        message: m.to_string(),
    };
    let settings: Settings =
        serde_json::from_str(&info.settings).map_err(|e| bad(&format!("settings: {e}")))?;
    if info.progress.is_empty() {
        return Err(bad("training finished; there is nothing to resume"));
    }
    let start: Progress = serde_json::from_str(&info.progress).map_err(|e| bad(&format!("progress: {e}")))?;
    let buckets = db.buckets(settings.config.partitions)?;
    if buckets.edge_version() != start.edge_version {
        return Err(bad(
            "the graph's edges changed since this run started; train it again",
        ));
    }
    check_memory(&settings.config, &settings.node_counts, threads(&settings.config))?;
    let prev = warm_start(db, &settings.config)?;
    run(
        db,
        name,
        &settings,
        start,
        &buckets,
        prev.as_ref(),
        device,
        on_event,
    )
}

#[allow(clippy::too_many_arguments)]
fn run(
    db: &Database,
    name: &str,
    settings: &Settings,
    start: Progress,
    buckets: &Buckets,
    prev: Option<&Model>,
    device: &Device,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<()> {
    let cfg = &settings.config;
    let (d, p) = (cfg.dim, cfg.partitions);
    let settings_json = serde_json::to_string(settings).map_err(|e| EngineError::Config(e.to_string()))?;
    if matches!(device, Device::Gpu(_)) {
        if cfg.drift_penalty > 0.0 {
            return Err(EngineError::Config(
                "drift_penalty is applied by the CPU backend only: train with --device cpu".into(),
            ));
        }
        if cfg.optimizer == Optimizer::Adam {
            return Err(EngineError::Config(
                "the adam optimizer runs on the CPU backend only: train with --device cpu or use adagrad"
                    .into(),
            ));
        }
    }
    let width = cfg.optimizer.state_width(d);
    let snap = db.snapshot();
    let ends: Vec<(u32, u32)> = snap.catalog().relations.iter().map(|r| (r.src, r.dst)).collect();
    let types = settings.node_counts.len();
    let part_size: Vec<u32> = (0..types).map(|t| settings.part_size(t)).collect();
    let wrong_size = |what: &str| EngineError::Model {
        name: name.to_string(),
        message: format!("stored part {what} has the wrong size for the model's settings"),
    };
    let (mut relations, mut relation_state) = match db.model_part(name, RELATIONS_KEY)? {
        Some(part)
            if part.array(0).len() == settings.relation_rows() * d
                && part.array(1).len() == settings.relation_rows() * width =>
        {
            (part.array(0).to_vec(), part.array(1).to_vec())
        }
        Some(_) => return Err(wrong_size(RELATIONS_KEY)),
        None => (
            match &prev {
                Some(m) if m.relations.len() == settings.relation_rows() * d => m.relations.clone(),
                _ => vec![0.0; settings.relation_rows() * d],
            },
            vec![0.0; settings.relation_rows() * width],
        ),
    };
    let mut resident: Vec<Option<Part>> = (0..types * p as usize).map(|_| None).collect();
    // Every trained partition's pool, and the node types whose pools changed.
    let mut pools: HashMap<(u32, u32), Pool> = HashMap::default();
    for t in 0..types {
        for (q, pool) in (0..p).zip(load_pools(db, name, t, p, (d, width))?) {
            if let Some(pool) = pool {
                pools.insert((t as u32, q), pool);
            }
        }
    }
    let mut dirty: Vec<u32> = Vec::new();
    let threads = threads(cfg);
    let means = match cfg.weights {
        EdgeWeights::Normalize => relation_means(buckets, settings.relations),
        _ => Vec::new(),
    };
    if cfg.weights != EdgeWeights::Ignore {
        for (relation, (min, max)) in weight_ranges(buckets, settings.relations).into_iter().enumerate() {
            if min > 0.0 && max / min >= 100.0 {
                on_event(&TrainEvent::WeightSpread {
                    relation: relation as u32,
                    min,
                    max,
                });
            }
        }
    }
    let mut works: Vec<Work> = (0..threads).map(|_| Work::default()).collect();
    let order = bucket_order(p);
    // Each epoch visits every bucket `passes` times, a share of its chunks each time.
    let visits = order.len() * cfg.passes;
    let mut clock = 0usize;
    for epoch in start.epoch..cfg.epochs {
        let started = Instant::now();
        let mut io = 0f64;
        let (mut loss, mut edges, mut loads) = (0f64, 0u64, 0u64);
        let first = if epoch == start.epoch { start.bucket } else { 0 };
        for b in first..visits {
            let (i, j) = order[b % order.len()];
            let bucket = buckets.bucket(i, j);
            // Partitions this bucket trains: i of its source types, j of its destination types.
            let mut needed: Vec<(u32, u32)> = Vec::new();
            for e in bucket {
                let (s, t) = ends[e.rel as usize];
                if e.src / part_size[s as usize] != i || e.dst / part_size[t as usize] != j {
                    return Err(EngineError::Model {
                        name: name.to_string(),
                        message: format!("bucket ({i}, {j}) holds an edge outside its partitions"),
                    });
                }
                for part in [(s, i), (t, j)] {
                    if !needed.contains(&part) {
                        needed.push(part);
                    }
                }
            }
            let io_started = Instant::now();
            clock += 1;
            // Room is made before loading, so that the budget holds at every moment.
            let incoming: usize = needed
                .iter()
                .filter(|&&(t, q)| resident[(t * p + q) as usize].is_none())
                .map(|&(t, q)| 4 * settings.part_range(t as usize, q).len() * (d + width))
                .sum();
            evict(&mut resident, p, cfg.memory_budget_mib, &needed, incoming);
            for &(t, q) in &needed {
                let slot = &mut resident[t as usize * p as usize + q as usize];
                if slot.is_none() {
                    loads += 1;
                    let rows = settings.part_range(t as usize, q).len();
                    let key = part_key(t as usize, q);
                    *slot = Some(match db.model_part(name, &key)? {
                        Some(part)
                            if part.array(0).len() == rows * d && part.array(1).len() == rows * width =>
                        {
                            Part {
                                table: part.array(0).to_vec(),
                                state: part.array(1).to_vec(),
                                last_used: clock,
                            }
                        }
                        Some(_) => return Err(wrong_size(&key)),
                        None => Part {
                            table: first_rows(cfg, prev, &snap, (t, q), settings.part_range(t as usize, q)),
                            state: vec![0.0; rows * width],
                            last_used: clock,
                        },
                    });
                }
                if let Some(part) = slot {
                    part.last_used = clock;
                    // Its pool's rows may have moved since it was saved.
                    if let Some(pool) = pools.get(&(t, q)) {
                        let start = q * part_size[t as usize];
                        for (id, row, st) in pool.iter() {
                            let r = (id - start) as usize;
                            part.table[r * d..(r + 1) * d].copy_from_slice(row);
                            part.state[r * width..(r + 1) * width].copy_from_slice(st);
                        }
                    }
                }
            }
            let mut foreign = foreign_pools(settings, &needed, &mut pools);
            dirty.extend(foreign.iter().map(|f| f.t));
            io += io_started.elapsed().as_secs_f64();
            // Seeded by the bucket, so that its passes share one plan of chunks.
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(
                cfg.seed
                    ^ ((epoch as u64) << 32 | (b % order.len()) as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            );
            let (edge_order, chunks) = plan_chunks(cfg, bucket, &mut rng, b / order.len());
            let visit = Visit {
                bucket: (i, j),
                needed: needed.clone(),
                order: edge_order,
                chunks,
                weights: edge_weights(cfg, &means, buckets, (i, j)),
            };
            if let Device::Gpu(gpu) = device {
                let mut parts: Vec<(u32, u32, &mut Part)> = resident
                    .iter_mut()
                    .enumerate()
                    .filter_map(|(idx, slot)| {
                        let (t, q) = ((idx / p as usize) as u32, (idx % p as usize) as u32);
                        Some((t, q, slot.as_mut().filter(|_| needed.contains(&(t, q)))?))
                    })
                    .collect();
                let rels = (&mut relations[..], &mut relation_state[..]);
                let bucket_rng = &mut rng;
                loss += train_bucket_gpu(
                    gpu,
                    &mut parts,
                    &mut foreign,
                    rels,
                    &part_size,
                    cfg,
                    buckets,
                    &ends,
                    &visit,
                    bucket_rng,
                )?;
            } else {
                let views = resident
                    .iter_mut()
                    .enumerate()
                    .filter_map(|(idx, slot)| {
                        let (t, q) = ((idx / p as usize) as u32, (idx % p as usize) as u32);
                        let part = slot.as_mut().filter(|_| needed.contains(&(t, q)))?;
                        Some(PartView {
                            t,
                            p: q,
                            start: q * part_size[t as usize],
                            table: atomics(&mut part.table),
                            state: atomics(&mut part.state),
                        })
                    })
                    .collect();
                let foreign = foreign
                    .iter_mut()
                    .map(|f| {
                        let (t, total, mut len) = (f.t, f.total, 0);
                        let pools = f
                            .pools
                            .iter_mut()
                            .map(|pool| {
                                let (ids, rows, states) = pool.split_mut();
                                len += ids.len() as u32;
                                (len - ids.len() as u32, ids, atomics(rows), atomics(states))
                            })
                            .collect();
                        ForeignView { t, total, len, pools }
                    })
                    .collect();
                let params = Params {
                    d,
                    width,
                    part_size: &part_size,
                    views,
                    foreign,
                    relations: atomics(&mut relations),
                    relation_state: atomics(&mut relation_state),
                    prev,
                };
                loss += train_bucket(&params, cfg, buckets, &ends, &visit, &mut rng, &mut works)?;
            }
            edges += visit.chunks.iter().map(|c| c.len() as u64).sum::<u64>();
            let io_started = Instant::now();
            drop(foreign);
            // The bucket's partitions get fresh pools.
            if cfg.foreign_sample > 0 && p > 1 {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(
                    cfg.seed
                        ^ 0x3c6e_f372_fe94_f82b
                        ^ ((epoch as u64) << 32 | b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                );
                for &(t, q) in &needed {
                    if let Some(part) = &resident[t as usize * p as usize + q as usize] {
                        let range = settings.part_range(t as usize, q);
                        let size = cfg.foreign_sample.div_ceil(p as usize);
                        let pool = pools.entry((t, q)).or_insert_with(|| Pool::new(d, width));
                        fill_pool(pool, part, range, size, &mut rng);
                        dirty.push(t);
                    }
                }
            }
            let next = match b + 1 < visits {
                true => Progress {
                    epoch,
                    bucket: b + 1,
                    edge_version: start.edge_version,
                },
                false => Progress {
                    epoch: epoch + 1,
                    bucket: 0,
                    edge_version: start.edge_version,
                },
            };
            let progress = if next.epoch >= cfg.epochs {
                String::new()
            } else {
                serde_json::to_string(&next).unwrap_or_default()
            };
            let keys: Vec<String> = needed.iter().map(|&(t, q)| part_key(t as usize, q)).collect();
            let mut arrays: Vec<[&[f32]; 2]> = Vec::with_capacity(needed.len() + 1);
            for &(t, q) in &needed {
                if let Some(part) = &resident[t as usize * p as usize + q as usize] {
                    arrays.push([&part.table, &part.state]);
                }
            }
            let mut parts: Vec<(&str, &[&[f32]])> = keys
                .iter()
                .map(String::as_str)
                .zip(arrays.iter().map(|a| &a[..]))
                .collect();
            let rel_arrays: [&[f32]; 2] = [&relations, &relation_state];
            parts.push((RELATIONS_KEY, &rel_arrays));
            dirty.sort_unstable();
            dirty.dedup();
            let pool_keys: Vec<String> = dirty.iter().map(|&t| pool_key(t as usize)).collect();
            let pool_arrays: Vec<Vec<&[f32]>> = dirty
                .iter()
                .map(|&t| {
                    (0..p)
                        .flat_map(|q| pools.get(&(t, q)).map_or([&[][..]; 3], Pool::arrays))
                        .collect()
                })
                .collect();
            parts.extend(
                pool_keys
                    .iter()
                    .map(String::as_str)
                    .zip(pool_arrays.iter().map(|a| &a[..])),
            );
            db.save_model_parts(name, &settings_json, &progress, &parts)?;
            dirty.clear();
            io += io_started.elapsed().as_secs_f64();
            on_event(&TrainEvent::Bucket {
                epoch,
                bucket: b,
                buckets: visits,
                edges,
                loss,
            });
        }
        let seconds = started.elapsed().as_secs_f64();
        on_event(&TrainEvent::Epoch(EpochStats {
            epoch,
            loss,
            edges,
            seconds,
            io_share: if seconds > 0.0 { io / seconds } else { 0.0 },
            loads,
        }));
    }
    // A run whose last buckets were empty, or that had nothing left to do, still ends finished.
    let rel_arrays: [&[f32]; 2] = [&relations, &relation_state];
    db.save_model_parts(name, &settings_json, "", &[(RELATIONS_KEY, &rel_arrays)])?;
    Ok(())
}

/// The foreign rows of a bucket: for every node type it trains, the pools of
/// the partitions of that type it does not hold, in partition order.
fn foreign_pools<'a>(
    settings: &Settings,
    needed: &[(u32, u32)],
    pools: &'a mut HashMap<(u32, u32), Pool>,
) -> Vec<Foreign<'a>> {
    let mut mine: Vec<(&(u32, u32), &mut Pool)> = pools
        .iter_mut()
        .filter(|(&(t, q), pool)| {
            pool.len() > 0 && !needed.contains(&(t, q)) && needed.iter().any(|&(ty, _)| ty == t)
        })
        .collect();
    mine.sort_unstable_by_key(|(k, _)| **k);
    let mut out: Vec<Foreign> = Vec::new();
    for (&(t, q), pool) in mine {
        let rows = settings.part_range(t as usize, q).len() as u32;
        match out.last_mut() {
            Some(f) if f.t == t => {
                f.total += rows;
                f.pools.push(pool);
            }
            _ => out.push(Foreign {
                t,
                total: rows,
                pools: vec![pool],
            }),
        }
    }
    out
}

/// Refills `pool` with `size` rows drawn from a resident partition holding
/// nodes `range` (with replacement, each kept once; the whole partition if
/// it is no larger).
fn fill_pool(pool: &mut Pool, part: &Part, range: Range<u32>, size: usize, rng: &mut Xoshiro256PlusPlus) {
    let n = range.len() as u32;
    let mut rows: Vec<u32> = match size >= n as usize {
        true => (0..n).collect(),
        false => (0..size).map(|_| below(rng, n)).collect(),
    };
    rows.sort_unstable();
    rows.dedup();
    pool.clear();
    let (d, width) = (pool.dim(), pool.width());
    for r in rows {
        let r = r as usize;
        pool.push(
            range.start + r as u32,
            &part.table[r * d..(r + 1) * d],
            &part.state[r * width..(r + 1) * width],
        );
    }
}

/// Starting rows of node type `t`'s rows `range`: the warm-start model's
/// where it has them, else inferred from neighbours there, else random.
fn first_rows(
    cfg: &TrainConfig,
    prev: Option<&Model>,
    snap: &Snapshot,
    (t, p): (u32, u32),
    range: Range<u32>,
) -> Vec<f32> {
    let mut rows = init_rows(cfg, part_seed(cfg, Some((t as usize, p))), range.len());
    if let Some(m) = prev {
        let d = cfg.dim;
        for (i, id) in range.enumerate() {
            let row = &mut rows[i * d..(i + 1) * d];
            if id < m.rows(t) {
                row.copy_from_slice(m.node(t, id));
            } else if let Some(x) = m.infer(snap, t, id) {
                row.copy_from_slice(&x);
            }
        }
    }
    rows
}

/// Drops least recently used partitions that this bucket does not need until
/// the resident set and `incoming` bytes fit the budget (0: no limit). Every
/// partition was saved after the bucket that last changed it, so dropping
/// loses nothing.
fn evict(resident: &mut [Option<Part>], p: u32, budget_mib: usize, needed: &[(u32, u32)], incoming: usize) {
    if budget_mib == 0 {
        return;
    }
    let bytes = |r: &[Option<Part>]| -> usize {
        r.iter()
            .flatten()
            .map(|x| 4 * (x.table.len() + x.state.len()))
            .sum()
    };
    while bytes(resident) + incoming > budget_mib << 20 {
        let victim = resident
            .iter()
            .enumerate()
            .filter(|(idx, slot)| {
                slot.is_some() && !needed.contains(&((idx / p as usize) as u32, (idx % p as usize) as u32))
            })
            .min_by_key(|(_, slot)| slot.as_ref().map_or(usize::MAX, |x| x.last_used))
            .map(|(idx, _)| idx);
        match victim {
            Some(idx) => resident[idx] = None,
            None => return,
        }
    }
}

/// A chunk: positions `range` of the bucket's relation-grouped edge order.
type Chunk = Range<usize>;

/// False for edges the run leaves out: held out, or of another relation
/// than `only_relations`.
fn trains(cfg: &TrainConfig, e: &BucketEdge) -> bool {
    !cfg.holdout.as_ref().is_some_and(|h| h.holds(e.rel, e.src, e.dst))
        && (cfg.only_relations.is_empty() || cfg.only_relations.contains(&e.rel))
}

/// A bucket visit's work: its edges in relation-grouped order and the chunks
/// (ranges of that order) this visit trains.
struct Visit {
    bucket: (u32, u32),
    /// The partitions (node type, partition) it trains.
    needed: Vec<(u32, u32)>,
    order: Vec<u32>,
    chunks: Vec<Chunk>,
    /// Each edge's weight in the loss, by its index in the bucket
    /// ([`TrainConfig::weights`]); empty: all 1.
    weights: Vec<f32>,
}

/// The smallest and largest stored weight of each relation (0, 0 for none).
fn weight_ranges(buckets: &Buckets, relations: usize) -> Vec<(f32, f32)> {
    let mut out = vec![(f32::INFINITY, 0f32); relations];
    let p = buckets.partitions();
    for i in 0..p {
        for j in 0..p {
            for (e, &w) in buckets.bucket(i, j).iter().zip(buckets.weights(i, j)) {
                let r = &mut out[e.rel as usize];
                *r = (r.0.min(w), r.1.max(w));
            }
        }
    }
    out.into_iter()
        .map(|(lo, hi)| if lo > hi { (0.0, 0.0) } else { (lo, hi) })
        .collect()
}

/// Mean stored weight of each relation's edges (for `EdgeWeights::Normalize`).
fn relation_means(buckets: &Buckets, relations: usize) -> Vec<f32> {
    let (mut sum, mut count) = (vec![0f64; relations], vec![0u64; relations]);
    let p = buckets.partitions();
    for i in 0..p {
        for j in 0..p {
            for (e, &w) in buckets.bucket(i, j).iter().zip(buckets.weights(i, j)) {
                sum[e.rel as usize] += w as f64;
                count[e.rel as usize] += 1;
            }
        }
    }
    sum.iter()
        .zip(&count)
        .map(|(&s, &n)| {
            if n > 0 && s > 0.0 {
                (s / n as f64) as f32
            } else {
                1.0
            }
        })
        .collect()
}

/// The loss weights of bucket (i, j)'s edges under `cfg.weights`.
fn edge_weights(cfg: &TrainConfig, means: &[f32], buckets: &Buckets, (i, j): (u32, u32)) -> Vec<f32> {
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

/// A bucket's edges grouped by relation, shuffled within each group, cut
/// into chunks of `chunk_size`, and the chunks shuffled: (edge order, the
/// chunks of pass `pass`, every `passes`-th one). After pass 0 `rng` is
/// reseeded, so that each pass draws its own negatives.
fn plan_chunks(
    cfg: &TrainConfig,
    edges: &[BucketEdge],
    rng: &mut Xoshiro256PlusPlus,
    pass: usize,
) -> (Vec<u32>, Vec<Chunk>) {
    let mut order: Vec<u32> = (0..edges.len() as u32)
        .filter(|&e| trains(cfg, &edges[e as usize]))
        .collect();
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

/// One bucket with the WGSL training step: the chunks and negatives are
/// drawn as the CPU trainer draws them, each chunk gives two sides (tails
/// and heads), and sides of the same shape go to the GPU in batches of
/// `gpu_chunks` chunks (with 1, a step is exactly the CPU's chunk update,
/// and with one CPU thread the negatives are the same too). The bucket's partitions are concatenated into one table
/// for the steps and split back afterwards.
#[allow(clippy::too_many_arguments)]
fn train_bucket_gpu(
    gpu: &GpuContext,
    parts: &mut [(u32, u32, &mut Part)],
    foreign: &mut [Foreign],
    (relations, relation_state): (&mut [f32], &mut [f32]),
    part_size: &[u32],
    cfg: &TrainConfig,
    buckets: &Buckets,
    ends: &[(u32, u32)],
    visit: &Visit,
    rng: &mut Xoshiro256PlusPlus,
) -> Result<f64> {
    let d = cfg.dim;
    let (i, j) = visit.bucket;
    let edges = buckets.bucket(i, j);
    let (order, chunks) = (&visit.order, &visit.chunks);
    // Negatives from the stream the CPU trainer's first thread uses.
    let rng = &mut Xoshiro256PlusPlus::seed_from_u64(rng.next_u64());
    let sides_per_step = 2 * cfg.gpu_chunks.max(1);
    // Row of (type, node) in the concatenated table.
    let mut base: HashMap<(u32, u32), u32> = HashMap::default();
    let (mut table, mut state) = (Vec::new(), Vec::new());
    for (t, q, part) in parts.iter() {
        base.insert((*t, *q), state.len() as u32);
        table.extend_from_slice(&part.table);
        state.extend_from_slice(&part.state);
    }
    // Foreign slots follow, at (t | FOREIGN, 0).
    for f in foreign.iter() {
        base.insert((f.t | FOREIGN, 0), state.len() as u32);
        for pool in &f.pools {
            table.extend_from_slice(pool.rows());
            state.extend_from_slice(pool.state());
        }
    }
    let row = |t: u32, x: u32| match t & FOREIGN {
        0 => {
            let q = x / part_size[t as usize];
            base.get(&(t, q)).map(|b| b + (x - q * part_size[t as usize]))
        }
        _ => base.get(&(t, 0)).map(|b| b + x),
    };
    let share = |t: u32| {
        foreign
            .iter()
            .find(|f| f.t == t)
            .map_or((0, 0), |f| (f.total, f.len()))
    };
    let distance = cfg.score != Score::Dot;
    let forward = relations.len() / d / (1 + usize::from(cfg.reciprocal));
    let mut pending: HashMap<(usize, usize), StepBatch> = HashMap::default();
    // The bucket's rows stay on the device for all its steps.
    let mut resident = gpu.upload(
        d,
        &StepTables {
            nodes: &mut table,
            node_state: &mut state,
            relations,
            relation_state,
        },
    )?;
    for range in chunks {
        let idx = &order[range.clone()];
        let rel = edges[idx[0] as usize].rel;
        let (src_t, dst_t) = ends[rel as usize];
        let c = idx.len();
        for side in 0..2 {
            let (q_t, k_t) = if side == 0 { (src_t, dst_t) } else { (dst_t, src_t) };
            let ends_of = |e: u32| {
                let edge = &edges[e as usize];
                if side == 0 {
                    (edge.src, edge.dst)
                } else {
                    (edge.dst, edge.src)
                }
            };
            let mut kn: Vec<u32> = Vec::new();
            let mut missing = false;
            let mut push = |kn: &mut Vec<u32>, t: u32, x: u32| match row(t, x) {
                Some(r) => kn.push(r),
                None => missing = true,
            };
            for &e in idx {
                push(&mut kn, k_t, ends_of(e).1);
            }
            if cfg.self_negatives && q_t == k_t {
                for &e in idx {
                    push(&mut kn, q_t, ends_of(e).0);
                }
            }
            let pool = negative_pool(buckets, &visit.needed, k_t);
            for _ in 0..cfg.uniform_negatives {
                let (t, x) = draw(k_t, &pool, share(k_t), rng);
                push(&mut kn, t, x);
            }
            let mut qn = Vec::with_capacity(c);
            for &e in idx {
                push(&mut qn, q_t, ends_of(e).0);
            }
            if missing {
                return Err(EngineError::Config(format!(
                    "bucket ({i}, {j}) needs a partition that is not resident"
                )));
            }
            let (qr, sgn) = match (side, cfg.reciprocal, distance) {
                (0, ..) => (rel, 1.0),
                (_, true, _) => (forward as u32 + rel, 1.0),
                (_, false, true) => (rel, -1.0),
                (_, false, false) => (rel, 0.0),
            };
            let m = kn.len();
            let batch = pending.entry((c, m)).or_insert_with(|| StepBatch {
                sides: 0,
                c,
                m,
                qn: Vec::new(),
                qr: Vec::new(),
                sgn: Vec::new(),
                w: Vec::new(),
                kn: Vec::new(),
            });
            batch.sides += 1;
            batch.qn.extend(qn);
            batch.qr.extend(std::iter::repeat_n(qr, c));
            batch.sgn.extend(std::iter::repeat_n(sgn, c));
            batch.w.extend(
                idx.iter()
                    .map(|&e| visit.weights.get(e as usize).copied().unwrap_or(1.0)),
            );
            batch.kn.extend(kn);
            if batch.sides == sides_per_step {
                if let Some(full) = pending.remove(&(c, m)) {
                    gpu.step(cfg, &mut resident, &full)?;
                }
            }
        }
    }
    let mut rest: Vec<((usize, usize), StepBatch)> = pending.into_iter().collect();
    rest.sort_by_key(|(k, _)| *k);
    for (_, batch) in rest {
        gpu.step(cfg, &mut resident, &batch)?;
    }
    let loss = gpu.download(
        resident,
        &mut StepTables {
            nodes: &mut table,
            node_state: &mut state,
            relations,
            relation_state,
        },
    )?;
    let (mut at, mut st) = (0, 0);
    let tables = parts
        .iter_mut()
        .map(|(_, _, part)| (&mut part.table[..], &mut part.state[..]))
        .chain(foreign.iter_mut().flat_map(|f| {
            f.pools.iter_mut().map(|pool| {
                let (_, rows, states) = pool.split_mut();
                (rows, states)
            })
        }));
    for (t, s) in tables {
        let (n, w) = (t.len(), s.len());
        t.copy_from_slice(&table[at..at + n]);
        s.copy_from_slice(&state[st..st + w]);
        (at, st) = (at + n, st + w);
    }
    Ok(loss)
}

fn train_bucket(
    params: &Params<'_>,
    cfg: &TrainConfig,
    buckets: &Buckets,
    ends: &[(u32, u32)],
    visit: &Visit,
    rng: &mut Xoshiro256PlusPlus,
    works: &mut [Work],
) -> Result<f64> {
    let (i, j) = visit.bucket;
    let edges = buckets.bucket(i, j);
    let (order, chunks) = (&visit.order, &visit.chunks);
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
            work.w
                .extend(idx.iter().filter_map(|&e| visit.weights.get(e as usize)));
            let negs = (
                negative_pool(buckets, &visit.needed, src_t),
                negative_pool(buckets, &visit.needed, dst_t),
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
    if works.len() == 1 {
        return Ok(run(0, &mut works[0]));
    }
    on_threads(works, run)
}

/// Runs `f(t, &mut works[t])` on a thread per item and sums the results. A
/// thread that cannot start, or panics, is an error (for training: the
/// bucket is not saved, so a resume trains it again).
fn on_threads<W: Send>(works: &mut [W], f: impl Fn(usize, &mut W) -> f64 + Sync) -> Result<f64> {
    let f = &f;
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(works.len());
        let mut failed = None;
        for (t, w) in works.iter_mut().enumerate() {
            match std::thread::Builder::new().spawn_scoped(s, move || f(t, w)) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    failed = Some(format!("starting training thread {t}: {e}"));
                    break;
                }
            }
        }
        let mut sum = 0.0;
        for h in handles {
            match h.join() {
                Ok(x) => sum += x,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    failed.get_or_insert(format!("a training thread panicked: {what}"));
                }
            }
        }
        match failed {
            Some(message) => Err(EngineError::Training(message)),
            None => Ok(sum),
        }
    })
}

/// Refuses settings whose working memory (the resident tables and each
/// thread's chunk buffers, estimated from the settings and the graph's node
/// counts) exceeds this machine's physical memory, or whose per-thread
/// buffers alone exceed the memory budget; the message gives the estimate.
fn check_memory(cfg: &TrainConfig, node_counts: &[u32], threads: usize) -> Result<()> {
    const MIB: u128 = 1 << 20;
    let (d, width) = (cfg.dim as u128, cfg.optimizer.state_width(cfg.dim) as u128);
    let rows: u128 = node_counts.iter().map(|&n| n as u128).sum();
    // At P > 1 two partitions of each type are resident, plus what the budget keeps.
    let resident = match cfg.partitions {
        1 => rows,
        p => (2 * rows).div_ceil(p as u128),
    };
    let tables = resident * (d + width) * 4 + cfg.memory_budget_mib as u128 * MIB;
    // Per side: the chunk's answers, its self-negatives and the uniform negatives.
    let (chunk, candidates) = (
        cfg.chunk_size as u128,
        2 * cfg.chunk_size as u128 + cfg.uniform_negatives as u128,
    );
    let per_thread = 2 * 4 * (2 * chunk * candidates + 2 * candidates * d + 2 * chunk * d);
    let work = per_thread * threads as u128;
    let mib = |b: u128| b.div_ceil(MIB);
    if cfg.memory_budget_mib > 0 && work > cfg.memory_budget_mib as u128 * MIB {
        return Err(EngineError::Config(format!(
            "chunk_size {}, uniform_negatives {}, dim {d} and {threads} threads need about {} MiB of chunk buffers, more than memory_budget_mib {}",
            cfg.chunk_size,
            cfg.uniform_negatives,
            mib(work),
            cfg.memory_budget_mib
        )));
    }
    if let Some(physical) = physical_memory() {
        if tables + work > physical as u128 {
            return Err(EngineError::Config(format!(
                "training would need about {} MiB ({} MiB of tables, {} MiB of chunk buffers for {threads} threads at chunk_size {}, uniform_negatives {}, dim {d}); this machine has {} MiB",
                mib(tables + work),
                mib(tables),
                mib(work),
                cfg.chunk_size,
                cfg.uniform_negatives,
                mib(physical as u128)
            )));
        }
    }
    Ok(())
}

/// Bytes of physical memory, where the system says.
fn physical_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
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
    (head_negs, tail_negs): (Vec<Range<u32>>, Vec<Range<u32>>),
    rng: &mut Xoshiro256PlusPlus,
    work: &mut Work,
) -> f64 {
    let (d, c, n) = (cfg.dim, heads.len(), cfg.uniform_negatives);
    let distance = cfg.score != Score::Dot;
    // A candidate whose scores got no gradient (a negative the margin leaves
    // inactive) has a zero row gradient; where a zero gradient changes
    // nothing (Adagrad or SGD with no penalty, and a row the max-norm
    // projection leaves alone) it is not stepped.
    let sparse = matches!(cfg.optimizer, Optimizer::Adagrad | Optimizer::Sgd)
        && cfg.regularization == 0.0
        && cfg.drift_penalty == 0.0;
    work.slots.clear();
    work.grads.clear();
    // rel_grad holds r's gradient, then r′'s (reciprocal head relation).
    let head_rel = cfg
        .reciprocal
        .then(|| params.relations.len() as u32 / d as u32 / 2 + rel);
    work.rel_grad.clear();
    work.rel_grad.resize(2 * d, 0.0);
    work.r.clear();
    params.read(params.relation(rel).map(|(row, _)| row), &mut work.r);
    if let Some(r2) = head_rel {
        params.read(params.relation(r2).map(|(row, _)| row), &mut work.r);
    }
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
        // When both ends have one type, the chunk's query entities are
        // negatives too: each for itself (h is not its own tail) and for the
        // others; without them h + r ≈ h wins whenever r is short.
        if cfg.self_negatives && q_type == k_type {
            work.rows.extend(q_nodes.iter().map(|&x| (q_type, x)));
        }
        for _ in 0..n {
            work.rows
                .push(draw(k_type, negs, params.foreign_share(k_type), rng));
        }
        let side = &mut work.side;
        side.q.clear();
        for &x in q_nodes {
            work.row.clear();
            params.read(params.node(q_type, x).map(|(row, _)| row), &mut work.row);
            let (r, r2) = work.r.split_at(d);
            match (index, head_rel.is_some(), distance) {
                (0, ..) => side.q.extend(work.row.iter().zip(r).map(|(a, b)| a + b)),
                (_, true, _) => side.q.extend(work.row.iter().zip(r2).map(|(a, b)| a + b)),
                (_, false, true) => side.q.extend(work.row.iter().zip(r).map(|(a, b)| a - b)),
                (_, false, false) => side.q.extend_from_slice(&work.row),
            }
        }
        side.k.clear();
        for &(t, x) in &work.rows {
            params.read(params.node(t, x).map(|(row, _)| row), &mut side.k);
        }
        let m = work.rows.len();
        side.s.resize(c * m, 0.0);
        side.g.resize(c * m, 0.0);
        kernels::scores(cfg.score, &side.q, &side.k, d, &mut side.s);
        loss += kernels::loss(
            cfg.loss,
            cfg.margin,
            cfg.adversarial_temperature,
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
        // Chain rule: q = h + r (side 0); on side 1 q = t + r′ (reciprocal),
        // t − r (distance) or t (dot).
        let (sign, half) = match (index, head_rel.is_some(), distance) {
            (0, ..) => (1.0, 0),
            (_, true, _) => (1.0, 1),
            (_, false, true) => (-1.0, 0),
            (_, false, false) => (0.0, 0),
        };
        let (dq, dk) = (
            std::mem::take(&mut work.side.dq),
            std::mem::take(&mut work.side.dk),
        );
        for (a, &x) in q_nodes.iter().enumerate() {
            let g = &dq[a * d..(a + 1) * d];
            work.grad(q_type, x, g);
            for (rg, gv) in work.rel_grad[half * d..(half + 1) * d].iter_mut().zip(g) {
                *rg += sign * gv;
            }
        }
        let rows = std::mem::take(&mut work.rows);
        for (a, &(t, x)) in rows.iter().enumerate() {
            if sparse
                && (0..c).all(|i| work.side.g[i * m + a] == 0.0)
                && !outside_ball(params, cfg, (t, x), &mut work.row)
            {
                continue;
            }
            work.grad(t, x, &dk[a * d..(a + 1) * d]);
        }
        (work.side.dq, work.side.dk, work.rows) = (dq, dk, rows);
    }
    apply(params, cfg, rel, head_rel, work);
    loss
}

/// Whether the max-norm projection would move row `x` of type `t`: a zero
/// gradient leaves a row as it is, except that a stepped row is projected
/// into the ball, so such a row is stepped even when its gradient is zero.
/// (`scratch` holds the row; the norm is computed as `apply` computes it.)
fn outside_ball(params: &Params<'_>, cfg: &TrainConfig, (t, x): (u32, u32), scratch: &mut Vec<f32>) -> bool {
    if cfg.max_norm == 0.0 || cfg.score == Score::Dot {
        return false;
    }
    let Some((row, _)) = params.node(t, x) else {
        return false;
    };
    scratch.clear();
    scratch.extend(row.iter().map(|a| f32::from_bits(a.load(Relaxed))));
    kernels::dot(scratch, scratch).sqrt() > cfg.max_norm
}

/// One optimizer step on a shared row and its state (`Optimizer::state_width`
/// floats); `scratch` receives the row's new value.
fn step(opt: Optimizer, lr: f32, row: &[AtomicU32], state: &[AtomicU32], g: &[f32], scratch: &mut Vec<f32>) {
    let load = |a: &AtomicU32| f32::from_bits(a.load(Relaxed));
    scratch.clear();
    scratch.extend(row.iter().map(load));
    match opt {
        Optimizer::Sgd => kernels::axpy(-lr, g, scratch),
        Optimizer::Adagrad => {
            let s = load(&state[0]) + kernels::dot(g, g) / g.len() as f32;
            state[0].store(s.to_bits(), Relaxed);
            kernels::axpy(-lr / (s.sqrt() + 1e-10), g, scratch);
        }
        Optimizer::Adam => {
            const B1: f32 = 0.9;
            const B2: f32 = 0.999;
            let d = g.len();
            let (m, rest) = state.split_at(d);
            let (v, t) = rest.split_at(d);
            let steps = load(&t[0]) + 1.0;
            t[0].store(steps.to_bits(), Relaxed);
            // Bias corrections folded into the step size.
            let a = lr * (1.0 - B2.powf(steps)).sqrt() / (1.0 - B1.powf(steps));
            for (((x, &gv), m), v) in scratch.iter_mut().zip(g).zip(m).zip(v) {
                let mv = B1 * load(m) + (1.0 - B1) * gv;
                let vv = B2 * load(v) + (1.0 - B2) * gv * gv;
                m.store(mv.to_bits(), Relaxed);
                v.store(vv.to_bits(), Relaxed);
                *x -= a * mv / (vv.sqrt() + 1e-8);
            }
        }
    }
}

fn write(row: &[AtomicU32], values: &[f32]) {
    for (a, v) in row.iter().zip(values) {
        a.store(v.to_bits(), Relaxed);
    }
}

fn apply(params: &Params<'_>, cfg: &TrainConfig, rel: u32, head_rel: Option<u32>, work: &mut Work) {
    let d = cfg.dim;
    let mut scratch = std::mem::take(&mut work.row);
    for (&(t, x), &slot) in &work.slots {
        let Some((row, state)) = params.node(t, x) else {
            continue;
        };
        if cfg.regularization > 0.0 {
            let g = &mut work.grads[slot * d..(slot + 1) * d];
            for (gv, a) in g.iter_mut().zip(row) {
                *gv += cfg.reg_grad(f32::from_bits(a.load(Relaxed)));
            }
        }
        let prev = params.prev.filter(|_| cfg.drift_penalty > 0.0);
        if let Some((prev, (t, x))) = prev
            .map(|p| (p, params.id(t, x)))
            .filter(|(p, (t, x))| *x < p.rows(*t))
        {
            let g = &mut work.grads[slot * d..(slot + 1) * d];
            for ((gv, a), p) in g.iter_mut().zip(row).zip(prev.node(t, x)) {
                *gv += 2.0 * cfg.drift_penalty * (f32::from_bits(a.load(Relaxed)) - p);
            }
        }
        step(
            cfg.optimizer,
            cfg.lr,
            row,
            state,
            &work.grads[slot * d..(slot + 1) * d],
            &mut scratch,
        );
        if cfg.max_norm > 0.0 && cfg.score != Score::Dot {
            let max = cfg.max_norm;
            let norm = kernels::dot(&scratch, &scratch).sqrt();
            if norm > max {
                scratch.iter_mut().for_each(|v| *v *= max / norm);
            }
        }
        write(row, &scratch);
    }
    let lr = cfg.relation_lr.unwrap_or(cfg.lr);
    for (half, r) in [(0, Some(rel)), (1, head_rel)] {
        if let (true, Some((row, state))) = (lr > 0.0, r.and_then(|r| params.relation(r))) {
            step(
                cfg.optimizer,
                lr,
                row,
                state,
                &work.rel_grad[half * d..(half + 1) * d],
                &mut scratch,
            );
            write(row, &scratch);
        }
    }
    work.row = scratch;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_thread_is_an_error_not_a_nan_loss() {
        let mut works = vec![(); 4];
        assert_eq!(on_threads(&mut works, |t, _| t as f64).unwrap(), 6.0);
        let e = on_threads(
            &mut works,
            |t, _| if t == 2 { panic!("boom at {t}") } else { 1.0 },
        )
        .unwrap_err();
        assert!(
            matches!(&e, EngineError::Training(m) if m.contains("panicked: boom at 2")),
            "{e}"
        );
    }

    #[test]
    fn adam_step_matches_reference() {
        let d = 5;
        let mut row: Vec<f32> = vec![0.5, -1.0, 0.0, 2.0, 0.25];
        let mut state = vec![0f32; Optimizer::Adam.state_width(d)];
        let grads: [[f32; 5]; 3] = [
            [0.1, -0.2, 0.0, 1.5, -0.01],
            [0.3, 0.2, 0.05, -1.0, -0.01],
            [-0.2, 0.0, 0.05, 0.5, 0.02],
        ];
        // PyTorch's Adam in f64: bias-corrected moments, ε added after the root.
        let (lr, b1, b2, eps) = (0.01f64, 0.9f64, 0.999f64, 1e-8f64);
        let mut x: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let (mut m, mut v) = (vec![0f64; d], vec![0f64; d]);
        let mut scratch = Vec::new();
        for (k, g) in grads.iter().enumerate() {
            let t = (k + 1) as i32;
            for i in 0..d {
                let gi = g[i] as f64;
                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                let (mh, vh) = (m[i] / (1.0 - b1.powi(t)), v[i] / (1.0 - b2.powi(t)));
                x[i] -= lr * mh / (vh.sqrt() + eps);
            }
            step(
                Optimizer::Adam,
                lr as f32,
                atomics(&mut row),
                atomics(&mut state),
                g,
                &mut scratch,
            );
            row.copy_from_slice(&scratch);
        }
        for (a, b) in row.iter().zip(&x) {
            assert!(
                (*a as f64 - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{row:?} vs {x:?}"
            );
        }
        assert_eq!(state[2 * d], 3.0, "step count");
    }
}
