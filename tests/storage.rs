//! The data model, transactions, locking and format checks through the public API.

use quiver_storage::{Database, Direction, StorageError, Value};
use quiver_tests::all_edges;

/// The TwHIN schema, as the demo creates it.
fn twhin(db: &Database) {
    quiver::demo::create_schema(db).unwrap();
}

#[test]
fn twhin_schema_persists_and_grows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Database::create(&path).unwrap();
        twhin(&db);
        assert!(matches!(
            db.create_node_type("User"),
            Err(StorageError::DuplicateType(_))
        ));
        assert!(matches!(
            db.create_relation_type("X", "User", "Nope"),
            Err(StorageError::UnknownNodeType(_))
        ));
    }
    let db = Database::open(&path).unwrap();
    let c = db.catalog();
    assert_eq!(c.node_types.len(), 4);
    assert_eq!(c.relations.len(), 7);
    let clicks = c.relation("Clicks").unwrap();
    assert_eq!(c.relations[clicks as usize].dst, c.node_type("Ad").unwrap());
    db.create_node_type("Hashtag").unwrap();
    db.create_relation_type("Uses", "Tweet", "Hashtag").unwrap();
    drop(db);
    let db = Database::open(&path).unwrap();
    assert_eq!(db.catalog().relation("Uses").unwrap(), 7);
}

#[test]
fn nodes_edges_weights_properties_and_degrees() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("db")).unwrap();
    twhin(&db);
    let c = db.catalog();
    let (user, tweet) = (c.node_type("User").unwrap(), c.node_type("Tweet").unwrap());
    let (follows, fav) = (c.relation("Follows").unwrap(), c.relation("Favorites").unwrap());
    let mut b = db.batch();
    b.insert_node(user, "alice")
        .insert_edge(follows, "alice", "bob", None)
        .insert_edge(follows, "alice", "carol", Some(2.5))
        .insert_edge(follows, "alice", "bob", None) // set semantics
        .insert_edge(fav, "bob", "t1", None)
        .set_property(user, "alice", "age", Value::Int(31))
        .set_property(user, "alice", "name", Value::Str("Alice".into()))
        .set_property(user, "alice", "score", Value::Float(0.5))
        .set_property(user, "alice", "verified", Value::Bool(true));
    let info = db.commit(b).unwrap();
    assert_eq!(info.nodes_created, 4);
    assert_eq!(info.edges_changed, 3);
    let s = db.snapshot();
    let (alice, bob, carol) = (
        s.node_id(user, "alice").unwrap(),
        s.node_id(user, "bob").unwrap(),
        s.node_id(user, "carol").unwrap(),
    );
    assert_eq!((alice, bob, carol), (0, 1, 2));
    assert_eq!(s.node_key(user, carol), Some("carol"));
    assert_eq!(s.node_id(tweet, "t1"), Some(0));
    assert_eq!(&*s.out_neighbors(follows, alice), &[bob, carol]);
    assert_eq!(&*s.in_neighbors(follows, bob), &[alice]);
    assert_eq!(s.edge_weight(follows, alice, carol), Some(2.5));
    assert_eq!(s.edge_weight(follows, alice, bob), Some(1.0));
    assert_eq!(s.edge_weight(follows, bob, alice), None);
    assert_eq!(s.degree(follows, alice, Direction::Out), 2);
    assert_eq!(s.total_degree(user, bob, Direction::Out), 1);
    assert_eq!(s.total_degree(user, bob, Direction::In), 1);
    assert_eq!(s.all_neighbors(user, bob, Direction::Out), vec![(fav, 0)]);
    assert_eq!(db.property(user, alice, "age").unwrap(), Some(Value::Int(31)));
    assert_eq!(db.properties(user, alice).unwrap().len(), 4);

    // Deletes, before and after compaction; snapshots do not move.
    db.compact().unwrap();
    let before = db.snapshot();
    let mut b = db.batch();
    b.delete_edge(follows, "alice", "bob")
        .delete_edge(follows, "alice", "nobody");
    db.commit(b).unwrap();
    let after = db.snapshot();
    assert_eq!(&*before.out_neighbors(follows, alice), &[bob, carol]);
    assert_eq!(&*after.out_neighbors(follows, alice), &[carol]);
    assert_eq!(after.degree(follows, alice, Direction::Out), 1);
    assert_eq!(after.edge_count(), 2);
    assert_eq!(after.edge_weight(follows, alice, carol), Some(2.5));
    assert_eq!(db.check().unwrap().problems, Vec::<String>::new());
}

#[test]
fn a_failing_batch_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("db")).unwrap();
    twhin(&db);
    let c = db.catalog();
    let (user, follows) = (c.node_type("User").unwrap(), c.relation("Follows").unwrap());
    let mut b = db.batch();
    b.insert_edge(follows, "a", "b", None)
        .insert_edge(follows, "a", 99u32, None);
    assert!(matches!(
        db.commit(b),
        Err(StorageError::InvalidId { id: 99, .. })
    ));
    let mut b = db.batch();
    b.insert_edge(follows, "a", "b", Some(f32::NAN));
    assert!(matches!(db.commit(b), Err(StorageError::InvalidInput(_))));
    let mut b = db.batch();
    b.insert_node(user, "");
    assert!(matches!(db.commit(b), Err(StorageError::InvalidInput(_))));
    let mut b = db.batch();
    b.set_property(user, "ghost", "x", Value::Int(1));
    assert!(matches!(db.commit(b), Err(StorageError::NodeNotFound { .. })));
    assert_eq!(db.snapshot().node_count(user), 0);
    assert!(all_edges(&db).is_empty());
}

/// A database closed and opened again while another thread starts child
/// processes (each holds every descriptor between fork and exec, the lock's
/// included) opens: the lock waits out that moment.
#[test]
fn reopening_while_another_thread_starts_processes_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(Database::create(&path).unwrap());
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::process::Command::new("true").status().unwrap();
            }
        });
        let failed = (0..300).find_map(|i| Database::open(&path).err().map(|e| format!("open {i}: {e}")));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(failed, None);
    });
}

#[test]
fn second_open_is_refused_while_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Database::create(&path).unwrap();
    assert!(matches!(Database::open(&path), Err(StorageError::Locked(_))));
    assert!(matches!(
        Database::create(&path),
        Err(StorageError::AlreadyExists(_))
    ));
    drop(db);
    Database::open(&path).unwrap();
    assert!(matches!(
        Database::open(dir.path()),
        Err(StorageError::NotADatabase(_))
    ));
}

#[test]
fn newer_format_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(Database::create(&path).unwrap());
    {
        // sled's flusher may hold its lock a moment after the drop (as
        // `Database::open` does, wait for it).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let s = loop {
            match sled::open(path.join("catalog")) {
                Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("acquire lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                other => break other.unwrap(),
            }
        };
        s.insert(b"F", &2u32.to_be_bytes()).unwrap();
        s.flush().unwrap();
    }
    let e = Database::open(&path).err().unwrap();
    assert!(
        matches!(
            e,
            StorageError::UnsupportedFormat {
                found: 2,
                supported: 1
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("version 2"), "{e}");
}

#[test]
fn buckets_follow_partitions_and_stay_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("db")).unwrap();
    twhin(&db);
    let c = db.catalog();
    let (user, follows, authors) = (
        c.node_type("User").unwrap(),
        c.relation("Follows").unwrap(),
        c.relation("Authors").unwrap(),
    );
    let mut b = db.batch();
    for i in 0..100u32 {
        b.insert_edge(follows, format!("u{i}"), format!("u{}", (i * 7 + 3) % 100), None);
        b.insert_edge(authors, format!("u{i}"), format!("t{i}"), Some(1.0 + i as f32));
    }
    db.commit(b).unwrap();
    let p4 = db.buckets(4).unwrap();
    let snap = db.snapshot();
    assert_eq!(p4.edge_count(), 200);
    assert_eq!(p4.partition_range(user, 0), 0..25);
    assert_eq!(p4.partition_range(user, 3), 75..100);
    let mut n = 0;
    for i in 0..4 {
        for j in 0..4 {
            let w = p4.weights(i, j);
            for (k, e) in p4.bucket(i, j).iter().enumerate() {
                assert_eq!(p4.partition_of(user, e.src), i);
                n += 1;
                if e.rel == authors {
                    let i: f32 = snap.node_key(user, e.src).unwrap()[1..].parse().unwrap();
                    assert_eq!(w[k], 1.0 + i);
                }
            }
        }
    }
    assert_eq!(n, 200);
    assert_eq!(p4.as_bytes().len(), 200 * 12);
    // A write makes the stored buckets stale; the next call rebuilds them.
    let mut b = db.batch();
    b.delete_edge(follows, "u0", "u3");
    db.commit(b).unwrap();
    assert_eq!(db.buckets(4).unwrap().edge_count(), 199);
    assert_eq!(db.buckets(1).unwrap().bucket(0, 0).len(), 199);
    assert!(db.check().unwrap().ok());
}

#[test]
fn readers_see_whole_batches_while_a_writer_commits() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Database>();
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("db")).unwrap();
    db.create_node_type("A").unwrap();
    db.create_relation_type("r", "A", "A").unwrap();
    const BATCHES: u32 = 60;
    const PER: u32 = 20;
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut checks = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) || checks == 0 {
                    let snap = db.snapshot();
                    let Some(hub) = snap.node_id(0, "hub") else {
                        continue;
                    };
                    let seen = snap.out_neighbors(0, hub).len() as u32;
                    // Every batch adds PER edges from the hub; a snapshot never holds part of one.
                    assert_eq!(seen % PER, 0, "a snapshot saw {seen} edges");
                    assert_eq!(snap.edge_count() as u32, seen);
                    checks += 1;
                }
            });
        }
        for k in 0..BATCHES {
            let mut b = db.batch();
            for i in 0..PER {
                b.insert_edge(0, "hub", format!("n{k}_{i}"), None);
            }
            db.commit(b).unwrap();
            if k % 20 == 19 {
                db.compact().unwrap();
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(db.snapshot().edge_count(), (BATCHES * PER) as u64);
}

#[test]
fn deleted_nodes_lose_their_edges_keep_their_ids_and_come_back_bare() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (user, follows);
    {
        let db = Database::create(&path).unwrap();
        twhin(&db);
        let c = db.catalog();
        (user, follows) = (c.node_type("User").unwrap(), c.relation("Follows").unwrap());
        let mut b = db.batch();
        b.insert_edge(follows, "a", "b", None)
            .insert_edge(follows, "b", "c", None)
            .insert_edge(follows, "c", "b", Some(2.0))
            .set_property(user, "b", "age", Value::Int(3));
        db.commit(b).unwrap();
        db.compact().unwrap();
        let b_id = db.snapshot().node_id(user, "b").unwrap();
        // In the same batch: an edge added to b, then b deleted; a and c stay.
        let mut batch = db.batch();
        batch
            .insert_edge(follows, "a", "c", None)
            .insert_edge(follows, "c", "b", None);
        batch.delete_node(user, "b");
        let info = db.commit(batch).unwrap();
        assert_eq!((info.nodes_deleted, info.edges_changed), (1, 4), "{info:?}");
        let s = db.snapshot();
        assert_eq!(s.node_id(user, "b"), None);
        assert!(s.is_deleted(user, b_id));
        assert_eq!((s.node_count(user), s.live_node_count(user)), (3, 2));
        assert_eq!(s.edge_count(), 1);
        assert_eq!(db.property(user, b_id, "age").unwrap(), None);
        // Writing to a deleted node by id or key is an error; deleting it again is not.
        let mut bad = db.batch();
        bad.insert_edge(follows, b_id, "a", None);
        assert!(matches!(db.commit(bad), Err(StorageError::NodeNotFound { .. })));
        let mut bad = db.batch();
        bad.set_property(user, "b", "age", Value::Int(4));
        assert!(matches!(db.commit(bad), Err(StorageError::NodeNotFound { .. })));
        let mut again = db.batch();
        again.delete_node(user, "b");
        assert_eq!(db.commit(again).unwrap().nodes_deleted, 0);
        db.compact().unwrap();
        db.flush().unwrap();
    }
    // The tombstone outlives compaction and reopening; the id is not reused.
    let db = Database::open(&path).unwrap();
    let s = db.snapshot();
    assert_eq!(s.node_id(user, "b"), None);
    assert_eq!(s.live_node_count(user), 2);
    assert!(db.check().unwrap().ok());
    let mut b = db.batch();
    b.insert_edge(follows, "d", "b", None);
    let info = db.commit(b).unwrap();
    assert_eq!(info.nodes_created, 2, "d is new, b comes back");
    let s = db.snapshot();
    let b_id = s.node_id(user, "b").unwrap();
    assert_eq!(s.node_key(user, b_id), Some("b"));
    assert_eq!(s.node_count(user), 4, "b kept its id; only d is new");
    assert_eq!(s.in_neighbors(follows, b_id).len(), 1);
    assert_eq!(all_edges(&db).len(), 2);
}

#[test]
fn staged_model_parts_become_parts_only_at_a_checkpoint_and_vanish_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let staged_files = |p: &std::path::Path| {
        std::fs::read_dir(p)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("staged")
            })
            .count()
    };
    let (a, b) = (vec![1.0f32, 2.0, 3.0], vec![0.5f32]);
    {
        let db = Database::create(&path).unwrap();
        db.save_model_parts("m", "{}", "{\"at\":1}", &[("p0", &[&[9.0f32][..]][..])])
            .unwrap();
        let s = db.stage_model_part(&[&a, &b]).unwrap();
        let back = db.staged_part(&s).unwrap();
        assert_eq!((back.array(0), back.array(1)), (&a[..], &b[..]));
        // Not the model's until a checkpoint takes it.
        assert_eq!(db.model_part("m", "p0").unwrap().unwrap().array(0), [9.0]);
        db.save_model_checkpoint("m", "{}", "{\"at\":2}", &[], vec![("p0".into(), s)])
            .unwrap();
        assert_eq!(db.model_part("m", "p0").unwrap().unwrap().array(0), &a[..]);
        assert_eq!(
            staged_files(&path),
            0,
            "a checkpoint's staged file becomes a model file"
        );
        let gone = db.stage_model_part(&[&b]).unwrap();
        db.discard_staged(gone);
        assert_eq!(staged_files(&path), 0);
        // A crash before any checkpoint takes it: the file stays behind…
        let _orphan = db.stage_model_part(&[&b]).unwrap();
        assert_eq!(staged_files(&path), 1);
    }
    // …until the next open, and the model is as checkpointed.
    let db = Database::open(&path).unwrap();
    assert_eq!(staged_files(&path), 0);
    assert!(db.check().unwrap().ok());
    assert_eq!(db.model_part("m", "p0").unwrap().unwrap().array(1), &b[..]);
    assert_eq!(db.model_info("m").unwrap().progress, "{\"at\":2}");
}

/// Live nodes (type, key) with their `p` property.
type Nodes = Vec<(u32, String, Option<Value>)>;
/// An operation of a write batch.
type Op = Box<dyn Fn(&mut quiver_storage::WriteBatch)>;

/// Everything a reader sees, by names: live nodes with their `p` property,
/// and every edge with its weight.
fn contents(db: &Database) -> (Nodes, Vec<(String, String, String, u32)>) {
    let snap = db.snapshot();
    let mut nodes = Vec::new();
    for t in 0..snap.catalog().node_types.len() as u32 {
        for id in (0..snap.node_count(t)).filter(|&id| !snap.is_deleted(t, id)) {
            let key = snap.node_key(t, id).unwrap().to_string();
            nodes.push((t, key, db.property(t, id, "p").unwrap()));
        }
    }
    nodes.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    (nodes, quiver_tests::named_edges(db))
}

/// A batch past `LARGE_COMMIT` becomes a new base generation: it leaves the
/// same graph as the same operations committed in small batches, and no
/// delta.
#[test]
fn a_large_batch_is_a_new_base_with_the_same_contents() {
    use quiver_storage::LARGE_COMMIT;
    let dir = tempfile::tempdir().unwrap();
    let setup = |name: &str| {
        let db = Database::create(dir.path().join(name)).unwrap();
        db.create_node_type("U").unwrap();
        db.create_node_type("I").unwrap();
        db.create_relation_type("f", "U", "U").unwrap();
        db.create_relation_type("l", "U", "I").unwrap();
        // A base (compacted) and a delta over it.
        let mut b = db.batch();
        for i in 0..2000 {
            b.insert_edge(0, format!("u{i}"), format!("u{}", (i * 7 + 1) % 2000), None);
            b.insert_edge(1, format!("u{i}"), format!("i{}", i % 300), Some(2.0));
        }
        db.commit(b).unwrap();
        db.compact().unwrap();
        let mut b = db.batch();
        for i in 0..500 {
            b.insert_edge(0, format!("u{i}"), format!("u{}", (i * 13 + 5) % 2000), Some(0.5));
            b.set_property(0, format!("u{i}"), "p", Value::Int(i));
        }
        db.commit(b).unwrap();
        db
    };
    // One sequence of operations: new nodes and edges, new weights, deleted
    // edges (of the base and of the delta), properties, deleted nodes.
    let mut ops: Vec<Op> = Vec::new();
    let mut x = 7u64;
    let mut next = move || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    for _ in 0..2 * LARGE_COMMIT {
        let (a, c, kind) = (next() % 3000, next() % 3000, next() % 10);
        ops.push(match kind {
            0..=4 => Box::new(move |b| {
                b.insert_edge(0, format!("u{a}"), format!("u{c}"), Some((a % 5) as f32));
            }),
            5 => Box::new(move |b| {
                b.insert_edge(1, format!("u{a}"), format!("i{}", c % 400), None);
            }),
            6 | 7 => Box::new(move |b| {
                b.delete_edge(0, format!("u{a}"), format!("u{}", (a * 7 + 1) % 2000));
            }),
            8 => Box::new(move |b| {
                b.set_property(0, format!("u{}", a % 2000), "p", Value::Str(format!("v{c}")));
            }),
            _ => Box::new(move |b| {
                b.remove_property(0, format!("u{}", a % 2000), "p");
            }),
        });
    }
    // Nodes deleted last, which nothing names afterwards.
    for i in 0..50 {
        ops.push(Box::new(move |b| {
            b.delete_node(0, format!("u{}", 2950 + i));
        }));
        ops.push(Box::new(move |b| {
            b.delete_node(1, format!("i{}", 300 + i));
        }));
    }
    let big = setup("big");
    let mut b = big.batch();
    ops.iter().for_each(|op| op(&mut b));
    let info = big.commit(b).unwrap();
    let small = setup("small");
    let mut changed = 0;
    for chunk in ops.chunks(1000) {
        let mut b = small.batch();
        chunk.iter().for_each(|op| op(&mut b));
        changed += small.commit(b).unwrap().edges_changed;
    }
    assert!(
        info.edges_changed > 0 && info.edges_changed <= changed,
        "{info:?} vs {changed}"
    );
    assert_eq!(
        big.stats().unwrap().delta_changes,
        0,
        "the large batch left a delta"
    );
    assert!(small.stats().unwrap().delta_changes > 0);
    assert_eq!(contents(&big), contents(&small));
    assert!(big.check().unwrap().ok());
    // As stored: reopened, the same.
    let expected = contents(&small);
    drop(big);
    let big = Database::open(dir.path().join("big")).unwrap();
    assert_eq!(contents(&big), expected);
    assert!(big.check().unwrap().ok());
}
