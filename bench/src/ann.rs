//! `quiver-bench ann`: the approximate nearest-neighbour index through the
//! database, like for like with `../shared/anchors/ann_scale.py run` (the
//! same vectors, M and ef_construction, one query at a time on one thread,
//! queries/s at each recall@10).

use std::path::Path;
use std::time::Instant;

use quiver::vectors::{import_rows, read_npy, Comparator};
use quiver::{index_model, AnnIndex, Database, Graph, IndexSettings, Quantization};
use serde_json::json;

fn truth(path: &Path) -> (Vec<i64>, usize) {
    let bytes = std::fs::read(path).expect("truth file");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + hlen]);
    let k: usize = header
        .split("shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.split(',').nth(1))
        .and_then(|s| s.trim().parse().ok())
        .expect("truth shape");
    let ids = bytes[10 + hlen..]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (ids, k)
}

/// Imports `dir`'s base vectors as model `v` of node type `V` (keys "0"..)
/// into a database at `db` (kept; a second run reuses its vectors and index),
/// indexes it and sweeps ef.
pub fn bench_ann(
    dir: &Path,
    db_path: &Path,
    metric: &str,
    quant: &str,
    efs: &[usize],
    queries: usize,
) -> serde_json::Value {
    let (qs, nq, d) = read_npy(&dir.join("queries.npy")).expect("queries.npy");
    let (truth, tk) = truth(&dir.join(format!("truth_{metric}.npy")));
    let nq = nq.min(queries);
    let k = 10;
    let mut out = json!({"bench": "quiver_ann", "dim": d, "queries": nq, "k": k, "metric": metric,
        "quantization": quant});
    if !db_path.exists() {
        let (base, n, _) = read_npy(&dir.join("base.npy")).expect("base.npy");
        let db = Database::create(db_path).unwrap();
        let ty = db.create_node_type("V").unwrap();
        let keys: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let mut b = db.batch();
        for key in &keys {
            b.insert_node(ty, key);
        }
        db.commit(b).unwrap();
        let score = if metric == "ip" {
            Comparator::Dot
        } else {
            Comparator::L2
        };
        let t = Instant::now();
        import_rows(&db, "v", score, (ty, &keys, &base, d), false).unwrap();
        out["import_s"] = json!(t.elapsed().as_secs_f64());
    }
    {
        let db = Database::open(db_path).unwrap();
        let settings = IndexSettings {
            quantization: Quantization::parse(quant).unwrap(),
            ..IndexSettings::default()
        };
        // An index of these settings from an earlier run is searched again.
        let info = match AnnIndex::current(&db, "v", 0).unwrap() {
            Some(i) if i.info().settings.quantization == settings.quantization => i.info().clone(),
            _ => index_model(&db, "v", 0, &settings, &|_, _| true).unwrap(),
        };
        out["build_s"] = json!(info.build_seconds);
        out["M"] = json!(info.settings.connectivity);
        out["ef_construction"] = json!(info.settings.expansion_add);
        out["index_mib"] =
            json!(AnnIndex::open(&db, "v", 0).unwrap().unwrap().file_bytes() as f64 / 1048576.0);
    }
    let g = Graph::open(db_path).unwrap();
    let snap = g.database().snapshot();
    out["n"] = json!(snap.node_count(0));
    let key_of: Vec<i64> = (0..snap.node_count(0))
        .map(|id| snap.node_key(0, id).unwrap().parse().unwrap())
        .collect();
    // The first search loads the model and maps the index: not timed.
    g.search("v", 0, &qs[..d], k, false, None).unwrap();
    let mut rows = Vec::new();
    for &ef in efs {
        let mut lat = Vec::with_capacity(nq);
        let mut hits = 0;
        for i in 0..nq {
            let t = Instant::now();
            let found = g
                .search("v", 0, &qs[i * d..(i + 1) * d], k, false, Some(ef))
                .unwrap();
            lat.push(t.elapsed().as_secs_f64());
            let want = &truth[i * tk..i * tk + k];
            hits += found[0]
                .iter()
                .filter(|(id, _)| want.contains(&key_of[*id as usize]))
                .count();
        }
        let total: f64 = lat.iter().sum();
        lat.sort_by(f64::total_cmp);
        rows.push(json!({"ef": ef, "recall@10": hits as f64 / (nq * k) as f64,
            "single_qps": nq as f64 / total, "single_median_us": lat[nq / 2] * 1e6,
            "single_p99_us": lat[(nq - 1) * 99 / 100] * 1e6}));
    }
    out["quiver"] = json!(rows);
    // With a database from an earlier run: the searching process's peak (the
    // model's rows, loaded once, and the index pages the searches touched).
    out["peak_rss_mib"] = json!(peak_rss_mib());
    out
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
