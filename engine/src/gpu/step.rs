//! The training step on the device: tables uploaded once per bucket, queued
//! steps (`shaders/train.wgsl`), and the tables read back.

use super::*;

impl GpuContext {
    /// One training step on the GPU (`shaders/train.wgsl`): scores, loss and
    /// gradients of every side of `batch`, then one optimizer step per touched
    /// row, summing its contributions in a fixed order (deterministic, no
    /// float atomics). Returns the batch's loss. The tables go up and come
    /// back for this one step; a trainer uses [`GpuContext::upload`],
    /// [`GpuContext::step`] and [`GpuContext::download`] to keep them resident.
    pub fn train_step(
        &self,
        cfg: &crate::TrainConfig,
        mut t: StepTables<'_>,
        batch: &StepBatch,
    ) -> Result<f64> {
        let mut tables = self.upload(cfg.dim, &t)?;
        self.step(cfg, &mut tables, batch)?;
        self.download(tables, &mut t)
    }

    /// Puts a bucket's tables on the device for a run of [`GpuContext::step`]s.
    pub fn upload(&self, d: usize, t: &StepTables<'_>) -> Result<GpuTables> {
        if d > 1024 || d == 0 {
            return Err(EngineError::Config(
                "the GPU step handles dimensions 1..=1024".into(),
            ));
        }
        let (node_rows, rel_rows) = (t.nodes.len() / d, t.relations.len() / d);
        if t.node_state.len() != node_rows || t.relation_state.len() != rel_rows {
            return Err(EngineError::Internal(
                "tables and optimizer state disagree".into(),
            ));
        }
        if (4 * t.nodes.len()) as u64 > self.max_binding {
            return Err(EngineError::Gpu(format!(
                "the resident rows ({} bytes) exceed the device's binding limit ({} bytes); use more partitions",
                4 * t.nodes.len(),
                self.max_binding
            )));
        }
        let mut state = t.node_state.to_vec();
        state.extend_from_slice(t.relation_state);
        let rw = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
        let init = |label: &str, data: &[f32]| self.buffer(label, bytemuck::cast_slice(data), rw);
        Ok(GpuTables {
            d,
            node_rows,
            rel_rows,
            nodes: init("nodes", t.nodes),
            relations: init("relations", t.relations),
            state: init("state", &state),
            scratch: Vec::new(),
            losses: Vec::new(),
        })
    }

    /// Queues one training step on resident tables (see [`GpuContext::train_step`]).
    pub fn step(&self, cfg: &crate::TrainConfig, tables: &mut GpuTables, batch: &StepBatch) -> Result<()> {
        let d = cfg.dim;
        let (b, c, m) = (batch.sides, batch.c, batch.m);
        let (node_rows, rel_rows) = (tables.node_rows, tables.rel_rows);
        let sizes_ok = d == tables.d
            && batch.qn.len() == b * c
            && batch.qr.len() == b * c
            && batch.sgn.len() == b * c
            && batch.w.len() == b * c
            && batch.kn.len() == b * m
            && c <= m;
        let in_range = batch
            .qn
            .iter()
            .chain(&batch.kn)
            .all(|&x| (x as usize) < node_rows)
            && batch.qr.iter().all(|&x| (x as usize) < rel_rows);
        if !sizes_ok || !in_range {
            return Err(EngineError::Internal("inconsistent GPU step batch".into()));
        }
        let rel_lr = cfg.relation_lr.unwrap_or(cfg.lr);
        let (csr, scale, rows) = gradient_csr(batch, rel_lr > 0.0);
        let params = StepParams {
            b: b as u32,
            c: c as u32,
            m: m as u32,
            d: d as u32,
            score: score_code(cfg.score),
            loss: match cfg.loss {
                crate::Loss::Margin => 0,
                crate::Loss::Softmax => 1,
                crate::Loss::Adversarial => 2,
            },
            batch_neg: u32::from(cfg.batch_negatives),
            rows: rows as u32,
            margin: cfg.margin,
            temperature: cfg.adversarial_temperature,
            lr: cfg.lr,
            rel_lr: cfg.relation_lr.unwrap_or(cfg.lr),
            max_norm: cfg.max_norm,
            adagrad: u32::from(cfg.optimizer == crate::Optimizer::Adagrad),
            node_rows: node_rows as u32,
            reg: cfg.regularization,
            reg_kind: match cfg.regularizer {
                crate::Regularizer::L2 => 0,
                crate::Regularizer::N3 => 1,
            },
            _pad: [0; 3],
        };
        let mut idx = batch.qn.clone();
        idx.extend(&batch.qr);
        idx.extend(&batch.kn);
        let mut sw = batch.sgn.clone();
        sw.extend(&batch.w);
        let dev = &self.device;
        let init = |label: &str, contents: &[u8], usage| self.buffer(label, contents, usage);
        // Scratch (q, s, g, dq, dk) is reused across steps while it is large enough.
        let need = [b * c * d, b * c * m, b * c * m, b * c * d, b * m * d];
        if tables.scratch.len() != 5
            || tables
                .scratch
                .iter()
                .zip(need)
                .any(|(buf, n)| buf.size() < (4 * n.max(1)) as u64)
        {
            tables.scratch = ["q", "s", "g", "dq", "dk"]
                .iter()
                .zip(need)
                .map(|(label, n)| {
                    dev.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(label),
                        size: (4 * n.max(1)) as u64,
                        usage: wgpu::BufferUsages::STORAGE,
                        mapped_at_creation: false,
                    })
                })
                .collect();
        }
        for (what, buf) in ["q", "s", "g", "dq", "dk"].iter().zip(&tables.scratch) {
            if buf.size() > self.max_binding {
                return Err(EngineError::Gpu(format!(
                    "the {what} buffer ({} bytes) exceeds the device's binding limit ({} bytes); use fewer gpu_chunks",
                    buf.size(),
                    self.max_binding
                )));
            }
        }
        let loss = init(
            "loss",
            &vec![0u8; 4 * b * c],
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        let own = [
            init("params", bytemuck::bytes_of(&params), wgpu::BufferUsages::UNIFORM),
            init("indices", bytemuck::cast_slice(&idx), wgpu::BufferUsages::STORAGE),
            init(
                "signs and weights",
                bytemuck::cast_slice(&sw),
                wgpu::BufferUsages::STORAGE,
            ),
            init("csr", bytemuck::cast_slice(&csr), wgpu::BufferUsages::STORAGE),
            init(
                "csr scale",
                bytemuck::cast_slice(&scale),
                wgpu::BufferUsages::STORAGE,
            ),
        ];
        let sc = &tables.scratch;
        // In `TRAIN_BINDINGS` order: buffer i is binding i.
        let bufs: [&wgpu::Buffer; TRAIN_BINDINGS.len()] = [
            &own[0],
            &tables.nodes,
            &tables.relations,
            &own[1],
            &own[2],
            &sc[0],
            &sc[1],
            &sc[2],
            &sc[3],
            &sc[4],
            &own[3],
            &own[4],
            &tables.state,
            &loss,
        ];
        // Flat 1-D dispatches of `n` invocations in groups of 64, spilling into y.
        let flat = |n: usize| {
            let groups = n.div_ceil(64).max(1) as u32;
            (groups.min(65535), groups.div_ceil(65535), 1)
        };
        let grids = [
            flat(b * c * d),
            (m.div_ceil(16) as u32, c.div_ceil(16) as u32, b as u32),
            flat(b * c),
            flat(b * c * d),
            flat(b * m * d),
            ((rows as u32).min(65535), (rows as u32).div_ceil(65535), 1),
        ];
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("train step"),
        });
        for (stage, (pipe, grid)) in self.train.iter().zip(grids).enumerate() {
            let layout = pipe.get_bind_group_layout(0);
            // Bind what this entry point uses: auto layouts hold only those.
            let entries: Vec<wgpu::BindGroupEntry> = (0..bufs.len() as u32)
                .filter(|&i| binding_used(TRAIN_STAGES[stage], i))
                .map(|i| wgpu::BindGroupEntry {
                    binding: i,
                    resource: bufs[i as usize].as_entire_binding(),
                })
                .collect();
            let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("train step"),
                layout: &layout,
                entries: &entries,
            });
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("train step"),
                timestamp_writes: None,
            });
            pass.set_pipeline(pipe);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(grid.0, grid.1, grid.2);
        }
        self.queue.submit([enc.finish()]);
        tables.losses.push((loss, b * c));
        Ok(())
    }

    /// Waits for the queued steps, copies the tables back into `t` and
    /// returns the steps' summed loss.
    pub fn download(&self, tables: GpuTables, t: &mut StepTables<'_>) -> Result<f64> {
        let enc = self.device.create_command_encoder(&Default::default());
        let n_state = tables.node_rows + tables.rel_rows;
        let mut back: Vec<(&wgpu::Buffer, usize)> = vec![
            (&tables.nodes, t.nodes.len()),
            (&tables.relations, t.relations.len()),
            (&tables.state, n_state),
        ];
        back.extend(tables.losses.iter().map(|(b, n)| (b, *n)));
        let out: Vec<Vec<f32>> = self
            .read_back(enc, &back)?
            .into_iter()
            .map(|words| words.into_iter().map(f32::from_bits).collect())
            .collect();
        t.nodes.copy_from_slice(&out[0]);
        t.relations.copy_from_slice(&out[1]);
        t.node_state.copy_from_slice(&out[2][..tables.node_rows]);
        t.relation_state.copy_from_slice(&out[2][tables.node_rows..]);
        Ok(out[3..].iter().flatten().map(|&x| x as f64).sum())
    }
}

/// `shaders/train.wgsl`'s bindings of group 0, by binding number (checked
/// against the shader by a test).
pub(super) const TRAIN_BINDINGS: [&str; 14] = [
    "p",
    "emb",
    "rel",
    "idx",
    "sw",
    "q",
    "s",
    "g",
    "dq",
    "dk",
    "csr",
    "csr_scale",
    "state",
    "loss_out",
];

/// `shaders/train.wgsl`'s `Params`, field for field (checked against the
/// shader's layout by a test).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct StepParams {
    pub(super) b: u32,
    pub(super) c: u32,
    pub(super) m: u32,
    pub(super) d: u32,
    pub(super) score: u32,
    pub(super) loss: u32,
    pub(super) batch_neg: u32,
    pub(super) rows: u32,
    pub(super) margin: f32,
    pub(super) temperature: f32,
    pub(super) lr: f32,
    pub(super) rel_lr: f32,
    pub(super) max_norm: f32,
    pub(super) adagrad: u32,
    pub(super) node_rows: u32,
    pub(super) reg: f32,
    pub(super) reg_kind: u32,
    pub(super) _pad: [u32; 3],
}

/// A batch of `sides` training sides (a chunk's queries against its
/// candidates, as the CPU trainer forms them), by row indices into the tables.
#[derive(Debug, Clone)]
pub struct StepBatch {
    /// Number of sides.
    pub sides: usize,
    /// Queries per side (the chunk's edges).
    pub c: usize,
    /// Candidates per side: the chunk's own answers first (column i is
    /// query i's positive), then negatives.
    pub m: usize,
    /// Per query: its node row.
    pub qn: Vec<u32>,
    /// Per query: its relation row.
    pub qr: Vec<u32>,
    /// Per query: how the relation enters, q = node + sgn · relation
    /// (1 tails, −1 heads for distances, 0 heads for dot).
    pub sgn: Vec<f32>,
    /// Per query: its weight (0 for padding).
    pub w: Vec<f32>,
    /// Per candidate: its node row.
    pub kn: Vec<u32>,
}

/// The rows a step trains, with their optimizer state (one value per row).
pub struct StepTables<'a> {
    /// Node rows, `rows × dim`.
    pub nodes: &'a mut [f32],
    /// Adagrad state per node row.
    pub node_state: &'a mut [f32],
    /// Relation rows, `relations × dim`.
    pub relations: &'a mut [f32],
    /// Adagrad state per relation row.
    pub relation_state: &'a mut [f32],
}

/// A bucket's rows and optimizer state on the device, with the scratch
/// buffers its steps reuse and the per-step losses not yet read back.
pub struct GpuTables {
    pub(super) d: usize,
    pub(super) node_rows: usize,
    pub(super) rel_rows: usize,
    pub(super) nodes: wgpu::Buffer,
    pub(super) relations: wgpu::Buffer,
    pub(super) state: wgpu::Buffer,
    pub(super) scratch: Vec<wgpu::Buffer>,
    pub(super) losses: Vec<(wgpu::Buffer, usize)>,
}

/// Marks a relation row (and a candidate's contribution) in the gradient CSR.
const HIGH: u32 = 0x8000_0000;

/// The host's half of a step's row update: every row the step touches, in
/// ascending order (node rows, then relation rows marked with [`HIGH`]), and
/// for each its gradient contributions in a fixed order (queries, then
/// candidates, each in list order), so that the device sums them without
/// float atomics and runs repeat bit for bit. A query contributes to its
/// node row and, when relations learn and its sign is not 0, to its relation
/// row (scaled by the sign); a candidate to its node row. Returns the CSR
/// (`targets | offsets | entries`; an entry is a query index, or `HIGH` | a
/// candidate index), each entry's scale, and the number of rows.
pub(crate) fn gradient_csr(batch: &StepBatch, relations_learn: bool) -> (Vec<u32>, Vec<f32>, usize) {
    let (b, c, m) = (batch.sides, batch.c, batch.m);
    // (target row, contribution, scale) in list order, then a stable sort by
    // target: each row's contributions keep that order.
    let mut contrib: Vec<(u32, u32, f32)> = Vec::with_capacity(2 * b * c + b * m);
    for bi in 0..b * c {
        contrib.push((batch.qn[bi], bi as u32, 1.0));
        if batch.sgn[bi] != 0.0 && relations_learn {
            contrib.push((HIGH | batch.qr[bi], bi as u32, batch.sgn[bi]));
        }
    }
    contrib.extend((0..b * m).map(|bj| (batch.kn[bj], HIGH | bj as u32, 1.0)));
    contrib.sort_by_key(|x| x.0);
    let mut csr: Vec<u32> = Vec::new();
    let (mut offs, mut entries, mut scale) = (
        vec![0u32],
        Vec::with_capacity(contrib.len()),
        Vec::with_capacity(contrib.len()),
    );
    for (n, &(target, code, sc)) in contrib.iter().enumerate() {
        if n > 0 && contrib[n - 1].0 != target {
            offs.push(entries.len() as u32);
        }
        if n == 0 || contrib[n - 1].0 != target {
            csr.push(target);
        }
        entries.push(code);
        scale.push(sc);
    }
    offs.push(entries.len() as u32);
    let rows = csr.len();
    csr.extend(&offs);
    csr.extend(&entries);
    (csr, scale, rows)
}

#[cfg(test)]
mod tests {
    //! The training step on whatever adapter exists (lavapipe in CI) against
    //! the CPU kernels; skipped with a printed reason where there is none.
    use super::*;
    use crate::{kernels, Loss, Optimizer, TrainConfig};

    /// The host's constants against the shader (naga's reflection, no GPU):
    /// the bindings by number and `Params`' field names, offsets and size.
    #[test]
    fn host_constants_match_the_training_shader() {
        let source = include_str!("../../../shaders/train.wgsl");
        let module = naga::front::wgsl::parse_str(source).unwrap();
        let mut bound: Vec<(u32, String)> = module
            .global_variables
            .iter()
            .filter_map(|(_, g)| Some((g.binding.as_ref()?.binding, g.name.clone()?)))
            .collect();
        bound.sort();
        let expected: Vec<(u32, String)> = (0..).zip(TRAIN_BINDINGS.iter().map(|n| n.to_string())).collect();
        assert_eq!(bound, expected);
        let (members, span) = module
            .types
            .iter()
            .find_map(|(_, t)| match (&t.name, &t.inner) {
                (Some(n), naga::TypeInner::Struct { members, span }) if n == "Params" => {
                    Some((members, *span))
                }
                _ => None,
            })
            .expect("train.wgsl declares struct Params");
        assert_eq!(span as usize, size_of::<StepParams>());
        let host = [
            ("b", std::mem::offset_of!(StepParams, b)),
            ("c", std::mem::offset_of!(StepParams, c)),
            ("m", std::mem::offset_of!(StepParams, m)),
            ("d", std::mem::offset_of!(StepParams, d)),
            ("score", std::mem::offset_of!(StepParams, score)),
            ("loss", std::mem::offset_of!(StepParams, loss)),
            ("batch_neg", std::mem::offset_of!(StepParams, batch_neg)),
            ("rows", std::mem::offset_of!(StepParams, rows)),
            ("margin", std::mem::offset_of!(StepParams, margin)),
            ("temperature", std::mem::offset_of!(StepParams, temperature)),
            ("lr", std::mem::offset_of!(StepParams, lr)),
            ("rel_lr", std::mem::offset_of!(StepParams, rel_lr)),
            ("max_norm", std::mem::offset_of!(StepParams, max_norm)),
            ("adagrad", std::mem::offset_of!(StepParams, adagrad)),
            ("node_rows", std::mem::offset_of!(StepParams, node_rows)),
            ("reg", std::mem::offset_of!(StepParams, reg)),
            ("reg_kind", std::mem::offset_of!(StepParams, reg_kind)),
        ];
        let shader: Vec<(&str, usize)> = members
            .iter()
            .filter_map(|m| Some((m.name.as_deref()?, m.offset as usize)))
            .filter(|(n, _)| !n.starts_with("_pad"))
            .collect();
        assert_eq!(shader, host);
    }

    /// The CSR alone, without a device: rows sorted, each row's
    /// contributions in list order, relation rows only when relations learn.
    #[test]
    fn gradient_csr_lists_each_rows_contributions_in_order() {
        // Two sides of two queries against three candidates; node 5 is a query
        // and a candidate twice; side 1 does not move its relation (sign 0).
        let batch = StepBatch {
            sides: 2,
            c: 2,
            m: 3,
            qn: vec![5, 1, 2, 5],
            qr: vec![0, 0, 1, 1],
            sgn: vec![1.0, -1.0, 0.0, 0.0],
            w: vec![1.0; 4],
            kn: vec![5, 3, 2, 5, 7, 1],
        };
        let (csr, scale, rows) = gradient_csr(&batch, true);
        let (targets, rest) = csr.split_at(rows);
        let (offsets, entries) = rest.split_at(rows + 1);
        assert_eq!(targets, [1, 2, 3, 5, 7, HIGH]);
        assert_eq!(offsets, [0, 2, 4, 5, 9, 10, 12]);
        let of = |t: u32| {
            let r = targets.iter().position(|&x| x == t).unwrap();
            &entries[offsets[r] as usize..offsets[r + 1] as usize]
        };
        assert_eq!(of(5), [0, 3, HIGH, HIGH | 3]);
        assert_eq!(of(1), [1, HIGH | 5]);
        assert_eq!(of(HIGH), [0, 1], "relation 0 from queries 0 and 1");
        assert_eq!(scale[offsets[5] as usize..], [1.0, -1.0]);
        let (frozen, _, rows) = gradient_csr(&batch, false);
        assert_eq!(
            &frozen[..rows],
            [1, 2, 3, 5, 7],
            "no relation rows when relations do not learn"
        );
    }

    use crate::kernels::tests::rand_vec;

    /// The same step with the CPU kernels: per side scores, loss, backward;
    /// then each touched row's gradients summed and one optimizer step.
    fn reference(cfg: &TrainConfig, t: StepTables<'_>, batch: &StepBatch) -> f64 {
        let d = cfg.dim;
        let (c, m) = (batch.c, batch.m);
        let mut grads: std::collections::BTreeMap<(bool, u32), Vec<f32>> = Default::default();
        let mut add = |key: (bool, u32), g: &[f32], sc: f32| {
            let e = grads.entry(key).or_insert_with(|| vec![0.0; d]);
            e.iter_mut().zip(g).for_each(|(a, b)| *a += sc * b);
        };
        let mut total = 0.0;
        for b in 0..batch.sides {
            let mut q = Vec::new();
            for i in b * c..(b + 1) * c {
                let (n, r) = (batch.qn[i] as usize, batch.qr[i] as usize);
                q.extend((0..d).map(|l| t.nodes[n * d + l] + batch.sgn[i] * t.relations[r * d + l]));
            }
            let mut k = Vec::new();
            for j in b * m..(b + 1) * m {
                k.extend_from_slice(&t.nodes[batch.kn[j] as usize * d..(batch.kn[j] as usize + 1) * d]);
            }
            let mut s = vec![0.0; c * m];
            kernels::scores(cfg.score, &q, &k, d, &mut s);
            let mut g = vec![0.0; c * m];
            total += kernels::loss(
                cfg.loss,
                cfg.margin,
                cfg.adversarial_temperature,
                &s,
                c,
                m,
                cfg.batch_negatives,
                &batch.w[b * c..(b + 1) * c],
                &mut g,
            );
            let (mut dq, mut dk) = (vec![0.0; c * d], vec![0.0; m * d]);
            kernels::backward(cfg.score, &q, &k, &s, &g, d, &mut dq, &mut dk);
            for i in 0..c {
                let gi = &dq[i * d..(i + 1) * d];
                add((false, batch.qn[b * c + i]), gi, 1.0);
                if batch.sgn[b * c + i] != 0.0 {
                    add((true, batch.qr[b * c + i]), gi, batch.sgn[b * c + i]);
                }
            }
            for j in 0..m {
                add((false, batch.kn[b * m + j]), &dk[j * d..(j + 1) * d], 1.0);
            }
        }
        for ((is_rel, r), g) in grads {
            let (rows, states) = if is_rel {
                (&mut *t.relations, &mut *t.relation_state)
            } else {
                (&mut *t.nodes, &mut *t.node_state)
            };
            let r = r as usize;
            let mut g = g;
            if !is_rel && cfg.regularization > 0.0 {
                g.iter_mut()
                    .zip(&rows[r * d..(r + 1) * d])
                    .for_each(|(gv, x)| *gv += cfg.reg_grad(*x));
            }
            states[r] += g.iter().map(|x| x * x).sum::<f32>() / d as f32;
            let scale = cfg.lr / (states[r].sqrt() + 1e-10);
            let row = &mut rows[r * d..(r + 1) * d];
            row.iter_mut().zip(&g).for_each(|(x, gv)| *x -= scale * gv);
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            if !is_rel && cfg.max_norm > 0.0 && cfg.score != Score::Dot && norm > cfg.max_norm {
                row.iter_mut().for_each(|x| *x *= cfg.max_norm / norm);
            }
        }
        total
    }

    #[test]
    fn train_step_matches_the_cpu_kernels_and_repeats_exactly() {
        let Some(gpu) = GpuContext::new(AdapterChoice::AnyIncludingSoftware).unwrap() else {
            assert!(
                std::env::var_os("QUIVER_REQUIRE_GPU").is_none(),
                "QUIVER_REQUIRE_GPU is set, but no adapter was found"
            );
            eprintln!("skipped: no GPU adapter (install mesa-vulkan-drivers for lavapipe)");
            return;
        };
        eprintln!("GPU step on {}", gpu.adapter());
        let (n_nodes, n_rels, sides, c) = (30, 3, 3, 4);
        let mut seed = 11;
        let mut cases: Vec<(Score, Loss, usize, usize)> = Vec::new();
        for score in [Score::Dot, Score::L2, Score::L1] {
            for loss in [Loss::Margin, Loss::Softmax, Loss::Adversarial] {
                cases.push((score, loss, 24, 9));
            }
        }
        // Dimensions past one workgroup's width, and more candidates than a tile.
        cases.push((Score::L2, Loss::Adversarial, 200, 37));
        cases.push((Score::Dot, Loss::Softmax, 130, 20));
        for (score, loss, d, m) in cases {
            {
                let cfg = TrainConfig {
                    dim: d,
                    score,
                    loss,
                    margin: 0.5,
                    adversarial_temperature: 0.7,
                    lr: 0.1,
                    optimizer: Optimizer::Adagrad,
                    batch_negatives: seed % 2 == 0,
                    max_norm: if score == Score::L2 { 1.0 } else { 0.0 },
                    regularization: if loss == Loss::Softmax { 0.05 } else { 0.0 },
                    regularizer: if score == Score::Dot {
                        crate::Regularizer::N3
                    } else {
                        crate::Regularizer::L2
                    },
                    ..Default::default()
                };
                let pick = |n: usize, seed: &mut u64| {
                    rand_vec(n, seed)
                        .into_iter()
                        .map(|x| ((x + 1.0) * 0.5 * n_nodes as f32) as u32 % n_nodes)
                        .collect::<Vec<u32>>()
                };
                let batch = StepBatch {
                    sides,
                    c,
                    m,
                    qn: pick(sides * c, &mut seed),
                    qr: pick(sides * c, &mut seed)
                        .into_iter()
                        .map(|r| r % n_rels)
                        .collect(),
                    sgn: (0..sides * c).map(|i| [1.0, -1.0, 0.0][i % 3]).collect(),
                    w: (0..sides * c)
                        .map(|i| if i == 5 { 0.0 } else { 1.0 + (i % 2) as f32 })
                        .collect(),
                    kn: pick(sides * m, &mut seed),
                };
                let nodes = rand_vec(n_nodes as usize * d, &mut seed);
                let rels = rand_vec(n_rels as usize * d, &mut seed);
                let state: Vec<f32> = rand_vec(n_nodes as usize, &mut seed)
                    .iter()
                    .map(|x| x.abs())
                    .collect();
                let rstate = vec![0.0; n_rels as usize];
                let run = |gpu_side: bool| {
                    let (mut nd, mut ns, mut rl, mut rs) =
                        (nodes.clone(), state.clone(), rels.clone(), rstate.clone());
                    let t = StepTables {
                        nodes: &mut nd,
                        node_state: &mut ns,
                        relations: &mut rl,
                        relation_state: &mut rs,
                    };
                    let l = if gpu_side {
                        gpu.train_step(&cfg, t, &batch).unwrap()
                    } else {
                        reference(&cfg, t, &batch)
                    };
                    (l, nd, ns, rl, rs)
                };
                let (want, got, again) = (run(false), run(true), run(true));
                let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * (1.0 + b.abs());
                assert!(
                    (got.0 - want.0).abs() <= 1e-4 * (1.0 + want.0.abs()),
                    "{score:?} {loss:?} loss {} vs {}",
                    got.0,
                    want.0
                );
                for (what, g, w) in [
                    ("nodes", &got.1, &want.1),
                    ("node state", &got.2, &want.2),
                    ("relations", &got.3, &want.3),
                    ("relation state", &got.4, &want.4),
                ] {
                    for (i, (a, b)) in g.iter().zip(w.iter()).enumerate() {
                        assert!(
                            close(*a, *b),
                            "{score:?} {loss:?} {what}[{i}]: GPU {a} vs CPU {b}"
                        );
                    }
                }
                // Deterministic: the same inputs give the same bits.
                assert_eq!(got.1, again.1);
                assert_eq!(got.3, again.3);
            }
        }
    }
}
