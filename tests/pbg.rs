//! PyTorch-BigGraph's formats: the exported input read back as PBG reads it
//! (HDF5 edge buckets, entity counts and names), a checkpoint written in
//! PBG's layout imported as a model, and mismatches refused with nothing
//! stored. (A run of PBG itself is `make pbg-distributed`, not in CI.)

use std::path::Path;

use quiver::{Database, Model, TrainConfig};

/// Users following users and liking items, across two partitions.
fn typed_graph(dir: &Path) -> Database {
    let db = Database::create(dir.join("db")).unwrap();
    db.create_node_type("User").unwrap();
    db.create_node_type("Item").unwrap();
    let follows = db.create_relation_type("Follows", "User", "User").unwrap();
    let likes = db.create_relation_type("Likes", "User", "Item").unwrap();
    let mut b = db.batch();
    for i in 0..23u32 {
        b.insert_edge(follows, format!("u{i}"), format!("u{}", (i * 7 + 3) % 23), None);
        b.insert_edge(likes, format!("u{i}"), format!("i{}", i % 9), Some(2.0));
    }
    db.commit(b).unwrap();
    // A later write stays in the delta: the export must include it.
    let mut b = db.batch();
    b.insert_edge(follows, "u0", "u22", None);
    db.commit(b).unwrap();
    db
}

fn read_i64(f: &hdf5::File, name: &str) -> Vec<i64> {
    f.dataset(name).unwrap().read_raw().unwrap()
}

#[test]
fn export_is_the_stored_graph_in_pbg_layout() {
    let dir = tempfile::tempdir().unwrap();
    let db = typed_graph(dir.path());
    let out = dir.path().join("pbg");
    let p = 2;
    let r = quiver::pbg::export_graph(&db, p, &TrainConfig::default(), &out, false).unwrap();
    let buckets = db.buckets(p).unwrap();
    assert_eq!(r.edges, buckets.edge_count());
    assert_eq!(r.edges, 47);
    let snap = db.snapshot();
    let c = snap.catalog();
    for (t, def) in c.node_types.iter().enumerate() {
        for part in 0..p {
            let range = buckets.partition_range(t as u32, part);
            let count =
                std::fs::read_to_string(out.join(format!("entity_count_{}_{part}.txt", def.name))).unwrap();
            assert_eq!(count.trim().parse::<usize>().unwrap(), range.len());
            let names: Vec<String> = serde_json::from_str(
                &std::fs::read_to_string(out.join(format!("entity_names_{}_{part}.json", def.name))).unwrap(),
            )
            .unwrap();
            let keys: Vec<&str> = range.map(|id| snap.node_key(t as u32, id).unwrap()).collect();
            assert_eq!(names, keys);
        }
    }
    for i in 0..p {
        for j in 0..p {
            let f = hdf5::File::open(out.join(format!("edges_{i}_{j}.h5"))).unwrap();
            assert_eq!(f.attr("format_version").unwrap().read_scalar::<i64>().unwrap(), 1);
            let (lhs, rhs, rel) = (read_i64(&f, "lhs"), read_i64(&f, "rhs"), read_i64(&f, "rel"));
            assert!(lhs.len() == rhs.len() && rhs.len() == rel.len());
            let mut got: Vec<(u32, u32, u32)> = (0..lhs.len())
                .map(|k| {
                    let def = &c.relations[rel[k] as usize];
                    let src = buckets.partition_range(def.src, i).start + lhs[k] as u32;
                    let dst = buckets.partition_range(def.dst, j).start + rhs[k] as u32;
                    (rel[k] as u32, src, dst)
                })
                .collect();
            let mut want: Vec<(u32, u32, u32)> = buckets
                .bucket(i, j)
                .iter()
                .map(|e| (e.rel, e.src, e.dst))
                .collect();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "bucket ({i}, {j})");
        }
    }
    let config = std::fs::read_to_string(out.join("config.py")).unwrap();
    assert!(
        config.contains("'Likes', 'lhs': 'User', 'rhs': 'Item', 'operator': 'translation'"),
        "{config}"
    );
    assert!(config.contains("'num_partitions': 2"));
    // Nothing is overwritten without force; a database directory is refused.
    let e = quiver::pbg::export_graph(&db, p, &TrainConfig::default(), &out, false).unwrap_err();
    assert!(e.to_string().contains("exists"), "{e}");
    quiver::pbg::export_graph(&db, p, &TrainConfig::default(), &out, true).unwrap();
    let e =
        quiver::pbg::export_graph(&db, p, &TrainConfig::default(), &dir.path().join("db"), true).unwrap_err();
    assert!(e.to_string().contains("inside database"), "{e}");
}

/// Writes a checkpoint as PBG does: version file, config.json, per entity
/// type and partition an `embeddings` dataset, the relations' right-hand
/// translations in the model file. Returns (rows per type, translations).
fn write_checkpoint(
    db: &Database,
    entity_path: &Path,
    ckpt: &Path,
    dim: usize,
    p: u32,
) -> (Vec<Vec<f32>>, Vec<f32>) {
    std::fs::create_dir_all(ckpt).unwrap();
    let buckets = db.buckets(p).unwrap();
    let c = db.catalog();
    std::fs::write(ckpt.join("checkpoint_version.txt"), "3\n").unwrap();
    let entities: serde_json::Map<String, serde_json::Value> = c
        .node_types
        .iter()
        .map(|t| (t.name.clone(), serde_json::json!({"num_partitions": p})))
        .collect();
    let relations: Vec<serde_json::Value> = c
        .relations
        .iter()
        .map(|r| serde_json::json!({"name": r.name, "lhs": c.type_name(r.src), "rhs": c.type_name(r.dst), "operator": "translation"}))
        .collect();
    let config = serde_json::json!({"entity_path": entity_path, "entities": entities, "relations": relations,
        "dynamic_relations": false, "dimension": dim, "comparator": "l2", "num_epochs": 7, "lr": 0.1, "margin": 1.0});
    std::fs::write(ckpt.join("config.json"), config.to_string()).unwrap();
    let mut tables = Vec::new();
    for (t, def) in c.node_types.iter().enumerate() {
        let mut table = Vec::new();
        for part in 0..p {
            let n = buckets.partition_range(t as u32, part).len();
            let rows: Vec<f32> = (0..n * dim)
                .map(|k| (t * 1000 + part as usize * 100 + k) as f32 / 7.0)
                .collect();
            let f = hdf5::File::create(ckpt.join(format!("embeddings_{}_{part}.v3.h5", def.name))).unwrap();
            f.new_dataset::<f32>()
                .shape((n, dim))
                .create("embeddings")
                .unwrap()
                .write_raw(&rows)
                .unwrap();
            table.extend(rows);
        }
        tables.push(table);
    }
    let f = hdf5::File::create(ckpt.join("model.v3.h5")).unwrap();
    let mut translations = Vec::new();
    for idx in 0..c.relations.len() {
        let t: Vec<f32> = (0..dim).map(|k| (idx * 10 + k) as f32 * 0.25).collect();
        let ds = f
            .new_dataset::<f32>()
            .shape(dim)
            .create(format!("model/relations/{idx}/operator/rhs/translation").as_str())
            .unwrap();
        ds.write_raw(&t).unwrap();
        translations.extend(t);
    }
    // With global_emb, PBG adds a learned vector per entity type to its rows.
    f.new_dataset::<f32>()
        .shape(dim)
        .create("model/entities/Item/global_embedding")
        .unwrap()
        .write_raw(&vec![0.5f32; dim])
        .unwrap();
    for x in &mut tables[1] {
        *x += 0.5;
    }
    (tables, translations)
}

#[test]
fn a_pbg_checkpoint_becomes_a_stored_model() {
    let dir = tempfile::tempdir().unwrap();
    let db = typed_graph(dir.path());
    let out = dir.path().join("pbg");
    quiver::pbg::export_graph(&db, 2, &TrainConfig::default(), &out, false).unwrap();
    let ckpt = out.join("checkpoints");
    let (tables, translations) = write_checkpoint(&db, &out, &ckpt, 6, 2);
    quiver::pbg::import_checkpoint(&db, &ckpt, "pbg").unwrap();
    let m = Model::load(&db, "pbg").unwrap();
    assert_eq!(m.nodes, tables);
    // PBG scores c(u, v + t); quiver's h + r ≈ t has r = −t.
    assert_eq!(m.relations, translations.iter().map(|x| -x).collect::<Vec<_>>());
    assert_eq!(
        (m.dim(), m.config.epochs, m.config.score),
        (6, 7, quiver::Score::L2)
    );
    // Every use of a stored model works: evaluation, neighbours, warm start.
    let test = [quiver::Triple {
        head: "u1".into(),
        relation: "Follows".into(),
        tail: "u10".into(),
    }];
    let r = quiver::evaluate(&db, &m, &test, &[], &quiver::Device::Cpu).unwrap();
    assert_eq!(r.triples, 1);
    let warm = TrainConfig {
        dim: 6,
        epochs: 1,
        warm_start: Some("pbg".into()),
        threads: 1,
        ..TrainConfig::default()
    };
    quiver::train(&db, "warm", &warm, &mut |_| {}).unwrap();
    // Back out as a PBG checkpoint (PBG's init_path), and in again: the same model.
    let back = dir.path().join("init");
    quiver::pbg::export_checkpoint(&db, "pbg", 2, &back, false).unwrap();
    quiver::pbg::import_checkpoint(&db, &back, "again").unwrap();
    let again = Model::load(&db, "again").unwrap();
    assert_eq!(
        (again.nodes, again.relations),
        (m.nodes.clone(), m.relations.clone())
    );
    for file in ["model.v1.h5", "embeddings_User_1.v1.h5"] {
        let f = hdf5::File::open(back.join(file)).unwrap();
        // PBG refuses files without it ("Version mismatch").
        assert_eq!(
            f.attr("format_version").unwrap().read_scalar::<i64>().unwrap(),
            1,
            "{file}"
        );
    }
    let f = hdf5::File::open(back.join("model.v1.h5")).unwrap();
    let key = f
        .dataset("model/relations/1/operator/rhs/translation")
        .unwrap()
        .attr("state_dict_key")
        .unwrap()
        .read_scalar::<hdf5::types::VarLenUnicode>()
        .unwrap();
    assert_eq!(key.as_str(), "rhs_operators.1.translation");
    // The same checkpoint again under that name: refused.
    let e = quiver::pbg::import_checkpoint(&db, &ckpt, "pbg").unwrap_err();
    assert!(e.to_string().contains("exists"), "{e}");
}

/// The typed graph exported as PBG input in `dir/pbg`, with a checkpoint
/// of it (dim 4, two partitions) in `dir/pbg/checkpoints`.
fn exported_with_checkpoint(dir: &Path) -> (Database, std::path::PathBuf, std::path::PathBuf) {
    let db = typed_graph(dir);
    let out = dir.join("pbg");
    quiver::pbg::export_graph(&db, 2, &TrainConfig::default(), &out, false).unwrap();
    let ckpt = out.join("checkpoints");
    write_checkpoint(&db, &out, &ckpt, 4, 2);
    (db, out, ckpt)
}

/// The error importing `ckpt` gives; nothing may have been stored.
fn refused(db: &Database, ckpt: &Path, what: &str) -> String {
    let e = quiver::pbg::import_checkpoint(db, ckpt, "m")
        .unwrap_err()
        .to_string();
    assert!(db.models().is_empty(), "{what}: a model was stored");
    e
}

#[test]
fn mismatched_checkpoints_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out, ckpt) = exported_with_checkpoint(dir.path());
    let import = |what: &str| refused(&db, &ckpt, what);
    // Other partition counts than the database's: the shapes differ.
    let config_path = ckpt.join("config.json");
    let good = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        good.replace("\"num_partitions\":2", "\"num_partitions\":1"),
    )
    .unwrap();
    assert!(import("partitions").contains("expected ["), "partitions");
    // Another dimension.
    std::fs::write(&config_path, good.replace("\"dimension\":4", "\"dimension\":5")).unwrap();
    assert!(import("dimension").contains("shape"));
    // Relations that are not the database's.
    std::fs::write(&config_path, good.replace("\"Likes\"", "\"Loves\"")).unwrap();
    assert!(import("relations").contains("where the database has Likes"));
    // A comparator TransE's translation does not survive.
    std::fs::write(&config_path, good.replace("\"l2\"", "\"dot\"")).unwrap();
    assert!(import("comparator").contains("comparator \"dot\""));
    std::fs::write(&config_path, &good).unwrap();
    // Names in another order than the database's rows.
    let names = out.join("entity_names_User_0.json");
    let mut list: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&names).unwrap()).unwrap();
    list.swap(0, 1);
    std::fs::write(&names, serde_json::to_string(&list).unwrap()).unwrap();
    assert!(import("names").contains("row 0 is"));
    // A missing translation.
    list.swap(0, 1);
    std::fs::write(&names, serde_json::to_string(&list).unwrap()).unwrap();
    let f = hdf5::File::create(ckpt.join("model.v3.h5")).unwrap();
    drop(f);
    assert!(import("model file").contains("model/relations/0/operator/rhs/translation"));
}

/// Hostile checkpoints (issue 34): sizes, types and values are checked
/// before anything is allocated or stored; special files are refused.
#[test]
fn hostile_checkpoints_are_refused_before_they_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out, ckpt) = exported_with_checkpoint(dir.path());
    let import = |what: &str| refused(&db, &ckpt, what);
    let config_path = ckpt.join("config.json");
    let good = std::fs::read_to_string(&config_path).unwrap();
    let with = |from: &str, to: &str| std::fs::write(&config_path, good.replace(from, to)).unwrap();
    for bad in ["-8", "\"8\"", "8.5", "0", "1000000000000", "1e15", "null"] {
        with("\"dimension\":4", &format!("\"dimension\":{bad}"));
        let e = import(bad);
        assert!(e.contains("dimension"), "{bad}: {e}");
    }
    for bad in ["1099511627777", "0", "-1", "\"2\""] {
        with("\"num_partitions\":2", &format!("\"num_partitions\":{bad}"));
        let e = import(bad);
        assert!(e.contains("num_partitions"), "{bad}: {e}");
    }
    std::fs::write(&config_path, "[1, 2]").unwrap();
    assert!(import("a list").contains("not a JSON object"));
    std::fs::write(&config_path, &good).unwrap();
    // Special files: refused, never read without end.
    for name in ["config.json", "checkpoint_version.txt"] {
        let path = ckpt.join(name);
        let keep = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        assert!(import(name).contains("not a regular file"), "{name}");
        std::fs::remove_file(&path).unwrap();
        // mkfifo(3), not the mkfifo program: a fork here would inherit the
        // HDF5 files other tests have open (HDF5 does not set close-on-exec)
        // and hold their locks until the child exits, failing those tests'
        // next open with EAGAIN (seen about 1 run in 8).
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a plain system call with a NUL-terminated path.
        #[allow(unsafe_code)]
        let made = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
        assert_eq!(made, 0, "mkfifo {}", path.display());
        assert!(import(name).contains("not a regular file"), "{name} as a FIFO");
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, keep).unwrap();
    }
    let names = out.join("entity_names_User_0.json");
    let keep = std::fs::read(&names).unwrap();
    std::fs::remove_file(&names).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &names).unwrap();
    assert!(import("names /dev/zero").contains("not a regular file"));
    std::fs::remove_file(&names).unwrap();
    std::fs::write(&names, "[]").unwrap();
    assert!(import("no names").contains("0 names"));
    std::fs::write(&names, keep).unwrap();
    // Embeddings of another type, NaN rows, a huge declared shape.
    let emb = ckpt.join("embeddings_User_0.v3.h5");
    let n = db.buckets(2).unwrap().partition_range(0, 0).len();
    let f = hdf5::File::create(&emb).unwrap();
    f.new_dataset::<i64>().shape((n, 4)).create("embeddings").unwrap();
    drop(f);
    assert!(import("int64").contains("float32"));
    let f = hdf5::File::create(&emb).unwrap();
    let mut rows = vec![0.5f32; n * 4];
    rows[5] = f32::NAN;
    f.new_dataset::<f32>()
        .shape((n, 4))
        .create("embeddings")
        .unwrap()
        .write_raw(&rows)
        .unwrap();
    drop(f);
    assert!(import("nan").contains("row 1 has a value that is not finite"));
    let f = hdf5::File::create(&emb).unwrap();
    f.new_dataset::<f32>()
        .chunk((1024, 8))
        .deflate(9)
        .shape((2_000_000_000, 8))
        .create("embeddings")
        .unwrap();
    drop(f);
    assert!(std::fs::metadata(&emb).unwrap().len() < 1 << 20);
    assert!(import("huge").contains("shape [2000000000, 8]"));
}

/// A knowledge graph (one entity type): PBG's dynamic relations, one
/// translation per side, which is quiver's TransE with reciprocal relations.
#[test]
fn knowledge_graphs_use_dynamic_relations_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("db")).unwrap();
    db.create_node_type("Entity").unwrap();
    let rels: Vec<u32> = ["r0", "r1", "r2"]
        .iter()
        .map(|r| db.create_relation_type(r, "Entity", "Entity").unwrap())
        .collect();
    let mut b = db.batch();
    for i in 0..30u32 {
        b.insert_edge(
            rels[(i % 3) as usize],
            format!("e{i}"),
            format!("e{}", (i * 11 + 1) % 30),
            None,
        );
    }
    db.commit(b).unwrap();
    let out = dir.path().join("pbg");
    quiver::pbg::export_graph(&db, 3, &TrainConfig::default(), &out, false).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("dynamic_rel_count.txt"))
            .unwrap()
            .trim(),
        "3"
    );
    let names: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(out.join("dynamic_rel_names.json")).unwrap()).unwrap();
    assert_eq!(names, ["r0", "r1", "r2"]);
    let config = std::fs::read_to_string(out.join("config.py")).unwrap();
    assert!(
        config.contains("dynamic_relations=True") && config.contains("'all_edges'"),
        "{config}"
    );
    assert!(
        config.contains("chunks of one relation (PBG's dynamic relations mix them"),
        "{config}"
    );
    // A reciprocal quiver model out as a PBG checkpoint and back.
    let cfg = TrainConfig {
        dim: 8,
        epochs: 2,
        reciprocal: true,
        score: quiver::Score::L2,
        threads: 1,
        ..TrainConfig::default()
    };
    let m = quiver::train(&db, "m", &cfg, &mut |_| {}).unwrap();
    let ckpt = dir.path().join("ckpt");
    quiver::pbg::export_checkpoint(&db, "m", 3, &ckpt, false).unwrap();
    let f = hdf5::File::open(ckpt.join("model.v1.h5")).unwrap();
    let lhs: Vec<f32> = f
        .dataset("model/relations/0/operator/lhs/translations")
        .unwrap()
        .read_raw()
        .unwrap();
    let rhs: Vec<f32> = f
        .dataset("model/relations/0/operator/rhs/translations")
        .unwrap()
        .read_raw()
        .unwrap();
    assert_eq!((&lhs[..], &rhs[..]), (&m.relations[..24], &m.relations[24..]));
    // Entity names are only checked when the config's entity path has them.
    let text = std::fs::read_to_string(ckpt.join("config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["entity_path"] = serde_json::json!(out);
    std::fs::write(ckpt.join("config.json"), json.to_string()).unwrap();
    quiver::pbg::import_checkpoint(&db, &ckpt, "back").unwrap();
    let back = Model::load(&db, "back").unwrap();
    assert!(back.config.reciprocal);
    assert_eq!((back.nodes, back.relations), (m.nodes, m.relations));
    // Relations named otherwise than the database's are refused.
    std::fs::write(out.join("dynamic_rel_names.json"), r#"["r0","r2","r1"]"#).unwrap();
    let e = quiver::pbg::import_checkpoint(&db, &ckpt, "again").unwrap_err();
    assert!(e.to_string().contains("not the database's"), "{e}");
}
