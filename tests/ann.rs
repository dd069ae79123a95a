//! The approximate nearest-neighbour index stored with a model: recall
//! against the exact scan, persistence, staleness, filters, cold-start
//! nodes, deleted nodes and damage found by `check`.

use quiver::{
    index_model, AnnIndex, Database, Graph, Index, IndexSettings, Metric, Model, Quantization, Score,
};
use quiver_tests::rng;
use rand_xoshiro::rand_core::RngCore;

const N: usize = 4000;
const D: usize = 32;
/// Search breadth for the recall checks (these clusters are harder for an
/// inner-product graph than embeddings are).
const EF: usize = 200;

/// Clustered vectors (like trained embeddings, unlike uniform noise).
fn vectors(seed: u64, n: usize) -> Vec<f32> {
    let mut r = rng(seed);
    let mut unit = move || (r.next_u32() as f32 / u32::MAX as f32) * 2.0 - 1.0;
    let centers: Vec<f32> = (0..40 * D).map(|_| unit() * 2.0).collect();
    let mut out = Vec::with_capacity(n * D);
    for i in 0..n {
        let c = (i * 7919) % 40;
        out.extend((0..D).map(|j| centers[c * D + j] + unit() * 0.7));
    }
    out
}

/// A database of N users (a Follows ring) and model `m` with `rows` for them.
fn setup(dir: &std::path::Path, score: Score, rows: Vec<f32>) -> Database {
    let db = Database::create(dir.join("db")).unwrap();
    db.create_node_type("User").unwrap();
    let follows = db.create_relation_type("Follows", "User", "User").unwrap();
    let mut b = db.batch();
    for i in 0..N {
        b.insert_edge(
            follows,
            format!("u{i}").as_str(),
            format!("u{}", (i + 1) % N).as_str(),
            None,
        );
    }
    db.commit(b).unwrap();
    let model = Model {
        config: quiver::TrainConfig {
            dim: D,
            score,
            ..Default::default()
        },
        nodes: vec![rows],
        relations: vec![0.1; 2 * D],
    };
    model.store(&db, "m").unwrap();
    db
}

fn settings() -> IndexSettings {
    IndexSettings {
        threads: 2,
        ..Default::default()
    }
}

/// Builds model `m`'s index of node type 0 with the test settings.
fn build(db: &Database) {
    index_model(db, "m", 0, &settings(), &|_, _| true).unwrap();
}

fn exact(
    rows: &[f32],
    metric: Metric,
    q: &[f32],
    k: usize,
    skip: &(dyn Fn(u32) -> bool + Sync),
) -> Vec<(u32, f32)> {
    Index::new(metric, rows, D)
        .search(q, k, &|_, id| skip(id))
        .pop()
        .unwrap()
}

fn recall(found: &[(u32, f32)], truth: &[(u32, f32)]) -> usize {
    found
        .iter()
        .filter(|(id, _)| truth.iter().any(|(t, _)| t == id))
        .count()
}

#[test]
fn recall_against_the_exact_scan_with_the_models_own_scores() {
    for (score, quant) in [
        (Score::Dot, Quantization::F32),
        (Score::L2, Quantization::F32),
        (Score::L2, Quantization::F16),
        (Score::Dot, Quantization::I8),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let rows = vectors(1, N);
        let db = setup(dir.path(), score, rows.clone());
        let s = IndexSettings {
            quantization: quant,
            ..settings()
        };
        let info = index_model(&db, "m", 0, &s, &|_, _| true).unwrap();
        assert_eq!(info.rows as usize, N);
        let index = AnnIndex::current(&db, "m", 0).unwrap().expect("a current index");
        let metric = Metric::of_score(score);
        let queries = vectors(2, 200);
        let (mut hits, mut total) = (0, 0);
        for q in queries.chunks_exact(D) {
            let truth = exact(&rows, metric, q, 10, &|_| false);
            let found = index.search(&rows, q, 10, Some(EF), &|_| false).unwrap();
            assert_eq!(found.len(), 10);
            // Scores are the model's own: identical to the exact path's for the same node.
            for (id, s) in &found {
                let one = exact(
                    &rows[*id as usize * D..(*id as usize + 1) * D],
                    metric,
                    q,
                    1,
                    &|_| false,
                );
                assert_eq!(one[0].1.to_bits(), s.to_bits(), "{score:?} {quant:?}: node {id}");
            }
            hits += recall(&found, &truth);
            total += truth.len();
        }
        let r = hits as f64 / total as f64;
        assert!(r >= 0.9, "{score:?} {quant:?}: recall@10 {r}");
    }
}

#[test]
fn an_index_persists_across_reopen_is_listed_checked_and_dropped_with_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vectors(3, N);
    let q = &rows[5 * D..6 * D];
    let before = {
        let db = setup(dir.path(), Score::Dot, rows.clone());
        build(&db);
        AnnIndex::current(&db, "m", 0)
            .unwrap()
            .unwrap()
            .search(&rows, q, 10, None, &|_| false)
            .unwrap()
    };
    let db = Database::open(dir.path().join("db")).unwrap();
    let index = AnnIndex::current(&db, "m", 0)
        .unwrap()
        .expect("still there after reopen");
    assert_eq!(index.search(&rows, q, 10, None, &|_| false).unwrap(), before);
    assert!(db.check().unwrap().ok());
    drop(index);
    db.drop_model("m").unwrap();
    let files: Vec<String> = std::fs::read_dir(dir.path().join("db"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("model-"))
        .collect();
    assert!(files.is_empty(), "left after the drop: {files:?}");
}

#[test]
fn a_stale_index_is_never_used() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vectors(4, N);
    let db = setup(dir.path(), Score::Dot, rows.clone());
    build(&db);
    // The model changes under the index (as a training checkpoint would):
    // every row negated, so that the old graph leads to the wrong nodes.
    let negated: Vec<f32> = rows.iter().map(|x| -x).collect();
    let info = db.model_info("m").unwrap();
    let state = vec![0f32; N];
    db.save_model_parts("m", &info.settings, "", &[("nodes/0/0", &[&negated, &state])])
        .unwrap();
    assert!(AnnIndex::current(&db, "m", 0).unwrap().is_none());
    drop(db);
    let g = Graph::open(dir.path().join("db")).unwrap();
    let queries = vectors(5, 20);
    for q in queries.chunks_exact(D) {
        let found = g.search("m", 0, q, 10, false, None).unwrap().pop().unwrap();
        assert_eq!(found, exact(&negated, Metric::Dot, q, 10, &|_| false));
    }
}

#[test]
fn filtered_searches_return_k_results_none_excluded() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vectors(6, N);
    let db = setup(dir.path(), Score::Dot, rows.clone());
    build(&db);
    let index = AnnIndex::current(&db, "m", 0).unwrap().unwrap();
    // Leave out a third of all nodes, and for each query its own cluster's
    // nearest members.
    let queries = vectors(7, 50);
    let (mut hits, mut total) = (0, 0);
    for (i, q) in queries.chunks_exact(D).enumerate() {
        let near: Vec<u32> = exact(&rows, Metric::Dot, q, 30, &|_| false)
            .iter()
            .map(|p| p.0)
            .collect();
        let skip = |id: u32| id % 3 == (i as u32 % 3) || near.contains(&id);
        let found = index.search(&rows, q, 10, Some(EF), &skip).unwrap();
        assert_eq!(found.len(), 10);
        assert!(
            found.iter().all(|&(id, _)| !skip(id)),
            "an excluded node came back"
        );
        let truth = exact(&rows, Metric::Dot, q, 10, &skip);
        hits += recall(&found, &truth);
        total += 10;
    }
    assert!(
        hits as f64 / total as f64 >= 0.9,
        "filtered recall {hits}/{total}"
    );
}

#[test]
fn cold_start_nodes_are_found_and_deleted_ones_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vectors(8, N);
    // L2: a row is its own nearest.
    let db = setup(dir.path(), Score::L2, rows.clone());
    build(&db);
    drop(db);
    let g = Graph::open(dir.path().join("db")).unwrap();
    // A new user follows u0..u4 and is followed by them: its row is inferred
    // from theirs, after the index was built.
    g.query("CREATE (:User {key: 'fresh'})", &Default::default())
        .unwrap();
    g.query(
        "MATCH (n:User {key: 'fresh'}), (u:User) WHERE u.key IN ['u0','u1','u2','u3','u4'] \
         CREATE (n)-[:Follows]->(u), (u)-[:Follows]->(n)",
        &Default::default(),
    )
    .unwrap();
    let db = g.database();
    let fresh = db.snapshot().node_id(0, "fresh").unwrap();
    let m = g.model("m").unwrap();
    let q = m.node(0, fresh).to_vec();
    let found = g.search("m", 0, &q, 5, false, None).unwrap().pop().unwrap();
    assert_eq!(
        found[0].0, fresh,
        "the cold-start node is its own best match: {found:?}"
    );
    // Its nearest neighbours through the index are those of the exact scan.
    let exact_list = g.search("m", 0, &q, 5, true, None).unwrap().pop().unwrap();
    assert_eq!(found, exact_list);
    // Deleted: the best match of u7's row is no longer u7.
    let q7 = rows[7 * D..8 * D].to_vec();
    g.query("MATCH (u:User {key: 'u7'}) DETACH DELETE u", &Default::default())
        .unwrap();
    for exact in [false, true] {
        let found = g.search("m", 0, &q7, 20, exact, None).unwrap().pop().unwrap();
        assert!(
            found.iter().all(|&(id, _)| id != 7),
            "deleted node came back (exact {exact})"
        );
    }
}

#[test]
fn a_flipped_byte_in_an_index_is_found_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let db = setup(dir.path(), Score::Dot, vectors(9, N));
    build(&db);
    let file = db
        .model_info("m")
        .unwrap()
        .parts
        .iter()
        .find(|(k, _)| k == &quiver::index_key(0))
        .unwrap()
        .1
        .file
        .clone();
    drop(db);
    let path = dir.path().join("db").join(file);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let report = db.check().unwrap();
    assert!(!report.ok());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("index/0") && p.contains("checksum")),
        "{:?}",
        report.problems
    );
    assert!(
        AnnIndex::open(&db, "m", 0).is_err(),
        "a damaged index is never served"
    );
}

#[test]
fn a_stopped_build_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = setup(dir.path(), Score::Dot, vectors(10, N));
    let e = index_model(&db, "m", 0, &settings(), &|done, _| done < 1000).unwrap_err();
    assert!(e.to_string().contains("stopped"), "{e}");
    assert!(AnnIndex::open(&db, "m", 0).unwrap().is_none());
    let stray: Vec<String> = std::fs::read_dir(dir.path().join("db"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.contains("staged") || f.ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    assert!(db.check().unwrap().ok());
}

#[test]
fn index_true_in_a_training_config_builds_a_current_index_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let db = setup(dir.path(), Score::L2, vectors(11, N));
    let cfg = quiver::TrainConfig {
        dim: 8,
        epochs: 1,
        threads: 1,
        index: true,
        ..Default::default()
    };
    quiver::train(&db, "t", &cfg, &mut |_| {}).unwrap();
    let index = AnnIndex::current(&db, "t", 0)
        .unwrap()
        .expect("built at the end of training");
    assert_eq!(index.info().rows as usize, N);
}

#[test]
fn a_thousand_results_for_a_timelines_candidate_set() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vectors(12, N);
    let db = setup(dir.path(), Score::Dot, rows.clone());
    build(&db);
    let index = AnnIndex::current(&db, "m", 0).unwrap().unwrap();
    let q = &vectors(13, 1)[..];
    let found = index.search(&rows, q, 1000, None, &|_| false).unwrap();
    assert_eq!(found.len(), 1000);
    let mut ids: Vec<u32> = found.iter().map(|p| p.0).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "no node twice");
    assert!(found.windows(2).all(|w| w[0].1 >= w[1].1), "best first");
    let truth = exact(&rows, Metric::Dot, q, 1000, &|_| false);
    assert!(
        recall(&found, &truth) >= 900,
        "recall@1000 {}",
        recall(&found, &truth)
    );
}
