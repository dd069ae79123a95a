//! The storage layer against an in-memory model: the input is a sequence of
//! operations (insert and delete edges and nodes in batches, compact, flush,
//! reopen, drop the handle without flushing) on a small graph; after each,
//! every edge the database reports equals the model's.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::fuzz_target;
use quiver_storage::{Database, Direction};

/// (relation, src key, dst key) -> weight.
type Model = BTreeMap<(u32, u8, u8), f32>;

fn key(n: u8) -> String {
    format!("k{}", n % 16)
}

fn check(db: &Database, model: &Model, deleted: &BTreeSet<u8>) {
    let snap = db.snapshot();
    let mut seen = Model::new();
    for n in 0..snap.node_count(0) {
        for (r, d) in snap.all_neighbors(0, n, Direction::Out) {
            let (a, b) = (snap.node_key(0, n).unwrap(), snap.node_key(0, d).unwrap());
            let num = |k: &str| k[1..].parse::<u8>().unwrap();
            seen.insert((r, num(a), num(b)), snap.edge_weight(r, n, d).unwrap());
        }
        if let Some(k) = snap.node_key(0, n) {
            let num: u8 = k[1..].parse().unwrap();
            assert_eq!(snap.is_deleted(0, n), deleted.contains(&num), "deletion of {k}");
        }
    }
    assert_eq!(&seen, model);
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut db = Some(Database::create(&path).unwrap());
    {
        let d = db.as_ref().unwrap();
        d.create_node_type("N").unwrap();
        d.create_relation_type("a", "N", "N").unwrap();
        d.create_relation_type("b", "N", "N").unwrap();
    }
    let mut model = Model::new();
    let mut deleted = BTreeSet::new();
    let mut ops = data.chunks_exact(4);
    for _ in 0..64 {
        let Some(op) = ops.next() else { break };
        let d = db.as_ref().unwrap();
        match op[0] % 8 {
            0..=3 => {
                // A batch of up to 4 edge inserts or deletes from the next bytes.
                let mut b = d.batch();
                let mut next = model.clone();
                let mut gone = deleted.clone();
                for w in op[1..].iter().take(1 + (op[0] as usize >> 3) % 3) {
                    let (rel, s, t) = (u32::from(w & 1), (w >> 1) % 16, (w >> 3) % 16 ^ (w >> 5));
                    let t = t % 16;
                    if w & 0x80 == 0 {
                        let weight = 1.0 + f32::from(w & 3);
                        b.insert_edge(rel, key(s), key(t), Some(weight));
                        next.insert((rel, s, t), weight);
                        gone.remove(&s);
                        gone.remove(&t);
                    } else {
                        b.delete_edge(rel, key(s).as_str(), key(t).as_str());
                        next.remove(&(rel, s, t));
                    }
                }
                d.commit(b).unwrap();
                model = next;
                deleted = gone;
            }
            4 => {
                // Delete a node: its edges go with it.
                let n = op[1] % 16;
                if d.snapshot().node_id(0, &key(n)).is_some() {
                    let mut b = d.batch();
                    b.delete_node(0, key(n).as_str());
                    d.commit(b).unwrap();
                    model.retain(|&(_, s, t), _| s != n && t != n);
                    deleted.insert(n);
                }
            }
            5 => d.compact().unwrap(),
            6 => d.flush().unwrap(),
            _ => {
                // Reopen: a handle dropped cleanly keeps every commit.
                drop(db.take());
                db = Some(Database::open(&path).unwrap());
            }
        }
        check(db.as_ref().unwrap(), &model, &deleted);
    }
});
