//! quiver → PBG: the graph as PBG's training input, a model as a checkpoint.

use super::*;

use quiver_engine::TrainConfig;

/// What [`export_graph`] wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// Files written.
    pub files: usize,
    /// Edges written over all buckets.
    pub edges: u64,
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

/// Writes stored model `name` as a PBG checkpoint in `out` (the files of
/// [`checkpoint_files`], HDF5 through libhdf5), usable as PBG's `init_path`.
pub fn export_checkpoint(
    db: &Database,
    name: &str,
    partitions: u32,
    out: &Path,
    force: bool,
) -> Result<usize> {
    let plan = checkpoint_files(db, name, partitions, out, force)?;
    std::fs::create_dir_all(out).map_err(|e| fail(out, e))?;
    for (file, datasets) in &plan.hdf5 {
        let path = out.join(file);
        (|| -> hdf5::Result<()> {
            let f = hdf5::File::create(&path)?;
            f.new_attr::<i64>()
                .create("format_version")?
                .write_scalar(&1i64)?;
            for d in datasets {
                let ds = f
                    .new_dataset::<f32>()
                    .shape(d.shape.as_slice())
                    .create(d.key.as_str())?;
                ds.write_raw(&d.data)?;
                if let Some(private) = &d.state_dict_key {
                    let private: hdf5::types::VarLenUnicode = private
                        .parse()
                        .map_err(|e: hdf5::types::StringError| hdf5::Error::from(e.to_string().as_str()))?;
                    ds.new_attr::<hdf5::types::VarLenUnicode>()
                        .create("state_dict_key")?
                        .write_scalar(&private)?;
                }
            }
            f.close()
        })()
        .map_err(|e| fail(&path, e))?;
    }
    // The version file last: a checkpoint without it is not one.
    for (file, text) in &plan.text {
        let path = out.join(file);
        std::fs::write(&path, text).map_err(|e| fail(&path, e))?;
    }
    Ok(plan.hdf5.len() + plan.text.len())
}
