//! Models record the graph they were trained on; `refresh` trains a new
//! version on what changed since, and carries the index over.

use std::sync::atomic::{AtomicBool, Ordering};

use quiver_engine::refresh::{refresh_on_until, RefreshOptions};
use quiver_engine::{
    index_model, resume_on_until, train_on_until, AnnIndex, Device, EngineError, IndexSettings, Model,
    TrainConfig, TrainEvent,
};
use quiver_storage::{BucketEdge, Database};

/// `edges` seeded random edges of relation `a` between `n` nodes, and a ring of `b`.
fn graph(dir: &std::path::Path, n: u64, edges: usize) -> Database {
    let db = Database::create(dir.join("db")).unwrap();
    db.create_node_type("N").unwrap();
    let a = db.create_relation_type("a", "N", "N").unwrap();
    let b = db.create_relation_type("b", "N", "N").unwrap();
    let mut batch = db.batch();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..edges {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        batch.insert_edge(
            a,
            format!("n{}", (x >> 33) % n),
            format!("n{}", (x >> 13) % n),
            None,
        );
    }
    for i in 0..n {
        batch.insert_edge(b, format!("n{i}"), format!("n{}", (i + 1) % n), None);
    }
    db.commit(batch).unwrap();
    db
}

fn config() -> TrainConfig {
    TrainConfig {
        dim: 16,
        epochs: 3,
        chunk_size: 16,
        uniform_negatives: 16,
        threads: 1,
        validation: None,
        ..TrainConfig::default()
    }
}

fn train(db: &Database, name: &str) {
    train_on_until(
        db,
        name,
        &config(),
        &Device::Cpu,
        &mut |_| {},
        &AtomicBool::new(false),
        None,
    )
    .unwrap();
}

fn refresh(
    db: &Database,
    to: &str,
    opts: &RefreshOptions,
    stop: &AtomicBool,
    edges: &mut Vec<u64>,
) -> quiver_engine::Result<()> {
    let mut log = |e: &TrainEvent| {
        if let TrainEvent::Epoch(s) = e {
            edges.push(s.edges);
        }
    };
    refresh_on_until(db, "m", to, opts, &Device::Cpu, &mut log, stop)
}

fn opts(replay: f64) -> RefreshOptions {
    RefreshOptions {
        epochs: 2,
        replay,
        threads: 1,
        ..RefreshOptions::default()
    }
}

#[test]
fn models_count_the_changes_since_their_state_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = graph(dir.path(), 200, 600);
    train(&db, "m");
    assert!(db.changes_since("m").unwrap().unwrap().is_empty());
    let a = db.catalog().relation("a").unwrap();
    let snap = db.snapshot();
    let old: Vec<(u32, u32)> = (0..200u32)
        .flat_map(|s| {
            snap.out_neighbors(a, s)
                .iter()
                .map(move |&t| (s, t))
                .collect::<Vec<_>>()
        })
        .collect();
    // Inserts (one of them twice, one an edge that exists), deletes, a new
    // node, a deleted node and a compaction in between (ids, not keys).
    let mut b = db.batch();
    b.insert_edge(a, 1u32, 199u32, None)
        .insert_edge(a, 1u32, 199u32, None);
    b.insert_edge(a, old[0].0, old[0].1, None);
    b.insert_edge(a, "new", 5u32, None);
    b.delete_edge(a, old[1].0, old[1].1)
        .delete_edge(a, old[2].0, old[2].1);
    db.commit(b).unwrap();
    db.compact().unwrap();
    let mut gone: std::collections::BTreeSet<(u32, u32, u32)> =
        [(a, old[1].0, old[1].1), (a, old[2].0, old[2].1)].into();
    for r in 0..2 {
        gone.extend(snap.out_neighbors(r, 7).iter().map(|&t| (r, 7, t)));
        gone.extend(snap.in_neighbors(r, 7).iter().map(|&s| (r, s, 7)));
    }
    let mut b = db.batch();
    b.delete_node(0, 7u32);
    db.commit(b).unwrap();
    let c = db.changes_since("m").unwrap().unwrap();
    let new_id = db.snapshot().node_id(0, "new").unwrap();
    let mut added = vec![BucketEdge {
        rel: a,
        src: new_id,
        dst: 5,
    }];
    if !old.contains(&(1, 199)) {
        added.insert(
            0,
            BucketEdge {
                rel: a,
                src: 1,
                dst: 199,
            },
        );
    }
    assert_eq!(c.edges_added, added);
    let deleted: std::collections::BTreeSet<(u32, u32, u32)> =
        c.edges_deleted.iter().map(|e| (e.rel, e.src, e.dst)).collect();
    assert_eq!(deleted, gone);
    assert_eq!(deleted.len(), c.edges_deleted.len());
    assert_eq!(c.nodes_added, vec![vec![new_id]]);
    assert_eq!(c.nodes_deleted, vec![vec![7]]);
    // Retraining records the new state.
    train(&db, "m");
    assert!(db.changes_since("m").unwrap().unwrap().is_empty());
}

#[test]
fn refresh_trains_the_added_edges_and_the_replay_sample_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = graph(dir.path(), 300, 1500);
    train(&db, "m");
    let a = db.catalog().relation("a").unwrap();
    let mut b = db.batch();
    for i in 0..20 {
        b.insert_edge(a, format!("fresh{i}"), format!("n{}", i * 7), None);
    }
    db.commit(b).unwrap();
    let added = db.changes_since("m").unwrap().unwrap().edges_added.len() as u64;
    assert_eq!(added, 20);
    // No replay: exactly the added edges, every epoch.
    let mut edges = Vec::new();
    refresh(&db, "r0", &opts(0.0), &AtomicBool::new(false), &mut edges).unwrap();
    assert_eq!(edges, vec![added, added]);
    // Replay of everything at the touched nodes: the added edges and every
    // old edge at one of their ends, counted here from the adjacency.
    let snap = db.snapshot();
    let touched: Vec<u32> = (0..20)
        .map(|i| snap.node_id(0, &format!("n{}", i * 7)).unwrap())
        .collect();
    let mut old = std::collections::BTreeSet::new();
    for &n in &touched {
        for r in 0..2 {
            for &t in snap.out_neighbors(r, n).iter() {
                old.insert((r, n, t));
            }
            for &s in snap.in_neighbors(r, n).iter() {
                old.insert((r, s, n));
            }
        }
    }
    let mut edges = Vec::new();
    refresh(&db, "rall", &opts(1e9), &AtomicBool::new(false), &mut edges).unwrap();
    assert!(old.len() as u64 > 2 * added);
    assert_eq!(edges, vec![old.len() as u64; 2]);
    // Replay 1: about as many old edges as added ones (a seeded draw).
    let mut edges = Vec::new();
    refresh(&db, "r1", &opts(1.0), &AtomicBool::new(false), &mut edges).unwrap();
    assert!((30..=70).contains(&edges[0]), "{edges:?}");
    // The new version has rows for the new nodes and records the graph as it is.
    let (m, r0) = (Model::load(&db, "m").unwrap(), Model::load(&db, "r0").unwrap());
    assert_eq!(r0.nodes[0].len(), (m.nodes[0].len() / 16 + 20) * 16);
    assert!(db.changes_since("r0").unwrap().unwrap().is_empty());
    // Nothing changed since r0: nothing to refresh; the same name is refused.
    let e = refresh_on_until(
        &db,
        "r0",
        "r0b",
        &opts(1.0),
        &Device::Cpu,
        &mut |_| {},
        &AtomicBool::new(false),
    );
    assert!(
        matches!(e, Err(EngineError::Config(ref m)) if m.contains("nothing changed")),
        "{e:?}"
    );
    let e = refresh(&db, "m", &opts(1.0), &AtomicBool::new(false), &mut Vec::new());
    assert!(matches!(e, Err(EngineError::Config(_))), "{e:?}");
}

#[test]
fn a_refresh_stopped_and_resumed_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = graph(dir.path(), 300, 1500);
    train(&db, "m");
    let a = db.catalog().relation("a").unwrap();
    let mut b = db.batch();
    for i in 0..40 {
        b.insert_edge(a, format!("n{}", i * 5), format!("n{}", i * 3 + 1), None);
    }
    b.insert_edge(a, "late", "n2", None);
    db.commit(b).unwrap();
    let o = RefreshOptions {
        epochs: 3,
        ..opts(2.0)
    };
    refresh_on_until(
        &db,
        "m",
        "whole",
        &o,
        &Device::Cpu,
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap();
    let flag = AtomicBool::new(false);
    let mut stop_after_first = |e: &TrainEvent| {
        if matches!(e, TrainEvent::Epoch(_)) {
            flag.store(true, Ordering::Relaxed);
        }
    };
    let e = refresh_on_until(
        &db,
        "m",
        "stopped",
        &o,
        &Device::Cpu,
        &mut stop_after_first,
        &flag,
    );
    assert!(matches!(e, Err(EngineError::Stopped(_))), "{e:?}");
    resume_on_until(
        &db,
        "stopped",
        &Device::Cpu,
        &mut |_| {},
        &AtomicBool::new(false),
        None,
    )
    .unwrap();
    let (x, y) = (
        Model::load(&db, "whole").unwrap(),
        Model::load(&db, "stopped").unwrap(),
    );
    assert_eq!(x.nodes, y.nodes);
    assert_eq!(x.relations, y.relations);
}

#[test]
fn the_index_is_carried_over_without_deleted_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let db = graph(dir.path(), 400, 2000);
    train(&db, "m");
    let settings = IndexSettings {
        threads: 1,
        ..IndexSettings::default()
    };
    index_model(&db, "m", 0, &settings, &|_, _| true).unwrap();
    let a = db.catalog().relation("a").unwrap();
    let n9 = db.snapshot().node_id(0, "n9").unwrap();
    let mut b = db.batch();
    b.delete_node(0, n9);
    for i in 0..10 {
        b.insert_edge(a, format!("new{i}"), format!("n{}", i + 20), None);
    }
    db.commit(b).unwrap();
    refresh(&db, "r", &opts(1.0), &AtomicBool::new(false), &mut Vec::new()).unwrap();
    let index = AnnIndex::current(&db, "r", 0)
        .unwrap()
        .expect("the refresh carries the index");
    let info = index.info();
    assert_eq!((info.rows, info.removed), (410, 1));
    let reinserted = info.reinserted.expect("carried, not rebuilt");
    assert!((10..205).contains(&reinserted), "{reinserted}");
    // Unfiltered, the graph itself no longer holds n9, and holds the new nodes.
    let r = Model::load(&db, "r").unwrap();
    let all = index
        .search(&r.nodes[0], r.node(0, n9), 410, Some(500), &|_| false)
        .unwrap();
    let ids: Vec<u32> = all.iter().map(|&(id, _)| id).collect();
    assert!(!ids.contains(&n9));
    assert!((400..410).all(|id| ids.contains(&id)), "{ids:?}");
    assert_eq!(ids.len(), 409);
}

#[test]
fn with_partitions_a_refresh_loads_only_the_partitions_of_its_edges() {
    let dir = tempfile::tempdir().unwrap();
    let db = graph(dir.path(), 400, 2000);
    let cfg = TrainConfig {
        partitions: 4,
        ..config()
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
    // Edges inside partition 0 (ids below 100) only.
    let a = db.catalog().relation("a").unwrap();
    let mut b = db.batch();
    for i in 0..30u32 {
        b.insert_edge(a, i, (i * 7 + 3) % 100, None);
    }
    db.commit(b).unwrap();
    let added = db.changes_since("m").unwrap().unwrap().edges_added.len() as u64;
    assert!(added > 20);
    let (mut loads, mut edges) = (0, Vec::new());
    let mut log = |e: &TrainEvent| {
        if let TrainEvent::Epoch(s) = e {
            loads += s.loads;
            edges.push(s.edges);
        }
    };
    refresh_on_until(
        &db,
        "m",
        "r",
        &opts(0.0),
        &Device::Cpu,
        &mut log,
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(edges, vec![added, added]);
    assert_eq!(loads, 1, "partition 0 of the one node type, once");
    // The partitions it never loaded are the old model's rows.
    let (m, r) = (Model::load(&db, "m").unwrap(), Model::load(&db, "r").unwrap());
    assert_eq!(&m.nodes[0][100 * 16..], &r.nodes[0][100 * 16..]);
    assert_ne!(&m.nodes[0][..100 * 16], &r.nodes[0][..100 * 16]);
}

#[test]
fn a_validated_refresh_starts_from_the_old_model_as_its_best() {
    let dir = tempfile::tempdir().unwrap();
    let db = graph(dir.path(), 600, 6000);
    let cfg = TrainConfig {
        validation: TrainConfig::default().validation,
        epochs: 4,
        ..config()
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
    assert!(db.model_info("m").unwrap().metrics.contains("\"valid\""));
    let a = db.catalog().relation("a").unwrap();
    let mut b = db.batch();
    for i in 0..100u32 {
        b.insert_edge(a, i, (i * 13 + 5) % 600, None);
    }
    db.commit(b).unwrap();
    refresh(&db, "r", &opts(2.0), &AtomicBool::new(false), &mut Vec::new()).unwrap();
    let metrics: serde_json::Value = serde_json::from_str(&db.model_info("r").unwrap().metrics).unwrap();
    let curve = metrics["valid"]["curve"].as_array().unwrap();
    assert_eq!(curve[0]["epoch"], 0, "the old model scored first: {metrics}");
    assert_eq!(curve.len(), 3, "{metrics}");
    let best = metrics["valid"]["epoch"].as_u64().unwrap();
    let (m, r) = (Model::load(&db, "m").unwrap(), Model::load(&db, "r").unwrap());
    let same = m.nodes[0] == r.nodes[0][..m.nodes[0].len()];
    assert_eq!(same, best == 0, "best epoch {best}: {metrics}");
    assert!(db.model_info("r~best").is_err());
    assert!(db.check().unwrap().ok());
}
