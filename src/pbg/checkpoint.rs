//! A model as the files of a PBG checkpoint, computed without writing them:
//! the CLI writes the HDF5 files through libhdf5 ([`super::export_checkpoint`]),
//! the Python package through h5py (the wheel is built without libhdf5).

use super::*;

/// One float32 dataset of an HDF5 file, with PBG's `state_dict_key`
/// attribute when it is a model parameter.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Path inside the file (`embeddings`, `model/relations/0/...`).
    pub key: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
    /// PyTorch's name of the parameter, for `model.v1.h5`.
    pub state_dict_key: Option<String>,
}

/// The files of a checkpoint: HDF5 files (each with the root attribute
/// `format_version = 1`) and text files, the version file last.
#[derive(Debug, Clone)]
pub struct CheckpointFiles {
    /// (file name, datasets).
    pub hdf5: Vec<(String, Vec<Dataset>)>,
    /// (file name, contents), `checkpoint_version.txt` last.
    pub text: Vec<(String, String)>,
}

/// Stored model `name` as a PBG checkpoint for `out` (version 1, the
/// model's rows split into `partitions` partitions per node type as
/// `export_graph` splits them, the relation vectors as the operators of
/// the dynamic or static relations it chose), usable as PBG's `init_path`.
/// Nodes created after training get rows inferred from their neighbours.
/// Refuses `out` inside a database, and an existing checkpoint unless `force`.
pub fn checkpoint_files(
    db: &Database,
    name: &str,
    partitions: u32,
    out: &Path,
    force: bool,
) -> Result<CheckpointFiles> {
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
        return Err(fail(
            &version_file,
            "exists (--force, or force=True in Python, overwrites it)",
        ));
    }
    let mut hdf5 = Vec::new();
    for (t, def) in c.node_types.iter().enumerate() {
        let n = snap.node_count(t as u32);
        let size = n.div_ceil(partitions).max(1);
        for p in 0..partitions {
            let range = (p * size).min(n) as usize..((p + 1) * size).min(n) as usize;
            let rows = &model.nodes[t][range.start * d..range.end * d];
            let dataset = Dataset {
                key: "embeddings".into(),
                shape: vec![range.len(), d],
                data: rows.to_vec(),
                state_dict_key: None,
            };
            hdf5.push((format!("embeddings_{}_{p}.v1.h5", def.name), vec![dataset]));
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
    let datasets = params
        .into_iter()
        .map(|(key, private, shape, data)| Dataset {
            key,
            shape,
            data,
            state_dict_key: Some(private),
        })
        .collect();
    hdf5.push(("model.v1.h5".into(), datasets));
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
    let text = vec![
        ("config.json".to_string(), config.to_string()),
        ("checkpoint_version.txt".to_string(), "1\n".to_string()),
    ];
    Ok(CheckpointFiles { hdf5, text })
}
