//! Model-based test: random inserts, deletes, flushes, compactions and
//! reopens, against a `BTreeMap` model.

use std::collections::BTreeMap;

use proptest::prelude::*;
use quiver_storage::{Database, Direction};

#[derive(Debug, Clone)]
enum Op {
    Insert {
        rel: u32,
        src: u8,
        dst: u8,
        weight: Option<u8>,
    },
    Delete {
        rel: u32,
        src: u8,
        dst: u8,
    },
    Batch(Vec<(u32, u8, u8, bool)>),
    Flush,
    Compact,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3u32, 0..24u8, 0..24u8, proptest::option::of(0..4u8))
            .prop_map(|(rel, src, dst, weight)| Op::Insert { rel, src, dst, weight }),
        3 => (0..3u32, 0..24u8, 0..24u8).prop_map(|(rel, src, dst)| Op::Delete { rel, src, dst }),
        2 => proptest::collection::vec((0..3u32, 0..24u8, 0..24u8, any::<bool>()), 1..12).prop_map(Op::Batch),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

/// Relations 0 and 1 join A to A; relation 2 joins A to B.
fn schema(db: &Database) {
    db.create_node_type("A").unwrap();
    db.create_node_type("B").unwrap();
    db.create_relation_type("r0", "A", "A").unwrap();
    db.create_relation_type("r1", "A", "A").unwrap();
    db.create_relation_type("r2", "A", "B").unwrap();
}

type Model = BTreeMap<(u32, String, String), f32>;

fn dst_type(rel: u32) -> u32 {
    if rel == 2 {
        1
    } else {
        0
    }
}

fn compare(db: &Database, model: &Model) {
    let snap = db.snapshot();
    let mut got = Model::new();
    for node in 0..snap.node_count(0) {
        for (rel, dst) in snap.all_neighbors(0, node, Direction::Out) {
            let key = (
                rel,
                snap.node_key(0, node).unwrap().to_string(),
                snap.node_key(dst_type(rel), dst).unwrap().to_string(),
            );
            got.insert(key, snap.edge_weight(rel, node, dst).unwrap());
            assert!(snap.in_neighbors(rel, dst).contains(&node));
        }
    }
    assert_eq!(&got, model);
    assert_eq!(snap.edge_count(), model.len() as u64);
    for t in 0..2 {
        let total: u64 = (0..snap.node_count(t))
            .map(|n| snap.total_degree(t, n, Direction::In))
            .sum();
        let expected = model.keys().filter(|k| dst_type(k.0) == t).count() as u64;
        assert_eq!(total, expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn storage_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut db = Database::create(&path).unwrap();
        schema(&db);
        let mut model = Model::new();
        let key = |rel: u32, s: u8, d: u8| (rel, format!("n{s}"), format!("n{d}"));
        for op in ops {
            match op {
                Op::Insert { rel, src, dst, weight } => {
                    let w = weight.map(|w| w as f32 * 0.5);
                    let mut b = db.batch();
                    b.insert_edge(rel, format!("n{src}"), format!("n{dst}"), w);
                    db.commit(b).unwrap();
                    model.insert(key(rel, src, dst), w.unwrap_or(1.0));
                }
                Op::Delete { rel, src, dst } => {
                    let mut b = db.batch();
                    b.delete_edge(rel, format!("n{src}"), format!("n{dst}"));
                    db.commit(b).unwrap();
                    model.remove(&key(rel, src, dst));
                }
                Op::Batch(items) => {
                    let mut b = db.batch();
                    for (rel, s, d, insert) in items {
                        if insert {
                            b.insert_edge(rel, format!("n{s}"), format!("n{d}"), None);
                            model.insert(key(rel, s, d), 1.0);
                        } else {
                            b.delete_edge(rel, format!("n{s}"), format!("n{d}"));
                            model.remove(&key(rel, s, d));
                        }
                    }
                    db.commit(b).unwrap();
                }
                Op::Flush => db.flush().unwrap(),
                Op::Compact => db.compact().unwrap(),
                Op::Reopen => {
                    db.flush().unwrap();
                    drop(db);
                    db = Database::open(&path).unwrap();
                }
            }
            compare(&db, &model);
        }
        let report = db.check().unwrap();
        prop_assert!(report.ok(), "{:?}", report.problems);
        db.flush().unwrap();
        drop(db);
        let db = Database::open(&path).unwrap();
        compare(&db, &model);
    }
}
