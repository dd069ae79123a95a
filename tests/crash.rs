//! Crash test: a child process writes batches (some past `LARGE_COMMIT`,
//! which become a new base generation; and runs imports and compactions)
//! and is killed with SIGKILL at random moments, 20 times. After
//! each kill the database opens, passes `check`, holds every batch wholly or
//! not at all, and holds every batch the child reported flushed.

use quiver_tests::RngCore;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use quiver_storage::import::ImportOptions;
use quiver_storage::{Database, LARGE_COMMIT};

const CHILD_ENV: &str = "QUIVER_CRASH_CHILD";
const PER_BATCH: u32 = 50;

/// Edges of batch `k`: every sixth batch that is not an import is large.
fn per_batch(k: u64) -> u32 {
    if k % 6 == 1 && k % 7 != 3 {
        LARGE_COMMIT as u32 + 1
    } else {
        PER_BATCH
    }
}

/// The child: runs until killed. Batch `k` inserts edges `b{k}_{i} -> b{k}_{i+1}`
/// with relation `R`; every few batches it imports a file or compacts.
fn child(path: &Path, start: u64) {
    let db = Database::open_or_create(path).unwrap();
    if db.catalog().node_types.is_empty() {
        db.create_node_type("Entity").unwrap();
        db.create_relation_type("R", "Entity", "Entity").unwrap();
    }
    let rel = db.catalog().relation("R").unwrap();
    let out = std::io::stdout();
    for k in start.. {
        if k % 7 == 3 {
            let f = path.with_extension(format!("in{k}.tsv"));
            let mut text = String::new();
            for i in 0..PER_BATCH {
                text.push_str(&format!("b{k}_{i}\tR\tb{k}_{}\n", i + 1));
            }
            std::fs::write(&f, text).unwrap();
            db.import(&[f], &ImportOptions::default(), &mut |_| {}).unwrap();
        } else {
            let mut b = db.batch();
            for i in 0..per_batch(k) {
                b.insert_edge(rel, format!("b{k}_{i}"), format!("b{k}_{}", i + 1), None);
            }
            db.commit(b).unwrap();
            if k % 5 == 0 {
                db.compact().unwrap();
            }
            db.flush().unwrap();
        }
        writeln!(out.lock(), "{k}").unwrap();
    }
}

fn batch_state(db: &Database, k: u64) -> u32 {
    let snap = db.snapshot();
    let Ok(rel) = snap.catalog().relation("R") else {
        return 0;
    };
    (0..per_batch(k))
        .filter(|i| {
            let (Some(s), Some(d)) = (
                snap.node_id(0, &format!("b{k}_{i}")),
                snap.node_id(0, &format!("b{k}_{}", i + 1)),
            ) else {
                return false;
            };
            snap.out_neighbors(rel, s).contains(&d) && snap.in_neighbors(rel, d).contains(&s)
        })
        .count() as u32
}

#[test]
fn killed_writer_leaves_whole_batches() {
    if let Ok(args) = std::env::var(CHILD_ENV) {
        let (path, start) = args.split_once(';').unwrap();
        child(Path::new(path), start.parse().unwrap());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut next = 0u64;
    let mut acked_total = 0;
    let mut random = quiver_tests::rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..20 {
        let rng = random.next_u64();
        let delay = Duration::from_millis(20 + rng % 300);
        let mut c = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "killed_writer_leaves_whole_batches",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{};{next}", path.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = c.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        });
        std::thread::sleep(delay);
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        let acked = reader.join().unwrap();
        acked_total += acked.len();
        let db = Database::open(&path).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let report = db.check().unwrap();
        assert!(report.ok(), "round {round}: {:?}", report.problems);
        let last = acked.last().copied().unwrap_or(next);
        for k in 0..=last + 1 {
            let n = batch_state(&db, k);
            assert!(
                n == 0 || n == per_batch(k),
                "round {round}: batch {k} is partial ({n} edges)"
            );
            if acked.contains(&k) {
                assert_eq!(n, per_batch(k), "round {round}: acknowledged batch {k} lost");
            }
        }
        next = last + 2;
        drop(db);
    }
    eprintln!("{acked_total} batches acknowledged over 20 kills");
    assert!(
        acked_total >= 20,
        "the child did too little work before being killed"
    );
}
