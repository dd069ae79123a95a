//! Approximate nearest neighbours: an HNSW graph over one node type's rows
//! of a stored model, built and searched by usearch (C++, through its own
//! Rust crate), stored as a part of the model and served from the map.
//!
//! This module owns every use of usearch and its one `unsafe` (a view over
//! the mapped part). What it returns is plain ids and the model's own
//! scores: candidates from the graph are rescored from the model's f32 rows
//! with the exact path's arithmetic ([`Index`]), so a node's score is the
//! same whichever path found it, and rows added after the build (cold-start
//! nodes) are scanned exactly and merged.

use std::sync::RwLock;
use std::time::Instant;

use quiver_storage::{Database, ModelRef, StoredPart};
use serde::{Deserialize, Serialize};
use usearch::{IndexOptions, MetricKind, ScalarKind};

use crate::retrieval::{Index, Metric};
use crate::{EngineError, Result};

/// The model part that holds node type `ty`'s index.
pub fn index_key(ty: u32) -> String {
    format!("{INDEX_PREFIX}{ty}")
}

const INDEX_PREFIX: &str = "index/";

/// How vectors are stored in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// 4 bytes per value.
    F32,
    /// Half precision.
    F16,
    /// One byte per value, each vector scaled to unit norm (usearch's int8
    /// kernels rank by angle); the search's whole beam is rescored from the
    /// f32 rows.
    I8,
}

impl Quantization {
    /// Parses `f32`, `f16` or `i8`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "i8" => Ok(Self::I8),
            other => Err(EngineError::Config(format!(
                "quantization `{other}`: expected f32, f16 or i8"
            ))),
        }
    }

    fn bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
            Self::I8 => 1,
        }
    }
}

/// How an index is built.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexSettings {
    /// Vector storage in the graph.
    pub quantization: Quantization,
    /// Edges per node in the graph (HNSW's M).
    pub connectivity: usize,
    /// Search breadth while building (HNSW's ef_construction).
    pub expansion_add: usize,
    /// Default search breadth (HNSW's ef); a search may ask for another.
    pub expansion_search: usize,
    /// Build threads (0: one per core).
    #[serde(skip)]
    pub threads: usize,
}

impl Default for IndexSettings {
    /// M 16 and ef_construction 200 (hnswlib's and faiss's common settings);
    /// ef 96: the smallest of 32, 48, 64, 80, 96, 128 with recall@10 ≥ 0.95
    /// on validation vectors (`ann_scale.py generate --seed 1`, 1M × 128,
    /// not the benchmark's seed-0 set; BENCHMARKS.md, "ANN index").
    fn default() -> Self {
        Self {
            quantization: Quantization::F32,
            connectivity: 16,
            expansion_add: 200,
            expansion_search: 96,
            threads: 0,
        }
    }
}

/// What is stored with an index (section 0 of its part, JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexInfo {
    /// The node type indexed.
    pub node_type: u32,
    /// The comparator (`dot`, `l2` or `cosine`).
    pub metric: String,
    /// Columns.
    pub dim: usize,
    /// Rows indexed: ids `0..rows`, less `removed`.
    pub rows: u32,
    /// Ids below `rows` not in the graph: nodes deleted before a refresh
    /// carried the index over ([`crate::refresh::refresh_on_until`]).
    #[serde(default)]
    pub removed: u32,
    /// For an index a refresh carried over: the rows it added again (moved,
    /// new or revived nodes); `None` for one built whole.
    #[serde(default)]
    pub reinserted: Option<u32>,
    /// How it was built.
    pub settings: IndexSettings,
    /// [`model_version`] of the model it was built from.
    pub version: String,
    /// Seconds the build took.
    pub build_seconds: f64,
}

/// A stored model's version for its indexes: a hash of every part that
/// holds rows or vectors (not the indexes or int8 copies) and of its
/// settings. Training, a warm start or an import into the same name
/// changes it; an index built from another version is stale.
pub fn model_version(info: &ModelRef) -> String {
    // FNV-1a, 64 bits: stable across builds, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h = (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(info.settings.as_bytes());
    for (key, r) in &info.parts {
        if key.starts_with(INDEX_PREFIX) || key.starts_with("int8/") {
            continue;
        }
        eat(key.as_bytes());
        eat(r.file.as_bytes());
        eat(&r.crc.to_le_bytes());
        eat(&r.len.to_le_bytes());
    }
    format!("{h:016x}")
}

fn metric_kind(metric: Metric) -> Result<MetricKind> {
    match metric {
        Metric::Dot => Ok(MetricKind::IP),
        Metric::L2 => Ok(MetricKind::L2sq),
        Metric::Cosine => Ok(MetricKind::Cos),
        Metric::L1 => Err(EngineError::Config(
            "an L1 model has no approximate index (search it exactly)".into(),
        )),
    }
}

pub(crate) fn options(metric: Metric, dim: usize, s: &IndexSettings) -> Result<IndexOptions> {
    Ok(IndexOptions {
        dimensions: dim,
        metric: metric_kind(metric)?,
        quantization: match s.quantization {
            Quantization::F32 => ScalarKind::F32,
            Quantization::F16 => ScalarKind::F16,
            Quantization::I8 => ScalarKind::I8,
        },
        connectivity: s.connectivity,
        expansion_add: s.expansion_add,
        expansion_search: s.expansion_search,
        multi: false,
    })
}

/// Gives an f32 index quiver's own distance kernels (AVX2 when the CPU has
/// it, chosen at run time) in place of usearch's portable ones, which the
/// baseline x86-64 target compiles to SSE2: the same distances (1 − q·x for
/// the inner product, ‖q − x‖² for L2), faster (BENCHMARKS.md). Other
/// quantizations and cosine keep usearch's kernels.
pub(crate) fn own_kernels(hnsw: &mut usearch::Index, metric: Metric, dim: usize, q: Quantization) {
    if q != Quantization::F32 {
        return;
    }
    #[allow(unsafe_code)]
    let rows = move |a: *const f32, b: *const f32| {
        // SAFETY: usearch calls the metric of an f32 index with two
        // pointers to vectors of the index's `dim` f32s, stored or queried,
        // alive for the call.
        unsafe {
            (
                std::slice::from_raw_parts(a, dim),
                std::slice::from_raw_parts(b, dim),
            )
        }
    };
    let f: Box<dyn Fn(*const f32, *const f32) -> f32 + Send + Sync> = match metric {
        Metric::Dot => Box::new(move |a, b| {
            let (a, b) = rows(a, b);
            1.0 - crate::kernels::dot(a, b)
        }),
        Metric::L2 => Box::new(move |a, b| {
            let (a, b) = rows(a, b);
            crate::kernels::l2_squared(a, b)
        }),
        Metric::Cosine | Metric::L1 => return,
    };
    hnsw.change_metric::<f32>(f);
}

pub(crate) fn ffi(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("usearch {what}: {e}"))
}

/// Bytes an index of `rows` rows takes while it is built (the vectors at
/// their quantization, the base layer's links, the upper layers' share and
/// per-node bookkeeping), for refusing settings beyond memory up front.
pub fn estimate_bytes(rows: usize, dim: usize, s: &IndexSettings) -> u64 {
    let links = 2 * s.connectivity * 4 + 8;
    (rows as u64) * (dim * s.quantization.bytes() + links * 9 / 8 + 48) as u64
}

/// Builds node type `ty`'s index over `rows` (`n × dim`) with the model's
/// comparator, stores it as part `index/T` of model `name` in one catalog
/// change (replacing any), and returns what it stored. `progress(done,
/// total)` is called every few thousand rows; it returns false to stop,
/// which ends the build with [`EngineError::Interrupted`] and stores
/// nothing.
pub fn build_index(
    db: &Database,
    name: &str,
    ty: u32,
    (rows, dim, metric): (&[f32], usize, Metric),
    settings: &IndexSettings,
    progress: &(dyn Fn(usize, usize) -> bool + Sync),
) -> Result<IndexInfo> {
    let version = model_version(&db.model_info(name)?);
    if settings.connectivity < 2 || settings.expansion_add == 0 || settings.expansion_search == 0 {
        return Err(EngineError::Config(
            "connectivity must be at least 2 and the expansions at least 1".into(),
        ));
    }
    let n = rows.len() / dim.max(1);
    let need = estimate_bytes(n, dim, settings);
    if let Some(physical) = crate::train::physical_memory() {
        if need > physical {
            return Err(EngineError::Config(format!(
                "the index would need about {} MiB while it is built, more than this machine's {} MiB: use --quantization i8 or f16, or a smaller --connectivity",
                need >> 20,
                physical >> 20
            )));
        }
    }
    let started = Instant::now();
    let mut hnsw = usearch::Index::new(&options(metric, dim, settings)?).map_err(|e| ffi("index", e))?;
    own_kernels(&mut hnsw, metric, dim, settings.quantization);
    let ids: Vec<u32> = (0..n as u32).collect();
    add_rows(&hnsw, (&ids, rows, dim), settings.threads, progress)?;
    let info = IndexInfo {
        node_type: ty,
        metric: metric.name().to_string(),
        dim,
        rows: n as u32,
        removed: 0,
        reinserted: None,
        settings: settings.clone(),
        version,
        build_seconds: started.elapsed().as_secs_f64(),
    };
    store_index(db, name, &hnsw, &info)?;
    Ok(info)
}

/// Adds rows `ids` of `rows` (`n × dim`) to `hnsw` on `threads` threads (0:
/// one per core), calling `progress(done, total)` every few thousand rows;
/// its false ends the adding with [`EngineError::Interrupted`].
pub(crate) fn add_rows(
    hnsw: &usearch::Index,
    (ids, rows, dim): (&[u32], &[f32], usize),
    threads: usize,
    progress: &(dyn Fn(usize, usize) -> bool + Sync),
) -> Result<()> {
    let n = ids.len();
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        t => t,
    }
    .min(n.max(1));
    hnsw.reserve_capacity_and_threads(hnsw.size() + n, threads)
        .map_err(|e| ffi("reserve", e))?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    const STEP: usize = 4096;
    let failed: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    use std::sync::atomic::Ordering::Relaxed;
                    loop {
                        let start = next.fetch_add(STEP, Relaxed);
                        if start >= n || stop.load(Relaxed) {
                            return Ok(());
                        }
                        for &id in &ids[start..(start + STEP).min(n)] {
                            let i = id as usize;
                            hnsw.add(u64::from(id), &rows[i * dim..(i + 1) * dim])
                                .map_err(|e| ffi("add", e))?;
                        }
                        if !progress((start + STEP).min(n), n) {
                            stop.store(true, Relaxed);
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(EngineError::Internal("an index build thread panicked".into())))
            })
            .collect()
    });
    for r in failed {
        r?;
    }
    if stop.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(EngineError::Interrupted);
    }
    Ok(())
}

/// Stores `hnsw` with `info` as part `index/T` of model `name`, in one
/// catalog change (replacing any).
pub(crate) fn store_index(db: &Database, name: &str, hnsw: &usearch::Index, info: &IndexInfo) -> Result<()> {
    let json = serde_json::to_vec(info).map_err(|e| EngineError::Internal(e.to_string()))?;
    let len = hnsw.serialized_length();
    db.save_model_blob(
        name,
        &index_key(info.node_type),
        &[json.len(), len],
        |mut sections| {
            let graph = sections.pop().unwrap_or_default();
            if let Some(meta) = sections.pop() {
                meta.copy_from_slice(&json);
            }
            hnsw.save_to_buffer(graph).map_err(|e| ffi("save", e))
        },
    )
}

/// A stored index, served from its memory-mapped part.
pub struct AnnIndex {
    // Declared before `part`: the view over the map is dropped first.
    hnsw: usearch::Index,
    /// The search breadth usearch is set to; searches asking for another
    /// take the write lock to change it (usearch keeps it per index).
    ef: RwLock<usize>,
    /// `info.metric`, parsed.
    metric: Metric,
    info: IndexInfo,
    part: StoredPart,
}

impl AnnIndex {
    /// Node type `ty`'s index of model `name`, checked and mapped; `None`
    /// when there is none.
    pub fn open(db: &Database, name: &str, ty: u32) -> Result<Option<Self>> {
        let Some(part) = db.model_blob(name, &index_key(ty))? else {
            return Ok(None);
        };
        let bad = |m: String| EngineError::Model {
            name: name.to_string(),
            message: format!("index of node type {ty}: {m}"),
        };
        let info: IndexInfo = serde_json::from_slice(part.bytes(0)).map_err(|e| bad(e.to_string()))?;
        let metric = Metric::parse(&info.metric)?;
        let mut hnsw =
            usearch::Index::new(&options(metric, info.dim, &info.settings)?).map_err(|e| ffi("index", e))?;
        // SAFETY: the buffer is the part's read-only map, owned by the
        // returned value beside the view and dropped after it (field
        // order); its checksum was verified when it was opened, so it is
        // the buffer `save_to_buffer` wrote.
        #[allow(unsafe_code)]
        unsafe { hnsw.view_from_buffer(part.bytes(1)) }.map_err(|e| bad(format!("cannot be read: {e}")))?;
        own_kernels(&mut hnsw, metric, info.dim, info.settings.quantization);
        if hnsw.size() + info.removed as usize != info.rows as usize || hnsw.dimensions() != info.dim {
            return Err(bad(format!(
                "holds {} rows of {} columns, its record says {} ({} removed) of {}",
                hnsw.size(),
                hnsw.dimensions(),
                info.rows,
                info.removed,
                info.dim
            )));
        }
        Ok(Some(Self {
            ef: RwLock::new(info.settings.expansion_search),
            hnsw,
            metric,
            info,
            part,
        }))
    }

    /// Node type `ty`'s index of model `name` when there is one built from
    /// the model as it is now. A stale one (the model was trained, warm
    /// started or imported since) is never used: `None`, with a one-line
    /// warning on stderr (once per process and index) that searches are
    /// exact until it is built again.
    pub fn current(db: &Database, name: &str, ty: u32) -> Result<Option<Self>> {
        let Some(index) = Self::open(db, name, ty)? else {
            return Ok(None);
        };
        if index.is_current(&db.model_info(name)?) {
            return Ok(Some(index));
        }
        static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let tag = format!("{}\0{name}\0{}", db.path().display(), index.info.version);
        let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
        if !warned.contains(&tag) {
            eprintln!(
                "warning: the index of model `{name}` over `{}` was built from an earlier version of the model; searching exactly (run `quiver index` again)",
                db.catalog().type_name(ty)
            );
            warned.push(tag);
        }
        Ok(None)
    }

    /// What was stored with it.
    pub fn info(&self) -> &IndexInfo {
        &self.info
    }

    /// The stored graph, as usearch serialized it.
    pub(crate) fn graph(&self) -> &[u8] {
        self.part.bytes(1)
    }

    /// Bytes of the stored index.
    pub fn file_bytes(&self) -> usize {
        self.part.bytes(1).len()
    }

    /// True when it was built from the model as `info` describes it now.
    pub fn is_current(&self, info: &ModelRef) -> bool {
        self.info.version == model_version(info)
    }

    /// The `k` best rows of `rows` (the model's table of this node type,
    /// `n × dim`, n ≥ the rows indexed: rows beyond are scanned exactly) for
    /// query `q`, best first with the model's own scores, leaving out ids
    /// for which `skip` holds; the graph is searched with breadth `ef`
    /// (the index's default when `None`), filtered by `skip` as it goes, so
    /// k results come back whenever k rows pass the filter within reach.
    pub fn search(
        &self,
        rows: &[f32],
        q: &[f32],
        k: usize,
        ef: Option<usize>,
        skip: &(dyn Fn(u32) -> bool + Sync),
    ) -> Result<Vec<(u32, f32)>> {
        let (d, indexed) = (self.info.dim, self.info.rows as usize);
        if q.len() != d || !rows.len().is_multiple_of(d) || rows.len() / d < indexed {
            return Err(EngineError::Input(format!(
                "a query of {} values against an index of {} columns over {} rows",
                q.len(),
                d,
                rows.len() / d.max(1)
            )));
        }
        let metric = self.metric;
        let ef = ef.unwrap_or(self.info.settings.expansion_search).max(k);
        // A quantized graph ranks approximately: its whole beam is rescored.
        let wanted = match self.info.settings.quantization {
            Quantization::F32 => k,
            _ => ef,
        };
        let found = {
            let current = self.ef.read().unwrap_or_else(|e| e.into_inner());
            if *current == ef {
                self.filtered(q, wanted, skip)?
            } else {
                drop(current);
                let mut w = self.ef.write().unwrap_or_else(|e| e.into_inner());
                self.hnsw.change_expansion_search(ef);
                *w = ef;
                self.filtered(q, wanted, skip)?
            }
        };
        // Rescored from the f32 rows, as the exact path scores them.
        let ids: Vec<u32> = found.into_iter().filter(|&id| (id as usize) < indexed).collect();
        let mut gathered = Vec::with_capacity(ids.len() * d);
        for &id in &ids {
            gathered.extend_from_slice(&rows[id as usize * d..(id as usize + 1) * d]);
        }
        let mut best: Vec<(u32, f32)> = match ids.is_empty() {
            true => Vec::new(),
            false => Index::new(metric, &gathered, d)
                .with_threads(1)
                .search(q, k, &|_, _| false)
                .pop()
                .unwrap_or_default()
                .into_iter()
                .map(|(i, s)| (ids[i as usize], s))
                .collect(),
        };
        if rows.len() / d > indexed {
            let extra = Index::new(metric, &rows[indexed * d..], d)
                .with_threads(1)
                .search(q, k, &|_, id| skip(indexed as u32 + id))
                .pop()
                .unwrap_or_default();
            best.extend(extra.into_iter().map(|(i, s)| (indexed as u32 + i, s)));
        }
        best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        best.truncate(k);
        Ok(best)
    }

    fn filtered(&self, q: &[f32], wanted: usize, skip: &(dyn Fn(u32) -> bool + Sync)) -> Result<Vec<u32>> {
        let m = self
            .hnsw
            .filtered_search(q, wanted, |key| !skip(key as u32))
            .map_err(|e| ffi("search", e))?;
        Ok(m.keys.into_iter().map(|k| k as u32).collect())
    }
}

/// Builds node type `ty`'s index of stored model `name` over its rows with
/// its comparator ([`build_index`]).
pub fn index_model(
    db: &Database,
    name: &str,
    ty: u32,
    settings: &IndexSettings,
    progress: &(dyn Fn(usize, usize) -> bool + Sync),
) -> Result<IndexInfo> {
    let model = crate::Model::load(db, name)?;
    model
        .seen(&db.catalog(), Some(ty), None)
        .map_err(|message| EngineError::Model {
            name: name.to_string(),
            message,
        })?;
    let metric = Metric::of_score(model.config.score);
    build_index(
        db,
        name,
        ty,
        (&model.nodes[ty as usize], model.dim(), metric),
        settings,
        progress,
    )
}
