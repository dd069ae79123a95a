//! Quantized serving: an int8 copy of a node type's embeddings with one
//! scale per row (about 4x smaller at d = 200), stored in the database as a
//! part of the model, searched by [`crate::Index`] a block at a time.

use quiver_storage::Database;

use crate::model::Model;
use crate::retrieval::{Index, Metric};
use crate::{EngineError, Result};

/// Int8 codes of a table: row `i` ≈ `codes[i·dim..(i+1)·dim] × scales[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Rows {
    /// Columns.
    pub dim: usize,
    /// `rows × dim` codes in −127..=127.
    pub codes: Vec<i8>,
    /// One scale per row: its largest magnitude / 127.
    pub scales: Vec<f32>,
}

fn part_key(ty: u32) -> String {
    format!("int8/{ty}")
}

impl Int8Rows {
    /// Quantizes `rows` (row-major, `dim` columns), rounding to nearest.
    pub fn quantize(rows: &[f32], dim: usize) -> Self {
        let mut codes = Vec::with_capacity(rows.len());
        let mut scales = Vec::with_capacity(rows.len() / dim.max(1));
        for row in rows.chunks_exact(dim) {
            let max = row.iter().fold(0f32, |m, x| m.max(x.abs()));
            let scale = if max > 0.0 && max.is_finite() {
                max / 127.0
            } else {
                1.0
            };
            codes.extend(
                row.iter()
                    .map(|&x| (x / scale).round().clamp(-127.0, 127.0) as i8),
            );
            scales.push(scale);
        }
        Self { dim, codes, scales }
    }

    /// Bytes the codes and scales take.
    pub fn bytes(&self) -> usize {
        self.codes.len() + 4 * self.scales.len()
    }

    /// An exact index over the codes (as quantized).
    pub fn index(&self, metric: Metric) -> Index<'_> {
        Index::new_i8(metric, &self.codes, &self.scales, self.dim)
    }

    /// Quantizes node type `ty` of model `name` and stores it beside the
    /// model's parts (a new training run of the model drops it).
    pub fn store(db: &Database, name: &str, model: &Model, ty: u32) -> Result<Self> {
        let table = model.nodes.get(ty as usize).ok_or_else(|| EngineError::Model {
            name: name.to_string(),
            message: format!("it has no node type {ty}"),
        })?;
        let q = Self::quantize(table, model.dim());
        // Codes travel as f32 words (the part format's unit), padded to a whole word.
        let mut words = vec![0f32; q.codes.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<f32, u8>(&mut words)[..q.codes.len()]
            .copy_from_slice(bytemuck::cast_slice(&q.codes));
        let info = db.model_info(name)?;
        db.save_model_parts(
            name,
            &info.settings,
            &info.progress,
            &[(&part_key(ty), &[&words, &q.scales])],
        )?;
        Ok(q)
    }

    /// The stored int8 copy of node type `ty` of model `name`, if any.
    pub fn load(db: &Database, name: &str, ty: u32, dim: usize) -> Result<Option<Self>> {
        let Some(part) = db.model_part(name, &part_key(ty))? else {
            return Ok(None);
        };
        let scales = part.array(1).to_vec();
        let n = scales.len() * dim;
        let bytes: &[u8] = bytemuck::cast_slice(part.array(0));
        if part.len() != 2 || bytes.len() < n || bytes.len() >= n + 4 {
            return Err(EngineError::Model {
                name: name.to_string(),
                message: format!("int8 codes of node type {ty} have the wrong size"),
            });
        }
        let codes = bytemuck::cast_slice::<u8, i8>(&bytes[..n]).to_vec();
        Ok(Some(Self { dim, codes, scales }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_within_half_a_step_and_search_like_floats() {
        use rand_xoshiro::rand_core::{RngCore, SeedableRng};
        let mut rng = rand_xoshiro::SplitMix64::seed_from_u64(0x1234_5678_9abc_def1u64);
        let mut rand = move || (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        let (n, d) = (3000, 40);
        let mut rows: Vec<f32> = (0..n * d).map(|_| rand()).collect();
        rows[..d].iter_mut().for_each(|v| *v = 0.0); // a zero row stays zero
        let q = Int8Rows::quantize(&rows, d);
        assert_eq!(q.bytes(), n * d + 4 * n);
        for (i, row) in rows.chunks_exact(d).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let back = q.codes[i * d + j] as f32 * q.scales[i];
                assert!((back - v).abs() <= q.scales[i] / 2.0 + 1e-7);
            }
        }
        let queries: Vec<f32> = (0..50 * d).map(|_| rand()).collect();
        for metric in [Metric::Dot, Metric::Cosine, Metric::L2] {
            let exact = Index::new(metric, &rows, d).search(&queries, 10, &|_, _| false);
            let approx = q.index(metric).search(&queries, 10, &|_, _| false);
            let recall = crate::retrieval::overlap(&exact, &approx);
            assert!(recall >= 0.9, "{metric:?}: recall {recall}");
        }
    }
}
