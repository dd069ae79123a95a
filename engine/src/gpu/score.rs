//! Scoring on the device: score blocks, filtered ranks counted where the
//! scores are, and the best k per query.

use super::*;

impl GpuContext {
    /// Records, for each piece of the candidates `k`, the score kernel over
    /// the `cq` queries in `qb` and then `next` (one workgroup per query)
    /// with the bind group `bind(m0, mk, scores)` makes, so that the scores
    /// never leave the device. Returns the buffers the passes use.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn score_then(
        &self,
        enc: &mut wgpu::CommandEncoder,
        kind: Score,
        qb: &wgpu::Buffer,
        cq: usize,
        k: &[f32],
        d: usize,
        m_piece: usize,
        next: &wgpu::ComputePipeline,
        bind: &mut dyn FnMut(usize, usize, &wgpu::Buffer) -> wgpu::BindGroup,
    ) -> Vec<wgpu::Buffer> {
        let m = k.len() / d;
        let mut keep = Vec::new();
        for m0 in (0..m).step_by(m_piece) {
            let mk = m_piece.min(m - m0);
            let kb = self.buffer(
                "candidates",
                bytemuck::cast_slice(&k[m0 * d..(m0 + mk) * d]),
                wgpu::BufferUsages::STORAGE,
            );
            let sb = self.scratch("scores", cq * mk);
            let params = ScoreParams {
                c: cq as u32,
                m: mk as u32,
                d: d as u32,
                kind: score_code(kind),
            };
            let sp = self.buffer(
                "score params",
                bytemuck::bytes_of(&params),
                wgpu::BufferUsages::UNIFORM,
            );
            let score_bind = self.bind(&self.score, &[&sp, qb, &kb, &sb]);
            let next_bind = bind(m0, mk, &sb);
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("score then"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.score);
            pass.set_bind_group(0, &score_bind, &[]);
            pass.dispatch_workgroups(mk.div_ceil(16) as u32, cq.div_ceil(16) as u32, 1);
            pass.set_pipeline(next);
            pass.set_bind_group(0, &next_bind, &[]);
            pass.dispatch_workgroups((cq as u32).min(65535), (cq as u32).div_ceil(65535), 1);
            drop(pass);
            keep.extend([kb, sb, sp]);
        }
        keep
    }

    /// `s[i*m + j] = score(q_i, k_j)` on the GPU, as [`crate::kernels`] does
    /// on the CPU. Candidates and queries are cut into pieces that fit the
    /// device's binding size and dispatch limits.
    pub fn scores(&self, kind: Score, q: &[f32], k: &[f32], d: usize) -> Result<Vec<f32>> {
        let (c, m) = (q.len() / d, k.len() / d);
        let mut out = vec![0f32; c * m];
        let (c_piece, m_piece) = self.pieces(c, m, d);
        for c0 in (0..c).step_by(c_piece) {
            let cq = c_piece.min(c - c0);
            for m0 in (0..m).step_by(m_piece) {
                let mk = m_piece.min(m - m0);
                let storage = wgpu::BufferUsages::STORAGE;
                let qb = self.buffer(
                    "queries",
                    bytemuck::cast_slice(&q[c0 * d..(c0 + cq) * d]),
                    storage,
                );
                let kb = self.buffer(
                    "candidates",
                    bytemuck::cast_slice(&k[m0 * d..(m0 + mk) * d]),
                    storage,
                );
                let sb = self.scratch("scores", cq * mk);
                let params = ScoreParams {
                    c: cq as u32,
                    m: mk as u32,
                    d: d as u32,
                    kind: score_code(kind),
                };
                let sp = self.buffer("params", bytemuck::bytes_of(&params), wgpu::BufferUsages::UNIFORM);
                let bind = self.bind(&self.score, &[&sp, &qb, &kb, &sb]);
                let mut enc = self.device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    pass.set_pipeline(&self.score);
                    pass.set_bind_group(0, &bind, &[]);
                    pass.dispatch_workgroups(mk.div_ceil(16) as u32, cq.div_ceil(16) as u32, 1);
                }
                let part = self.read_back(enc, &[(&sb, cq * mk)])?;
                for i in 0..cq {
                    for (o, &bits) in out[(c0 + i) * m + m0..(c0 + i) * m + m0 + mk]
                        .iter_mut()
                        .zip(&part[0][i * mk..(i + 1) * mk])
                    {
                        *o = f32::from_bits(bits);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Filtered ranks (realistic ties: 1 + above + ties/2) of each query's
    /// answer among all candidates `k`, leaving out its `known` candidates;
    /// the scores never leave the device (`shaders/rank.wgsl` counts them).
    pub fn ranks(
        &self,
        kind: Score,
        q: &[f32],
        k: &[f32],
        d: usize,
        answers: &[u32],
        known: &[Vec<u32>],
    ) -> Result<Vec<f64>> {
        let (c, m) = (q.len() / d, k.len() / d);
        if answers.len() != c || known.len() != c || answers.iter().any(|&a| a as usize >= m) {
            return Err(EngineError::Internal("inconsistent ranking block".into()));
        }
        let (c_piece, m_piece) = self.pieces(c, m, d);
        let storage = wgpu::BufferUsages::STORAGE;
        let mut ranks = Vec::with_capacity(c);
        for c0 in (0..c).step_by(c_piece) {
            let cq = c_piece.min(c - c0);
            // answers | filter offsets | filter entries (sorted per query)
            let mut ans_rows = Vec::with_capacity(cq * d);
            let mut info: Vec<u32> = answers[c0..c0 + cq].to_vec();
            let (mut offs, mut entries) = (vec![0u32], Vec::new());
            for i in c0..c0 + cq {
                let a = answers[i] as usize;
                ans_rows.extend_from_slice(&k[a * d..(a + 1) * d]);
                let mut f: Vec<u32> = known[i]
                    .iter()
                    .copied()
                    .filter(|&x| x != answers[i] && (x as usize) < m)
                    .collect();
                f.sort_unstable();
                f.dedup();
                entries.extend(f);
                offs.push(entries.len() as u32);
            }
            info.extend(offs);
            info.extend(entries);
            let qb = self.buffer(
                "queries",
                bytemuck::cast_slice(&q[c0 * d..(c0 + cq) * d]),
                storage,
            );
            let ab = self.buffer("answer rows", bytemuck::cast_slice(&ans_rows), storage);
            let ib = self.buffer("answers and filters", bytemuck::cast_slice(&info), storage);
            let out = self.buffer(
                "counts",
                &vec![0u8; 8 * cq],
                storage | wgpu::BufferUsages::COPY_SRC,
            );
            let mut enc = self.device.create_command_encoder(&Default::default());
            let mut params = Vec::new();
            let keep = self.score_then(
                &mut enc,
                kind,
                &qb,
                cq,
                k,
                d,
                m_piece,
                &self.rank,
                &mut |m0, mk, sb| {
                    let words = [
                        cq as u32,
                        mk as u32,
                        d as u32,
                        score_code(kind),
                        m0 as u32,
                        0,
                        0,
                        0,
                    ];
                    let rp = self.buffer(
                        "rank params",
                        bytemuck::cast_slice(&words),
                        wgpu::BufferUsages::UNIFORM,
                    );
                    let bind = self.bind(&self.rank, &[&rp, &qb, &ab, sb, &ib, &out]);
                    params.push(rp);
                    bind
                },
            );
            let counts = self.read_back(enc, &[(&out, 2 * cq)])?;
            drop((keep, params));
            ranks.extend(
                counts[0]
                    .chunks_exact(2)
                    .map(|g| 1.0 + g[0] as f64 + g[1] as f64 / 2.0),
            );
        }
        Ok(ranks)
    }

    /// The `top` best candidates of `k` for each query by `kind` (best first,
    /// ties to the lower index), `top` ≤ 32; scores never leave the device.
    pub fn top_k(
        &self,
        kind: Score,
        q: &[f32],
        k: &[f32],
        d: usize,
        top: usize,
    ) -> Result<Vec<Vec<(u32, f32)>>> {
        const NONE: u32 = u32::MAX;
        if top == 0 || top > 32 {
            return Err(EngineError::Config(
                "GPU top-k takes 1..=32 results per query".into(),
            ));
        }
        let (c, m) = (q.len() / d, k.len() / d);
        let (c_piece, m_piece) = self.pieces(c, m, d);
        let storage = wgpu::BufferUsages::STORAGE;
        let mut out = Vec::with_capacity(c);
        for c0 in (0..c).step_by(c_piece) {
            let cq = c_piece.min(c - c0);
            let qb = self.buffer(
                "queries",
                bytemuck::cast_slice(&q[c0 * d..(c0 + cq) * d]),
                storage,
            );
            let rw = storage | wgpu::BufferUsages::COPY_SRC;
            let best_s = self.buffer("best scores", &vec![0u8; 4 * cq * top], rw);
            let best_i = self.buffer("best ids", bytemuck::cast_slice(&vec![NONE; cq * top]), rw);
            let mut enc = self.device.create_command_encoder(&Default::default());
            let mut params = Vec::new();
            let keep = self.score_then(
                &mut enc,
                kind,
                &qb,
                cq,
                k,
                d,
                m_piece,
                &self.topk,
                &mut |m0, mk, sb| {
                    let words = [cq as u32, mk as u32, top as u32, m0 as u32];
                    let tp = self.buffer(
                        "top-k params",
                        bytemuck::cast_slice(&words),
                        wgpu::BufferUsages::UNIFORM,
                    );
                    let bind = self.bind(&self.topk, &[&tp, sb, &best_s, &best_i]);
                    params.push(tp);
                    bind
                },
            );
            let back = self.read_back(enc, &[(&best_s, cq * top), (&best_i, cq * top)])?;
            drop((keep, params));
            for i in 0..cq {
                out.push(
                    (0..top)
                        .map(|t| (back[1][i * top + t], f32::from_bits(back[0][i * top + t])))
                        .filter(|&(id, _)| id != NONE)
                        .collect(),
                );
            }
        }
        Ok(out)
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct ScoreParams {
    pub(super) c: u32,
    pub(super) m: u32,
    pub(super) d: u32,
    pub(super) kind: u32,
}
