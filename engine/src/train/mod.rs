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
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use quiver_storage::{BucketEdge, Buckets, Database, Snapshot, StagedPart};
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};

use crate::config::{AutoValid, EdgeWeights, Optimizer, Score, Sides, TrainConfig, ValidMetric, AUTO_EPOCHS};
use crate::gpu::{GpuContext, StepBatch, StepTables};
use crate::kernels;
use crate::model::{
    init_rows, load_pools, part_key, part_seed, pool_key, Model, Pool, Settings, RELATIONS_KEY,
};
use crate::side::{Corrupt, Query};
use crate::{Device, EngineError, Result};

mod checkpoint;
mod cpu;
mod gpu;
mod plan;
mod resident;
pub(crate) use resident::physical_memory;
mod events;
mod threads;
mod valid;

use checkpoint::*;
use cpu::*;
pub use events::{EpochStats, TrainEvent};
use gpu::*;
use plan::*;
use resident::*;
use threads::*;
use valid::*;
pub use valid::{best_model_name, settled, Validation};

/// What a run reports to and hears from its caller.
struct Control<'a> {
    on_event: &'a mut dyn FnMut(&TrainEvent),
    stop: &'a AtomicBool,
    valid: Option<&'a Validation>,
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
    train_on_until(db, name, config, device, on_event, &AtomicBool::new(false), None)
}

/// [`train_on`] that ends with [`EngineError::Stopped`] at the first bucket
/// boundary after `stop` is set (another thread's, or an event handler's),
/// the model saved there and resumable; with `valid`, scored on validation
/// triples as it goes ([`Validation`]).
pub fn train_on_until(
    db: &Database,
    name: &str,
    config: &TrainConfig,
    device: &Device,
    on_event: &mut dyn FnMut(&TrainEvent),
    stop: &AtomicBool,
    valid: Option<&Validation>,
) -> Result<()> {
    config.validate()?;
    let buckets = db.buckets(config.partitions)?;
    let relations = db.catalog().relations.len();
    let mut config = config.clone();
    settle_validation(&mut config, &buckets, relations, valid.is_some())?;
    crate::refresh::settle_scope(db, &buckets, &mut config)?;
    relation_factors(&config, &db.catalog())?;
    // The partitions are the buckets' own: nodes created since they were
    // built (by a concurrent writer) get no rows now and are inferred later.
    let settings = Settings {
        config,
        node_counts: buckets.node_counts().to_vec(),
        relations,
    };
    // Everything that can refuse the run does so before it is registered.
    let prev = preflight(db, &settings)?;
    let start = Progress {
        epoch: 0,
        bucket: 0,
        edge_version: buckets.edge_version(),
        valid: None,
        losses: Vec::new(),
        partial: (0.0, 0),
    };
    // Registered before the first bucket, so that a run killed at once can resume.
    let settings_json = serde_json::to_string(&settings).map_err(|e| EngineError::Internal(e.to_string()))?;
    let start_json = serde_json::to_string(&start).map_err(|e| EngineError::Internal(e.to_string()))?;
    db.start_model(name, &settings_json, &start_json)?;
    // What it trains on, recorded before anything is trained (`quiver models` counts changes from it).
    db.record_seen(name, &buckets)?;
    let auto = auto_validation(db, &buckets, &settings.config, valid, on_event)?;
    let mut start = start;
    let valid = valid.or(auto.as_ref());
    refresh_baseline(db, name, &settings, &mut start, (prev.as_ref(), valid), device)?;
    run(
        db,
        name,
        &settings,
        start,
        &buckets,
        prev.as_ref(),
        device,
        Control {
            on_event,
            stop,
            valid,
        },
    )
}

/// Training threads: the setting, or one per core.
fn threads(cfg: &TrainConfig) -> usize {
    match cfg.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// The checks a run makes before it starts (memory, the warm start), and the
/// warm start's model.
fn preflight(db: &Database, settings: &Settings) -> Result<Option<Model>> {
    let cfg = &settings.config;
    check_memory(cfg, &settings.node_counts, threads(cfg))?;
    warm_start(db, cfg)
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
    resume_on_until(db, name, device, on_event, &AtomicBool::new(false), None)
}

/// [`resume_on`] that stops and validates like [`train_on_until`].
pub fn resume_on_until(
    db: &Database,
    name: &str,
    device: &Device,
    on_event: &mut dyn FnMut(&TrainEvent),
    stop: &AtomicBool,
    valid: Option<&Validation>,
) -> Result<()> {
    let info = db.model_info(name)?;
    let bad = |m: &str| EngineError::Model {
        name: name.to_string(),
        message: m.to_string(),
    };
    let mut settings: Settings =
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
    crate::refresh::settle_scope(db, &buckets, &mut settings.config)?;
    let prev = preflight(db, &settings)?;
    let auto = auto_validation(db, &buckets, &settings.config, valid, on_event)?;
    let mut start = start;
    let valid = valid.or(auto.as_ref());
    refresh_baseline(db, name, &settings, &mut start, (prev.as_ref(), valid), device)?;
    run(
        db,
        name,
        &settings,
        start,
        &buckets,
        prev.as_ref(),
        device,
        Control {
            on_event,
            stop,
            valid,
        },
    )
}

/// What every step of a run reads, and nothing in a run changes.
struct RunCtx<'a> {
    db: &'a Database,
    name: &'a str,
    settings: &'a Settings,
    settings_json: String,
    snap: Snapshot,
    /// Per relation: (source type, destination type).
    ends: Vec<(u32, u32)>,
    /// Per node type: rows per partition.
    part_size: Vec<u32>,
    prev: Option<&'a Model>,
    /// A refresh's old optimizer state ([`crate::refresh::OldState`]).
    old_state: Option<crate::refresh::OldState>,
    /// Optimizer state per row.
    width: usize,
}

impl RunCtx<'_> {
    fn cfg(&self) -> &TrainConfig {
        &self.settings.config
    }

    fn wrong_size(&self, key: &str) -> EngineError {
        EngineError::Model {
            name: self.name.to_string(),
            message: format!("stored part {key} has the wrong size for the model's settings"),
        }
    }
}

/// Trains one visit of a bucket on the device with `cfg`, the run's
/// settings at this epoch ([`TrainConfig::at_epoch`]); returns its loss.
#[allow(clippy::too_many_arguments)]
fn train_visit(
    ctx: &RunCtx<'_>,
    cfg: &TrainConfig,
    (resident, relations, relation_state): (&mut [Option<Part>], &mut Vec<f32>, &mut Vec<f32>),
    foreign: &mut [Foreign<'_>],
    visit: &Visit,
    buckets: &Buckets,
    device: &Device,
    rng: &mut Xoshiro256PlusPlus,
    works: &mut [Work],
    tick: &mut dyn FnMut(usize),
) -> Result<f64> {
    let p = cfg.partitions;
    let needed = &visit.needed;
    if let Device::Gpu(gpu) = device {
        let mut parts: Vec<(PartId, &mut Part)> = resident
            .iter_mut()
            .enumerate()
            .filter_map(|(idx, slot)| {
                let id = PartId::of_slot(idx, p);
                Some((id, slot.as_mut().filter(|_| needed.contains(&id))?))
            })
            .collect();
        let rels = (&mut relations[..], &mut relation_state[..]);
        return train_bucket_gpu(
            gpu,
            &mut parts,
            foreign,
            rels,
            &ctx.part_size,
            cfg,
            buckets,
            &ctx.ends,
            visit,
            rng,
        );
    }
    let views = resident
        .iter_mut()
        .enumerate()
        .filter_map(|(idx, slot)| {
            let id = PartId::of_slot(idx, p);
            let part = slot.as_mut().filter(|_| needed.contains(&id))?;
            Some(PartView {
                t: id.ty,
                p: id.part,
                start: id.part * ctx.part_size[id.ty as usize],
                in_ball: part.in_ball,
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
        d: cfg.dim,
        width: ctx.width,
        part_size: &ctx.part_size,
        views,
        foreign,
        relations: atomics(relations),
        relation_state: atomics(relation_state),
        prev: ctx.prev,
    };
    train_bucket(&params, cfg, buckets, &ctx.ends, visit, rng, works, tick)
}

/// Algorithm 1 from `start`: every epoch visits every bucket `passes` times
/// (a share of its chunks each time), and each visit is the same named
/// steps; see [`RunState`] for what survives a kill.
#[allow(clippy::too_many_arguments)]
fn run(
    db: &Database,
    name: &str,
    settings: &Settings,
    start: Progress,
    buckets: &Buckets,
    prev: Option<&Model>,
    device: &Device,
    control: Control<'_>,
) -> Result<()> {
    let Control {
        on_event,
        stop,
        valid,
    } = control;
    let mut start = start;
    let cfg = &settings.config;
    if matches!(device, Device::Gpu(_)) {
        gpu_supports(cfg)?;
    }
    let snap = db.snapshot();
    let ctx = RunCtx {
        db,
        name,
        settings,
        settings_json: serde_json::to_string(settings).map_err(|e| EngineError::Internal(e.to_string()))?,
        ends: snap.catalog().relations.iter().map(|r| (r.src, r.dst)).collect(),
        snap,
        part_size: (0..settings.node_counts.len())
            .map(|t| settings.part_size(t))
            .collect(),
        prev,
        old_state: match &cfg.refresh {
            Some(r) => Some(crate::refresh::OldState::load(db, &r.model, cfg)?),
            None => None,
        },
        width: cfg.optimizer.state_width(cfg.dim),
    };
    let mut state = load_state(&ctx)?;
    let stats = match cfg.weights {
        EdgeWeights::Ignore => Vec::new(),
        _ => weight_stats(buckets, settings.relations),
    };
    let means: Vec<f32> = stats.iter().map(|s| s.2).collect();
    let factors = relation_factors(cfg, ctx.snap.catalog())?;
    let rates = relation_rates(cfg, buckets, settings.relations);
    for (relation, &(min, max, _)) in stats.iter().enumerate() {
        if min > 0.0 && max / min >= 100.0 {
            on_event(&TrainEvent::WeightSpread {
                relation: relation as u32,
                min,
                max,
            });
        }
    }
    let mut works: Vec<Work> = (0..threads(cfg)).map(|_| Work::default()).collect();
    let order = bucket_order(cfg.partitions);
    let visits = order.len() * cfg.passes;
    // When the last checkpoint began, and how long it took.
    let (mut saved_at, mut save_secs) = (Instant::now(), 0.0);
    // A run killed after its patience ran out (and before it was marked
    // finished) trains no further epochs when resumed.
    let first_epoch = match valid.is_some_and(|v| v.exhausted(start.valid.as_ref())) {
        true => cfg.epochs,
        false => start.epoch,
    };
    for epoch in first_epoch..cfg.epochs {
        let epoch_cfg = cfg.at_epoch(epoch);
        let started = Instant::now();
        let (mut loss, mut edges, mut loads, mut io) = (0f64, 0u64, 0u64, 0f64);
        let first = if epoch == start.epoch { start.bucket } else { 0 };
        // The epoch's loss and edges for its stored mean, from its first visit.
        let mut sums = if epoch == start.epoch {
            start.partial
        } else {
            (0.0, 0)
        };
        for b in first..visits {
            let (i, j) = order[b % order.len()];
            let bucket = buckets.bucket(i, j);
            // A refresh loads only the partitions its edges train.
            let needed = match cfg.scope {
                Some(_) => {
                    let trained: Vec<BucketEdge> =
                        bucket.iter().filter(|e| trains(cfg, e)).copied().collect();
                    bucket_partitions(&ctx, &trained, (i, j))?
                }
                None => bucket_partitions(&ctx, bucket, (i, j))?,
            };
            let io_started = Instant::now();
            loads += make_resident(&ctx, &mut state, &needed)?;
            let mut foreign = foreign_pools(settings, &needed, &mut state.pools);
            state.dirty_pools.extend(foreign.iter().map(|f| f.t));
            io += io_started.elapsed().as_secs_f64();
            // Seeded by the bucket, so that its passes share one plan of chunks.
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(
                cfg.seed
                    ^ ((epoch as u64) << 32 | (b % order.len()) as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            );
            let (edge_order, chunks) =
                plan_chunks(cfg, bucket, (&ctx.ends, &rates), &mut rng, b / order.len());
            let visit = Visit {
                bucket: (i, j),
                needed,
                order: edge_order,
                chunks,
                weights: edge_weights(cfg, &means, &factors, buckets, (i, j)),
            };
            let tables = (
                &mut state.resident[..],
                &mut state.relations,
                &mut state.relation_state,
            );
            let chunks = visit.chunks.len();
            let mut tick = |done: usize| {
                on_event(&TrainEvent::Chunks {
                    epoch,
                    bucket: b,
                    buckets: visits,
                    done,
                    chunks,
                })
            };
            let visit_loss = train_visit(
                &ctx,
                &epoch_cfg,
                tables,
                &mut foreign,
                &visit,
                buckets,
                device,
                &mut rng,
                &mut works,
                &mut tick,
            )?;
            drop(foreign);
            // Nothing that diverged is saved: the model stays at its last checkpoint, unfinished.
            if let Some(what) = diverged(visit_loss, &state, &visit.needed, cfg.partitions) {
                return Err(EngineError::Training(format!(
                    "diverged in epoch {}, bucket {} of {visits}: {what}; model `{name}` is left unfinished at its last checkpoint (lower lr or init_scale)",
                    epoch + 1,
                    b + 1
                )));
            }
            loss += visit_loss;
            sums.0 += visit_loss;
            sums.1 += visit.chunks.iter().map(|c| c.len() as u64).sum::<u64>();
            for id in &visit.needed {
                if let Some(part) = &mut state.resident[id.slot(cfg.partitions)] {
                    part.dirty = true;
                }
            }
            edges += visit.chunks.iter().map(|c| c.len() as u64).sum::<u64>();
            let io_started = Instant::now();
            refresh_pools(&ctx, &mut state, &visit.needed, (epoch, b));
            io += io_started.elapsed().as_secs_f64();
            on_event(&TrainEvent::Bucket {
                epoch,
                bucket: b,
                buckets: visits,
                edges,
                loss,
            });
            // The last bucket of an epoch stops after the epoch's event.
            let stopping = stop.load(Relaxed) && b + 1 < visits;
            let due = saved_at.elapsed().as_secs_f64() >= CHECKPOINT_SECS.max(10.0 * save_secs);
            // A refresh's epochs are small: it saves at its end, before a
            // scoring (which reads the saved model), when due and when stopped.
            let scoring = valid.is_some_and(|v| v.due(epoch, cfg.epochs));
            let epoch_end = b + 1 == visits && (cfg.refresh.is_none() || epoch + 1 == cfg.epochs || scoring);
            if stopping || due || epoch_end {
                let begun = Instant::now();
                let validating = valid.is_some_and(|v| v.due(epoch, cfg.epochs));
                let progress = progress_after(&ctx, &start, (epoch, b), visits, validating, sums);
                checkpoint(&ctx, &mut state, &progress)?;
                (saved_at, save_secs) = (begun, begun.elapsed().as_secs_f64());
                io += save_secs;
            }
            if stopping {
                return Err(EngineError::Stopped(name.to_string()));
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        // (A run resumed at an epoch's end, its scoring pending, trained nothing of it now.)
        if first < visits {
            on_event(&TrainEvent::Epoch(EpochStats {
                epoch,
                loss,
                edges,
                seconds,
                io_share: if seconds > 0.0 { io / seconds } else { 0.0 },
                loads,
            }));
            start = start.with_epoch(epoch, sums);
        }
        if let Some(v) = valid {
            if validate(&ctx, v, device, epoch, &mut start, on_event)? {
                break;
            }
        }
        if stop.load(Relaxed) && epoch + 1 < cfg.epochs {
            return Err(EngineError::Stopped(name.to_string()));
        }
    }
    finish(&ctx, &state, &start, valid, stop)
}
