//! A training run killed with SIGKILL at random moments (mid-bucket,
//! mid-checkpoint, with partitions evicted and staged since the last
//! checkpoint; or with two partitions kept resident, pools refreshed after
//! every bucket, a decaying learning rate and validation) resumes from its
//! last checkpoint and ends with exactly the model an uninterrupted run
//! produces (one thread: deterministic).

use quiver_tests::RngCore;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use quiver_engine::refresh::{refresh_on_until, RefreshOptions};
use quiver_engine::{
    index_model, resume_on_until, train_on_until, AnnIndex, Device, IndexSettings, Loss, Model, Score,
    TrainConfig, Triple, ValidMetric, Validation,
};
use quiver_storage::Database;

const CHILD_ENV: &str = "QUIVER_RESUME_CHILD";
const CASE_ENV: &str = "QUIVER_RESUME_CASE";

/// A run's settings and, in the second case, its validation.
fn case(n: usize) -> (TrainConfig, Option<Validation>) {
    let base = TrainConfig {
        dim: 32,
        epochs: 12,
        partitions: 3,
        score: Score::L2,
        loss: Loss::Margin,
        chunk_size: 20,
        uniform_negatives: 20,
        threads: 1,
        seed: 11,
        // Partitions of 4,000 rows × 33 floats: the third never fits beside
        // a bucket's two, so buckets evict (and stage) partitions.
        memory_budget_mib: 1,
        ..TrainConfig::default()
    };
    if n == 0 {
        return (base, None);
    }
    // Two partitions, both kept resident (no budget), pools of 500 rows
    // drawn after every bucket, rows pressed against the max-norm ball (a
    // high rate, a small margin, so that many negatives are inactive and
    // skipped), the rate decaying from epoch 4, and validation every 3
    // epochs, which keeps the best model.
    let cfg = TrainConfig {
        partitions: 2,
        memory_budget_mib: 0,
        foreign_sample: 1000,
        lr: 0.5,
        margin: 0.3,
        lr_decay: 0.8,
        lr_decay_from: 4,
        ..base
    };
    let triples = (0..300)
        .map(|i| Triple {
            head: format!("n{}", i * 37 % 2_000),
            relation: ["a", "b"][i % 2].to_string(),
            tail: format!("n{}", i * 101 % 2_000),
        })
        .collect();
    let valid = Validation {
        triples,
        every: 3,
        patience: 0,
        metric: ValidMetric::Mrr,
    };
    (cfg, Some(valid))
}

/// Case `n`'s graph: 12,000 edges between 12,000 nodes, or 20,000 between
/// 2,000 (denser: rows reach the ball within the first epochs).
fn graph(path: &Path, n: usize) {
    let (nodes, edges) = [(12_000, 12_000), (2_000, 20_000)][n];
    let db = Database::create(path).unwrap();
    db.create_node_type("N").unwrap();
    db.create_relation_type("a", "N", "N").unwrap();
    db.create_relation_type("b", "N", "N").unwrap();
    let mut b = db.batch();
    let mut random = quiver_tests::rng(5);
    for _ in 0..edges {
        let x = random.next_u64();
        b.insert_edge(
            (x % 2) as u32,
            format!("n{}", (x >> 8) % nodes),
            format!("n{}", (x >> 24) % nodes),
            None,
        );
    }
    db.commit(b).unwrap();
    db.flush().unwrap();
}

/// Trains model `m` of case `n`, or resumes it when a run is under way.
fn train_or_resume(db: &Database, n: usize) {
    let (cfg, valid) = case(n);
    let never = AtomicBool::new(false);
    let running = db.model_info("m").is_ok_and(|m| !m.progress.is_empty());
    let r = match running {
        true => resume_on_until(db, "m", &Device::Cpu, &mut |_| {}, &never, valid.as_ref()),
        false => train_on_until(db, "m", &cfg, &Device::Cpu, &mut |_| {}, &never, valid.as_ref()),
    };
    r.unwrap();
}

#[test]
fn killed_training_resumes_to_the_same_model() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let n: usize = std::env::var(CASE_ENV).unwrap().parse().unwrap();
        train_or_resume(&Database::open(&path).unwrap(), n);
        return;
    }
    for n in 0..2 {
        kill_and_resume(n);
    }
}

fn kill_and_resume(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let reference = {
        let path = dir.path().join("reference");
        graph(&path, n);
        let db = Database::open(&path).unwrap();
        train_or_resume(&db, n);
        Model::load(&db, "m").unwrap()
    };
    let path = dir.path().join("db");
    graph(&path, n);
    let mut random = quiver_tests::rng(0x2545_f491_4f6c_dd1d + n as u64);
    let mut kills = 0;
    for round in 0..20 {
        let rng = random.next_u64();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "killed_training_resumes_to_the_same_model",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .env(CASE_ENV, n.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(30 + rng % 250));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        let db = Database::open(&path).unwrap_or_else(|e| panic!("case {n}, round {round}: {e}"));
        assert!(db.check().unwrap().ok(), "case {n}, round {round}");
        let info = db.model_info("m");
        if info.as_ref().is_ok_and(|m| m.progress.is_empty()) {
            break;
        }
    }
    assert!(
        kills >= 3,
        "case {n}: only {kills} kills landed before the run finished"
    );
    let db = Database::open(&path).unwrap();
    if !db.model_info("m").unwrap().progress.is_empty() {
        train_or_resume(&db, n);
    }
    assert_eq!(
        Model::load(&db, "m").unwrap(),
        reference,
        "case {n}, after {kills} kills"
    );
}

const REFRESH_ENV: &str = "QUIVER_REFRESH_CHILD";

/// Refreshes `m` into `r` (threads 1: deterministic), or resumes `r`.
fn refresh_or_resume(db: &Database) {
    let never = AtomicBool::new(false);
    let opts = RefreshOptions {
        epochs: 8,
        replay: 2.0,
        threads: 1,
        ..RefreshOptions::default()
    };
    let r = match db.model_info("r") {
        Ok(_) => resume_on_until(db, "r", &Device::Cpu, &mut |_| {}, &never, None),
        Err(_) => refresh_on_until(db, "m", "r", &opts, &Device::Cpu, &mut |_| {}, &never),
    };
    r.unwrap();
}

/// Case 0's graph and model `m` (two epochs) with its index, then 3,000
/// edges added (some at 500 new nodes) and a node deleted.
fn changed_graph(path: &Path) {
    graph(path, 0);
    let db = Database::open(path).unwrap();
    let cfg = TrainConfig {
        epochs: 2,
        ..case(0).0
    };
    train_on_until(
        &db,
        "m",
        &cfg,
        &Device::Cpu,
        &mut |_| {},
        &AtomicBool::new(false),
        None,
    )
    .unwrap();
    let settings = IndexSettings {
        threads: 1,
        ..IndexSettings::default()
    };
    index_model(&db, "m", 0, &settings, &|_, _| true).unwrap();
    let mut b = db.batch();
    let mut random = quiver_tests::rng(9);
    for i in 0..3_000u64 {
        let x = random.next_u64();
        let src = match i % 6 {
            0 => format!("new{}", x % 500),
            _ => format!("n{}", (x >> 8) % 12_000),
        };
        b.insert_edge((x % 2) as u32, src, format!("n{}", (x >> 24) % 12_000), None);
    }
    b.delete_node(0, "n17");
    db.commit(b).unwrap();
    db.flush().unwrap();
}

/// A refresh killed at random moments (mid-epoch, while partitions are
/// staged, while the index is carried over) and resumed ends with the
/// model and the index an uninterrupted refresh produces.
#[test]
fn killed_refresh_resumes_to_the_same_model() {
    if let Ok(path) = std::env::var(REFRESH_ENV) {
        refresh_or_resume(&Database::open(&path).unwrap());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    changed_graph(&reference);
    let reference = Database::open(&reference).unwrap();
    refresh_or_resume(&reference);
    let path = dir.path().join("db");
    changed_graph(&path);
    let mut random = quiver_tests::rng(0x5eed);
    let mut kills = 0;
    for round in 0..30 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "killed_refresh_resumes_to_the_same_model",
                "--test-threads=1",
            ])
            .env(REFRESH_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + random.next_u64() % 200));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        let db = Database::open(&path).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(db.check().unwrap().ok(), "round {round}");
        if db.model_info("r").is_ok_and(|m| m.progress.is_empty()) {
            break;
        }
    }
    assert!(
        kills >= 3,
        "only {kills} kills landed before the refresh finished"
    );
    let db = Database::open(&path).unwrap();
    if !db.model_info("r").unwrap().progress.is_empty() {
        refresh_or_resume(&db);
    }
    let (want, got) = (
        Model::load(&reference, "r").unwrap(),
        Model::load(&db, "r").unwrap(),
    );
    assert_eq!(got, want, "after {kills} kills");
    let (a, b) = (
        AnnIndex::current(&reference, "r", 0).unwrap().expect("carried"),
        AnnIndex::current(&db, "r", 0)
            .unwrap()
            .expect("carried after the kills"),
    );
    // (The versions differ: they name the part files, numbered per database.)
    let strip = |i: &quiver_engine::IndexInfo| (i.rows, i.removed, i.reinserted);
    assert_eq!(strip(a.info()), strip(b.info()));
    assert_eq!(a.info().removed, 1);
    for q in [0u32, 5, a.info().rows - 1] {
        let row = want.node(0, q);
        let (x, y) = (
            a.search(&want.nodes[0], row, 10, None, &|_| false),
            b.search(&got.nodes[0], row, 10, None, &|_| false),
        );
        assert_eq!(x.unwrap(), y.unwrap(), "query {q}");
    }
}
