//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

use quiver_storage::{Database, Direction};
pub use rand_xoshiro::rand_core::{RngCore, SeedableRng};

/// The tests' random numbers: a seeded SplitMix64.
pub fn rng(seed: u64) -> rand_xoshiro::SplitMix64 {
    rand_xoshiro::SplitMix64::seed_from_u64(seed)
}

/// The benchmark archive `name` (e.g. `FB15k-237`) from `../shared/data`,
/// extracted into `into`; `None` (after printing why) when it is absent, as in
/// a user's clone.
pub fn dataset(name: &str, into: &Path) -> Option<PathBuf> {
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../shared/data/{name}.tar.gz"));
    if !archive.is_file() {
        eprintln!(
            "skipped: {} not found (it is only in the team's shared folder)",
            archive.display()
        );
        return None;
    }
    let dir = into.join(name);
    std::fs::create_dir_all(&dir).ok()?;
    let ok = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "could not extract {}", archive.display());
    Some(dir)
}

/// Every edge of the database as (relation, src, dst, weight), sorted.
pub fn all_edges(db: &Database) -> Vec<(u32, u32, u32, f32)> {
    let snap = db.snapshot();
    let c = snap.catalog();
    let mut out = Vec::new();
    for t in 0..c.node_types.len() as u32 {
        for n in 0..snap.node_count(t) {
            for (r, d) in snap.all_neighbors(t, n, Direction::Out) {
                out.push((r, n, d, snap.edge_weight(r, n, d).unwrap_or(f32::NAN)));
            }
        }
    }
    out.sort_by_key(|e| (e.0, e.1, e.2));
    out
}

/// Every edge by names: (relation, src key, dst key, weight), sorted.
pub fn named_edges(db: &Database) -> Vec<(String, String, String, u32)> {
    let snap = db.snapshot();
    let c = snap.catalog();
    let mut out: Vec<_> = all_edges(db)
        .into_iter()
        .map(|(r, s, d, w)| {
            let rd = &c.relations[r as usize];
            (
                rd.name.clone(),
                snap.node_key(rd.src, s).unwrap_or("?").to_string(),
                snap.node_key(rd.dst, d).unwrap_or("?").to_string(),
                w.to_bits(),
            )
        })
        .collect();
    out.sort();
    out
}
