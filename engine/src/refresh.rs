//! Refresh: a new version of a stored model trained on what changed since
//! the graph state it was trained on ([`quiver_storage::Changes`]), warm
//! started from it, at a cost that follows the change.
//!
//! A refresh is an ordinary run ([`crate::train_on_until`], so it resumes,
//! stops and checks memory as training does) whose settings name the model
//! refreshed ([`RefreshFrom`]). When it starts or resumes, its scope is
//! computed from that model's record of the graph: the edges added since,
//! and a seeded replay sample of the other edges at a node the change
//! touched (an end of an added or deleted edge, or a new node), `replay`
//! old edges per added one (all of them when there are fewer), so that an
//! epoch's cost follows the change even when it touches hubs. Only those
//! edges train; buckets without any load nothing; the run continues the
//! old one (its optimizer state, its last learning rates); only the touched
//! rows move, held near their old values by the drift penalty, and every
//! other row keeps the old model's value exactly (it is a negative, never
//! stepped: pushed as a negative without being pulled as a positive, a row
//! drifts); new nodes start from their cold-start rows. At the end the old
//! model's indexes are carried over.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use quiver_storage::{BucketEdge, Buckets, Database};
use rustc_hash::FxHashSet as HashSet;

use crate::ann::{add_rows, ffi, options, own_kernels, store_index};
use crate::config::{draw, RefreshFrom, TrainConfig};
use crate::model::Settings;
use crate::{
    model_version, AnnIndex, Device, EngineError, IndexInfo, IndexSettings, Metric, Model, Result, TrainEvent,
};

/// Which edges a refresh trains.
pub(crate) struct Scope {
    added: HashSet<(u32, u32, u32)>,
    /// Per node type, a bit per id: touched by the change.
    touched: Vec<Vec<u64>>,
    /// Per relation: (source type, destination type).
    ends: Vec<(u32, u32)>,
    /// Probability that an old edge at a touched node is replayed.
    replay: f64,
    seed: u64,
}

impl Scope {
    /// Whether node `id` of type `ty` is an end of a changed edge, or new:
    /// the rows a refresh moves (the others are the old model's exactly).
    pub(crate) fn touched(&self, ty: u32, id: u32) -> bool {
        (self.touched.get(ty as usize))
            .and_then(|b| b.get(id as usize / 64))
            .is_some_and(|w| w >> (id % 64) & 1 == 1)
    }

    /// True for an added edge, and for an old edge at a touched node that
    /// the replay draw keeps.
    pub(crate) fn trains(&self, e: &BucketEdge) -> bool {
        let Some(&(s, t)) = self.ends.get(e.rel as usize) else {
            return false;
        };
        (self.touched(s, e.src) || self.touched(t, e.dst))
            && (self.added.contains(&(e.rel, e.src, e.dst))
                || draw(
                    self.seed ^ u64::from(e.rel).wrapping_mul(0xa076_1d64_78bd_642f),
                    e.src,
                    e.dst,
                ) < self.replay)
    }
}

/// A refresh's scope behind a pointer, in [`TrainConfig`] (equal only to itself).
#[derive(Clone)]
pub struct ScopeRef(pub(crate) Arc<Scope>);

impl PartialEq for ScopeRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for ScopeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scope({} added edges)", self.0.added.len())
    }
}

/// Computes the scope of a refresh run from the database as it is now and
/// its `buckets` (a resumed run's are checked to be unchanged, so it finds
/// the same one); nothing for other runs.
pub(crate) fn settle_scope(db: &Database, buckets: &Buckets, cfg: &mut TrainConfig) -> Result<()> {
    let Some(r) = &cfg.refresh else {
        return Ok(());
    };
    let changes = db.changes_since(&r.model)?.ok_or_else(|| no_record(&r.model))?;
    if changes.is_empty() {
        return Err(EngineError::Config(format!(
            "nothing changed since model `{}` was trained: there is nothing to refresh",
            r.model
        )));
    }
    let snap = db.snapshot();
    let catalog = snap.catalog();
    let mut touched: Vec<Vec<u64>> = (0..catalog.node_types.len() as u32)
        .map(|t| vec![0u64; (snap.node_count(t) as usize).div_ceil(64)])
        .collect();
    let mut mark = |ty: u32, id: u32| {
        if let Some(w) = touched
            .get_mut(ty as usize)
            .and_then(|b| b.get_mut(id as usize / 64))
        {
            *w |= 1 << (id % 64);
        }
    };
    let ends: Vec<(u32, u32)> = catalog.relations.iter().map(|r| (r.src, r.dst)).collect();
    for e in changes.edges_added.iter().chain(&changes.edges_deleted) {
        let (s, t) = ends[e.rel as usize];
        mark(s, e.src);
        mark(t, e.dst);
    }
    for (ty, ids) in changes.nodes_added.iter().enumerate() {
        for &id in ids {
            mark(ty as u32, id);
        }
    }
    let mut scope = Scope {
        added: changes
            .edges_added
            .iter()
            .map(|e| (e.rel, e.src, e.dst))
            .collect(),
        touched,
        ends,
        replay: 1.0,
        seed: cfg.seed ^ 0x5bd1_e995,
    };
    let old = (buckets.edges().iter())
        .filter(|e| {
            let (s, t) = scope.ends[e.rel as usize];
            (scope.touched(s, e.src) || scope.touched(t, e.dst))
                && !scope.added.contains(&(e.rel, e.src, e.dst))
        })
        .count();
    scope.replay = (r.replay * scope.added.len() as f64 / old.max(1) as f64).min(1.0);
    cfg.scope = Some(ScopeRef(Arc::new(scope)));
    Ok(())
}

fn no_record(model: &str) -> EngineError {
    EngineError::Model {
        name: model.to_string(),
        message: "it has no record of the graph it was trained on (imported, or trained by an older quiver): train it again before refreshing it".into(),
    }
}

/// The optimizer state of the model a refresh starts from, so that its
/// steps continue the old run's (Adagrad's sums keep a row that has seen
/// many gradients from jumping at its first new one).
pub(crate) struct OldState {
    /// Per node type: `rows × width`, by id.
    pub(crate) nodes: Vec<Vec<f32>>,
    /// The relation vectors' state.
    pub(crate) relations: Vec<f32>,
}

impl OldState {
    /// Model `from`'s stored state, when it has the shape of `cfg`'s optimizer.
    pub(crate) fn load(db: &Database, from: &str, cfg: &TrainConfig) -> Result<Self> {
        let info = db.model_info(from)?;
        let s: Settings = serde_json::from_str(&info.settings).map_err(|e| EngineError::Model {
            name: from.to_string(),
            message: format!("settings: {e}"),
        })?;
        let width = cfg.optimizer.state_width(cfg.dim);
        let same = s.config.optimizer == cfg.optimizer && s.config.dim == cfg.dim;
        let mut nodes = Vec::new();
        for t in 0..s.node_counts.len() {
            let mut state = Vec::with_capacity(s.node_counts[t] as usize * width);
            for p in 0..s.config.partitions {
                let rows = s.part_range(t, p).len() * width;
                match db.model_part(from, &crate::model::part_key(t, p))? {
                    Some(part) if same && part.array(1).len() == rows => {
                        state.extend_from_slice(part.array(1))
                    }
                    _ => state.resize(state.len() + rows, 0.0),
                }
            }
            nodes.push(state);
        }
        let relations = match db.model_part(from, crate::model::RELATIONS_KEY)? {
            Some(part) if same => part.array(1).to_vec(),
            _ => Vec::new(),
        };
        Ok(Self { nodes, relations })
    }
}

/// How a refresh trains. The defaults were chosen on FB15k-237's
/// validation split (`bench/refresh.py`: 2, 5 or 10 epochs × replay 1 or
/// 4 × drift penalty 0, 0.01 or 0.1; BENCHMARKS.md, "Refresh").
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshOptions {
    /// Epochs over the changed edges and their replay sample.
    pub epochs: usize,
    /// Old edges at touched nodes trained again per added edge (≥ 0; all
    /// of them when there are fewer).
    pub replay: f64,
    /// λ of the penalty λ‖θ − θ_old‖² on the rows a refresh moves.
    pub drift_penalty: f32,
    /// Training threads (0: one per core).
    pub threads: usize,
}

impl Default for RefreshOptions {
    fn default() -> Self {
        Self {
            epochs: 10,
            replay: 4.0,
            drift_penalty: 0.0,
            threads: 0,
        }
    }
}

/// The models a refresh is due for: finished, with `refresh_after` > 0,
/// not refreshed already (no model is a refresh of them), and at least that
/// many edges added or deleted since their state.
pub fn due(db: &Database) -> Result<Vec<String>> {
    let models = db.models();
    let settings = |m: &quiver_storage::ModelRef| serde_json::from_str::<Settings>(&m.settings).ok();
    let refreshed: Vec<String> = (models.iter().filter_map(settings))
        .filter_map(|s| s.config.refresh.map(|r| r.model))
        .collect();
    let mut out = Vec::new();
    for m in &models {
        let after = settings(m).map_or(0, |s| s.config.refresh_after);
        if after == 0 || !m.progress.is_empty() || refreshed.contains(&m.name) {
            continue;
        }
        if db
            .changes_since(&m.name)?
            .is_some_and(|c| c.edges_changed() >= after)
        {
            out.push(m.name.clone());
        }
    }
    Ok(out)
}

/// The name a refresh of `from` gets when none is given: `from@2`, or for
/// `name@N`, `name@N+1` (the first such name not taken).
pub fn next_version(db: &Database, from: &str) -> String {
    let (base, n) = match from.rsplit_once('@').map(|(b, n)| (b, n.parse::<u64>())) {
        Some((b, Ok(n))) => (b, n),
        _ => (from, 1),
    };
    let taken = db.models();
    (n + 1..)
        .map(|k| format!("{base}@{k}"))
        .find(|name| !taken.iter().any(|m| &m.name == name))
        .unwrap_or_default()
}

/// The settings of a refresh of stored model `from`: its own, warm started
/// from it, with `opts`, no validation split, and the refresh's scope.
pub fn refresh_config(db: &Database, from: &str, opts: &RefreshOptions) -> Result<TrainConfig> {
    let info = db.model_info(from)?;
    let bad = |m: String| EngineError::Model {
        name: from.to_string(),
        message: m,
    };
    if !info.progress.is_empty() {
        return Err(bad("its training has not finished (resume it first)".into()));
    }
    let settings: Settings =
        serde_json::from_str(&info.settings).map_err(|e| bad(format!("settings: {e}")))?;
    if !(opts.replay >= 0.0 && opts.replay.is_finite()) {
        return Err(EngineError::Config(format!(
            "replay = {}: it must be a finite number ≥ 0",
            opts.replay
        )));
    }
    if opts.epochs == 0 {
        return Err(EngineError::Config("a refresh needs at least one epoch".into()));
    }
    // The old run's last rates, kept constant: the refresh continues it.
    let last = settings.config.at_epoch(settings.config.epochs.saturating_sub(1));
    Ok(TrainConfig {
        epochs: opts.epochs,
        lr: last.lr,
        relation_lr: last.relation_lr,
        lr_decay: 1.0,
        warm_start: Some(from.to_string()),
        drift_penalty: opts.drift_penalty,
        threads: opts.threads,
        // The old run's held-out edges, if it had them: the refresh keeps
        // its best epoch, or the old model when none beats it.
        validation: settings.config.validation.clone(),
        index: false,
        refresh: Some(RefreshFrom {
            model: from.to_string(),
            replay: opts.replay,
        }),
        ..settings.config
    })
}

/// Refreshes stored model `from` into a new model `to` (the old one stays
/// until dropped): trained on the edges added since `from`'s state and the
/// replay sample around them; its indexes carried over. Stops,
/// resumes ([`crate::resume_on_until`]) and reports events as training does.
pub fn refresh_on_until(
    db: &Database,
    from: &str,
    to: &str,
    opts: &RefreshOptions,
    device: &Device,
    on_event: &mut dyn FnMut(&TrainEvent),
    stop: &AtomicBool,
) -> Result<()> {
    if from == to {
        return Err(EngineError::Config(format!(
            "a refresh of `{from}` is a new model: give it another name"
        )));
    }
    if db.models().iter().any(|m| m.name == to) {
        return Err(EngineError::Config(format!(
            "model `{to}` exists: drop it first, or name the refresh otherwise"
        )));
    }
    // Nothing changed, or no record: refused by the run's scope before it is registered.
    let cfg = refresh_config(db, from, opts)?;
    crate::train_on_until(db, to, &cfg, device, on_event, stop, None)
}

/// A row that moved by more than this share of its length is added to a
/// carried index again; the others keep their place in its graph (searches
/// rescore every candidate from the model's rows, so a small move changes
/// no score, only, a little, which candidates are found).
const MOVED: f32 = 0.05;

/// Carries the current indexes of `from` over to `to` (a refresh of it,
/// `old` its rows): per node type, the stored graph with deleted nodes
/// removed and moved, new and revived nodes added again; rebuilt (without
/// the deleted nodes) when more than half the rows would be added.
pub(crate) fn carry_indexes(
    db: &Database,
    from: &str,
    to: &str,
    old: &Model,
    threads: usize,
    stop: &AtomicBool,
) -> Result<()> {
    let Ok(from_info) = db.model_info(from) else {
        return Ok(());
    };
    let mut indexes = Vec::new();
    for ty in 0..old.nodes.len() as u32 {
        if let Some(index) = AnnIndex::open(db, from, ty)?.filter(|i| i.is_current(&from_info)) {
            indexes.push((ty, index));
        }
    }
    if indexes.is_empty() {
        return Ok(());
    }
    let new = Model::load(db, to)?;
    let snap = db.snapshot();
    for (ty, index) in indexes {
        let d = new.dim();
        let (old_rows, new_rows) = (&old.nodes[ty as usize], &new.nodes[ty as usize]);
        let info = index.info();
        let settings = IndexSettings {
            threads,
            ..info.settings.clone()
        };
        let metric = Metric::parse(&info.metric)?;
        let progress = |_: usize, _: usize| !stop.load(Relaxed);
        let started = std::time::Instant::now();
        let mut hnsw = usearch::Index::new(&options(metric, d, &settings)?).map_err(|e| ffi("index", e))?;
        hnsw.load_from_buffer(index.graph()).map_err(|e| ffi("load", e))?;
        own_kernels(&mut hnsw, metric, d, settings.quantization);
        let n = (new_rows.len() / d) as u32;
        let moved = |id: u32| {
            let (i, j) = (id as usize * d, id as usize * d + d);
            let Some(before) = old_rows.get(i..j) else {
                return true;
            };
            let (mut delta, mut norm) = (0f32, 0f32);
            for (a, b) in before.iter().zip(&new_rows[i..j]) {
                delta += (a - b) * (a - b);
                norm += a * a;
            }
            delta > MOVED * MOVED * norm
        };
        let (mut add, mut removed) = (Vec::new(), 0u32);
        for id in 0..n {
            let present = id < info.rows && hnsw.contains(u64::from(id));
            if snap.is_deleted(ty, id) {
                if present {
                    hnsw.remove(u64::from(id)).map_err(|e| ffi("remove", e))?;
                }
                removed += 1;
            } else if !present || moved(id) {
                if present {
                    hnsw.remove(u64::from(id)).map_err(|e| ffi("remove", e))?;
                }
                add.push(id);
            }
        }
        let rebuilt = add.len() * 2 > n as usize;
        if rebuilt {
            hnsw = usearch::Index::new(&options(metric, d, &settings)?).map_err(|e| ffi("index", e))?;
            own_kernels(&mut hnsw, metric, d, settings.quantization);
            add = (0..n).filter(|&id| !snap.is_deleted(ty, id)).collect();
        }
        add_rows(&hnsw, (&add, new_rows, d), threads, &progress)?;
        let carried = IndexInfo {
            rows: n,
            removed,
            reinserted: (!rebuilt).then_some(add.len() as u32),
            version: model_version(&db.model_info(to)?),
            build_seconds: started.elapsed().as_secs_f64(),
            settings,
            ..info.clone()
        };
        store_index(db, to, &hnsw, &carried)?;
    }
    Ok(())
}
