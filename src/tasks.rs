//! What the `quiver` command line and the Python package both do with a
//! stored model: nearest neighbours of a batch of nodes, filtered
//! evaluation stored with the model, and the names of its relation rows.

use quiver_engine::{AnnIndex, Device, EngineError, Index, Int8Rows, Metric, Model, Score, Triple};
use quiver_storage::{Database, Direction, Snapshot};

use crate::Result;

/// How [`neighbors`] ranks.
#[derive(Debug, Clone)]
pub struct NeighborQuery {
    /// Results per node.
    pub k: usize,
    /// `None`: the model's own score.
    pub metric: Option<Metric>,
    /// Rank this relation's destinations by h + r (tail prediction).
    pub relation: Option<u32>,
    /// Leave out nodes already connected to the query node (by the
    /// relation, or by any relation within the target type).
    pub exclude_connected: bool,
    /// Search the model's stored int8 copy.
    pub quantized: bool,
    /// Scan every row even when the model has an index.
    pub exact: bool,
    /// The index's search breadth (its default when `None`).
    pub ef: Option<usize>,
}

/// The current index of a node type of the model searched, if any: opened
/// from the database ([`open_index`]) or from a handle's cache
/// (`Graph::index`).
pub type IndexOf<'a> = dyn Fn(u32) -> Result<Option<std::sync::Arc<AnnIndex>>> + 'a;

/// Opens model `name`'s current index of a node type ([`AnnIndex::current`]).
pub fn open_index<'a>(
    db: &'a Database,
    name: &'a str,
) -> impl Fn(u32) -> Result<Option<std::sync::Arc<AnnIndex>>> + 'a {
    move |ty| Ok(AnnIndex::current(db, name, ty)?.map(std::sync::Arc::new))
}

/// Per query node, its neighbours `(id, score)`, best first.
pub type Ranked = Vec<Vec<(u32, f32)>>;

/// The model with rows for nodes created since training (inferred from
/// their neighbours).
pub fn load_extended(db: &Database, name: &str) -> Result<Model> {
    let mut m = Model::load(db, name)?;
    m.extend_to(&db.snapshot());
    Ok(m)
}

/// A name for each row of `model`'s relation table: the relations' names,
/// then, for a model with reciprocal relations, `NAME (head)` for each
/// relation's head-prediction row r′ (t + r′ ≈ h).
pub fn relation_row_names(snap: &Snapshot, model: &Model) -> Vec<String> {
    let names = snap.catalog().relations.iter().map(|r| r.name.clone());
    match model.config.reciprocal {
        true => names
            .clone()
            .chain(names.map(|n| format!("{n} (head)")))
            .collect(),
        false => names.collect(),
    }
}

/// Top-k for each query node `(type, id)`: the node type searched and, per
/// query, `(id, score)` best first. A node is never its own neighbour. The
/// model's index of the target type is searched when there is a current
/// one and the ranking is the model's own (unless `exact`); otherwise every
/// row is scanned.
pub fn neighbors(
    db: &Database,
    snap: &Snapshot,
    (model, name): (&Model, &str),
    queries: &[(u32, u32)],
    q: &NeighborQuery,
    device: &Device,
    index_of: &IndexOf,
) -> Result<(u32, Ranked)> {
    let c = snap.catalog();
    let bad = |m: String| EngineError::Input(m);
    let metric = q.metric.unwrap_or(Metric::of_score(model.config.score));
    let Some(&(first, _)) = queries.first() else {
        return Ok((0, Vec::new()));
    };
    model
        .seen(c, Some(first), q.relation)
        .map_err(|message| EngineError::Model {
            name: name.to_string(),
            message,
        })?;
    let target = match q.relation {
        Some(r) => {
            let def = &c.relations[r as usize];
            if let Some(&(t, _)) = queries.iter().find(|(t, _)| *t != def.src) {
                return Err(bad(format!(
                    "relation {}: its heads are {}, not {}",
                    def.name,
                    c.type_name(def.src),
                    c.type_name(t)
                ))
                .into());
            }
            def.dst
        }
        None => {
            if queries.iter().any(|&(t, _)| t != first) {
                return Err(bad("all query nodes must have one type (or give a relation)".into()).into());
            }
            first
        }
    };
    let mut qv: Vec<f32> = Vec::with_capacity(queries.len() * model.dim());
    for &(t, id) in queries {
        match q.relation {
            Some(r) => qv.extend(model.tail_query(r, model.node(t, id))),
            None => qv.extend_from_slice(model.node(t, id)),
        }
    }
    // Per query: the ids to leave out, sorted.
    let excluded: Vec<Vec<u32>> = queries
        .iter()
        .map(|&(t, id)| {
            let mut out: Vec<u32> = Vec::new();
            if t == target {
                out.push(id);
            }
            if q.exclude_connected {
                match q.relation {
                    Some(r) => out.extend(snap.out_neighbors(r, id).iter()),
                    None => {
                        for dir in [Direction::Out, Direction::In] {
                            out.extend(
                                snap.all_neighbors(t, id, dir)
                                    .into_iter()
                                    .filter(|&(r, _)| {
                                        let def = &c.relations[r as usize];
                                        def.src == target && def.dst == target
                                    })
                                    .map(|(_, n)| n),
                            );
                        }
                    }
                }
            }
            out.sort_unstable();
            out.dedup();
            out
        })
        .collect();
    let exclude = |i: usize, id: u32| excluded[i].binary_search(&id).is_ok() || snap.is_deleted(target, id);
    let indexed = match q.exact || q.quantized || metric != Metric::of_score(model.config.score) {
        true => None,
        false => index_of(target)?,
    };
    let results = if let Some(index) = indexed {
        let table = &model.nodes[target as usize];
        qv.chunks_exact(model.dim())
            .enumerate()
            .map(|(i, v)| index.search(table, v, q.k, q.ef, &|id| exclude(i, id)))
            .collect::<std::result::Result<_, _>>()?
    } else if q.quantized {
        let codes = Int8Rows::load(db, name, target, model.dim())?.ok_or_else(|| {
            bad(format!(
                "model `{name}` has no int8 copy: run `quiver quantize` (Python: `db.quantize`) first"
            ))
        })?;
        codes.index(metric).search(&qv, q.k, &exclude)
    } else {
        let table = &model.nodes[target as usize];
        match device {
            Device::Gpu(gpu)
                if excluded.iter().all(|e| q.k.saturating_add(e.len()) <= 32) && metric != Metric::Cosine =>
            {
                let score = match metric {
                    Metric::Dot => Score::Dot,
                    Metric::L2 => Score::L2,
                    _ => Score::L1,
                };
                let extra = excluded.iter().map(Vec::len).max().unwrap_or(0);
                let mut r = gpu.top_k(score, &qv, table, model.dim(), q.k + extra)?;
                for (i, list) in r.iter_mut().enumerate() {
                    list.retain(|&(id, _)| !exclude(i, id));
                    list.truncate(q.k);
                }
                r
            }
            _ => Index::new(metric, table, model.dim()).search(&qv, q.k, &exclude),
        }
    };
    Ok((target, results))
}

/// Filtered link-prediction metrics of stored model `name` on `test`
/// (both directions, realistic ties; `known` and the graph filter), stored
/// with the model (beside its validation figures) and returned as the JSON
/// object `quiver eval --json` prints.
pub fn evaluate_stored(
    db: &Database,
    name: &str,
    test: &[Triple],
    known: &[Triple],
    device: &Device,
) -> Result<serde_json::Value> {
    let model = Model::load(db, name)?;
    let r = quiver_engine::evaluate(db, &model, test, known, device)?;
    let obj = serde_json::json!({
        "mrr": r.mrr, "mr": r.mr, "hits@1": r.hits1, "hits@3": r.hits3, "hits@10": r.hits10,
        "triples": r.triples, "skipped": r.skipped, "seconds": r.seconds,
        "ties": "realistic", "unknown_entities": "skipped", "device": device.describe(),
    });
    // What validation said of the run stays beside the test figures.
    let mut stored = obj.clone();
    let before: serde_json::Value = serde_json::from_str(&db.model_info(name)?.metrics).unwrap_or_default();
    if let Some(valid) = before.get("valid") {
        stored["valid"] = valid.clone();
    }
    db.set_model_metrics(name, &stored.to_string())?;
    Ok(obj)
}

/// Counts per node type and relation, as `db.stats()` in Python and
/// `GET /api/stats` give them.
pub fn stats_json(db: &Database) -> Result<serde_json::Value> {
    let s = db.stats()?;
    Ok(serde_json::json!({
        "nodes": s.nodes, "edges": s.edges,
        "node_types": s.node_types.iter().map(|(n, c)| serde_json::json!({"name": n, "nodes": c})).collect::<Vec<_>>(),
        "relations": s.relations.iter().map(|(n, a, b, c)| serde_json::json!({"name": n, "from": a, "to": b, "edges": c})).collect::<Vec<_>>(),
    }))
}

/// The stored models, one object each: name, settings, whether finished,
/// progress, metrics (the validation curve and the last evaluation), and
/// `since`: the edges and nodes added and deleted since the graph state it
/// was trained on (null when it has no record of it), as `quiver models
/// --json`, `db.models()` in Python and `GET /api/models` give them.
pub fn models_json(db: &Database) -> Result<serde_json::Value> {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or(serde_json::Value::Null);
    let mut out = Vec::new();
    for m in db.models() {
        let since = db.changes_since(&m.name)?.map(|c| {
            let nodes = |v: &[Vec<u32>]| v.iter().map(Vec::len).sum::<usize>();
            serde_json::json!({"edges_added": c.edges_added.len(), "edges_deleted": c.edges_deleted.len(),
                "nodes_added": nodes(&c.nodes_added), "nodes_deleted": nodes(&c.nodes_deleted)})
        });
        out.push(serde_json::json!({"name": m.name, "settings": parse(&m.settings),
            "finished": m.progress.is_empty(), "progress": parse(&m.progress),
            "metrics": parse(&m.metrics), "since": since}));
    }
    Ok(serde_json::Value::Array(out))
}
