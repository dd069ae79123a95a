//! PBG → quiver: a checkpoint stored as a model, every size, type and value
//! checked before anything is allocated or stored. The HDF5 files are read
//! through [`Datasets`]: libhdf5 for the CLI, h5py for the Python package.

use super::*;

use std::path::PathBuf;

use quiver_engine::{EngineError, Model, TrainConfig};

/// The float32 datasets of a checkpoint's HDF5 files.
pub trait Datasets {
    /// The shape of dataset `key` in file `path`, `None` when the file has
    /// no such dataset; an error (no file, not float32) as a message.
    fn shape(&self, path: &Path, key: &str) -> std::result::Result<Option<Vec<usize>>, String>;
    /// Its values, row-major (asked only once its shape is checked).
    fn values(&self, path: &Path, key: &str) -> std::result::Result<Vec<f32>, String>;
}

/// Dataset `key` of `path`, which must hold float32 values of `shape`; the
/// shape is checked before anything is read (a chunked, compressed file can
/// declare billions of rows).
fn read_f32(
    files: &dyn Datasets,
    path: &Path,
    key: &str,
    shape: &[usize],
) -> std::result::Result<Vec<f32>, String> {
    match files.shape(path, key)? {
        None => Err(format!("no dataset `{key}`")),
        Some(s) if s != shape => Err(format!("shape {s:?}, expected {shape:?}")),
        Some(_) => {
            let v = files.values(path, key)?;
            match v.len() == shape.iter().product::<usize>() {
                true => Ok(v),
                false => Err(format!(
                    "{} values, expected {}",
                    v.len(),
                    shape.iter().product::<usize>()
                )),
            }
        }
    }
}

/// Stores the PBG checkpoint in `dir` (its latest version, the entity
/// types, relations and partitions of the `config.json` PBG writes there)
/// as quiver model `name`. Counts, names (when the entity files named by the
/// config are there), relations and the dimension are checked against the
/// database first; on any mismatch nothing is stored.
pub fn import_checkpoint_with(db: &Database, dir: &Path, name: &str, files: &dyn Datasets) -> Result<()> {
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
            let data = read_f32(files, &path, "embeddings", &[range.len(), dim]).map_err(|e| {
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
    let read = |key: &str, len: usize| -> Result<Vec<f32>> {
        let v = files
            .shape(&model_path, key)
            .and_then(|shape| match shape {
                // Any shape of `len` values (a vector, or a row per relation).
                Some(shape) if shape.iter().product::<usize>() == len => {
                    read_f32(files, &model_path, key, &shape)
                }
                Some(shape) => Err(format!("shape {shape:?} holds other than {len} values")),
                None => Err("no such dataset".into()),
            })
            .map_err(|e| fail(&model_path, format!("{key}: {e}")))?;
        finite(&model_path, &v, len)?;
        Ok(v)
    };
    // PBG adds a learned vector per entity type to its rows when global_emb is on.
    for (t, def) in c.node_types.iter().enumerate() {
        let key = format!("model/entities/{}/global_embedding", def.name);
        if files
            .shape(&model_path, &key)
            .map_err(|e| fail(&model_path, format!("{key}: {e}")))?
            .is_some()
        {
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
