//! A trained model: one embedding table per node type, one translation vector
//! per relation, and the optimizer's row state.
//!
//! In the database a model is stored in parts, so that training can hold only
//! some partitions in memory and checkpoint only what changed: part
//! `relations` holds the relation vectors and their state; part `nodes/T/P`
//! holds partition P of node type T (rows `P·s .. min((P+1)·s, n)` with
//! `s = ceil(n / partitions)`, as the buckets use) and its state; part
//! `pool/T` holds, for every partition of type T, a sample of its rows,
//! which other buckets train as negatives while the partition is not
//! resident ([`TrainConfig::foreign_sample`]) and which take precedence over
//! the partition's rows.

use quiver_storage::{Database, Snapshot, StoredPart};
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::retrieval::{Index, Metric};
use crate::side::Corrupt;
use crate::{EngineError, Result};

/// Embeddings of every node and relation, in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// How it was trained.
    pub config: TrainConfig,
    /// Per node type: `count × dim` row-major.
    pub nodes: Vec<Vec<f32>>,
    /// `relations × dim` row-major; with `config.reciprocal`, as many rows
    /// again for head prediction.
    pub relations: Vec<f32>,
}

/// What is stored beside the arrays.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub config: TrainConfig,
    pub node_counts: Vec<u32>,
    pub relations: usize,
}

impl Settings {
    /// Rows of relation vectors: one per relation, twice that with reciprocal ones.
    pub(crate) fn relation_rows(&self) -> usize {
        self.relations * (1 + usize::from(self.config.reciprocal))
    }

    /// Rows per partition of node type `t`.
    pub(crate) fn part_size(&self, t: usize) -> u32 {
        self.node_counts[t].div_ceil(self.config.partitions).max(1)
    }

    /// Row range of partition `p` of node type `t`.
    pub(crate) fn part_range(&self, t: usize, p: u32) -> std::ops::Range<u32> {
        let (n, s) = (self.node_counts[t], self.part_size(t));
        (p * s).min(n)..((p + 1) * s).min(n)
    }
}

pub(crate) fn part_key(t: usize, p: u32) -> String {
    format!("nodes/{t}/{p}")
}

pub(crate) const RELATIONS_KEY: &str = "relations";

pub(crate) fn pool_key(t: usize) -> String {
    format!("pool/{t}")
}

/// A sample of one partition's rows, at least as new as the partition's own,
/// kept as the three arrays it is stored as: the node ids (their bits), the
/// rows, the optimizer states.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    d: usize,
    width: usize,
    ids: Vec<f32>,
    rows: Vec<f32>,
    state: Vec<f32>,
}

impl Pool {
    pub(crate) fn new(d: usize, width: usize) -> Self {
        Self {
            d,
            width,
            ..Self::default()
        }
    }

    /// Row and state widths.
    pub(crate) fn dim(&self) -> usize {
        self.d
    }
    pub(crate) fn width(&self) -> usize {
        self.width
    }

    /// Empties the pool, keeping its buffers.
    pub(crate) fn clear(&mut self) {
        self.ids.clear();
        self.rows.clear();
        self.state.clear();
    }

    /// Adds node `id`'s row and state.
    pub(crate) fn push(&mut self, id: u32, row: &[f32], state: &[f32]) {
        self.ids.push(f32::from_bits(id));
        self.rows.extend_from_slice(row);
        self.state.extend_from_slice(state);
    }

    /// Rows in pool order (`len × d`).
    pub(crate) fn rows(&self) -> &[f32] {
        &self.rows
    }

    /// Optimizer states in pool order.
    pub(crate) fn state(&self) -> &[f32] {
        &self.state
    }

    /// Rows in the pool.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Node ids (their bits), and the rows and states to train in place.
    pub(crate) fn split_mut(&mut self) -> (&[f32], &mut [f32], &mut [f32]) {
        (&self.ids, &mut self.rows, &mut self.state)
    }

    /// (node id, row, state) of every pooled row.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &[f32], &[f32])> {
        self.ids
            .iter()
            .zip(self.rows.chunks_exact(self.d.max(1)))
            .zip(self.state.chunks_exact(self.width.max(1)))
            .map(|((id, row), st)| (id.to_bits(), row, st))
    }

    /// The arrays to store.
    pub(crate) fn arrays(&self) -> [&[f32]; 3] {
        [&self.ids, &self.rows, &self.state]
    }
}

/// The stored pools of node type `t`'s `partitions` partitions (`None` for
/// one that has none): part `pool/T`, sections 3p, 3p + 1, 3p + 2 the node
/// ids (their bits), rows and states of partition p's pool.
pub(crate) fn load_pools(
    db: &Database,
    name: &str,
    t: usize,
    partitions: u32,
    (d, width): (usize, usize),
) -> Result<Vec<Option<Pool>>> {
    let part = db.model_part(name, &pool_key(t))?;
    let mut out = Vec::with_capacity(partitions as usize);
    for p in 0..partitions as usize {
        let Some(part) = part.as_ref().filter(|part| part.len() > 3 * p) else {
            out.push(None);
            continue;
        };
        let (ids, rows, state) = (part.array(3 * p), part.array(3 * p + 1), part.array(3 * p + 2));
        if rows.len() != ids.len() * d || state.len() != ids.len() * width {
            return Err(EngineError::Model {
                name: name.to_string(),
                message: format!("pool of partition {p} of node type {t} has the wrong size"),
            });
        }
        out.push((!ids.is_empty()).then(|| Pool {
            d,
            width,
            ids: ids.to_vec(),
            rows: rows.to_vec(),
            state: state.to_vec(),
        }));
    }
    Ok(out)
}

/// `rows × dim` values uniform in ±init_scale/√dim, from a seed of their own,
/// so that any partition can be initialised alone and identically.
pub(crate) fn init_rows(config: &TrainConfig, seed: u64, rows: usize) -> Vec<f32> {
    let d = config.dim;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let bound = config.init_scale / (d as f32).sqrt();
    (0..rows * d)
        .map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * bound)
        .collect()
}

/// Seed of node type `t`'s partition `p`, or of the relations (`None`).
pub(crate) fn part_seed(config: &TrainConfig, part: Option<(usize, u32)>) -> u64 {
    let tag = part.map_or(0, |(t, p)| 1 + ((t as u64) << 32 | p as u64));
    config.seed ^ tag.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Model {
    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.config.dim
    }

    /// The embedding of node `id` of type `ty`.
    pub fn node(&self, ty: u32, id: u32) -> &[f32] {
        let d = self.dim();
        self.nodes
            .get(ty as usize)
            .and_then(|t| t.get(id as usize * d..(id as usize + 1) * d))
            .unwrap_or(&[])
    }

    /// The translation vector of relation `rel` (tails: h + r ≈ t).
    pub fn relation(&self, rel: u32) -> &[f32] {
        let d = self.dim();
        self.relations
            .get(rel as usize * d..(rel as usize + 1) * d)
            .unwrap_or(&[])
    }

    /// The query for heads of relation `rel` given tail embedding `t`:
    /// t + r′ with reciprocal relations, t − r for distances, t for dot.
    pub fn head_query(&self, rel: u32, t: &[f32]) -> Vec<f32> {
        self.query(Corrupt::Heads, rel, t)
    }

    /// The query for tails of relation `rel` given head embedding `h`: h + r.
    pub fn tail_query(&self, rel: u32, h: &[f32]) -> Vec<f32> {
        self.query(Corrupt::Tails, rel, h)
    }

    /// The query of `rel` from `node`, formed as the trainer forms it.
    fn query(&self, corrupt: Corrupt, rel: u32, node: &[f32]) -> Vec<f32> {
        let d = self.dim();
        let relations = self.relations.len() / d / (1 + usize::from(self.config.reciprocal));
        let q = corrupt.query(&self.config, rel, relations as u32);
        let r = q.relation as usize;
        let mut out = Vec::with_capacity(node.len());
        q.form(
            node,
            self.relations.get(r * d..(r + 1) * d).unwrap_or(&[]),
            &mut out,
        );
        out
    }

    /// How well candidate `c` answers query `q`, higher is better:
    /// −‖q − c‖ for the distance scores, q·c for the dot score.
    pub fn compare(&self, q: &[f32], c: &[f32]) -> f32 {
        if q.len() != c.len() {
            return f32::NEG_INFINITY;
        }
        crate::kernels::score(self.config.score, q, c)
    }

    /// The `k` best nodes of type `ty` for query `q` by [`Model::compare`],
    /// best first (ties by id), leaving out those for which `skip` is true.
    pub fn top_k(
        &self,
        q: &[f32],
        ty: u32,
        k: usize,
        skip: &(dyn Fn(u32) -> bool + Sync),
    ) -> Vec<(u32, f32)> {
        let d = self.dim();
        match self.nodes.get(ty as usize) {
            Some(table) if q.len() == d => Index::new(Metric::of_score(self.config.score), table, d)
                .search(q, k, &|_, id| skip(id))
                .pop()
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Refuses a node type or relation created after the model was trained
    /// (it has no rows or vectors for them): the message names it. Every
    /// use of a model by type or relation (embeddings, neighbours, scores)
    /// asks this first, so none answers zeros or an unrelated row.
    pub fn seen(
        &self,
        c: &quiver_storage::Catalog,
        ty: Option<u32>,
        rel: Option<u32>,
    ) -> std::result::Result<(), String> {
        if let Some(t) = ty.filter(|&t| t as usize >= self.nodes.len()) {
            return Err(format!(
                "the model has no rows of node type `{}`: the type was created after it was trained (train it again)",
                c.type_name(t)
            ));
        }
        let trained = self.relations.len() / (self.dim().max(1) * (1 + usize::from(self.config.reciprocal)));
        if let Some(r) = rel.filter(|&r| r as usize >= trained) {
            return Err(format!(
                "the model has no vector for relation `{}`: it was created after the model was trained (train it again)",
                c.relations.get(r as usize).map_or("?", |d| d.name.as_str())
            ));
        }
        Ok(())
    }

    /// Rows of node type `ty` that the model holds.
    pub fn rows(&self, ty: u32) -> u32 {
        self.nodes
            .get(ty as usize)
            .map_or(0, |t| (t.len() / self.dim()) as u32)
    }

    /// An embedding for node `id` of type `ty` from its neighbours' (cold
    /// start, without training): the mean of t − r over its out-edges (t + r′
    /// with reciprocal relations) and of h + r over its in-edges, counting
    /// only neighbours the model has rows for. It is the least-squares
    /// solution of x + r ≈ t over those edges, for every score. `None` when
    /// no neighbour has a row.
    pub fn infer(&self, snap: &Snapshot, ty: u32, id: u32) -> Option<Vec<f32>> {
        let d = self.dim();
        let mut acc = vec![0f64; d];
        let mut n = 0usize;
        let forward = self.relations.len() / d / (1 + usize::from(self.config.reciprocal));
        for (rel, def) in snap.catalog().relations.iter().enumerate() {
            let rel = rel as u32;
            if rel as usize >= forward {
                break;
            }
            if def.src == ty {
                for &t in snap.out_neighbors(rel, id).iter() {
                    if t < self.rows(def.dst) {
                        let q = match self.config.reciprocal {
                            true => self.head_query(rel, self.node(def.dst, t)),
                            false => self
                                .node(def.dst, t)
                                .iter()
                                .zip(self.relation(rel))
                                .map(|(a, b)| a - b)
                                .collect(),
                        };
                        acc.iter_mut().zip(&q).for_each(|(a, &x)| *a += x as f64);
                        n += 1;
                    }
                }
            }
            if def.dst == ty {
                for &h in snap.in_neighbors(rel, id).iter() {
                    if h < self.rows(def.src) {
                        let q = self.tail_query(rel, self.node(def.src, h));
                        acc.iter_mut().zip(&q).for_each(|(a, &x)| *a += x as f64);
                        n += 1;
                    }
                }
            }
        }
        (n > 0).then(|| acc.iter().map(|&a| (a / n as f64) as f32).collect())
    }

    /// Appends a row for every node created since training ([`Model::infer`];
    /// zeros for one with no trained neighbour yet), so that every query sees
    /// them as if trained. Returns how many rows were inferred.
    pub fn extend_to(&mut self, snap: &Snapshot) -> usize {
        let d = self.dim();
        let mut inferred = 0;
        let mut rows: Vec<(usize, Vec<f32>)> = Vec::new();
        for ty in 0..self.nodes.len() as u32 {
            for id in self.rows(ty)..snap.node_count(ty) {
                let row = self.infer(snap, ty, id);
                inferred += usize::from(row.is_some());
                rows.push((ty as usize, row.unwrap_or_else(|| vec![0.0; d])));
            }
        }
        for (ty, row) in rows {
            self.nodes[ty].extend_from_slice(&row);
        }
        inferred
    }

    /// Stores these rows as a new, finished model `name` in one partition
    /// (optimizer state zero), as if trained with `self.config`: rows
    /// trained elsewhere (a PyTorch-BigGraph checkpoint) then serve every
    /// use of a stored model. The row counts must be the database's node
    /// counts; a model of that name must not exist.
    pub fn store(&self, db: &Database, name: &str) -> Result<()> {
        let c = db.catalog();
        let snap = db.snapshot();
        let per_relation = self.dim() * (1 + usize::from(self.config.reciprocal));
        if self.relations.len() != c.relations.len() * per_relation || self.nodes.len() != c.node_types.len()
        {
            return Err(EngineError::Model {
                name: name.to_string(),
                message: "relation vectors or node types do not match the database".into(),
            });
        }
        for (t, rows) in self.nodes.iter().enumerate() {
            if rows.len() != snap.node_count(t as u32) as usize * self.dim() {
                return Err(EngineError::Model {
                    name: name.to_string(),
                    message: format!(
                        "node type {}: {} rows, the database has {}",
                        c.type_name(t as u32),
                        rows.len() / self.dim().max(1),
                        snap.node_count(t as u32)
                    ),
                });
            }
        }
        self.store_rows(db, name)
    }

    /// [`Model::store`] with the rows it has, as a training run's: nodes
    /// created since (by a concurrent writer) get rows as they do for any
    /// trained model, inferred when used.
    pub(crate) fn store_rows(&self, db: &Database, name: &str) -> Result<()> {
        let c = db.catalog();
        let d = self.dim();
        let bad = |m: String| EngineError::Model {
            name: name.to_string(),
            message: m,
        };
        if c.models.iter().any(|m| m.name == name) {
            return Err(bad("a model of that name exists; drop it first".into()));
        }
        let node_counts: Vec<u32> = self
            .nodes
            .iter()
            .map(|rows| (rows.len() / d.max(1)) as u32)
            .collect();
        let config = TrainConfig {
            partitions: 1,
            ..self.config.clone()
        };
        let settings = Settings {
            relations: self.relations.len() / (d.max(1) * (1 + usize::from(config.reciprocal))),
            config,
            node_counts,
        };
        let width = settings.config.optimizer.state_width(d);
        let states: Vec<Vec<f32>> = self
            .nodes
            .iter()
            .map(|rows| vec![0.0; rows.len() / d.max(1) * width])
            .collect();
        let keys: Vec<String> = (0..self.nodes.len()).map(|t| part_key(t, 0)).collect();
        let rel_state = vec![0.0; settings.relation_rows() * width];
        let arrays: Vec<[&[f32]; 2]> = self
            .nodes
            .iter()
            .zip(&states)
            .map(|(r, s)| [r.as_slice(), s.as_slice()])
            .chain(std::iter::once([self.relations.as_slice(), rel_state.as_slice()]))
            .collect();
        let parts: Vec<(&str, &[&[f32]])> = keys
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(RELATIONS_KEY))
            .zip(arrays.iter().map(|a| &a[..]))
            .collect();
        let json = serde_json::to_string(&settings).map_err(|e| EngineError::Internal(e.to_string()))?;
        db.save_model_parts(name, &json, "", &parts)?;
        Ok(())
    }

    /// Node type `ty`'s rows of stored model `name` as they lie on disk,
    /// memory-mapped (array 0 of the part, `rows × dim` floats), when they
    /// are exactly what [`Model::load`] would assemble: one partition, stored,
    /// with no pool rows to write over it. `None` otherwise.
    pub fn mapped_rows(db: &Database, name: &str, ty: u32) -> Result<Option<(StoredPart, usize)>> {
        let info = db.model_info(name)?;
        let s: Settings = serde_json::from_str(&info.settings).map_err(|e| EngineError::Model {
            name: name.to_string(),
            message: format!("settings: {e}"),
        })?;
        let t = ty as usize;
        if s.config.partitions != 1 || t >= s.node_counts.len() {
            return Ok(None);
        }
        let pools = load_pools(
            db,
            name,
            t,
            1,
            (s.config.dim, s.config.optimizer.state_width(s.config.dim)),
        )?;
        if pools.iter().any(Option::is_some) {
            return Ok(None);
        }
        Ok(db
            .model_part(name, &part_key(t, 0))?
            .filter(|p| p.array(0).len() == s.node_counts[t] as usize * s.config.dim)
            .map(|p| (p, s.config.dim)))
    }

    /// Loads model `name` from `db`, assembling its partitions, and checks
    /// that the shapes are consistent. Partitions never trained (a run
    /// stopped early) come out as initialised.
    pub fn load(db: &Database, name: &str) -> Result<Self> {
        let info = db.model_info(name)?;
        let bad = |m: &str| EngineError::Model {
            name: name.to_string(),
            message: m.to_string(),
        };
        let s: Settings = serde_json::from_str(&info.settings).map_err(|e| bad(&format!("settings: {e}")))?;
        let d = s.config.dim;
        let relations = match db.model_part(name, RELATIONS_KEY)? {
            Some(part) => part.array(0).to_vec(),
            None => vec![0.0; s.relation_rows() * d],
        };
        if relations.len() != s.relation_rows() * d {
            return Err(bad("relation vectors have the wrong size"));
        }
        let mut nodes = Vec::with_capacity(s.node_counts.len());
        let width = s.config.optimizer.state_width(d);
        for t in 0..s.node_counts.len() {
            let mut table = Vec::with_capacity(s.node_counts[t] as usize * d);
            let pools = load_pools(db, name, t, s.config.partitions, (d, width))?;
            for (p, pool) in (0..s.config.partitions).zip(pools) {
                let rows = s.part_range(t, p).len();
                let start = table.len();
                match db.model_part(name, &part_key(t, p))? {
                    Some(part) if part.array(0).len() == rows * d => table.extend_from_slice(part.array(0)),
                    Some(_) => {
                        return Err(bad(&format!("partition {p} of node type {t} has the wrong size")))
                    }
                    None => table.extend(init_rows(&s.config, part_seed(&s.config, Some((t, p))), rows)),
                }
                let range = s.part_range(t, p);
                for (id, row, _) in pool.iter().flat_map(Pool::iter) {
                    if !range.contains(&id) {
                        return Err(bad(&format!(
                            "pool of partition {p} of node type {t}: node {id} is not in it"
                        )));
                    }
                    let r = start + (id - range.start) as usize * d;
                    table[r..r + d].copy_from_slice(row);
                }
            }
            nodes.push(table);
        }
        Ok(Self {
            config: s.config,
            nodes,
            relations,
        })
    }
}
