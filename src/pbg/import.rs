//! PBG → quiver: a checkpoint stored as a model, every size, type and value
//! checked before anything is allocated or stored.

use super::*;

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
