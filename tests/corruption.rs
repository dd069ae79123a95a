//! Corruption test: flip random bytes in each file of a small database; opening
//! and reading either return an error or succeed, and never panic. Segment
//! files are checksummed, so damage there must always be reported, naming the file.

use quiver_tests::RngCore;
use std::path::{Path, PathBuf};

use quiver_storage::{Database, Direction, StorageError};

fn build(path: &Path) {
    let db = Database::create(path).unwrap();
    db.create_node_type("A").unwrap();
    db.create_relation_type("r", "A", "A").unwrap();
    let mut b = db.batch();
    for i in 0..300u32 {
        b.insert_edge(
            0,
            format!("n{i}"),
            format!("n{}", (i * 17 + 5) % 300),
            Some(1.0 + (i % 3) as f32),
        );
    }
    db.commit(b).unwrap();
    db.compact().unwrap();
    let mut b = db.batch();
    for i in 0..40u32 {
        b.insert_edge(0, format!("n{i}"), format!("m{i}"), None);
        b.delete_edge(
            0,
            format!("n{}", i + 100),
            format!("n{}", ((i + 100) * 17 + 5) % 300),
        );
    }
    db.commit(b).unwrap();
    db.buckets(2).unwrap();
    db.flush().unwrap();
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if std::fs::metadata(&p).unwrap().len() > 0 {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// Copies database `clean` to `copy` and changes `flips` random bytes of its
/// file `rel` (each to a different value).
fn damaged_copy(clean: &Path, copy: &Path, rel: &Path, flips: usize, next: &mut dyn FnMut() -> u64) {
    copy_dir(clean, copy);
    let target = copy.join(rel);
    let mut bytes = std::fs::read(&target).unwrap();
    for _ in 0..flips {
        let at = (next() % bytes.len() as u64) as usize;
        bytes[at] ^= 1 + (next() % 255) as u8;
    }
    std::fs::write(&target, &bytes).unwrap();
}

/// [`build`], plus model `m` (two partitions) and its int8 copy.
fn build_trained(path: &Path) {
    build(path);
    let db = Database::open(path).unwrap();
    let cfg = quiver_engine::TrainConfig {
        dim: 8,
        epochs: 2,
        partitions: 2,
        threads: 1,
        ..Default::default()
    };
    let m = quiver_engine::train(&db, "m", &cfg, &mut |_| {}).unwrap();
    quiver_engine::Int8Rows::store(&db, "m", &m, 0).unwrap();
    db.flush().unwrap();
}

/// Opens and reads everything; an `Err` is fine, a panic is not.
fn exercise(path: &Path) -> Result<(), StorageError> {
    let db = Database::open(path)?;
    let snap = db.snapshot();
    for t in 0..snap.catalog().node_types.len() as u32 {
        for n in 0..snap.node_count(t) {
            let _ = snap.node_key(t, n);
            for (r, d) in snap.all_neighbors(t, n, Direction::Out) {
                let _ = snap.edge_weight(r, n, d);
            }
            let _ = snap.all_neighbors(t, n, Direction::In);
        }
    }
    db.check()?;
    db.buckets(2)?;
    db.stats()?;
    Ok(())
}

#[test]
fn flipped_bytes_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean");
    build(&clean);
    exercise(&clean).unwrap();
    let mut random = quiver_tests::rng(0x1234_5678_9abc_def1);
    let mut next = || random.next_u64();
    let mut trials = 0;
    for file in files(&clean) {
        let rel = file.strip_prefix(&clean).unwrap().to_path_buf();
        if rel == Path::new("LOCK") {
            continue;
        }
        let segment =
            rel.to_string_lossy().starts_with("base-") || rel.to_string_lossy().starts_with("buckets-");
        for trial in 0..8 {
            let copy = dir.path().join(format!("t{trials}"));
            trials += 1;
            damaged_copy(&clean, &copy, &rel, 1 + trial % 3, &mut next);
            let result = std::panic::catch_unwind(|| exercise(&copy));
            let result = result.unwrap_or_else(|_| {
                panic!("panic reading {} with damaged {}", copy.display(), rel.display())
            });
            if segment {
                let e = result.expect_err("damage in a segment file went unnoticed");
                assert!(
                    e.to_string().contains(&*rel.to_string_lossy()),
                    "error does not name {}: {e}",
                    rel.display()
                );
            }
            std::fs::remove_dir_all(&copy).unwrap();
        }
    }
    assert!(trials >= 24, "only {trials} trials");
}

/// Everything a user reads from a trained database, as text: the edges, the
/// model's rows (through the query language and `Model::load`), its int8
/// copy, and a filtered evaluation.
fn trained_digest(path: &Path) -> Result<String, String> {
    use quiver_engine::{evaluate, Device, Int8Rows, Model, Triple};
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let graph = quiver_query::Graph::open(path).map_err(|x| e(&x))?;
    let db = graph.database();
    let mut out = format!("{:?}\n", quiver_tests::all_edges(db));
    let rows = graph
        .query(
            "MATCH (a:A {key: 'n1'})-[:r]->(b) RETURN b.key, quiver.score(a, 'r', b, 'm') ORDER BY b.key",
            &quiver_query::Params::new(),
        )
        .map_err(|x| e(&x))?;
    out += &format!("{:?}\n", rows.rows);
    let model = Model::load(db, "m").map_err(|x| e(&x))?;
    out += &format!("{:?}\n", model.nodes);
    let codes = Int8Rows::load(db, "m", 0, model.dim()).map_err(|x| e(&x))?;
    out += &format!("{codes:?}\n");
    let test: Vec<Triple> = (0..20)
        .map(|i| Triple {
            head: format!("n{i}"),
            relation: "r".into(),
            tail: format!("n{}", (i * 17 + 5) % 300),
        })
        .collect();
    let r = evaluate(db, &model, &test, &[], &Device::Cpu).map_err(|x| e(&x))?;
    out += &format!("{} {}\n", r.mrr, r.triples);
    // Training reads the buckets and writes a model: one thread, so deterministic.
    let cfg = quiver_engine::TrainConfig {
        dim: 4,
        epochs: 1,
        threads: 1,
        ..Default::default()
    };
    let fresh = quiver_engine::train(db, "again", &cfg, &mut |_| {}).map_err(|x| e(&x))?;
    out += &format!("{:?}\n", fresh.nodes);
    db.check().map_err(|x| e(&x))?;
    Ok(out)
}

/// 100 trials: a database with a trained model and its int8 copy, one file
/// damaged each time. Opening, querying, loading the model and evaluating
/// return an error (naming the file, for the checksummed segments) or the
/// very results of the undamaged database; never a panic.
#[test]
fn trained_database_damage_is_reported_or_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean");
    build_trained(&clean);
    // The digest trains a model into the database it reads: take it on a copy.
    let first = dir.path().join("first");
    copy_dir(&clean, &first);
    let want = trained_digest(&first).unwrap();
    let all: Vec<PathBuf> = files(&clean)
        .into_iter()
        .filter(|f| !f.ends_with("LOCK"))
        .collect();
    assert!(all.iter().any(|f| f.to_string_lossy().contains("model-")));
    let mut random = quiver_tests::rng(0x9e37_79b9_7f4a_7c15);
    let mut next = || random.next_u64();
    let (mut errors, mut harmless) = (0, 0);
    for trial in 0..100 {
        let file = &all[(next() % all.len() as u64) as usize];
        let rel = file.strip_prefix(&clean).unwrap().to_path_buf();
        let copy = dir.path().join(format!("t{trial}"));
        damaged_copy(&clean, &copy, &rel, 1 + trial % 3, &mut next);
        let name = rel.to_string_lossy().to_string();
        let got = std::panic::catch_unwind(|| trained_digest(&copy))
            .unwrap_or_else(|_| panic!("trial {trial}: panic with damaged {name}"));
        match got {
            Err(message) => {
                errors += 1;
                let segment = ["base-", "buckets-", "model-"]
                    .iter()
                    .any(|p| name.starts_with(p));
                assert!(
                    !segment || message.contains(&name),
                    "trial {trial}: the error does not name {name}: {message}"
                );
            }
            Ok(digest) => {
                harmless += 1;
                assert!(
                    digest == want,
                    "trial {trial}: damaged {name} changed the results silently"
                );
            }
        }
        std::fs::remove_dir_all(&copy).unwrap();
    }
    eprintln!("100 trials: {errors} errors, {harmless} without effect");
    assert!(errors > 0);
}

/// `check` re-hashes every stored model's segments: a damaged model fails it.
#[test]
fn check_finds_a_damaged_model() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean");
    build_trained(&clean);
    assert!(Database::open(&clean).unwrap().check().unwrap().ok());
    let models: Vec<PathBuf> = files(&clean)
        .into_iter()
        .filter(|f| f.file_name().unwrap().to_string_lossy().starts_with("model-"))
        .collect();
    assert!(!models.is_empty());
    let mut random = quiver_tests::rng(7);
    let mut next = || random.next_u64();
    for (i, file) in models.iter().enumerate() {
        let copy = dir.path().join(format!("c{i}"));
        let rel = file.strip_prefix(&clean).unwrap().to_path_buf();
        damaged_copy(&clean, &copy, &rel, 1, &mut next);
        let db = Database::open(&copy).unwrap();
        let report = db.check().unwrap();
        let name = rel.to_string_lossy().to_string();
        assert!(!report.ok(), "damaged {name} passed check");
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("model `m`") && p.contains(&name)),
            "{name}: {:?}",
            report.problems
        );
    }
}
