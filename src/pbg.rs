//! PyTorch-BigGraph's file formats, so that a graph stored in quiver can be
//! trained by PBG's distributed trainer and the result served by quiver:
//! [`export_graph`] writes PBG's training input (entity counts and names per
//! partition, one HDF5 file of edges per bucket, a `config.py`), and
//! [`import_checkpoint`] stores a PBG checkpoint as a quiver model.
//!
//! The partitions are quiver's own (contiguous id ranges of ⌈n/P⌉ per node
//! type), so row r of quiver's partition p is row r of PBG's partition p.
//! When every relation joins the same two entity types (a knowledge graph)
//! the relations are PBG's "dynamic" ones (one operator per side, which
//! PBG's filtered evaluation requires): an edge scores c(u + t_lhs, v) for
//! tail ranking and c(u, v + t_rhs) for head ranking, which is quiver's
//! TransE with reciprocal relations, r = t_lhs and r′ = t_rhs. Otherwise
//! (User→Tweet beside User→User) they are "static" ones, one entry per
//! relation with its own types and the translation on the right-hand side:
//! c(u, v + t_r), quiver's h + r ≈ t with r = −t_r. Both hold exactly for
//! the l2 comparators that TransE uses.

use std::path::{Path, PathBuf};

use quiver_engine::{EngineError, Model, Score, TrainConfig};
use quiver_storage::Database;

use crate::{Error, Result};

/// The one (source, destination) type pair every relation has, when there
/// is one: then PBG's dynamic relations express the graph.
fn shared_types(c: &quiver_storage::Catalog) -> Option<(u32, u32)> {
    let first = c.relations.first().map(|r| (r.src, r.dst))?;
    c.relations
        .iter()
        .all(|r| (r.src, r.dst) == first)
        .then_some(first)
}

fn fail(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Pbg {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// What [`export_graph`] wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// Files written.
    pub files: usize,
    /// Edges written over all buckets.
    pub edges: u64,
}

/// Most partitions an export writes: P² bucket files (and P files per node
/// type) are already 16,384 files at this cap.
pub const MAX_PARTITIONS: u32 = 128;

/// Refuses a partition count of 0, above [`MAX_PARTITIONS`] or above the
/// largest node type's count (partitions past it would all be empty).
fn check_partitions(db: &Database, out: &Path, partitions: u32) -> Result<()> {
    let snap = db.snapshot();
    let most = (0..snap.catalog().node_types.len() as u32)
        .map(|t| snap.node_count(t))
        .max()
        .unwrap_or(0)
        .max(1);
    if partitions == 0 || partitions > MAX_PARTITIONS.min(most) {
        return Err(fail(
            out,
            format!(
                "--partitions {partitions}: from 1 to {} (at most {MAX_PARTITIONS}, and no more than the {most} nodes of the largest type)",
                MAX_PARTITIONS.min(most)
            ),
        ));
    }
    Ok(())
}

/// Refuses an output directory that is, or is inside, a database.
fn refuse_database(out: &Path) -> Result<()> {
    match quiver_storage::database_containing(out) {
        Some(db) => Err(fail(
            out,
            format!("is inside database {}; export elsewhere", db.display()),
        )),
        None => Ok(()),
    }
}

/// Writes the graph as stored (delta included) as PBG's training input in
/// `out`, with `partitions` partitions for every node type; `config` gives
/// the settings of the `config.py` written beside it. Files that exist are
/// an error unless `force`; each file is written under a temporary name and
/// renamed.
pub fn export_graph(
    db: &Database,
    partitions: u32,
    config: &TrainConfig,
    out: &Path,
    force: bool,
) -> Result<Exported> {
    refuse_database(out)?;
    check_partitions(db, out, partitions)?;
    let buckets = db.buckets(partitions)?;
    let snap = db.snapshot();
    let c = snap.catalog();
    for t in &c.node_types {
        if t.name.contains(['/', '\\', '\0']) {
            return Err(fail(
                out,
                format!("node type `{}`: PBG names files after it", t.name),
            ));
        }
    }
    let mut names: Vec<String> = Vec::new();
    for t in &c.node_types {
        for p in 0..partitions {
            names.push(format!("entity_count_{}_{p}.txt", t.name));
            names.push(format!("entity_names_{}_{p}.json", t.name));
        }
    }
    for i in 0..partitions {
        for j in 0..partitions {
            names.push(format!("edges_{i}_{j}.h5"));
        }
    }
    names.push("config.py".into());
    let dynamic = shared_types(c).is_some();
    if dynamic {
        names.push("dynamic_rel_count.txt".into());
        names.push("dynamic_rel_names.json".into());
    }
    if !force {
        if let Some(there) = names.iter().map(|n| out.join(n)).find(|p| p.exists()) {
            return Err(fail(&there, "exists (--force overwrites it)"));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| fail(out, e))?;
    let write_text = |name: &str, text: &str| -> Result<()> {
        let path = out.join(name);
        let tmp = out.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).map_err(|e| fail(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| fail(&path, e))
    };
    for (t, def) in c.node_types.iter().enumerate() {
        for p in 0..partitions {
            let range = buckets.partition_range(t as u32, p);
            write_text(
                &format!("entity_count_{}_{p}.txt", def.name),
                &format!("{}\n", range.len()),
            )?;
            let keys: Vec<&str> = range
                .map(|id| snap.node_key(t as u32, id).unwrap_or(""))
                .collect();
            let json = serde_json::to_string(&keys).map_err(|e| fail(out, e))?;
            write_text(&format!("entity_names_{}_{p}.json", def.name), &json)?;
        }
    }
    let mut edges = 0;
    for i in 0..partitions {
        for j in 0..partitions {
            let bucket = buckets.bucket(i, j);
            let mut lhs = Vec::with_capacity(bucket.len());
            let mut rhs = Vec::with_capacity(bucket.len());
            let mut rel = Vec::with_capacity(bucket.len());
            for e in bucket {
                let def = &c.relations[e.rel as usize];
                lhs.push(i64::from(e.src - buckets.partition_range(def.src, i).start));
                rhs.push(i64::from(e.dst - buckets.partition_range(def.dst, j).start));
                rel.push(i64::from(e.rel));
            }
            edges += bucket.len() as u64;
            let name = format!("edges_{i}_{j}.h5");
            let tmp = out.join(format!("{name}.tmp"));
            write_edges(&tmp, &lhs, &rhs, &rel).map_err(|e| fail(&tmp, e))?;
            std::fs::rename(&tmp, out.join(&name)).map_err(|e| fail(&out.join(&name), e))?;
        }
    }
    if dynamic {
        write_text("dynamic_rel_count.txt", &format!("{}\n", c.relations.len()))?;
        let rels: Vec<&str> = c.relations.iter().map(|r| r.name.as_str()).collect();
        write_text(
            "dynamic_rel_names.json",
            &serde_json::to_string(&rels).map_err(|e| fail(out, e))?,
        )?;
    }
    write_text("config.py", &config_py(db, partitions, config, out))?;
    Ok(Exported {
        files: names.len(),
        edges,
    })
}

fn write_edges(path: &Path, lhs: &[i64], rhs: &[i64], rel: &[i64]) -> hdf5::Result<()> {
    let f = hdf5::File::create(path)?;
    f.new_attr::<i64>()
        .create("format_version")?
        .write_scalar(&1i64)?;
    for (name, data) in [("lhs", lhs), ("rhs", rhs), ("rel", rel)] {
        f.new_dataset::<i64>()
            .shape(data.len())
            .create(name)?
            .write_raw(data)?;
    }
    f.close()
}

/// A `config.py` for `torchbiggraph_train` with the settings of `cfg` that
/// PBG can express; the others are listed in its comments.
fn config_py(db: &Database, partitions: u32, cfg: &TrainConfig, out: &Path) -> String {
    let c = db.catalog();
    let dir = std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf());
    let dir = dir
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('\'', "\\'");
    let q = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    let entities: Vec<String> = c
        .node_types
        .iter()
        .map(|t| format!("        {}: {{'num_partitions': {partitions}}},", q(&t.name)))
        .collect();
    let entry = |name: &str, src: u32, dst: u32| {
        format!(
            "        {{'name': {}, 'lhs': {}, 'rhs': {}, 'operator': 'translation'}},",
            q(name),
            q(c.type_name(src)),
            q(c.type_name(dst))
        )
    };
    let dynamic = shared_types(&c);
    let relations: Vec<String> = match dynamic {
        Some((src, dst)) => vec![entry("all_edges", src, dst)],
        None => c.relations.iter().map(|r| entry(&r.name, r.src, r.dst)).collect(),
    };
    let comparator = match cfg.score {
        Score::L2 => "'l2'",
        Score::Dot => "'dot'",
        Score::L1 => "'l2'  # quiver trains L1; PBG has no L1 comparator",
    };
    let loss = match cfg.loss {
        quiver_engine::Loss::Margin => "'ranking'",
        _ => "'softmax'",
    };
    let mut unexpressed = Vec::new();
    match (cfg.reciprocal, dynamic.is_some()) {
        (true, false) => unexpressed
            .push("reciprocal head relations (PBG's static relations translate the right-hand side only)"),
        (false, true) => unexpressed.push(
            "one translation per relation for both directions (PBG's dynamic relations learn one per side, as quiver's reciprocal = true)",
        ),
        _ => {}
    }
    match (cfg.mix_relations, dynamic.is_some()) {
        (false, true) => unexpressed
            .push("chunks of one relation (PBG's dynamic relations mix them in every batch, as mix_relations = true)"),
        (true, false) => unexpressed.push("chunks mixing relations (PBG's static relations train one per batch)"),
        _ => {}
    }
    if cfg.optimizer != quiver_engine::Optimizer::Adagrad {
        unexpressed.push("the optimizer (PBG uses row Adagrad)");
    }
    if cfg.self_negatives {
        unexpressed.push("self-negatives");
    }
    if cfg.max_norm > 0.0 {
        unexpressed.push("max_norm (PBG's max_norm is close but not identical: set it by hand)");
    }
    if cfg.foreign_sample > 0 {
        unexpressed.push("foreign_sample (pools of the other partitions' rows)");
    }
    if cfg.regularization > 0.0 {
        unexpressed.push("the regularizer");
    }
    unexpressed.push("edge weights (PBG reads a `weight` dataset as integers, so none is written)");
    let (kind, py_dynamic) = match dynamic {
        Some(_) => ("dynamic", "True"),
        None => ("static", "False"),
    };
    format!(
        "# PyTorch-BigGraph config written by `quiver export --format pbg` for the\n\
         # graph in this directory: {partitions} partition(s) per entity type, {kind} relations.\n\
         # quiver settings PBG cannot express, not carried over:\n{}\n\n\
         def get_torchbiggraph_config():\n    return dict(\n\
         \x20       entity_path='{dir}',\n\
         \x20       edge_paths=['{dir}'],\n\
         \x20       checkpoint_path='{dir}/checkpoints',\n\
         \x20       entities={{\n{}\n        }},\n\
         \x20       relations=[\n{}\n        ],\n\
         \x20       dynamic_relations={py_dynamic},\n\
         \x20       global_emb=False,\n\
         \x20       dimension={},\n\
         \x20       comparator={comparator},\n\
         \x20       loss_fn={loss},\n\
         \x20       margin={},\n\
         \x20       lr={},\n\
         \x20       num_epochs={},\n\
         \x20       batch_size={},\n\
         \x20       num_uniform_negs={},\n\
         \x20       num_batch_negs={},\n\
         \x20       num_edge_chunks={},\n\
         \x20       init_scale=0.001,\n\
         \x20   )\n",
        unexpressed
            .iter()
            .map(|u| format!("#   - {u}"))
            .collect::<Vec<_>>()
            .join("\n"),
        entities.join("\n"),
        relations.join("\n"),
        cfg.dim,
        cfg.margin,
        cfg.lr,
        cfg.epochs,
        // A multiple of the chunk (PBG's in-batch negatives come from chunks of num_batch_negs).
        (1000 / cfg.chunk_size.max(1)).max(1) * cfg.chunk_size.max(1),
        cfg.uniform_negatives,
        if cfg.batch_negatives { cfg.chunk_size } else { 0 },
        cfg.passes.max(1),
    )
}

/// Stores the PBG checkpoint in `dir` (its latest version, the entity
/// types, relations and partitions of the `config.json` PBG writes there)
/// as quiver model `name`. Counts, names (when the entity files named by the
/// config are there), relations and the dimension are checked against the
/// database first; on any mismatch nothing is stored.
pub fn import_checkpoint(db: &Database, dir: &Path, name: &str) -> Result<()> {
    let read = |p: PathBuf| crate::read_text(&p, crate::MAX_SETTINGS_FILE).map_err(|e| fail(&p, e));
    let version: u32 = {
        let p = dir.join("checkpoint_version.txt");
        read(p.clone())?
            .trim()
            .parse()
            .map_err(|e| fail(&p, format!("not a version number: {e}")))?
    };
    let config_path = dir.join("config.json");
    let config: serde_json::Value =
        serde_json::from_str(&read(config_path.clone())?).map_err(|e| fail(&config_path, e))?;
    let bad = |m: String| fail(&config_path, m);
    if !config.is_object() {
        return Err(bad("not a JSON object (PBG's config.json is one)".into()));
    }
    // A count in the config, checked before anything is sized by it.
    let count = |v: &serde_json::Value, what: &str, max: u64| -> Result<u64> {
        match v.as_u64() {
            Some(n) if (1..=max).contains(&n) => Ok(n),
            _ if v.is_null() => Err(bad(format!("no `{what}`"))),
            _ => Err(bad(format!(
                "`{what}` is {v}: expected an integer from 1 to {max}"
            ))),
        }
    };
    let dynamic = config["dynamic_relations"].as_bool() == Some(true);
    let comparator = &config["comparator"];
    if !matches!(comparator.as_str(), Some("l2" | "squared_l2")) {
        return Err(bad(format!(
            "comparator {comparator}: only l2 and squared_l2 give TransE's h + r ≈ t (PBG translates the right-hand side)"
        )));
    }
    let dim = count(&config["dimension"], "dimension", 65536)? as usize;
    let snap = db.snapshot();
    let c = snap.catalog();
    let rels = config["relations"].as_array().cloned().unwrap_or_default();
    // Dynamic: one entry for all relations; static: one per relation, in order.
    let expected: Vec<(&str, u32, u32)> = match (dynamic, shared_types(c)) {
        (true, Some((src, dst))) => vec![("", src, dst)],
        (true, None) => {
            return Err(bad(
                "dynamic relations, but the database's relations join different types".into(),
            ))
        }
        (false, _) => c
            .relations
            .iter()
            .map(|r| (r.name.as_str(), r.src, r.dst))
            .collect(),
    };
    if rels.len() != expected.len() {
        return Err(bad(format!(
            "{} relations, the database has {}",
            rels.len(),
            expected.len()
        )));
    }
    for (r, &(name, src, dst)) in rels.iter().zip(&expected) {
        let (n, l, h, op) = (&r["name"], &r["lhs"], &r["rhs"], &r["operator"]);
        if (!dynamic && n.as_str() != Some(name))
            || l.as_str() != Some(c.type_name(src))
            || h.as_str() != Some(c.type_name(dst))
        {
            return Err(bad(format!(
                "relation {n} ({l} -> {h}) where the database has {name} ({} -> {})",
                c.type_name(src),
                c.type_name(dst)
            )));
        }
        if op.as_str() != Some("translation") {
            return Err(bad(format!("relation {n}: operator {op}, not translation")));
        }
    }
    let entity_path = config["entity_path"].as_str().map(PathBuf::from);
    if let (true, Some(ep)) = (dynamic, &entity_path) {
        let names_path = ep.join("dynamic_rel_names.json");
        if let Some(text) = read_names(&names_path, c.relations.len())? {
            let names: Vec<String> = serde_json::from_str(&text).map_err(|e| fail(&names_path, e))?;
            let ours: Vec<&str> = c.relations.iter().map(|r| r.name.as_str()).collect();
            if names != ours {
                return Err(fail(
                    &names_path,
                    "the relations are not the database's, in its order",
                ));
            }
        }
    }
    let mut nodes = Vec::with_capacity(c.node_types.len());
    for (t, def) in c.node_types.iter().enumerate() {
        let n = snap.node_count(t as u32);
        let entity = &config["entities"][&def.name];
        if !entity.is_object() {
            return Err(bad(format!("no entity type `{}`", def.name)));
        }
        let most = u64::from(n.clamp(1, MAX_PARTITIONS));
        let parts = count(
            &entity["num_partitions"],
            &format!("{}.num_partitions", def.name),
            most,
        )? as u32;
        let size = n.div_ceil(parts.max(1)).max(1);
        let mut rows = Vec::with_capacity(n as usize * dim);
        for p in 0..parts {
            let range = (p * size).min(n)..((p + 1) * size).min(n);
            let path = dir.join(format!("embeddings_{}_{p}.v{version}.h5", def.name));
            let data = read_f32(&path, "embeddings", &[range.len(), dim]).map_err(|e| {
                fail(
                    &path,
                    format!(
                        "{e} (the database's partition {p} of {} has {} rows)",
                        def.name,
                        range.len()
                    ),
                )
            })?;
            finite(&path, &data, dim)?;
            if let Some(ep) = &entity_path {
                let names_path = ep.join(format!("entity_names_{}_{p}.json", def.name));
                if let Some(text) = read_names(&names_path, range.len())? {
                    let names: Vec<String> = serde_json::from_str(&text).map_err(|e| fail(&names_path, e))?;
                    if names.len() != range.len() {
                        return Err(fail(
                            &names_path,
                            format!("{} names; the partition has {} rows", names.len(), range.len()),
                        ));
                    }
                    let ours = range.clone().map(|id| snap.node_key(t as u32, id).unwrap_or(""));
                    if let Some((i, (a, b))) = names.iter().zip(ours).enumerate().find(|(_, (a, b))| a != b) {
                        return Err(fail(
                            &names_path,
                            format!("row {i} is `{a}`, the database's row is `{b}`"),
                        ));
                    }
                }
            }
            rows.extend_from_slice(&data);
        }
        nodes.push(rows);
    }
    let model_path = dir.join(format!("model.v{version}.h5"));
    let file = hdf5::File::open(&model_path).map_err(|e| fail(&model_path, e))?;
    let read = |key: &str, len: usize| -> Result<Vec<f32>> {
        let v = file
            .dataset(key)
            .map_err(|e| e.to_string())
            .and_then(|ds| match ds.shape() {
                // Any shape of `len` values (a vector, or a row per relation).
                shape if shape.iter().product::<usize>() == len => f32_dataset(&ds, &shape),
                shape => Err(format!("shape {shape:?} holds other than {len} values")),
            })
            .map_err(|e| fail(&model_path, format!("{key}: {e}")))?;
        finite(&model_path, &v, len)?;
        Ok(v)
    };
    // PBG adds a learned vector per entity type to its rows when global_emb is on.
    for (t, def) in c.node_types.iter().enumerate() {
        let key = format!("model/entities/{}/global_embedding", def.name);
        if file.link_exists(&key) {
            let g = read(&key, dim)?;
            for row in nodes[t].chunks_exact_mut(dim) {
                row.iter_mut().zip(&g).for_each(|(x, y)| *x += y);
            }
        }
    }
    let r = c.relations.len();
    let relations = if dynamic {
        // c(u + t_lhs, v) ranks tails, c(u, v + t_rhs) heads: quiver's
        // reciprocal relations r = t_lhs (h + r ≈ t) and r′ = t_rhs (t + r′ ≈ h).
        let mut v = read("model/relations/0/operator/lhs/translations", r * dim)?;
        v.extend(read("model/relations/0/operator/rhs/translations", r * dim)?);
        v
    } else {
        // c(u, v + t) = −‖u − v − t‖: h + r ≈ t' with r = −t.
        let mut v = Vec::with_capacity(r * dim);
        for idx in 0..r {
            let t = read(&format!("model/relations/{idx}/operator/rhs/translation"), dim)?;
            v.extend(t.iter().map(|x| -x));
        }
        v
    };
    let model = Model {
        // What PBG's config says that quiver's settings hold too.
        config: TrainConfig {
            dim,
            score: Score::L2,
            reciprocal: dynamic,
            epochs: config["num_epochs"].as_u64().unwrap_or(0) as usize,
            lr: config["lr"].as_f64().unwrap_or(0.0) as f32,
            margin: config["margin"].as_f64().unwrap_or(0.0) as f32,
            max_norm: 0.0,
            ..TrainConfig::default()
        },
        nodes,
        relations,
    };
    model.store(db, name).map_err(|e| match e {
        EngineError::Storage(s) => Error::Storage(s),
        other => Error::Engine(other),
    })
}

/// Writes stored model `name` as a PBG checkpoint in `out` (version 1, the
/// model's rows split into `partitions` partitions per node type as
/// [`export_graph`] splits them, the relation vectors as the operators of
/// the dynamic or static relations [`export_graph`] chose), usable as
/// PBG's `init_path`. Nodes created after training get rows inferred from
/// their neighbours.
pub fn export_checkpoint(
    db: &Database,
    name: &str,
    partitions: u32,
    out: &Path,
    force: bool,
) -> Result<usize> {
    refuse_database(out)?;
    check_partitions(db, out, partitions)?;
    let model = crate::tasks::load_extended(db, name)?;
    if model.config.score != Score::L2 {
        return Err(fail(
            out,
            "only L2 models have a PBG counterpart (PBG translates the right-hand side)",
        ));
    }
    let snap = db.snapshot();
    let c = snap.catalog();
    let d = model.dim();
    let version_file = out.join("checkpoint_version.txt");
    if !force && version_file.exists() {
        return Err(fail(&version_file, "exists (--force overwrites it)"));
    }
    std::fs::create_dir_all(out).map_err(|e| fail(out, e))?;
    let mut files = 0;
    for (t, def) in c.node_types.iter().enumerate() {
        let n = snap.node_count(t as u32);
        let size = n.div_ceil(partitions).max(1);
        for p in 0..partitions {
            let range = (p * size).min(n) as usize..((p + 1) * size).min(n) as usize;
            let rows = &model.nodes[t][range.start * d..range.end * d];
            let path = out.join(format!("embeddings_{}_{p}.v1.h5", def.name));
            (|| -> hdf5::Result<()> {
                let f = hdf5::File::create(&path)?;
                f.new_attr::<i64>()
                    .create("format_version")?
                    .write_scalar(&1i64)?;
                f.new_dataset::<f32>()
                    .shape((range.len(), d))
                    .create("embeddings")?
                    .write_raw(rows)?;
                f.close()
            })()
            .map_err(|e| fail(&path, e))?;
            files += 1;
        }
    }
    let dynamic = shared_types(c);
    let r = c.relations.len();
    let tails: Vec<f32> = model.relations[..r * d].to_vec();
    // Head queries: r′ with reciprocal relations, else t − r.
    let heads: Vec<f32> = match model.config.reciprocal {
        true => model.relations[r * d..2 * r * d].to_vec(),
        false => tails.iter().map(|x| -x).collect(),
    };
    let mut params: Vec<(String, String, Vec<usize>, Vec<f32>)> = Vec::new();
    match dynamic {
        Some(_) => {
            for (side, rows) in [("lhs", tails), ("rhs", heads)] {
                params.push((
                    format!("model/relations/0/operator/{side}/translations"),
                    format!("{side}_operators.0.translations"),
                    vec![r, d],
                    rows,
                ));
            }
        }
        None => {
            if model.config.reciprocal {
                return Err(fail(
                    out,
                    "a model with reciprocal relations on a typed graph has no PBG counterpart (static relations translate one side)",
                ));
            }
            for idx in 0..r {
                params.push((
                    format!("model/relations/{idx}/operator/rhs/translation"),
                    format!("rhs_operators.{idx}.translation"),
                    vec![d],
                    heads[idx * d..(idx + 1) * d].to_vec(),
                ));
            }
        }
    }
    let path = out.join("model.v1.h5");
    (|| -> hdf5::Result<()> {
        let f = hdf5::File::create(&path)?;
        f.new_attr::<i64>()
            .create("format_version")?
            .write_scalar(&1i64)?;
        for (key, private, shape, data) in &params {
            let ds = f
                .new_dataset::<f32>()
                .shape(shape.as_slice())
                .create(key.as_str())?;
            ds.write_raw(data)?;
            let private: hdf5::types::VarLenUnicode = private
                .parse()
                .map_err(|e: hdf5::types::StringError| hdf5::Error::from(e.to_string().as_str()))?;
            ds.new_attr::<hdf5::types::VarLenUnicode>()
                .create("state_dict_key")?
                .write_scalar(&private)?;
        }
        f.close()
    })()
    .map_err(|e| fail(&path, e))?;
    // The config PBG keeps beside a checkpoint, for import-model.
    let entities: serde_json::Map<String, serde_json::Value> = c
        .node_types
        .iter()
        .map(|t| (t.name.clone(), serde_json::json!({"num_partitions": partitions})))
        .collect();
    let entry = |name: &str, src: u32, dst: u32| serde_json::json!({"name": name, "lhs": c.type_name(src), "rhs": c.type_name(dst), "operator": "translation"});
    let relations: Vec<serde_json::Value> = match dynamic {
        Some((src, dst)) => vec![entry("all_edges", src, dst)],
        None => c.relations.iter().map(|r| entry(&r.name, r.src, r.dst)).collect(),
    };
    let config = serde_json::json!({"entities": entities, "relations": relations, "dynamic_relations": dynamic.is_some(),
        "dimension": d, "comparator": "l2", "num_epochs": model.config.epochs, "lr": model.config.lr,
        "margin": model.config.margin});
    let config_path = out.join("config.json");
    std::fs::write(&config_path, config.to_string()).map_err(|e| fail(&config_path, e))?;
    std::fs::write(&version_file, "1\n").map_err(|e| fail(&version_file, e))?;
    Ok(files + 3)
}

/// Dataset `dataset` of `path`, which must hold float32 values of `shape`.
fn read_f32(path: &Path, dataset: &str, shape: &[usize]) -> std::result::Result<Vec<f32>, String> {
    let f = hdf5::File::open(path).map_err(|e| e.to_string())?;
    let ds = f.dataset(dataset).map_err(|e| e.to_string())?;
    f32_dataset(&ds, shape)
}

/// A dataset's values, its type and shape checked before anything is
/// allocated (a chunked, compressed file can declare billions of rows).
fn f32_dataset(ds: &hdf5::Dataset, shape: &[usize]) -> std::result::Result<Vec<f32>, String> {
    use hdf5::types::{FloatSize, TypeDescriptor};
    let ty = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| e.to_string())?;
    if ty != TypeDescriptor::Float(FloatSize::U4) {
        return Err(format!("values of type {ty}; PBG writes float32"));
    }
    if ds.shape() != shape {
        return Err(format!("shape {:?}, expected {shape:?}", ds.shape()));
    }
    ds.read_raw().map_err(|e| e.to_string())
}

/// Refuses a NaN or infinite value, naming its row.
fn finite(path: &Path, values: &[f32], dim: usize) -> Result<()> {
    match values.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(fail(
            path,
            format!("row {} has a value that is not finite", i / dim.max(1)),
        )),
        None => Ok(()),
    }
}

/// A names file of PBG's (JSON list) for `rows` names, if it exists: a
/// regular file of a size such names can have; any other failure to read
/// it is an error.
fn read_names(path: &Path, rows: usize) -> Result<Option<String>> {
    let max = (rows as u64 + 1).saturating_mul(4096);
    match crate::read_text(path, max) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(fail(path, e)),
    }
}
