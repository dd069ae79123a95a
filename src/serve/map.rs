//! `GET /api/embedding-map?model=M&type=T[&n=10000][&modes=K]`: a 2-D map of
//! up to n of a node type's rows, by principal components, with each row's
//! k-means mode (the clusters of the mixtures feature) when `modes` is given;
//! cached per model version.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;

use super::{ApiError, Shared};

/// Most rows a map may show.
const MAX_POINTS: usize = 100_000;

/// Maps already computed, by (model, type, n, modes, the model's segment files).
pub(super) type MapCache =
    std::sync::Mutex<HashMap<(String, String, usize, usize, String), Arc<serde_json::Value>>>;

/// Most k-means modes a map may colour by.
const MAX_MODES: usize = 64;

pub(super) async fn embedding_map(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "request", m);
    let model = q
        .get("model")
        .cloned()
        .ok_or_else(|| bad("`model` is required".into()))?;
    let ty = q
        .get("type")
        .cloned()
        .ok_or_else(|| bad("`type` is required".into()))?;
    // A whole-number parameter from 1 to `max`, `default` when absent.
    let whole = |name: &str, default: usize, max: usize| match q.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .ok()
            .filter(|x| (1..=max).contains(x))
            .ok_or_else(|| bad(format!("{name} = `{v}`: a whole number from 1 to {max}"))),
    };
    let n = whole("n", 10_000, MAX_POINTS)?;
    let modes = whole("modes", 0, MAX_MODES)?;
    let info = s
        .graph
        .database()
        .model_info(&model)
        .map_err(|e| bad(e.to_string()))?;
    let version: String = info
        .parts
        .iter()
        .map(|(k, seg)| format!("{k}={}:{};", seg.file, seg.crc))
        .collect();
    let key = (model.clone(), ty.clone(), n, modes, version);
    if let Some(hit) = s.maps.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(Json((*hit).clone()));
    }
    let shared = s.clone();
    let map = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, ApiError> {
        let g = &shared.graph;
        let snap = g.database().snapshot();
        let t = snap.catalog().node_type(&ty).map_err(|e| bad(e.to_string()))?;
        let m = g.model(&model).map_err(|e| bad(e.to_string()))?;
        let rows = m
            .nodes
            .get(t as usize)
            .ok_or_else(|| bad(format!("model `{model}` has no rows of `{ty}`")))?;
        let d = m.dim();
        let count = rows.len() / d.max(1);
        let live: Vec<u32> = (0..count as u32).filter(|&id| !snap.is_deleted(t, id)).collect();
        let step = live.len().div_ceil(n).max(1);
        let ids: Vec<u32> = live.iter().step_by(step).copied().collect();
        let sample: Vec<&[f32]> = ids.iter().map(|&id| &rows[id as usize * d..][..d]).collect();
        let (x, y) = principal_components(&sample, d);
        let keys: Vec<&str> = ids.iter().map(|&id| snap.node_key(t, id).unwrap_or("")).collect();
        let mut map =
            serde_json::json!({"model": model, "type": ty, "rows": count, "keys": keys, "x": x, "y": y});
        if modes > 0 {
            let flat: Vec<f32> = sample.concat();
            let k = crate::kmeans(
                &flat,
                d,
                modes.min(sample.len().max(1)),
                25,
                0,
                &crate::Device::Cpu,
            )
            .map_err(|e| bad(e.to_string()))?;
            map["mode"] = k.assignment.into();
        }
        Ok(map)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))??;
    let map = Arc::new(map);
    if let Ok(mut cache) = s.maps.lock() {
        cache.insert(key, map.clone());
    }
    Ok(Json((*map).clone()))
}

/// The rows' coordinates on their first two principal components: block
/// power iteration on the centred rows (X^T X V, re-orthonormalised), which
/// costs 4·n·d per step and converges on the two largest directions.
fn principal_components(rows: &[&[f32]], d: usize) -> (Vec<f32>, Vec<f32>) {
    let n = rows.len();
    let mut mean = vec![0f64; d];
    for r in rows {
        for (m, &v) in mean.iter_mut().zip(*r) {
            *m += v as f64 / n.max(1) as f64;
        }
    }
    let centred = |r: &[f32], j: usize| r[j] as f64 - mean[j];
    // A fixed start (not random) so that a map is the same every time.
    let mut v: [Vec<f64>; 2] = [
        (0..d).map(|j| 1.0 + (j % 7) as f64).collect(),
        (0..d).map(|j| if j % 2 == 0 { 1.0 } else { -1.0 }).collect(),
    ];
    for _ in 0..40 {
        let mut w = [vec![0f64; d], vec![0f64; d]];
        for r in rows {
            for c in 0..2 {
                let p: f64 = (0..d).map(|j| centred(r, j) * v[c][j]).sum();
                for (j, wj) in w[c].iter_mut().enumerate() {
                    *wj += centred(r, j) * p;
                }
            }
        }
        // Gram-Schmidt: the second direction orthogonal to the first.
        let norm = |x: &[f64]| x.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-30);
        let n0 = norm(&w[0]);
        w[0].iter_mut().for_each(|a| *a /= n0);
        let dot: f64 = w[0].iter().zip(&w[1]).map(|(a, b)| a * b).sum();
        let (first, second) = w.split_at_mut(1);
        second[0]
            .iter_mut()
            .zip(&first[0])
            .for_each(|(b, a)| *b -= dot * a);
        let n1 = norm(&w[1]);
        w[1].iter_mut().for_each(|a| *a /= n1);
        v = w;
    }
    let project = |c: usize| -> Vec<f32> {
        rows.iter()
            .map(|r| (0..d).map(|j| centred(r, j) * v[c][j]).sum::<f64>() as f32)
            .collect()
    };
    (project(0), project(1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn principal_components_find_the_widest_directions() {
        // Points spread 10 along (1, 1, 0), 3 along (0, 0, 1), 0.1 along (1, -1, 0).
        let mut rows = Vec::new();
        for i in 0..200 {
            let (a, b, c) = (
                ((i * 37) % 21) as f32 - 10.0,
                ((i * 11) % 7) as f32 - 3.0,
                ((i * 5) % 3) as f32 - 1.0,
            );
            rows.push(vec![a + 0.1 * c, a - 0.1 * c, b]);
        }
        let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
        let (x, y) = super::principal_components(&refs, 3);
        let corr = |p: &[f32], q: &[f32]| {
            let n = p.len() as f64;
            let (mp, mq) = (p.iter().sum::<f32>() as f64 / n, q.iter().sum::<f32>() as f64 / n);
            let cov: f64 = p
                .iter()
                .zip(q)
                .map(|(&a, &b)| (a as f64 - mp) * (b as f64 - mq))
                .sum();
            let sd = |v: &[f32], m: f64| v.iter().map(|&a| (a as f64 - m).powi(2)).sum::<f64>().sqrt();
            cov / (sd(p, mp) * sd(q, mq))
        };
        // The first coordinate follows a, the second b (up to sign).
        let a: Vec<f32> = rows.iter().map(|r| r[0] + r[1]).collect();
        let b: Vec<f32> = rows.iter().map(|r| r[2]).collect();
        assert!(corr(&x, &a).abs() > 0.999, "{}", corr(&x, &a));
        assert!(corr(&y, &b).abs() > 0.95, "{}", corr(&y, &b));
    }
}
