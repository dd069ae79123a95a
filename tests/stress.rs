//! Load: 8 reader threads running mixed queries, one writer inserting and
//! deleting whole batches (and compacting), and training runs, together for
//! `QUIVER_STRESS_SECS` seconds (120 by default; `make stress` runs 600).
//! No deadlock (a watchdog aborts the process), no panic, every snapshot sees
//! each batch wholly or not at all, memory stays bounded. Prints queries/s
//! and latency percentiles measured while training ran.

use quiver_tests::RngCore;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_query::{Graph, Params, Value};
use quiver_storage::Database;

const SLOTS: u64 = 400;
const PER: u32 = 20;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Edges of batch slot `s` a snapshot holds: 0 or PER, never in between.
fn slot_edges(db: &Database, s: u64) -> u32 {
    let snap = db.snapshot();
    let rel = 0;
    (0..PER)
        .filter(|i| {
            match (
                snap.node_id(0, &format!("w{s}_{i}")),
                snap.node_id(0, &format!("w{s}_{}", i + 1)),
            ) {
                (Some(a), Some(b)) => snap.has_edge(rel, a, b),
                _ => false,
            }
        })
        .count() as u32
}

#[test]
fn readers_writer_and_training_together() {
    let secs: u64 = std::env::var("QUIVER_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let dir = tempfile::tempdir().unwrap();
    let graph = Graph::open(dir.path().join("db")).unwrap();
    let p = Params::new();
    graph
        .query(
            "CREATE NODE TYPE N; CREATE RELATION TYPE R (N -> N); CREATE RELATION TYPE S (N -> N)",
            &p,
        )
        .unwrap();
    {
        let db = graph.database();
        let mut b = db.batch();
        for i in 0..3000u32 {
            b.insert_edge(1, format!("n{i}"), format!("n{}", (i * 7 + 1) % 3000), None);
            b.insert_edge(1, format!("n{i}"), format!("n{}", (i * 13 + 5) % 3000), None);
        }
        db.commit(b).unwrap();
        db.compact().unwrap();
    }
    graph
        .query("CALL quiver.train({dim: 16, epochs: 2, model: 'm'})", &p)
        .unwrap();
    let graph = Arc::new(graph);
    let stop = Arc::new(AtomicBool::new(false));
    let training = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let rss_start = rss_mib();
    // The watchdog: a deadlock must fail the run, not hang CI.
    let deadline = Duration::from_secs(secs + 180);
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        eprintln!("stress: not finished {} s after its end: deadlock?", 180);
        std::process::abort();
    });
    let started = Instant::now();
    std::thread::scope(|scope| {
        // The writer: slot s alternates between all PER edges and none.
        scope.spawn(|| {
            let db = graph.database();
            let mut k = 0u64;
            while !stop.load(Relaxed) {
                let s = k % SLOTS;
                let present = slot_edges(db, s) == PER;
                let mut b = db.batch();
                for i in 0..PER {
                    let (a, c) = (format!("w{s}_{i}"), format!("w{s}_{}", i + 1));
                    if present {
                        b.delete_edge(0, a.as_str(), c.as_str());
                    } else {
                        b.insert_edge(0, a, c, Some(1.0 + i as f32));
                    }
                }
                db.commit(b).unwrap();
                commits.fetch_add(1, Relaxed);
                k += 1;
                if k.is_multiple_of(2000) {
                    db.compact().unwrap();
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        // Training, over and over, under its own name.
        scope.spawn(|| {
            let db = graph.database();
            let cfg = quiver_engine::TrainConfig {
                dim: 32,
                epochs: 3,
                partitions: 2,
                threads: 1,
                ..Default::default()
            };
            while !stop.load(Relaxed) {
                training.store(true, Relaxed);
                quiver_engine::train_on(db, "t", &cfg, &quiver_engine::Device::Cpu, &mut |_| {}).unwrap();
            }
            training.store(false, Relaxed);
        });
        let readers: Vec<_> = (0..8u64)
            .map(|r| {
                let (graph, stop, training) = (&graph, &stop, &training);
                scope.spawn(move || {
                    let mut lat = Vec::new();
                    let mut random = quiver_tests::rng(0x9e37_79b9_7f4a_7c15 ^ r);
                    let queries = [
                        "MATCH (a:N {key: $k})-[:S]->(b) RETURN b.key",
                        "MATCH (a:N {key: $k})-[:S]->()-[:S]->(c) RETURN count(DISTINCT c)",
                        "MATCH (a:N {key: $k})-[r]->(b) RETURN type(r), b.key",
                        "MATCH (a:N {key: $k})-[:S]->(b) RETURN b.key, quiver.score(a, 'S', b, 'm') AS s ORDER BY s DESC LIMIT 3",
                        "MATCH (a:N {key: $w})-[:R*1..3]->(b) RETURN count(*)",
                    ];
                    while !stop.load(Relaxed) {
                        let x = random.next_u64();
                        // Whole batches only, in one snapshot.
                        let n = slot_edges(graph.database(), x % SLOTS);
                        assert!(n == 0 || n == PER, "a snapshot saw {n} of a batch's {PER} edges");
                        let params = Params::from([
                            ("k".to_string(), Value::from(format!("n{}", x % 3000))),
                            ("w".to_string(), Value::from(format!("w{}_0", x % SLOTS))),
                        ]);
                        let t = Instant::now();
                        graph.query(queries[(x >> 32) as usize % queries.len()], &params).unwrap();
                        if training.load(Relaxed) {
                            lat.push(t.elapsed().as_secs_f64());
                        }
                    }
                    lat
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Relaxed);
        let mut lat: Vec<f64> = readers.into_iter().flat_map(|h| h.join().unwrap()).collect();
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))] * 1e6;
        let elapsed = started.elapsed().as_secs_f64();
        eprintln!(
            "stress: {secs} s, 8 readers: {} queries while training ({:.0}/s), p50 {:.0} µs, p99 {:.0} µs; {} commits ({:.0}/s); RSS {:.0} -> {:.0} MiB",
            lat.len(),
            lat.len() as f64 / elapsed,
            pct(0.5),
            pct(0.99),
            commits.load(Relaxed),
            commits.load(Relaxed) as f64 / elapsed,
            rss_start,
            rss_mib()
        );
        assert!(lat.len() > 100, "too few queries ran");
    });
    let db = graph.database();
    assert!(db.check().unwrap().ok());
    for s in 0..SLOTS {
        let n = slot_edges(db, s);
        assert!(n == 0 || n == PER);
    }
    // Bounded: slots are reused, the delta is compacted; allow generous slack.
    assert!(
        rss_mib() < rss_start + 1024.0,
        "RSS grew from {rss_start:.0} to {:.0} MiB",
        rss_mib()
    );
}
