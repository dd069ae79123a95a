//! Multi-modal embeddings (the TwHIN talk's mixtures): k-means over a node
//! type's embeddings, then for each node up to M mode vectors, the centroids
//! of the clusters its neighbours fall in, weighted by engagement (edge
//! weights); retrieval by a mixture is the union of per-mode neighbours.

use quiver_storage::Snapshot;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::config::Score;
use crate::retrieval::{Index, Metric};
use crate::{Device, EngineError, Result};

/// A k-means clustering of `n` rows.
#[derive(Debug, Clone)]
pub struct KMeans {
    /// `k × dim` centroids.
    pub centroids: Vec<f32>,
    /// Cluster of each row.
    pub assignment: Vec<u32>,
    /// Σ ‖x − centroid(x)‖² after the last assignment.
    pub inertia: f64,
    /// Assignment passes run (Lloyd iterations).
    pub iterations: usize,
}

/// The nearest centroid of each row, on the CPU or with the GPU's top-k
/// kernel (`shaders/topk.wgsl` with k = 1 and the L2 score).
fn assign(rows: &[f32], centroids: &[f32], d: usize, device: &Device) -> Result<Vec<(u32, f32)>> {
    let best = match device {
        Device::Cpu => Index::new(Metric::L2, centroids, d).search(rows, 1, &|_, _| false),
        Device::Gpu(gpu) => gpu.top_k(Score::L2, rows, centroids, d, 1)?,
    };
    Ok(best
        .into_iter()
        .map(|b| b.first().copied().unwrap_or((0, f32::NEG_INFINITY)))
        .collect())
}

fn uniform(rng: &mut Xoshiro256PlusPlus) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Lloyd's k-means with k-means++ initialisation (Arthur and Vassilvitskii),
/// at most `iterations` passes, stopping when no row changes cluster. An
/// empty cluster is restarted at the row farthest from its centroid.
pub fn kmeans(
    rows: &[f32],
    d: usize,
    k: usize,
    iterations: usize,
    seed: u64,
    device: &Device,
) -> Result<KMeans> {
    let n = rows.len() / d;
    if k == 0 || k > n {
        return Err(EngineError::Config(format!(
            "k-means: k = {k} must be in 1..={n} (the number of rows)"
        )));
    }
    let row = |i: usize| &rows[i * d..(i + 1) * d];
    let sq = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    // k-means++: each next centre drawn with probability ∝ D(x)².
    let mut centroids = Vec::with_capacity(k * d);
    centroids.extend_from_slice(row((rng.next_u64() % n as u64) as usize));
    let mut dist: Vec<f64> = (0..n).map(|i| sq(row(i), &centroids[..d])).collect();
    for _ in 1..k {
        let total: f64 = dist.iter().sum();
        let mut target = uniform(&mut rng) * total;
        let mut pick = n - 1;
        for (i, &w) in dist.iter().enumerate() {
            if target < w {
                pick = i;
                break;
            }
            target -= w;
        }
        let c = row(pick).to_vec();
        for (i, di) in dist.iter_mut().enumerate() {
            *di = di.min(sq(row(i), &c));
        }
        centroids.extend_from_slice(&c);
    }
    let mut assignment = vec![u32::MAX; n];
    let mut inertia = 0.0;
    let mut passes = 0;
    while passes < iterations.max(1) {
        passes += 1;
        let best = assign(rows, &centroids, d, device)?;
        let mut changed = 0usize;
        inertia = 0.0;
        for (i, &(c, s)) in best.iter().enumerate() {
            changed += usize::from(assignment[i] != c);
            assignment[i] = c;
            inertia += (s as f64).powi(2);
        }
        if changed == 0 {
            break;
        }
        let mut sums = vec![0f64; k * d];
        let mut counts = vec![0usize; k];
        for (i, &c) in assignment.iter().enumerate() {
            counts[c as usize] += 1;
            for (s, &x) in sums[c as usize * d..(c as usize + 1) * d].iter_mut().zip(row(i)) {
                *s += x as f64;
            }
        }
        for c in 0..k {
            let target = &mut centroids[c * d..(c + 1) * d];
            if counts[c] == 0 {
                let far = (0..n)
                    .max_by(|&a, &b| best[b].1.total_cmp(&best[a].1).then(b.cmp(&a)))
                    .unwrap_or(0);
                target.copy_from_slice(row(far));
            } else {
                for (t, s) in target.iter_mut().zip(&sums[c * d..(c + 1) * d]) {
                    *t = (*s / counts[c] as f64) as f32;
                }
            }
        }
    }
    Ok(KMeans {
        centroids,
        assignment,
        inertia,
        iterations: passes,
    })
}

/// Per node of one type, its modes: (cluster, weight), heaviest first.
#[derive(Debug, Clone)]
pub struct Mixtures {
    dim: usize,
    /// The clustering of the neighbours' type.
    pub clusters: KMeans,
    /// Modes of each node, heaviest first.
    pub modes: Vec<Vec<(u32, f32)>>,
    /// The most modes a node has.
    pub max_modes: usize,
}

impl Mixtures {
    /// Builds the modes of every node of type `ty`: its out-neighbours under
    /// `relations` (all ending at the clustered type), except edges for
    /// which `skip(rel, src, dst)` holds (held-out ones), vote for their
    /// clusters with their edge weights; the `max_modes` heaviest clusters
    /// are the node's modes.
    pub fn build(
        snap: &Snapshot,
        ty: u32,
        relations: &[u32],
        clusters: KMeans,
        dim: usize,
        max_modes: usize,
        skip: &dyn Fn(u32, u32, u32) -> bool,
    ) -> Self {
        let modes = (0..snap.node_count(ty))
            .map(|s| {
                let mut votes: Vec<(u32, f32)> = Vec::new();
                for &rel in relations {
                    for &t in snap.out_neighbors(rel, s).iter() {
                        let Some(&c) = clusters.assignment.get(t as usize) else {
                            continue;
                        };
                        if skip(rel, s, t) {
                            continue;
                        }
                        let w = snap.edge_weight(rel, s, t).unwrap_or(1.0);
                        match votes.iter_mut().find(|v| v.0 == c) {
                            Some(v) => v.1 += w,
                            None => votes.push((c, w)),
                        }
                    }
                }
                votes.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                votes.truncate(max_modes);
                votes
            })
            .collect();
        Self {
            dim,
            clusters,
            modes,
            max_modes,
        }
    }

    /// The same mixtures with at most `m` modes a node (its heaviest).
    pub fn truncated(&self, m: usize) -> Self {
        Self {
            modes: self.modes.iter().map(|v| v[..v.len().min(m)].to_vec()).collect(),
            max_modes: m,
            ..self.clone()
        }
    }

    /// The mode vectors of `node` (centroids), heaviest first.
    pub fn mode_vectors(&self, node: u32) -> Vec<&[f32]> {
        let d = self.dim;
        self.modes
            .get(node as usize)
            .map(|m| {
                m.iter()
                    .map(|&(c, _)| &self.clusters.centroids[c as usize * d..(c as usize + 1) * d])
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The union of each mode's `k` best rows of `index`, merged by score
    /// (a row found by several modes counts with its best), best `k`. Each
    /// mode vector stands in for the node's own row: `query` turns it into
    /// the query (the identity for kNN, h + r for translation).
    pub fn retrieve(
        &self,
        index: &Index<'_>,
        node: u32,
        k: usize,
        query: &dyn Fn(&[f32]) -> Vec<f32>,
        exclude: &(dyn Fn(u32) -> bool + Sync),
    ) -> Vec<(u32, f32)> {
        let queries: Vec<f32> = self.mode_vectors(node).into_iter().flat_map(query).collect();
        let mut all: Vec<(u32, f32)> = index
            .search(&queries, k, &|_, id| exclude(id))
            .into_iter()
            .flatten()
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        all.dedup_by_key(|p| p.0);
        all.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmeans_finds_separated_blobs_and_rejects_bad_k() {
        // Three blobs around (0,0), (10,0), (0,10), 50 points each.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let mut rows = Vec::new();
        for (cx, cy) in [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)] {
            for _ in 0..50 {
                rows.push(cx + uniform(&mut rng) as f32 - 0.5);
                rows.push(cy + uniform(&mut rng) as f32 - 0.5);
            }
        }
        let km = kmeans(&rows, 2, 3, 20, 1, &Device::Cpu).unwrap();
        for blob in 0..3 {
            let c = km.assignment[blob * 50];
            assert!(km.assignment[blob * 50..(blob + 1) * 50].iter().all(|&a| a == c));
        }
        let mut seen: Vec<u32> = km.assignment.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 3);
        assert!(km.inertia < 150.0 * 0.5, "inertia {}", km.inertia);
        assert!(kmeans(&rows, 2, 0, 5, 1, &Device::Cpu).is_err());
        assert!(kmeans(&rows, 2, 151, 5, 1, &Device::Cpu).is_err());
    }
}
