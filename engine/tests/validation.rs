//! The validation a run makes by itself: edges held out of the graph,
//! scored as it trains, the best epoch kept (`TrainConfig::validation`).

use std::sync::atomic::{AtomicBool, Ordering};

use quiver_engine::{resume_on_until, train_on_until, AutoValid, Device, Model, TrainConfig, TrainEvent};
use quiver_storage::Database;

/// 600 people: 1,500 friendships stored both ways (`friend`), and 2,500
/// one-way `likes` between them, drawn by a seeded LCG. Returns the
/// database and the friendships as key pairs.
fn social(dir: &std::path::Path) -> (Database, Vec<(String, String)>) {
    let db = Database::create(dir.join("db")).unwrap();
    db.create_node_type("P").unwrap();
    let friend = db.create_relation_type("friend", "P", "P").unwrap();
    let likes = db.create_relation_type("likes", "P", "P").unwrap();
    let mut b = db.batch();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((x >> 33) % 600, (x >> 13) % 600)
    };
    let mut pairs = Vec::new();
    while pairs.len() < 1500 {
        let (s, t) = next();
        let (s, t) = (format!("p{s}"), format!("p{t}"));
        if s != t && !pairs.contains(&(s.clone(), t.clone())) && !pairs.contains(&(t.clone(), s.clone())) {
            b.insert_edge(friend, s.clone(), t.clone(), None);
            b.insert_edge(friend, t.clone(), s.clone(), None);
            pairs.push((s, t));
        }
    }
    for _ in 0..2500 {
        let (s, t) = next();
        b.insert_edge(likes, format!("p{s}"), format!("p{t}"), None);
    }
    db.commit(b).unwrap();
    (db, pairs)
}

fn cfg() -> TrainConfig {
    TrainConfig {
        dim: 8,
        epochs: 4,
        threads: 1,
        uniform_negatives: 20,
        ..Default::default()
    }
}

/// What a run announced and trained: (held-out edges, edges trained per
/// epoch, epochs scored).
fn run(db: &Database, name: &str, c: &TrainConfig) -> (u64, Vec<u64>, usize) {
    let (mut held, mut trained, mut scored) = (0, Vec::new(), 0);
    let never = AtomicBool::new(false);
    train_on_until(
        db,
        name,
        c,
        &Device::Cpu,
        &mut |e| match e {
            TrainEvent::Start { held_out, .. } => held = *held_out,
            TrainEvent::Epoch(s) => trained.push(s.edges),
            TrainEvent::Validation { .. } => scored += 1,
            _ => {}
        },
        &never,
        None,
    )
    .unwrap();
    (held, trained, scored)
}

/// The split the run stored with its model.
fn split(db: &Database, name: &str) -> AutoValid {
    Model::load(db, name).unwrap().config.validation.expect("a split")
}

#[test]
fn the_automatic_split_holds_pairs_out_together_and_never_trains_them() {
    let dir = tempfile::tempdir().unwrap();
    let (db, pairs) = social(dir.path());
    let edges = db.stats().unwrap().edges;
    let (held, trained, scored) = run(&db, "m", &cfg());
    let v = split(&db, "m");
    // 5% of the 5,500 edges chosen, about that many held out.
    assert!((v.fraction - 0.05).abs() < 1e-12, "{v:?}");
    assert!(held > 200 && held < 350, "{held} of {edges}");
    // Every epoch trains exactly the edges not held out.
    assert_eq!(trained, vec![edges - held; 4]);
    assert_eq!(scored, 4);
    // A friendship is held out in both directions or in neither.
    let snap = db.snapshot();
    let id = |k: &str| snap.node_id(0, k).unwrap();
    let mut friends_held = 0;
    for (a, b) in &pairs {
        let (a, b) = (id(a), id(b));
        assert_eq!(v.holds(0, a, b), v.holds(0, b, a));
        friends_held += 2 * u64::from(v.holds(0, a, b));
    }
    assert!(friends_held > 0 && friends_held < held);
    // The curve and the count are stored with the model.
    let metrics: serde_json::Value = serde_json::from_str(&db.model_info("m").unwrap().metrics).unwrap();
    assert_eq!(metrics["valid"]["triples"], held);
    assert_eq!(metrics["valid"]["held_out"], true);
    assert_eq!(metrics["valid"]["curve"].as_array().unwrap().len(), 4);

    // With a target, only that relation's edges are held out.
    let (held, trained, _) = run(
        &db,
        "f",
        &TrainConfig {
            validation: Some(AutoValid {
                target: Some(0),
                ..Default::default()
            }),
            ..cfg()
        },
    );
    let v = split(&db, "f");
    let friends_held: u64 = pairs
        .iter()
        .map(|(a, b)| 2 * u64::from(v.holds(0, id(a), id(b))))
        .sum();
    assert_eq!(held, friends_held);
    assert_eq!(trained[0], edges - held);
    assert!((v.fraction - 0.05).abs() < 1e-12);
}

#[test]
fn without_validation_the_defaults_train_ten_epochs_on_every_edge() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = social(dir.path());
    let edges = db.stats().unwrap().edges;
    let none = TrainConfig {
        dim: 8,
        threads: 1,
        validation: None,
        ..Default::default()
    };
    let (held, trained, scored) = run(&db, "auto", &none);
    assert_eq!((held, scored), (0, 0));
    assert_eq!(trained, vec![edges; 10]);
    let (_, trained, _) = run(&db, "ten", &TrainConfig { epochs: 10, ..none });
    assert_eq!(trained.len(), 10);
    assert!(Model::load(&db, "auto").unwrap() == Model::load(&db, "ten").unwrap());
    // A graph too small to spare edges gets no split either.
    let small = tempfile::tempdir().unwrap();
    let db = Database::create(small.path().join("db")).unwrap();
    db.create_node_type("N").unwrap();
    let r = db.create_relation_type("r", "N", "N").unwrap();
    let mut b = db.batch();
    for i in 0..100 {
        b.insert_edge(r, format!("n{i}"), format!("n{}", (i + 1) % 100), None);
    }
    db.commit(b).unwrap();
    let (held, trained, _) = run(
        &db,
        "s",
        &TrainConfig {
            dim: 8,
            ..Default::default()
        },
    );
    assert_eq!((held, trained.len()), (0, 10));
    assert!(Model::load(&db, "s").unwrap().config.validation.is_none());
}

#[test]
fn a_stopped_run_with_its_own_split_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = social(dir.path());
    run(&db, "full", &cfg());
    let stop = AtomicBool::new(false);
    let mut on = |e: &TrainEvent| {
        if matches!(e, TrainEvent::Epoch(s) if s.epoch == 1) {
            stop.store(true, Ordering::Relaxed);
        }
    };
    let err = train_on_until(&db, "cut", &cfg(), &Device::Cpu, &mut on, &stop, None).unwrap_err();
    assert!(matches!(err, quiver_engine::EngineError::Stopped(_)), "{err}");
    let never = AtomicBool::new(false);
    let mut resumed_held = 0;
    resume_on_until(
        &db,
        "cut",
        &Device::Cpu,
        &mut |e| {
            if let TrainEvent::Start { held_out, .. } = e {
                resumed_held = *held_out;
            }
        },
        &never,
        None,
    )
    .unwrap();
    assert!(resumed_held > 0);
    assert!(Model::load(&db, "cut").unwrap() == Model::load(&db, "full").unwrap());
    let metrics =
        |n: &str| -> serde_json::Value { serde_json::from_str(&db.model_info(n).unwrap().metrics).unwrap() };
    assert_eq!(metrics("cut"), metrics("full"));
}
