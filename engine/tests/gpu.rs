//! WGSL kernels: every shader validated by naga (no GPU needed), and every
//! kernel checked against the CPU on whatever adapter exists (lavapipe in CI;
//! skipped with a printed reason where there is none).

use quiver_engine::{
    evaluate, train, train_on, AdapterChoice, Device, GpuContext, Loss, Model, Regularizer, Score,
    TrainConfig, Triple,
};
use quiver_storage::Database;

#[test]
fn every_shader_passes_naga_validation() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shaders");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "wgsl") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&source)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::default(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        n += 1;
    }
    assert!(n >= 1, "no shaders found in {}", dir.display());
}

/// The adapter the tests run on; `None` (skipped, with the reason printed)
/// where there is none, unless `QUIVER_REQUIRE_GPU` is set (`make test`, where
/// lavapipe is installed, and `scripts/gpu-check.sh`): then a missing adapter fails.
fn gpu() -> Option<GpuContext> {
    let g = GpuContext::new(AdapterChoice::AnyIncludingSoftware).unwrap();
    match &g {
        Some(g) => eprintln!("GPU tests on {}", g.adapter()),
        None if std::env::var_os("QUIVER_REQUIRE_GPU").is_some() => {
            panic!(
                "QUIVER_REQUIRE_GPU is set, but no adapter was found (QUIVER_ADAPTER: {:?})",
                std::env::var("QUIVER_ADAPTER").ok()
            )
        }
        None => eprintln!("skipped: no GPU adapter (install mesa-vulkan-drivers for lavapipe)"),
    }
    g
}

/// `n` values uniform in [-1, 1) from `seed`, which moves on.
fn rand_vec(n: usize, seed: &mut u64) -> Vec<f32> {
    use rand_xoshiro::rand_core::{RngCore, SeedableRng};
    let mut rng = rand_xoshiro::SplitMix64::seed_from_u64(*seed);
    let v = (0..n)
        .map(|_| ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32)
        .collect();
    *seed = rng.next_u64();
    v
}

#[test]
fn score_kernel_matches_an_f64_reference() {
    let Some(g) = gpu() else { return };
    let mut seed = 3;
    // Odd sizes exercise the tile edges.
    for (c, m, d) in [(1, 1, 1), (5, 37, 19), (33, 70, 200)] {
        let (q, k) = (rand_vec(c * d, &mut seed), rand_vec(m * d, &mut seed));
        for kind in [Score::Dot, Score::L2, Score::L1] {
            let s = g.scores(kind, &q, &k, d).unwrap();
            for i in 0..c {
                for j in 0..m {
                    let pairs = q[i * d..(i + 1) * d]
                        .iter()
                        .zip(&k[j * d..(j + 1) * d])
                        .map(|(&a, &b)| (a as f64, b as f64));
                    let r = match kind {
                        Score::Dot => pairs.map(|(a, b)| a * b).sum::<f64>(),
                        Score::L2 => -pairs.map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt(),
                        Score::L1 => -pairs.map(|(a, b)| (a - b).abs()).sum::<f64>(),
                    };
                    let got = s[i * m + j] as f64;
                    assert!(
                        (got - r).abs() <= 1e-4 * r.abs().max(1.0),
                        "{kind:?} ({c},{m},{d}) [{i},{j}]: {got} vs {r}"
                    );
                }
            }
        }
    }
}

#[test]
fn gpu_evaluation_equals_cpu_evaluation() {
    let Some(g) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("db")).unwrap();
    db.create_node_type("N").unwrap();
    let r = db.create_relation_type("next", "N", "N").unwrap();
    let mut b = db.batch();
    for i in 0..50u32 {
        b.insert_edge(r, format!("n{i}"), format!("n{}", (i + 1) % 50), None);
    }
    db.commit(b).unwrap();
    let cfg = TrainConfig {
        dim: 24,
        epochs: 5,
        chunk_size: 10,
        uniform_negatives: 10,
        threads: 1,
        loss: Loss::Margin,
        ..Default::default()
    };
    let model = train(&db, "m", &cfg, &mut |_| {}).unwrap();
    let test: Vec<Triple> = (0..50)
        .step_by(5)
        .map(|i| Triple {
            head: format!("n{i}"),
            relation: "next".into(),
            tail: format!("n{}", (i + 3) % 50),
        })
        .collect();
    let cpu = evaluate(&db, &model, &test, &[], &Device::Cpu).unwrap();
    let gpu = evaluate(&db, &model, &test, &[], &Device::Gpu(Box::new(g))).unwrap();
    assert!((cpu.mrr - gpu.mrr).abs() < 1e-3, "{} vs {}", cpu.mrr, gpu.mrr);
    assert_eq!(cpu.triples, gpu.triples);
}

#[test]
fn device_names_are_checked() {
    assert!(Device::select("tpu").is_err());
    assert!(matches!(Device::select("cpu").unwrap(), Device::Cpu));
}

/// The same run on both backends: with one chunk per GPU step and one CPU
/// thread, the GPU's updates and negatives are the CPU's, so the models
/// agree up to float rounding; with the default batching the quality holds.
#[test]
fn gpu_training_reaches_the_cpu_mrr() {
    let Some(g) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("db")).unwrap();
    db.create_node_type("N").unwrap();
    let next = db.create_relation_type("next", "N", "N").unwrap();
    let back = db.create_relation_type("back", "N", "N").unwrap();
    let mut b = db.batch();
    for i in 0..64u32 {
        b.insert_edge(next, format!("n{i}"), format!("n{}", (i + 1) % 64), None);
        b.insert_edge(back, format!("n{}", (i + 1) % 64), format!("n{i}"), None);
    }
    db.commit(b).unwrap();
    let test: Vec<Triple> = (0..64)
        .map(|i| Triple {
            head: format!("n{i}"),
            relation: "next".into(),
            tail: format!("n{}", (i + 1) % 64),
        })
        .collect();
    let gpu = Device::Gpu(Box::new(g));
    // The last one in two partitions, with foreign rows among the negatives;
    // one with rows projected into the unit ball (they start outside it).
    for (score, loss, partitions, max_norm) in [
        (Score::L2, Loss::Adversarial, 1, 0.0),
        (Score::L1, Loss::Margin, 1, 0.0),
        (Score::L2, Loss::Margin, 1, 0.0),
        (Score::Dot, Loss::Softmax, 1, 0.0),
        (Score::L1, Loss::Adversarial, 1, 0.0),
        (Score::L2, Loss::Margin, 2, 0.0),
        (Score::L1, Loss::Margin, 1, 1.0),
    ] {
        let cfg = TrainConfig {
            max_norm,
            dim: 16,
            partitions,
            foreign_sample: 16,
            epochs: 40,
            score,
            loss,
            chunk_size: 8,
            uniform_negatives: 8,
            lr: 0.1,
            seed: 3,
            init_scale: 6.0,
            threads: 1,
            gpu_chunks: 1,
            regularization: if loss == Loss::Adversarial { 0.01 } else { 0.0 },
            regularizer: if score == Score::L1 {
                Regularizer::N3
            } else {
                Regularizer::L2
            },
            ..Default::default()
        };
        let on_cpu = train(&db, "cpu", &cfg, &mut |_| {}).unwrap();
        train_on(&db, "gpu", &cfg, &gpu, &mut |_| {}).unwrap();
        let on_gpu = Model::load(&db, "gpu").unwrap();
        let (a, b) = (
            evaluate(&db, &on_cpu, &test, &[], &Device::Cpu).unwrap().mrr,
            evaluate(&db, &on_gpu, &test, &[], &Device::Cpu).unwrap().mrr,
        );
        assert!(
            (a - b).abs() < 0.01,
            "{score:?} {loss:?} P = {partitions}: CPU MRR {a} vs GPU {b}"
        );
        let diff = on_cpu.nodes[0]
            .iter()
            .zip(&on_gpu.nodes[0])
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        eprintln!("{score:?} {loss:?} P = {partitions} max_norm {max_norm}: MRR CPU {a:.4} GPU {b:.4}, largest embedding difference {diff:.2e}");
        // One chunk per step is the CPU's arithmetic, up to float summation order.
        assert!(
            diff < 1e-3,
            "{score:?} {loss:?} P = {partitions} max_norm {max_norm}: rows differ by {diff}"
        );
        let batched = TrainConfig {
            gpu_chunks: 32,
            ..cfg
        };
        train_on(&db, "gpu32", &batched, &gpu, &mut |_| {}).unwrap();
        let m = Model::load(&db, "gpu32").unwrap();
        let c = evaluate(&db, &m, &test, &[], &Device::Cpu).unwrap().mrr;
        eprintln!("  32 chunks per step: MRR {c:.4}");
        assert!(c > 0.2, "{score:?} {loss:?}: batched GPU training MRR {c}");
    }
    let adam = TrainConfig {
        optimizer: quiver_engine::Optimizer::Adam,
        ..Default::default()
    };
    let err = train_on(&db, "adam", &adam, &gpu, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("CPU backend only"), "{err}");
}

/// Filtered ranks counted on the device against a plain loop over f64 scores.
#[test]
fn rank_kernel_counts_filtered_ranks() {
    let Some(g) = gpu() else { return };
    let mut seed = 5;
    for (c, m, d) in [(1, 1, 3), (37, 300, 19), (70, 1000, 64)] {
        let (q, k) = (rand_vec(c * d, &mut seed), rand_vec(m * d, &mut seed));
        let pick = |seed: &mut u64, n: usize| {
            rand_vec(n, seed)
                .iter()
                .map(|x| ((x + 1.0) * 0.5 * m as f32) as u32 % m as u32)
                .collect::<Vec<u32>>()
        };
        let answers = pick(&mut seed, c);
        let known: Vec<Vec<u32>> = (0..c).map(|i| pick(&mut seed, i % 7)).collect();
        for kind in [Score::Dot, Score::L2, Score::L1] {
            let got = g.ranks(kind, &q, &k, d, &answers, &known).unwrap();
            let score = |i: usize, j: usize| -> f64 {
                let it = (0..d).map(|l| (q[i * d + l] as f64, k[j * d + l] as f64));
                match kind {
                    Score::Dot => it.map(|(a, b)| a * b).sum(),
                    Score::L2 => -it.map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt(),
                    Score::L1 => -it.map(|(a, b)| (a - b).abs()).sum::<f64>(),
                }
            };
            let mut off = 0;
            for i in 0..c {
                let t = score(i, answers[i] as usize);
                let above = (0..m)
                    .filter(|&j| j as u32 != answers[i] && !known[i].contains(&(j as u32)) && score(i, j) > t)
                    .count();
                let want = 1.0 + above as f64;
                // Scores within float rounding of the answer's may land either side.
                assert!(
                    (got[i] - want).abs() <= 1.0,
                    "{kind:?} query {i}: {} vs {want}",
                    got[i]
                );
                off += usize::from(got[i] != want);
            }
            assert!(
                off * 50 <= c.max(50),
                "{kind:?}: {off} of {c} ranks off by rounding"
            );
        }
    }
}

/// The device's top-k against a plain sort of f64 scores.
#[test]
fn top_k_kernel_finds_the_best_candidates() {
    let Some(g) = gpu() else { return };
    let mut seed = 9;
    for (c, m, d, top) in [(1, 1, 3, 1), (5, 200, 17, 10), (40, 3000, 64, 32)] {
        let (q, k) = (rand_vec(c * d, &mut seed), rand_vec(m * d, &mut seed));
        for kind in [Score::Dot, Score::L2, Score::L1] {
            let got = g.top_k(kind, &q, &k, d, top).unwrap();
            for (i, best) in got.iter().enumerate() {
                let score = |j: usize| -> f64 {
                    let it = (0..d).map(|l| (q[i * d + l] as f64, k[j * d + l] as f64));
                    match kind {
                        Score::Dot => it.map(|(a, b)| a * b).sum(),
                        Score::L2 => -it.map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt(),
                        Score::L1 => -it.map(|(a, b)| (a - b).abs()).sum::<f64>(),
                    }
                };
                let mut want: Vec<(usize, f64)> = (0..m).map(|j| (j, score(j))).collect();
                want.sort_by(|a, b| b.1.total_cmp(&a.1));
                want.truncate(top);
                assert_eq!(best.len(), want.len(), "{kind:?} query {i}");
                for ((id, s), (wj, ws)) in best.iter().zip(&want) {
                    // Same order up to scores within float rounding of each other.
                    assert!(
                        (score(*id as usize) - *s as f64).abs() < 1e-4,
                        "{kind:?} {i}: score of {id}"
                    );
                    assert!(
                        (*s as f64 - ws).abs() < 1e-4,
                        "{kind:?} {i}: {id} {s} vs {wj} {ws}"
                    );
                }
            }
        }
    }
}

#[test]
fn kmeans_assigns_the_same_clusters_on_the_gpu() {
    let Some(g) = gpu() else { return };
    let mut seed = 21;
    let (n, d, k) = (3000, 24, 12);
    let rows = rand_vec(n * d, &mut seed);
    let cpu = quiver_engine::kmeans(&rows, d, k, 15, 4, &quiver_engine::Device::Cpu).unwrap();
    let gpu = quiver_engine::kmeans(&rows, d, k, 15, 4, &quiver_engine::Device::Gpu(Box::new(g))).unwrap();
    // Same seeding and the same nearest centroids: rows differ only where two
    // centroids are within float rounding of each other.
    let same = cpu
        .assignment
        .iter()
        .zip(&gpu.assignment)
        .filter(|(a, b)| a == b)
        .count();
    assert!(same as f64 >= 0.99 * n as f64, "{same} of {n} rows agree");
    assert!(
        (cpu.inertia - gpu.inertia).abs() <= 1e-3 * cpu.inertia,
        "{} vs {}",
        cpu.inertia,
        gpu.inertia
    );
}
