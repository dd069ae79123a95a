//! A training run killed with SIGKILL at random moments (mid-bucket,
//! mid-checkpoint, with partitions evicted and staged since the last
//! checkpoint) resumes from its last checkpoint and ends with exactly the
//! model an uninterrupted run produces (one thread: deterministic).

use quiver_tests::RngCore;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use quiver_engine::{resume, train, Loss, Model, Score, TrainConfig};
use quiver_storage::Database;

const CHILD_ENV: &str = "QUIVER_RESUME_CHILD";

fn config() -> TrainConfig {
    TrainConfig {
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
    }
}

fn graph(path: &Path) {
    let db = Database::create(path).unwrap();
    db.create_node_type("N").unwrap();
    db.create_relation_type("a", "N", "N").unwrap();
    db.create_relation_type("b", "N", "N").unwrap();
    let mut b = db.batch();
    let mut random = quiver_tests::rng(5);
    for _ in 0..12_000 {
        let x = random.next_u64();
        b.insert_edge(
            (x % 2) as u32,
            format!("n{}", (x >> 8) % 12_000),
            format!("n{}", (x >> 24) % 12_000),
            None,
        );
    }
    db.commit(b).unwrap();
    db.flush().unwrap();
}

#[test]
fn killed_training_resumes_to_the_same_model() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let db = Database::open(&path).unwrap();
        let running = db.model_info("m").is_ok_and(|m| !m.progress.is_empty());
        if running {
            resume(&db, "m", &mut |_| {}).unwrap();
        } else {
            train(&db, "m", &config(), &mut |_| {}).unwrap();
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reference = {
        let path = dir.path().join("reference");
        graph(&path);
        let db = Database::open(&path).unwrap();
        train(&db, "m", &config(), &mut |_| {}).unwrap()
    };
    let path = dir.path().join("db");
    graph(&path);
    let mut random = quiver_tests::rng(0x2545_f491_4f6c_dd1d);
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
        let db = Database::open(&path).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(db.check().unwrap().ok(), "round {round}");
        let info = db.model_info("m");
        if info.as_ref().is_ok_and(|m| m.progress.is_empty()) {
            break;
        }
    }
    assert!(kills >= 3, "only {kills} kills landed before the run finished");
    let db = Database::open(&path).unwrap();
    if db.model_info("m").unwrap().progress.is_empty() {
        assert_eq!(Model::load(&db, "m").unwrap(), reference);
    } else {
        let resumed = resume(&db, "m", &mut |_| {}).unwrap();
        assert_eq!(resumed, reference, "after {kills} kills");
    }
}
