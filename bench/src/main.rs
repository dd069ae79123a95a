//! One entry point for quiver's benchmarks, each printing one JSON line.
//! Run with `--release`; `make bench` does.
//!
//! - `quiver-bench storage [--data DIR] [--synthetic-edges N]`: import time
//!   and size, neighbour look-up latency, bucket streaming rate.
//! - `quiver-bench train --data DIR [--epochs N]`: CPU training edges/s at
//!   PBG's and PyKEEN's settings, at P = 1, 4 and 16, and filtered evaluation
//!   of the test split.
//! - `quiver-bench scale --quiver BIN [--nodes N] [--edges M] [--partitions P]
//!   [--budget MiB] [--dim D]`: the scale run: a generated power-law
//!   graph trained one epoch out of core by the `quiver` binary under
//!   `/usr/bin/time` (peak RSS), beside P = 1 on a tenth of it that fits.
//! - `quiver-bench refresh --quiver BIN [--nodes N] [--edges M]
//!   [--partitions P] [--epochs E] [--dim D]`: `quiver refresh` after 1%
//!   new edges against a warm-started retrain of the same epochs
//!   (`refresh.rs`).
//! - `quiver-bench gpu --data DIR [--epochs N]`: GPU training edges/s at
//!   d = 200 with 50 in-batch + 50 uniform negatives per side (100 chunked
//!   negatives) for several chunks-per-step, CPU rate and evaluation on the
//!   GPU beside it (`scripts/gpu-check.sh` runs it on a lent machine).
//! - `quiver-bench query --data DIR [--queries N]`: latency of prepared
//!   queries through `Graph::execute` (the Kùzu anchor's queries).
//! - `quiver-bench knn [--n N] [--dim D] [--queries Q] [--k K]`: exact top-k
//!   by inner product over random unit vectors (the faiss anchor's setting):
//!   batched queries/s and single-query latency on the CPU backend, and the
//!   int8 copy's size, recall@k and speed.
//! - `quiver-bench coldstart --data DIR [--epochs N]`: filtered MRR of
//!   entities held out of training and embedded from their neighbours,
//!   beside transductive training and random rows.
//! - `quiver-bench twhin --out DIR [--users N] [--communities C] [--tweets T]
//!   [--follows F] [--engagements E] [--advertisers A] [--seed S]`: the
//!   demo's TwHIN-like network of that shape, split into `train.txt` and
//!   `valid.txt`/`test.txt` (`bench/defaults.sh` chooses the defaults on it).
//! - `quiver-bench serve --quiver BIN --db DB [--clients N] [--seconds S]
//!   [--write] [--train]`: 1-hop queries over HTTP against `quiver serve`
//!   (`http.rs`); exits non-zero on any failed request.

mod ann;
mod http;
mod refresh;

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use quiver_storage::import::ImportOptions;
use quiver_storage::Database;
use serde_json::json;

fn du(p: &Path) -> u64 {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .unwrap()
            .map(|e| du(&e.unwrap().path()))
            .sum(),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// The benchmarks' random numbers: a seeded SplitMix64.
struct Rng(rand_xoshiro::SplitMix64);

impl Rng {
    fn new(seed: u64) -> Self {
        use rand_xoshiro::rand_core::SeedableRng;
        Rng(rand_xoshiro::SplitMix64::seed_from_u64(seed))
    }

    fn next(&mut self) -> u64 {
        use rand_xoshiro::rand_core::RngCore;
        self.0.next_u64()
    }
}

/// Imports `file` `runs` times into fresh databases; returns the median
/// seconds and the last database's path and size.
fn bench_import(work: &Path, file: &Path, runs: usize) -> (f64, Vec<f64>, PathBuf, u64) {
    let mut times = Vec::new();
    let mut path = PathBuf::new();
    for i in 0..runs {
        path = work.join(format!("import{i}"));
        let t = Instant::now();
        let db = Database::create(&path).unwrap();
        db.import(&[file.to_path_buf()], &ImportOptions::default(), &mut |_| {})
            .unwrap();
        drop(db);
        times.push(t.elapsed().as_secs_f64());
        if i + 1 < runs {
            std::fs::remove_dir_all(&path).unwrap();
        }
    }
    let size = du(&path);
    (median(times.clone()), times, path, size)
}

/// Out-neighbours by relation for `n` random (src, rel) pairs taken from the
/// edges, after a warm-up of the same size.
fn bench_lookups(db: &Database, n: usize) -> serde_json::Value {
    let snap = db.snapshot();
    let c = snap.catalog();
    let buckets = db.buckets(1).unwrap();
    let edges = buckets.bucket(0, 0);
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let picks: Vec<(u32, u32)> = (0..n)
        .map(|_| {
            let e = edges[(rng.next() % edges.len() as u64) as usize];
            (e.rel, e.src)
        })
        .collect();
    let _ = c;
    let mut lat = Vec::with_capacity(n);
    let mut total = 0usize;
    for round in 0..2 {
        lat.clear();
        for &(rel, src) in &picks {
            let t = Instant::now();
            // A fresh snapshot per look-up: what an API call pays.
            let s = db.snapshot();
            let nb = s.out_neighbors(rel, src);
            total += black_box(nb.len());
            drop(s);
            if round == 1 {
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    json!({"n": n, "p50_us": percentile(&lat, 0.5), "p99_us": percentile(&lat, 0.99),
           "mean_us": lat.iter().sum::<f64>() / n as f64, "mean_neighbours": total as f64 / (2 * n) as f64})
}

/// Opens the stored buckets (checksum and validation included) and reads every
/// edge of every bucket; GB/s for open + read, and for the read alone.
fn bench_stream(db: &Database, partitions: u32, runs: usize) -> serde_json::Value {
    db.buckets(partitions).unwrap();
    let (mut with_open, mut read_only) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let b = db.buckets(partitions).unwrap();
        let opened = Instant::now();
        let mut acc = 0u64;
        for i in 0..partitions {
            for j in 0..partitions {
                for e in b.bucket(i, j) {
                    acc = acc.wrapping_add((e.rel ^ e.src ^ e.dst) as u64);
                }
            }
        }
        black_box(acc);
        bytes = b.as_bytes().len();
        with_open.push(bytes as f64 / t.elapsed().as_secs_f64() / 1e9);
        read_only.push(bytes as f64 / opened.elapsed().as_secs_f64() / 1e9);
    }
    json!({"partitions": partitions, "bytes": bytes,
           "median_gb_per_s": median(with_open.clone()),
           "min_gb_per_s": with_open.iter().cloned().fold(f64::INFINITY, f64::min),
           "read_only_median_gb_per_s": median(read_only)})
}

fn synthetic(path: &Path, edges: u64) {
    let nodes = (edges / 20).max(100);
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut rng = Rng::new(42);
    for _ in 0..edges {
        let (h, r, t) = (rng.next() % nodes, rng.next() % 200, rng.next() % nodes);
        writeln!(w, "e{h}\tr{r}\te{t}").unwrap();
    }
    w.flush().unwrap();
}

/// Runs `f` once; after the warm-up (`keep`), records its latency in µs and
/// the rows it returned.
fn timed(keep: bool, lat: &mut Vec<f64>, rows: &mut usize, f: impl FnOnce() -> quiver_query::Rows) {
    let t = Instant::now();
    let r = f();
    let dt = t.elapsed().as_secs_f64() * 1e6;
    if keep {
        lat.push(dt);
        *rows += r.len();
    }
    black_box(r);
}

/// Latency of prepared statements, each run `n` times after `n / 10` warm-up
/// runs, with subjects drawn uniformly from the heads of the train triples
/// and (s, r) pairs from the triples themselves, as the Kùzu anchor does.
fn bench_query(data: &Path, n: usize, only: Option<&str>) -> serde_json::Value {
    use quiver_query::{Graph, Limits, Params, Value};
    let work = tempfile::tempdir().unwrap();
    let db = Database::create(work.path().join("db")).unwrap();
    db.import(&[data.join("train.txt")], &ImportOptions::default(), &mut |_| {})
        .unwrap();
    let triples: Vec<(String, String)> = std::fs::read_to_string(data.join("train.txt"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect();
    let mut heads: Vec<&str> = triples.iter().map(|t| t.0.as_str()).collect();
    heads.sort_unstable();
    heads.dedup();
    let g = Graph::new(db);
    let limits = Limits::default();
    let mut rng = Rng::new(0x5eed);
    let mut pick = |k: usize| (rng.next() % k as u64) as usize;
    let mut out = serde_json::Map::new();
    let queries = [
        ("a_1hop_out", "MATCH (a:Entity {key: $s})-->(b) RETURN b.key"),
        (
            "s_?r_?o",
            "MATCH (a:Entity {key: $s})-[r]->(b) RETURN type(r), b.key",
        ),
        ("b_s_r_?o", ""),
        (
            "c_2hop_distinct_count",
            "MATCH (a:Entity {key: $s})-->()-->(c) RETURN count(DISTINCT c)",
        ),
        (
            "c2_2hop_path_count",
            "MATCH (a:Entity {key: $s})-->()-->(c) RETURN count(*)",
        ),
        (
            "c3_2hop_distinct_keys",
            "MATCH (a:Entity {key: $s})-->()-->(c) RETURN DISTINCT c.key",
        ),
    ];
    let mut by_rel = std::collections::HashMap::new();
    for (name, text) in queries {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let mut lat = Vec::with_capacity(n);
        let mut rows = 0usize;
        for i in 0..n + n / 10 {
            let (prepared, s) = if text.is_empty() {
                let (s, r) = &triples[pick(triples.len())];
                let p = by_rel.entry(r.clone()).or_insert_with(|| {
                    g.prepare(&format!(
                        "MATCH (a:Entity {{key: $s}})-[:`{r}`]->(b) RETURN b.key"
                    ))
                    .unwrap()
                });
                (p.clone(), s.as_str())
            } else {
                (g.prepare(text).unwrap(), heads[pick(heads.len())])
            };
            let params = Params::from([("s".to_string(), Value::from(s))]);
            timed(i >= n / 10, &mut lat, &mut rows, || {
                g.execute(&prepared, &params, limits).unwrap()
            });
        }
        lat.sort_by(f64::total_cmp);
        out.insert(
            name.into(),
            json!({"n": n, "median_us": percentile(&lat, 0.5), "p99_us": percentile(&lat, 0.99),
                   "mean_us": lat.iter().sum::<f64>() / n as f64, "mean_rows": rows as f64 / n as f64}),
        );
    }
    json!({"bench": "quiver_query", "latency": out})
}

/// The README's query (friends of friends not yet followed, ranked by the
/// model, top 10) on the demo network with `users` users, trained as `make
/// demo` trains it (64 dims, dot, softmax; 5 epochs), for random users.
fn bench_fof(users: u32, n: usize) -> serde_json::Value {
    use quiver_query::{Graph, Params, Value};
    let work = tempfile::tempdir().unwrap();
    let shape = quiver::demo::Shape {
        users,
        ..Default::default()
    };
    let file = work.path().join("twhin.tsv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    quiver::demo::write(&shape, &mut out).unwrap();
    out.flush().unwrap();
    drop(out);
    let db = Database::create(work.path().join("db")).unwrap();
    quiver::demo::create_schema(&db).unwrap();
    db.import(&[file], &ImportOptions::default(), &mut |_| {})
        .unwrap();
    let config = quiver_engine::TrainConfig {
        dim: 64,
        epochs: 5,
        score: quiver_engine::Score::Dot,
        loss: quiver_engine::Loss::Softmax,
        seed: 1,
        ..fixed_defaults()
    };
    quiver_engine::train(&db, "default", &config, &mut |_| {}).unwrap();
    let g = Graph::new(db);
    let fof = g
        .prepare(
            "MATCH (a:User {key: $k})-[:Follows]->()-[:Follows]->(c) \
             WHERE c <> a AND NOT (a)-[:Follows]->(c) \
             RETURN DISTINCT c.key AS who, quiver.score(a, 'Follows', c) AS score \
             ORDER BY score DESC LIMIT 10",
        )
        .unwrap();
    let mut rng = Rng::new(0xf0f);
    let (mut lat, mut rows) = (Vec::with_capacity(n), 0);
    for i in 0..n + n / 10 {
        let params = Params::from([(
            "k".to_string(),
            Value::from(format!("u{}", rng.next() % users as u64)),
        )]);
        timed(i >= n / 10, &mut lat, &mut rows, || {
            g.execute(&fof, &params, g.limits()).unwrap()
        });
    }
    lat.sort_by(f64::total_cmp);
    json!({"bench": "quiver_fof", "users": users, "n": n, "median_us": percentile(&lat, 0.5),
           "p99_us": percentile(&lat, 0.99), "mean_rows": rows as f64 / n as f64})
}

/// A batch of `n` edges written as one statement from a host (`UNWIND $rows`
/// of maps, one commit), against the same edges as a file through `import`:
/// rows per second of each, and the resulting graphs compared.
fn bench_unwind(n: usize) -> serde_json::Value {
    use quiver_query::{Graph, Limits, Params, Value};
    let mut rng = Rng::new(0xba7c4);
    let users = (n / 5).max(10) as u64;
    let edges: Vec<(String, String)> = (0..n)
        .map(|_| {
            (
                format!("u{}", rng.next() % users),
                format!("u{}", rng.next() % users),
            )
        })
        .collect();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("edges.tsv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    for (s, d) in &edges {
        writeln!(out, "{s}\tFollows\t{d}").unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let imported = Database::create(work.path().join("import")).unwrap();
    let t = Instant::now();
    imported
        .import(&[file], &ImportOptions::default(), &mut |_| {})
        .unwrap();
    let import_s = t.elapsed().as_secs_f64();
    let rows = Value::List(
        edges
            .iter()
            .map(|(s, d)| {
                Value::Map(std::sync::Arc::new(
                    [
                        ("s".to_string(), Value::from(s.as_str())),
                        ("d".to_string(), Value::from(d.as_str())),
                    ]
                    .into(),
                ))
            })
            .collect(),
    );
    let params = Params::from([("rows".to_string(), rows)]);
    let limits = Limits {
        max_rows: 10 * n as u64,
        timeout: None,
    };
    let mut runs = serde_json::Map::new();
    for (name, text) in [
        ("create", "UNWIND $rows AS r CREATE (:Entity {key: r.s})-[:Follows]->(:Entity {key: r.d})"),
        (
            "merge",
            "UNWIND $rows AS r MERGE (s:Entity {key: r.s}) MERGE (t:Entity {key: r.d}) MERGE (s)-[:Follows]->(t)",
        ),
    ] {
        let g = Graph::open(work.path().join(name)).unwrap();
        g.query(
            "CREATE NODE TYPE Entity; CREATE RELATION TYPE Follows (Entity -> Entity)",
            &Params::new(),
        )
        .unwrap();
        let p = g.prepare(text).unwrap();
        let t = Instant::now();
        g.execute(&p, &params, limits).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let (a, b) = (g.database().stats().unwrap(), imported.stats().unwrap());
        assert_eq!(a.edges, b.edges, "{name}: the statement and the import stored different edge counts");
        runs.insert(name.into(), json!({"seconds": secs, "rows_per_s": n as f64 / secs}));
    }
    json!({"bench": "quiver_unwind", "rows": n, "import": {"seconds": import_s, "rows_per_s": n as f64 / import_s},
           "statement": runs})
}

/// Writes `edges` triples over `nodes` entities and 8 relations, both ends
/// drawn from a power law (node x with probability ∝ (x + 1)^−0.8, by
/// inverse transform), as `n<src>\tr<k>\tn<dst>` lines.
pub(crate) fn power_law_file(path: &Path, nodes: u64, edges: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let draw = |rng: &mut Rng| {
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        // Inverse CDF of p(x) ∝ x^−0.8 on [1, n + 1): x = (1 + u((n+1)^0.2 − 1))^5.
        let top = ((nodes + 1) as f64).powf(0.2);
        (((1.0 + u * (top - 1.0)).powi(5) as u64).max(1) - 1).min(nodes - 1)
    };
    for _ in 0..edges {
        let (s, d, r) = (draw(&mut rng), draw(&mut rng), rng.next() % 8);
        writeln!(out, "n{s}\tr{r}\tn{d}").unwrap();
    }
    out.flush().unwrap();
}

/// The trainer's defaults before issue 29 (L2 and the margin loss, no
/// held-out validation edges): what the training figures in BENCHMARKS.md
/// were measured with, and like for like with the anchors, which hold
/// nothing out.
fn fixed_defaults() -> quiver_engine::TrainConfig {
    quiver_engine::TrainConfig {
        score: quiver_engine::Score::L2,
        loss: quiver_engine::Loss::Margin,
        validation: None,
        ..Default::default()
    }
}

/// `quiver ARGS` under `/usr/bin/time -v`: (wall seconds, peak RSS in MiB,
/// its standard error); panics when it fails.
pub(crate) fn timed_run(bin: &Path, args: &[&str]) -> (f64, f64, String) {
    let t = Instant::now();
    let out = std::process::Command::new("/usr/bin/time")
        .arg("-v")
        .arg(bin)
        .args(args)
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "quiver {args:?} failed: {err}");
    let rss_kib = err
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(f64::NAN);
    (secs, rss_kib / 1024.0, err)
}

/// One `quiver train` epoch under `/usr/bin/time -v`: (edges/s from its epoch
/// line, peak RSS in MiB, wall seconds).
fn timed_epoch(bin: &Path, db: &Path, partitions: u64, budget: u64, dim: u64) -> (f64, f64, f64) {
    let (p, budget, dim) = (partitions.to_string(), budget.to_string(), dim.to_string());
    let args = [
        "train",
        db.to_str().unwrap(),
        "--model",
        "scale",
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--force",
        "--valid",
        "none",
        "--score",
        "l2",
        "--loss",
        "margin",
        "--dim",
        &dim,
        "--partitions",
        &p,
        "--memory-budget",
        &budget,
        "--negatives",
        "50",
    ];
    let (secs, rss, err) = timed_run(bin, &args);
    let rate = err
        .lines()
        .find_map(|l| {
            l.split(" edges/s")
                .next()?
                .rsplit('(')
                .next()?
                .parse::<f64>()
                .ok()
                .filter(|_| l.contains("edges/s"))
        })
        .unwrap_or(f64::NAN);
    (rate, rss, secs)
}

fn bench_scale(
    bin: &Path,
    nodes: u64,
    edges: u64,
    partitions: u64,
    budget: u64,
    dim: u64,
) -> serde_json::Value {
    let work =
        tempfile::tempdir_in(std::env::var_os("QUIVER_SCALE_DIR").unwrap_or_else(|| ".".into())).unwrap();
    let mut runs = serde_json::Map::new();
    for (name, n, m, p) in [
        ("fits", nodes / 10, edges / 10, 1),
        ("scale", nodes, edges, partitions),
    ] {
        let file = work.path().join(format!("{name}.tsv"));
        let t = Instant::now();
        power_law_file(&file, n, m, 0x5ca1e);
        let gen_s = t.elapsed().as_secs_f64();
        let db_path = work.path().join(format!("{name}.qdb"));
        let t = Instant::now();
        {
            let db = Database::create(&db_path).unwrap();
            db.import(
                std::slice::from_ref(&file),
                &ImportOptions::default(),
                &mut |_| {},
            )
            .unwrap();
        }
        let import_s = t.elapsed().as_secs_f64();
        std::fs::remove_file(&file).unwrap();
        let (rate, rss, secs) = timed_epoch(bin, &db_path, p, budget, dim);
        eprintln!(
            "{name}: {n} nodes, {m} edges, P={p}: {rate:.0} edges/s, peak RSS {rss:.0} MiB, {secs:.0} s"
        );
        runs.insert(
            name.into(),
            json!({"nodes": n, "edges": m, "partitions": p, "budget_mib": budget, "dim": dim,
                   "generate_s": gen_s, "import_s": import_s, "edges_per_s": rate,
                   "peak_rss_mib": rss, "epoch_wall_s": secs,
                   "embedding_gib": (n * dim * 4) as f64 / (1u64 << 30) as f64}),
        );
    }
    json!({"bench": "quiver_scale", "runs": runs})
}

/// `n × dim` standard-normal rows scaled to unit length (as the faiss anchor's data).
fn unit_rows(rng: &mut Rng, n: usize, dim: usize) -> Vec<f32> {
    let mut normal = || {
        // Box-Muller from two uniforms in (0, 1].
        let u = |r: &mut Rng| ((r.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let (a, b) = (u(rng), u(rng));
        ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
    };
    let mut rows: Vec<f32> = (0..n * dim).map(|_| normal()).collect();
    for r in rows.chunks_exact_mut(dim) {
        let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        r.iter_mut().for_each(|x| *x /= norm);
    }
    rows
}

/// Exact top-k by inner product: batched queries/s (median of 5) and
/// single-query latency (all threads, and one thread, as faiss is run).
fn bench_knn(n: usize, dim: usize, queries: usize, k: usize) -> serde_json::Value {
    use quiver_engine::{Index, Metric};
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let rows = unit_rows(&mut rng, n, dim);
    let q = unit_rows(&mut rng, queries, dim);
    let index = Index::new(Metric::Dot, &rows, dim);
    let none = |_: usize, _: u32| false;
    // Seconds for all queries in one call, median of 5.
    let batched = |index: &Index<'_>| {
        median(
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    black_box(index.search(&q, k, &none));
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        )
    };
    let single = |index: &Index<'_>| {
        let mut lat: Vec<f64> = q
            .chunks_exact(dim)
            .map(|one| {
                let t = Instant::now();
                black_box(index.search(one, k, &none));
                t.elapsed().as_secs_f64()
            })
            .collect();
        let total: f64 = lat.iter().sum();
        lat.sort_by(f64::total_cmp);
        json!({"qps": queries as f64 / total, "median_us": percentile(&lat, 0.5) * 1e6, "p99_us": percentile(&lat, 0.99) * 1e6})
    };
    let float_batched = batched(&index);
    let single_all = single(&index);
    let index1 = Index::new(Metric::Dot, &rows, dim).with_threads(1);
    // The int8 copy: memory, recall@k against the exact float answer, speed.
    let exact = index.search(&q, k, &none);
    let codes = quiver_engine::Int8Rows::quantize(&rows, dim);
    let qindex = codes.index(Metric::Dot);
    let int8_batched = batched(&qindex);
    let approx = qindex.search(&q, k, &none);
    json!({
        "bench": "quiver_knn", "n": n, "dim": dim, "queries": queries, "k": k,
        "threads": std::thread::available_parallelism().map_or(1, |t| t.get()),
        "batched": {"search_s": float_batched, "qps": queries as f64 / float_batched, "gflops": 2.0 * (n * dim * queries) as f64 / float_batched / 1e9},
        "single": single_all,
        "single_1thread": single(&index1),
        "int8": {
            "bytes": codes.bytes(), "float_bytes": rows.len() * 4,
            "recall_at_k": quiver_engine::overlap(&exact, &approx),
            "batched_qps": queries as f64 / int8_batched,
            "single": single(&qindex),
        },
    })
}

/// Cold start on FB15k-237 (issue 5): hold out 10% of the entities with
/// every train triple that touches them, train on the rest, insert those
/// triples back and infer the held-out entities' rows from their neighbours;
/// filtered MRR on the test triples that touch them, beside a model trained
/// on everything (transductive) and beside random rows for them.
fn bench_coldstart(data: &Path, epochs: usize) -> serde_json::Value {
    use quiver_engine::{evaluate, read_triples, Device, Model, TrainConfig};
    let work = tempfile::tempdir().unwrap();
    let train = read_triples(&data.join("train.txt")).unwrap();
    let test = read_triples(&data.join("test.txt")).unwrap();
    let valid = read_triples(&data.join("valid.txt")).unwrap();
    let mut entities: Vec<&str> = train
        .iter()
        .flat_map(|t| [t.head.as_str(), t.tail.as_str()])
        .collect();
    entities.sort_unstable();
    entities.dedup();
    let mut rng = Rng::new(0x5eed_c01d_0000_0001);
    let held: std::collections::HashSet<&str> = entities
        .iter()
        .copied()
        .filter(|_| rng.next().is_multiple_of(10))
        .collect();
    let touches =
        |t: &quiver_engine::Triple| held.contains(t.head.as_str()) || held.contains(t.tail.as_str());
    let subset: Vec<_> = test.iter().filter(|t| touches(t)).cloned().collect();
    let known: Vec<_> = valid.iter().chain(train.iter()).cloned().collect();
    let write = |name: &str, rows: &mut dyn Iterator<Item = &quiver_engine::Triple>| {
        let path = work.path().join(name);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for t in rows {
            writeln!(f, "{}\t{}\t{}", t.head, t.relation, t.tail).unwrap();
        }
        path
    };
    let config = TrainConfig {
        epochs,
        seed: 1,
        ..fixed_defaults()
    };
    let import = |dir: &str, file: &Path| {
        let db = Database::create(work.path().join(dir)).unwrap();
        db.import(&[file.to_path_buf()], &ImportOptions::default(), &mut |_| {})
            .unwrap();
        db
    };
    // Transductive: everything trained.
    let all = write("all.txt", &mut train.iter());
    let full = import("full", &all);
    let started = Instant::now();
    let trans = quiver_engine::train(&full, "m", &config, &mut |_| {}).unwrap();
    let trans_s = started.elapsed().as_secs_f64();
    let t_ev = evaluate(&full, &trans, &subset, &known, &Device::Cpu).unwrap();
    // Inductive: trained without them, then they come back.
    let rest = write("rest.txt", &mut train.iter().filter(|t| !touches(t)));
    let db = import("ind", &rest);
    quiver_engine::train(&db, "m", &config, &mut |_| {}).unwrap();
    let back = write("back.txt", &mut train.iter().filter(|t| touches(t)));
    db.import(&[back], &ImportOptions::default(), &mut |_| {})
        .unwrap();
    let mut ind = Model::load(&db, "m").unwrap();
    let trained_rows = ind.rows(0);
    let started = Instant::now();
    let inferred = ind.extend_to(&db.snapshot());
    let infer_s = started.elapsed().as_secs_f64();
    let i_ev = evaluate(&db, &ind, &subset, &known, &Device::Cpu).unwrap();
    // Random rows for them, at the trained rows' scale.
    let d = ind.dim();
    let trained = &ind.nodes[0][..trained_rows as usize * d];
    let rms = (trained.iter().map(|x| x * x).sum::<f32>() / trained.len() as f32).sqrt();
    let mut random = ind.clone();
    for x in random.nodes[0][trained_rows as usize * d..].iter_mut() {
        *x = ((rng.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * rms * 3f32.sqrt();
    }
    let r_ev = evaluate(&db, &random, &subset, &known, &Device::Cpu).unwrap();
    json!({
        "bench": "quiver_coldstart", "data": data.file_name().unwrap().to_string_lossy(), "epochs": epochs,
        "held_out_entities": held.len(), "entities": entities.len(), "inferred_rows": inferred,
        "infer_s": infer_s, "train_s": trans_s,
        "test_triples_touching_them": subset.len(),
        "transductive": {"mrr": t_ev.mrr, "hits@10": t_ev.hits10, "ranked": t_ev.triples},
        "inductive": {"mrr": i_ev.mrr, "hits@10": i_ev.hits10, "ranked": i_ev.triples},
        "random": {"mrr": r_ev.mrr, "hits@10": r_ev.hits10, "ranked": r_ev.triples},
        "inductive_share_of_transductive": i_ev.mrr / t_ev.mrr,
    })
}

/// Writes the demo's network of `shape` into `out`: typed edge lines in
/// `train.txt`, and 5% of the edges each (seeded) as (head key, relation,
/// tail key) lines in `valid.txt` and `test.txt`.
fn write_twhin(shape: &quiver::demo::Shape, out: &Path) -> serde_json::Value {
    let mut all = Vec::new();
    quiver::demo::write(shape, &mut all).unwrap();
    std::fs::create_dir_all(out).unwrap();
    let mut files = ["train.txt", "valid.txt", "test.txt"]
        .map(|f| std::io::BufWriter::new(std::fs::File::create(out.join(f)).unwrap()));
    let mut rng = Rng::new(shape.seed ^ 0x5_9717);
    let mut counts = [0u64; 3];
    for line in String::from_utf8(all).unwrap().lines() {
        let which = match rng.next() % 20 {
            0 => 1,
            1 => 2,
            _ => 0,
        };
        counts[which] += 1;
        // src_type, src_key, relation, dst_type, dst_key, weight
        let f: Vec<&str> = line.split('\t').collect();
        match which {
            0 => writeln!(files[0], "{line}"),
            _ => writeln!(files[which], "{}\t{}\t{}", f[1], f[2], f[4]),
        }
        .unwrap();
    }
    for f in &mut files {
        f.flush().unwrap();
    }
    json!({"bench": "twhin_split", "shape": format!("{shape:?}"), "train": counts[0], "valid": counts[1], "test": counts[2]})
}

fn usage() -> ! {
    eprintln!(
        "usage: quiver-bench storage [--data DIR] [--synthetic-edges N] | train --data DIR [--epochs N] | query --data DIR [--queries N] [--only NAME] | fof [--users N] [--queries N] | unwind [--rows N] | scale --quiver BIN [--nodes N] [--edges M] | refresh --quiver BIN [--nodes N] [--edges M] [--partitions P] [--epochs E] [--dim D] | gpu --data DIR [--epochs N] | knn [--n N] [--dim D] [--queries Q] [--k K] | coldstart --data DIR [--epochs N] | twhin --out DIR [--users N] [--communities C] [--tweets T] [--follows F] [--engagements E] [--advertisers A] [--seed S] | ann --dir DIR --db DB [--metric ip|l2] [--quantization f32|f16|i8] [--ef 16,32,...] [--queries N] | serve --quiver BIN --db DB [--clients N] [--seconds S] [--write] [--train]"
    );
    std::process::exit(2);
}

/// Trains with `cfg` and returns (median edges/s over epochs after the
/// first, median share of time moving partitions, seconds in all).
fn train_rate(db: &Database, name: &str, cfg: &quiver_engine::TrainConfig) -> (f64, f64, f64) {
    train_rate_on(db, name, cfg, &quiver_engine::Device::Cpu)
}

fn train_rate_on(
    db: &Database,
    name: &str,
    cfg: &quiver_engine::TrainConfig,
    device: &quiver_engine::Device,
) -> (f64, f64, f64) {
    let (mut rates, mut io) = (Vec::new(), Vec::new());
    let t = Instant::now();
    quiver_engine::train_on(db, name, cfg, device, &mut |e| {
        if let quiver_engine::TrainEvent::Epoch(e) = e {
            rates.push(e.edges as f64 / e.seconds);
            io.push(e.io_share);
        }
    })
    .unwrap();
    let skip = usize::from(rates.len() > 1);
    (
        median(rates[skip..].to_vec()),
        median(io[skip..].to_vec()),
        t.elapsed().as_secs_f64(),
    )
}

fn bench_gpu(data: &Path, epochs: usize) -> serde_json::Value {
    use quiver_engine::{Device, TrainConfig};
    let work = tempfile::tempdir().unwrap();
    let db = Database::create(work.path().join("db")).unwrap();
    db.import(&[data.join("train.txt")], &ImportOptions::default(), &mut |_| {})
        .unwrap();
    let gpu = match Device::select("gpu") {
        Ok(d) => d,
        Err(e) => return json!({"bench": "quiver_gpu", "error": e.to_string()}),
    };
    let cfg = TrainConfig {
        epochs,
        dim: 200,
        uniform_negatives: 50,
        reciprocal: false,
        max_norm: 0.0,
        ..fixed_defaults()
    };
    let (cpu_rate, _, _) = train_rate(&db, "cpu", &cfg);
    let mut steps = serde_json::Map::new();
    for chunks in [32usize, 128, 512] {
        let c = TrainConfig {
            gpu_chunks: chunks,
            ..cfg.clone()
        };
        let (rate, _, secs) = train_rate_on(&db, "gpu", &c, &gpu);
        let model = quiver_engine::Model::load(&db, "gpu").unwrap();
        let test = quiver_engine::read_triples(&data.join("test.txt")).unwrap();
        let valid = quiver_engine::read_triples(&data.join("valid.txt")).unwrap();
        let ev = quiver_engine::evaluate(&db, &model, &test, &valid, &gpu).unwrap();
        steps.insert(
            chunks.to_string(),
            json!({"edges_per_s": rate, "seconds": secs, "mrr": ev.mrr, "hits@10": ev.hits10, "eval_s": ev.seconds}),
        );
        eprintln!(
            "{chunks} chunks per step: {rate:.0} edges/s, MRR {:.4}, eval {:.1} s",
            ev.mrr, ev.seconds
        );
    }
    json!({"bench": "quiver_gpu", "adapter": gpu.describe(), "epochs": epochs, "cpu_edges_per_s": cpu_rate, "gpu": steps})
}

fn bench_train(data: &Path, epochs: usize) -> serde_json::Value {
    use quiver_engine::{Loss, Score, TrainConfig};
    let work = tempfile::tempdir().unwrap();
    let db = Database::create(work.path().join("db")).unwrap();
    db.import(&[data.join("train.txt")], &ImportOptions::default(), &mut |_| {})
        .unwrap();
    // PBG's anchor: translation + l2, ranking loss m = 1, row Adagrad 0.1,
    // chunks of 50 with 50 in-batch + 50 uniform negatives; PBG has no
    // self-negatives, and its dynamic relations give heads a translation of
    // their own (quiver's reciprocal relations: t + r′ ≈ h) and mix the
    // relations in every chunk.
    let pbg = TrainConfig {
        epochs,
        dim: 200,
        score: Score::L2,
        loss: Loss::Margin,
        margin: 1.0,
        optimizer: quiver_engine::Optimizer::Adagrad,
        lr: 0.1,
        chunk_size: 50,
        uniform_negatives: 50,
        batch_negatives: true,
        max_norm: 0.0,
        self_negatives: false,
        reciprocal: true,
        mix_relations: true,
        ..fixed_defaults()
    };
    let (rate, _, secs) = train_rate(&db, "pbg", &pbg);
    let model = quiver_engine::Model::load(&db, "pbg").unwrap();
    let test = quiver_engine::read_triples(&data.join("test.txt")).unwrap();
    let valid = quiver_engine::read_triples(&data.join("valid.txt")).unwrap();
    let ev = quiver_engine::evaluate(&db, &model, &test, &valid, &quiver_engine::Device::Cpu).unwrap();
    // PyKEEN's anchor: L1, margin 1, one negative per positive, no in-batch
    // negatives, Adam (lr 0.001). A chunk's uniform negatives are shared by
    // its edges, so chunks of one edge give each edge its own, and one side
    // at random per chunk is PyKEEN's basic sampler: the head or the tail.
    let pykeen = TrainConfig {
        epochs,
        score: Score::L1,
        loss: Loss::Margin,
        optimizer: quiver_engine::Optimizer::Adam,
        lr: 0.001,
        chunk_size: 1,
        uniform_negatives: 1,
        batch_negatives: false,
        self_negatives: false,
        corrupt: quiver_engine::Sides::Either,
        reciprocal: false,
        max_norm: 0.0,
        ..fixed_defaults()
    };
    let (pykeen_rate, _, _) = train_rate(&db, "pykeen", &pykeen);
    let mut parts = serde_json::Map::new();
    // With pools (the default), and with negatives from the bucket's partitions only, as PBG.
    for (p, foreign_sample, label) in [
        (4, 8000, ""),
        (4, 0, "_bucket_negatives"),
        (16, 8000, ""),
        (16, 0, "_bucket_negatives"),
    ] {
        let cfg = TrainConfig {
            epochs: epochs.min(3),
            partitions: p,
            memory_budget_mib: 4,
            foreign_sample,
            ..pbg.clone()
        };
        let (r, io, _) = train_rate(&db, &format!("p{p}"), &cfg);
        parts.insert(format!("p{p}{label}"), json!({"edges_per_s": r, "io_share": io}));
    }
    json!({
        "bench": "quiver_train_cpu",
        "data": data.file_name().unwrap().to_string_lossy(),
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "epochs": epochs,
        "pbg_settings": {"edges_per_s": rate, "train_s": secs,
                         "test_filtered": {"mrr": ev.mrr, "mr": ev.mr, "hits@1": ev.hits1, "hits@3": ev.hits3, "hits@10": ev.hits10},
                         "eval_s": ev.seconds, "eval_triples": ev.triples, "eval_skipped": ev.skipped},
        "pykeen_settings": {"edges_per_s": pykeen_rate},
        "partitions": parts,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    match args.get(1).map(String::as_str) {
        Some("storage") => {}
        Some("train") => {
            let data = get("--data").unwrap_or_else(|| usage());
            let epochs = get("--epochs").map_or(5, |e| e.parse().unwrap_or(5));
            println!("{}", bench_train(Path::new(&data), epochs));
            return;
        }
        Some("refresh") => {
            let num = |f: &str, d: u64| get(f).map_or(d, |v| v.parse().unwrap_or(d));
            let bin = get("--quiver").unwrap_or_else(|| usage());
            let (nodes, edges) = (num("--nodes", 200_000), num("--edges", 1_000_000));
            let (p, epochs, dim) = (num("--partitions", 1), num("--epochs", 5), num("--dim", 64));
            println!(
                "{}",
                refresh::bench_refresh(Path::new(&bin), nodes, edges, p, epochs, dim)
            );
            return;
        }
        Some("scale") => {
            let num = |f: &str, d: u64| get(f).map_or(d, |v| v.parse().unwrap_or(d));
            let bin = get("--quiver").unwrap_or_else(|| usage());
            println!(
                "{}",
                bench_scale(
                    Path::new(&bin),
                    num("--nodes", 5_000_000),
                    num("--edges", 50_000_000),
                    num("--partitions", 16),
                    num("--budget", 512),
                    num("--dim", 128),
                )
            );
            return;
        }
        Some("gpu") => {
            let data = get("--data").unwrap_or_else(|| usage());
            let epochs = get("--epochs").map_or(3, |e| e.parse().unwrap_or(3));
            println!("{}", bench_gpu(Path::new(&data), epochs));
            return;
        }
        Some("coldstart") => {
            let data = get("--data").unwrap_or_else(|| usage());
            let epochs = get("--epochs").map_or(10, |e| e.parse().unwrap_or(10));
            println!("{}", bench_coldstart(Path::new(&data), epochs));
            return;
        }
        Some("twhin") => {
            let out = get("--out").unwrap_or_else(|| usage());
            let base = quiver::demo::Shape::default();
            let num = |f: &str, d: u32| get(f).map_or(d, |v| v.parse().unwrap_or_else(|_| usage()));
            let shape = quiver::demo::Shape {
                users: num("--users", base.users),
                communities: num("--communities", base.communities),
                tweets_per_user: num("--tweets", base.tweets_per_user),
                advertisers: num("--advertisers", base.advertisers),
                follows_per_user: num("--follows", base.follows_per_user),
                engagements_per_user: num("--engagements", base.engagements_per_user),
                seed: get("--seed").map_or(base.seed, |v| v.parse().unwrap_or_else(|_| usage())),
            };
            println!("{}", write_twhin(&shape, Path::new(&out)));
            return;
        }
        Some("serve") => {
            let bin = get("--quiver").unwrap_or_else(|| usage());
            let db = get("--db").unwrap_or_else(|| usage());
            let clients = get("--clients").map_or(16, |v| v.parse().unwrap_or_else(|_| usage()));
            let seconds = get("--seconds").map_or(10.0, |v| v.parse().unwrap_or_else(|_| usage()));
            let flag = |f: &str| args.iter().any(|a| a == f);
            let (out, ok) = http::bench_serve(
                Path::new(&bin),
                Path::new(&db),
                clients,
                seconds,
                flag("--write"),
                flag("--train"),
            );
            println!("{out}");
            std::process::exit(if ok { 0 } else { 1 });
        }
        Some("knn") => {
            let num = |f: &str, d: usize| get(f).map_or(d, |v| v.parse().unwrap_or(d));
            println!(
                "{}",
                bench_knn(
                    num("--n", 14_541),
                    num("--dim", 200),
                    num("--queries", 2000),
                    num("--k", 10)
                )
            );
            return;
        }
        Some("ann") => {
            let dir = get("--dir").unwrap_or_else(|| usage());
            let db = get("--db").unwrap_or_else(|| usage());
            let efs: Vec<usize> = get("--ef")
                .unwrap_or_else(|| "16,32,64,96,128,256".into())
                .split(',')
                .map(|e| e.parse().unwrap_or_else(|_| usage()))
                .collect();
            let metric = get("--metric").unwrap_or_else(|| "ip".into());
            let quant = get("--quantization").unwrap_or_else(|| "f32".into());
            let queries = get("--queries").map_or(2000, |e| e.parse().unwrap_or(2000));
            println!(
                "{}",
                ann::bench_ann(Path::new(&dir), Path::new(&db), &metric, &quant, &efs, queries)
            );
            return;
        }
        Some("fof") => {
            let users = get("--users").map_or(2000, |e| e.parse().unwrap_or(2000));
            let n = get("--queries").map_or(5_000, |e| e.parse().unwrap_or(5_000));
            println!("{}", bench_fof(users, n));
            return;
        }
        Some("unwind") => {
            let n = get("--rows").map_or(100_000, |e| e.parse().unwrap_or(100_000));
            println!("{}", bench_unwind(n));
            return;
        }
        Some("query") => {
            let data = get("--data").unwrap_or_else(|| usage());
            let n = get("--queries").map_or(20_000, |e| e.parse().unwrap_or(20_000));
            println!("{}", bench_query(Path::new(&data), n, get("--only").as_deref()));
            return;
        }
        _ => usage(),
    }
    let work = tempfile::tempdir().unwrap();
    let mut out = serde_json::Map::new();
    out.insert("bench".into(), json!("quiver_storage"));
    if let Some(data) = get("--data") {
        let train = Path::new(&data).join("train.txt");
        let (med, times, path, size) = bench_import(work.path(), &train, 5);
        let db = Database::open(&path).unwrap();
        let s = db.snapshot();
        out.insert(
            "data".into(),
            json!(Path::new(&data).file_name().unwrap().to_string_lossy()),
        );
        out.insert("nodes".into(), json!(s.node_count(0)));
        out.insert("edges".into(), json!(s.edge_count()));
        out.insert("import_median_s".into(), json!(med));
        out.insert("import_runs_s".into(), json!(times));
        out.insert("db_size_mib".into(), json!(size as f64 / 1048576.0));
        out.insert("out_neighbors_by_relation".into(), bench_lookups(&db, 100_000));
        out.insert("bucket_stream".into(), bench_stream(&db, 4, 20));
    }
    if let Some(n) = get("--synthetic-edges") {
        let n: u64 = n.parse().unwrap();
        let file = work.path().join("synthetic.tsv");
        synthetic(&file, n);
        let (med, times, path, size) = bench_import(work.path(), &file, 3);
        let db = Database::open(&path).unwrap();
        out.insert("synthetic".into(), json!({
            "edge_lines": n, "edges": db.snapshot().edge_count(), "import_median_s": med, "import_runs_s": times,
            "db_size_mib": size as f64 / 1048576.0,
            "out_neighbors_by_relation": bench_lookups(&db, 100_000),
            "bucket_stream": bench_stream(&db, 4, 5),
        }));
    }
    println!("{}", serde_json::Value::Object(out));
}
