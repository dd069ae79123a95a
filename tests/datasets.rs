//! The standard benchmark graphs, from `../shared/data` (skipped when absent).

use quiver_tests::RngCore;
use std::collections::{HashMap, HashSet};

use quiver_storage::import::ImportOptions;
use quiver_storage::{Database, Direction};

fn read_triples(path: &std::path::Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let l = l.trim_end_matches('\r');
            let mut it = l.split('\t');
            let t = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
            (t.0.to_string(), t.1.to_string(), t.2.to_string())
        })
        .collect()
}

fn import_and_compare(name: &str, entities: u32, relations: usize, edges: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(data) = quiver_tests::dataset(name, tmp.path()) else {
        return;
    };
    let train = data.join("train.txt");
    let path = tmp.path().join("db");
    {
        let db = Database::create(&path).unwrap();
        db.import(
            std::slice::from_ref(&train),
            &ImportOptions::default(),
            &mut |_| {},
        )
        .unwrap();
    }
    let db = Database::open(&path).unwrap();
    let snap = db.snapshot();
    let c = snap.catalog();
    assert_eq!(snap.node_count(0), entities);
    assert_eq!(c.relations.len(), relations);
    assert_eq!(snap.edge_count(), edges);
    let stats = db.stats().unwrap();
    assert_eq!((stats.nodes, stats.edges), (entities as u64, edges));

    // 1,000 random look-ups against a map built straight from the file.
    let triples = read_triples(&train);
    let mut out: HashMap<(&str, &str), HashSet<&str>> = HashMap::new();
    let mut inn: HashMap<(&str, &str), HashSet<&str>> = HashMap::new();
    for (h, r, t) in &triples {
        out.entry((h, r)).or_default().insert(t);
        inn.entry((t, r)).or_default().insert(h);
    }
    let mut random = quiver_tests::rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..1000 {
        let x = random.next_u64();
        let (h, r, t) = &triples[(x % triples.len() as u64) as usize];
        let rel = c.relation(r).unwrap();
        let (hid, tid) = (snap.node_id(0, h).unwrap(), snap.node_id(0, t).unwrap());
        let got: HashSet<&str> = snap
            .out_neighbors(rel, hid)
            .iter()
            .map(|&d| snap.node_key(0, d).unwrap())
            .collect();
        assert_eq!(got, out[&(h.as_str(), r.as_str())]);
        let got: HashSet<&str> = snap
            .in_neighbors(rel, tid)
            .iter()
            .map(|&s| snap.node_key(0, s).unwrap())
            .collect();
        assert_eq!(got, inn[&(t.as_str(), r.as_str())]);
        assert_eq!(
            snap.degree(rel, hid, Direction::Out),
            out[&(h.as_str(), r.as_str())].len() as u64
        );
    }
    let report = db.check().unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[test]
fn fb15k_237_train() {
    import_and_compare("FB15k-237", 14_505, 237, 272_115);
}

#[test]
fn wn18rr_train() {
    import_and_compare("WN18RR", 40_559, 11, 86_835);
}
