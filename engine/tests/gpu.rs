//! WGSL kernels: every shader validated by naga (no GPU needed), and every
//! kernel checked against the CPU on whatever adapter exists (lavapipe in CI;
//! skipped with a printed reason where there is none).

use quiver_engine::{evaluate, train, AdapterChoice, Device, GpuContext, Loss, Score, TrainConfig, Triple};
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

fn gpu() -> Option<GpuContext> {
    let g = GpuContext::new(AdapterChoice::AnyIncludingSoftware).unwrap();
    match &g {
        Some(g) => eprintln!("GPU tests on {}", g.adapter()),
        None => eprintln!("skipped: no GPU adapter (install mesa-vulkan-drivers for lavapipe)"),
    }
    g
}

fn rand_vec(n: usize, seed: &mut u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            ((*seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
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
