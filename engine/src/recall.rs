//! Recommendation metrics, as the TwHIN talk reports them: Recall@K of the
//! edges of one relation held out of training ([`crate::Holdout`]), when
//! each source node retrieves its top K candidates; and RCE, the relative
//! cross-entropy of a downstream classifier against a baseline.

use quiver_storage::Snapshot;
use serde::Serialize;

use crate::config::Holdout;
use crate::mixture::Mixtures;
use crate::model::Model;
use crate::retrieval::{Index, Metric};
use crate::{EngineError, Result};

/// How a source node's candidates are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The model's own query h + r against the destination type, by its score.
    Translation,
    /// The node's embedding against the destination type by cosine (kNN).
    Knn,
    /// Translation from each of the source's modes ([`Mixtures`]) instead of
    /// its own row, the results merged by score.
    Mixture,
}

/// Recall@K over the held-out edges.
#[derive(Debug, Clone, Serialize)]
pub struct RecallReport {
    /// How candidates were found.
    pub method: Method,
    /// Source nodes with at least one held-out edge (the queries).
    pub sources: usize,
    /// Held-out edges.
    pub held_out: usize,
    /// Held-out edges whose reverse edge exists too (and is held out with
    /// them when the split is by pairs, [`Holdout::pairs`]).
    pub with_reverse: usize,
    /// (K, share of held-out edges among their source's top K).
    pub recall: Vec<(usize, f64)>,
    /// For a mixture, the modes each node has at most (1: its own row, a
    /// mixture that stepped aside).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modes: Option<usize>,
}

/// Retrieves, for every source node with held-out edges of `holdout`'s
/// relation, its top max(`ks`) nodes of the destination type, leaving out
/// itself and the destinations it keeps in training, and reports which
/// share of the held-out edges is found within each K.
pub fn recall(
    snap: &Snapshot,
    model: &Model,
    holdout: &Holdout,
    ks: &[usize],
    method: Method,
    mixtures: Option<&Mixtures>,
) -> Result<RecallReport> {
    let held = |s, t| holdout.holds(holdout.relation, s, t);
    recall_of(snap, model, (holdout.relation, &held), ks, method, mixtures)
}

/// [`recall`] over the edges (`rel`, s, t) for which `held(s, t)`: those
/// are sought, the source's others left out of its candidates.
pub fn recall_of(
    snap: &Snapshot,
    model: &Model,
    (rel, held): (u32, &dyn Fn(u32, u32) -> bool),
    ks: &[usize],
    method: Method,
    mixtures: Option<&Mixtures>,
) -> Result<RecallReport> {
    let def = snap
        .catalog()
        .relations
        .get(rel as usize)
        .ok_or_else(|| EngineError::Input(format!("no relation with id {rel}")))?;
    let (src_t, dst_t) = (def.src, def.dst);
    let d = model.dim();
    let kmax = ks.iter().copied().max().unwrap_or(0);
    // Per source: (node, held-out destinations, kept destinations).
    let mut sources: Vec<(u32, Vec<u32>, Vec<u32>)> = Vec::new();
    for s in 0..snap.node_count(src_t) {
        let nbrs = snap.out_neighbors(rel, s);
        let (held, kept): (Vec<u32>, Vec<u32>) = nbrs.iter().partition(|&&t| held(s, t));
        if !held.is_empty() {
            sources.push((s, held, kept));
        }
    }
    let exclude = |i: usize, id: u32| {
        let (s, _, kept) = &sources[i];
        (src_t == dst_t && id == *s) || kept.binary_search(&id).is_ok()
    };
    let table = model
        .nodes
        .get(dst_t as usize)
        .ok_or_else(|| EngineError::Input("the model has no embeddings of the destination type".into()))?;
    let found: Vec<Vec<(u32, f32)>> = match method {
        Method::Translation | Method::Knn => {
            let mut queries = Vec::with_capacity(sources.len() * d);
            for (s, _, _) in &sources {
                let h = model.node(src_t, *s);
                match method {
                    Method::Translation => queries.extend(model.tail_query(rel, h)),
                    _ => queries.extend_from_slice(h),
                }
            }
            let metric = match method {
                Method::Translation => Metric::of_score(model.config.score),
                _ => Metric::Cosine,
            };
            Index::new(metric, table, d).search(&queries, kmax, &exclude)
        }
        Method::Mixture => {
            let mix = mixtures.ok_or_else(|| EngineError::Input("mixture recall needs mixtures".into()))?;
            // A mode is a centroid of destinations the source engaged with, so
            // it stands in for the translated query h + r itself.
            let index = Index::new(Metric::of_score(model.config.score), table, d);
            let query = |mode: &[f32]| mode.to_vec();
            sources
                .iter()
                .enumerate()
                .map(|(i, (s, _, _))| mix.retrieve(&index, *s, kmax, &query, &|id| exclude(i, id)))
                .collect()
        }
    };
    let held_out: usize = sources.iter().map(|(_, h, _)| h.len()).sum();
    let with_reverse = match src_t == dst_t {
        true => sources
            .iter()
            .flat_map(|(s, held, _)| held.iter().map(move |&t| (*s, t)))
            .filter(|&(s, t)| snap.has_edge(rel, t, s))
            .count(),
        false => 0,
    };
    let recall = ks
        .iter()
        .map(|&k| {
            let hits: usize = sources
                .iter()
                .zip(&found)
                .map(|((_, held, _), top)| top.iter().take(k).filter(|(id, _)| held.contains(id)).count())
                .sum();
            (k, hits as f64 / held_out.max(1) as f64)
        })
        .collect();
    Ok(RecallReport {
        method,
        sources: sources.len(),
        held_out,
        with_reverse,
        recall,
        modes: mixtures
            .filter(|_| method == Method::Mixture)
            .map(|m| m.max_modes),
    })
}

/// How far two versions of a model moved apart on one node type.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    /// Nodes both versions have rows for.
    pub nodes: usize,
    /// Mean cosine between a node's two rows.
    pub mean_cosine: f64,
    /// Nodes whose top-k neighbours were compared (a seeded sample).
    pub sampled: usize,
    /// k of the neighbour comparison.
    pub k: usize,
    /// Share of the sampled nodes' top-k neighbours (by cosine, each node
    /// itself left out) that both versions agree on.
    pub neighbor_overlap: f64,
}

/// Compares node type `ty` in models `a` and `b` (rows the two share).
pub fn drift(a: &Model, b: &Model, ty: u32, k: usize, sample: usize, seed: u64) -> Result<DriftReport> {
    let d = a.dim();
    if b.dim() != d {
        return Err(EngineError::Input(format!(
            "the models' dims differ: {d} and {}",
            b.dim()
        )));
    }
    let n = a.rows(ty).min(b.rows(ty)) as usize;
    if n == 0 {
        return Err(EngineError::Input(format!(
            "the models share no rows of node type {ty}"
        )));
    }
    let cos = |x: &[f32], y: &[f32]| {
        let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
        for (&p, &q) in x.iter().zip(y) {
            xy += p as f64 * q as f64;
            xx += p as f64 * p as f64;
            yy += q as f64 * q as f64;
        }
        if xx > 0.0 && yy > 0.0 {
            xy / (xx * yy).sqrt()
        } else {
            0.0
        }
    };
    let mean_cosine = (0..n as u32)
        .map(|i| cos(a.node(ty, i), b.node(ty, i)))
        .sum::<f64>()
        / n as f64;
    // A seeded sample without repeats: every ⌈n / sample⌉-th node from a random offset.
    let step = n.div_ceil(sample.max(1)).max(1);
    let offset = (seed as usize) % step;
    let picked: Vec<u32> = (offset..n).step_by(step).map(|i| i as u32).collect();
    let top = |m: &Model| {
        let table = &m.nodes[ty as usize][..n * d];
        let queries: Vec<f32> = picked.iter().flat_map(|&i| m.node(ty, i).to_vec()).collect();
        Index::new(Metric::Cosine, table, d).search(&queries, k, &|q, id| id == picked[q])
    };
    let (ta, tb) = (top(a), top(b));
    let overlap = crate::retrieval::overlap(&ta, &tb);
    Ok(DriftReport {
        nodes: n,
        mean_cosine,
        sampled: picked.len(),
        k,
        neighbor_overlap: overlap,
    })
}

/// Relative cross-entropy, as the TwHIN paper defines it:
/// RCE = 100 × (1 − CE(model) / CE(baseline)), where `model` and `baseline`
/// hold (predicted probability, label ∈ {0, 1}) pairs for the same
/// examples; with no baseline, the baseline predicts the labels' mean for all.
pub fn rce(model: &[(f64, f64)], baseline: Option<&[(f64, f64)]>) -> Result<f64> {
    if model.is_empty() {
        return Err(EngineError::Input("no predictions".into()));
    }
    let ce = |rows: &mut dyn Iterator<Item = (f64, f64)>| {
        let (mut sum, mut n) = (0.0, 0usize);
        for (p, y) in rows {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            sum -= y * p.ln() + (1.0 - y) * (1.0 - p).ln();
            n += 1;
        }
        sum / n as f64
    };
    let ours = ce(&mut model.iter().copied());
    let base = match baseline {
        Some(b) if b.len() != model.len() => {
            return Err(EngineError::Input(format!(
                "{} model predictions but {} baseline predictions",
                model.len(),
                b.len()
            )))
        }
        Some(b) => ce(&mut b.iter().copied()),
        None => {
            let mean = model.iter().map(|&(_, y)| y).sum::<f64>() / model.len() as f64;
            if mean == 0.0 || mean == 1.0 {
                return Err(EngineError::Input(format!(
                    "every label is {mean}: RCE against the label mean needs both labels (or a baseline's predictions)"
                )));
            }
            ce(&mut model.iter().map(|&(_, y)| (mean, y)))
        }
    };
    if base.is_nan() || base <= 0.0 {
        return Err(EngineError::Input(
            "the baseline's cross-entropy is 0: every label is the same and predicted exactly".into(),
        ));
    }
    Ok(100.0 * (1.0 - ours / base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rce_against_the_mean_and_a_given_baseline() {
        // Labels 1, 0, 1, 1: the mean predictor says 0.75 for all.
        let m = [(0.9, 1.0), (0.2, 0.0), (0.8, 1.0), (0.7, 1.0)];
        let ce = |rows: &[(f64, f64)]| {
            -rows
                .iter()
                .map(|&(p, y): &(f64, f64)| y * p.ln() + (1.0 - y) * (1.0 - p).ln())
                .sum::<f64>()
                / rows.len() as f64
        };
        let base: Vec<(f64, f64)> = m.iter().map(|&(_, y)| (0.75, y)).collect();
        let want = 100.0 * (1.0 - ce(&m) / ce(&base));
        assert!((rce(&m, None).unwrap() - want).abs() < 1e-12);
        assert!((rce(&m, Some(&base)).unwrap() - want).abs() < 1e-12);
        assert!(rce(&m, Some(&base[..2])).is_err());
        assert!(rce(&[], None).is_err());
    }
}
