//! The GPU bucket step: a bucket's chunks as batched sides on one device
//! table (`crate::gpu`).

use super::*;

/// One bucket with the WGSL training step: the chunks and negatives are
/// drawn as the CPU trainer draws them, each chunk gives two sides (tails
/// and heads), and sides of the same shape go to the GPU in batches of
/// `gpu_chunks` chunks (with 1, a step is exactly the CPU's chunk update,
/// and with one CPU thread the negatives are the same too). The bucket's partitions are concatenated into one table
/// for the steps and split back afterwards.
#[allow(clippy::too_many_arguments)]
pub(super) fn train_bucket_gpu(
    gpu: &GpuContext,
    parts: &mut [(PartId, &mut Part)],
    foreign: &mut [Foreign],
    (relations, relation_state): (&mut [f32], &mut [f32]),
    part_size: &[u32],
    cfg: &TrainConfig,
    buckets: &Buckets,
    ends: &[(u32, u32)],
    visit: &Visit,
    rng: &mut Xoshiro256PlusPlus,
) -> Result<f64> {
    let d = cfg.dim;
    let (i, j) = visit.bucket;
    let edges = buckets.bucket(i, j);
    let (order, chunks) = (&visit.order, &visit.chunks);
    // Negatives from the stream the CPU trainer's first thread uses.
    let rng = &mut Xoshiro256PlusPlus::seed_from_u64(rng.next_u64());
    let sides_per_step = 2 * cfg.gpu_chunks.max(1);
    // Where each partition's rows, then each type's pooled rows, start in
    // the concatenated table.
    let mut part_base: HashMap<PartId, u32> = HashMap::default();
    let (mut table, mut state) = (Vec::new(), Vec::new());
    for (id, part) in parts.iter() {
        part_base.insert(*id, state.len() as u32);
        table.extend_from_slice(&part.table);
        state.extend_from_slice(&part.state);
    }
    let mut pool_base: HashMap<u32, u32> = HashMap::default();
    for f in foreign.iter() {
        pool_base.insert(f.t, state.len() as u32);
        for pool in &f.pools {
            table.extend_from_slice(pool.rows());
            state.extend_from_slice(pool.state());
        }
    }
    let row = |r: Row| match r {
        Row::Node { ty, id } => {
            let part = id / part_size[ty as usize];
            part_base
                .get(&PartId { ty, part })
                .map(|b| b + (id - part * part_size[ty as usize]))
        }
        Row::Pooled { ty, slot } => pool_base.get(&ty).map(|b| b + slot),
    };
    let share = |t: u32| {
        foreign
            .iter()
            .find(|f| f.t == t)
            .map_or((0, 0), |f| (f.total, f.len()))
    };
    let forward = relations.len() / d / (1 + usize::from(cfg.reciprocal));
    let mut pending: HashMap<(usize, usize), StepBatch> = HashMap::default();
    // The bucket's rows stay on the device for all its steps.
    let mut resident = gpu.upload(
        d,
        &StepTables {
            nodes: &mut table,
            node_state: &mut state,
            relations,
            relation_state,
        },
    )?;
    for range in chunks {
        let idx = &order[range.clone()];
        let rel = edges[idx[0] as usize].rel;
        let (src_t, dst_t) = ends[rel as usize];
        let c = idx.len();
        for side in Corrupt::BOTH {
            let (q_t, k_t) = side.types((src_t, dst_t));
            let ends_of = |e: u32| side.types((edges[e as usize].src, edges[e as usize].dst));
            let mut kn: Vec<u32> = Vec::new();
            let mut missing = false;
            let mut push = |kn: &mut Vec<u32>, r: Row| match row(r) {
                Some(r) => kn.push(r),
                None => missing = true,
            };
            let node = |ty: u32, id: u32| Row::Node { ty, id };
            for &e in idx {
                push(&mut kn, node(k_t, ends_of(e).1));
            }
            if cfg.self_negatives && q_t == k_t {
                for &e in idx {
                    push(&mut kn, node(q_t, ends_of(e).0));
                }
            }
            let pool = negative_pool(buckets, &visit.needed, k_t);
            for _ in 0..cfg.uniform_negatives {
                push(&mut kn, draw(k_t, &pool, share(k_t), rng));
            }
            let mut qn = Vec::with_capacity(c);
            for &e in idx {
                push(&mut qn, node(q_t, ends_of(e).0));
            }
            if missing {
                return Err(EngineError::Internal(format!(
                    "bucket ({i}, {j}) needs a partition that is not resident"
                )));
            }
            let Query {
                relation: qr,
                sign: sgn,
            } = side.query(cfg, rel, forward as u32);
            let m = kn.len();
            let batch = pending.entry((c, m)).or_insert_with(|| StepBatch {
                sides: 0,
                c,
                m,
                qn: Vec::new(),
                qr: Vec::new(),
                sgn: Vec::new(),
                w: Vec::new(),
                kn: Vec::new(),
            });
            batch.sides += 1;
            batch.qn.extend(qn);
            batch.qr.extend(std::iter::repeat_n(qr, c));
            batch.sgn.extend(std::iter::repeat_n(sgn, c));
            batch.w.extend(
                idx.iter()
                    .map(|&e| visit.weights.get(e as usize).copied().unwrap_or(1.0)),
            );
            batch.kn.extend(kn);
            if batch.sides == sides_per_step {
                if let Some(full) = pending.remove(&(c, m)) {
                    gpu.step(cfg, &mut resident, &full)?;
                }
            }
        }
    }
    let mut rest: Vec<((usize, usize), StepBatch)> = pending.into_iter().collect();
    rest.sort_by_key(|(k, _)| *k);
    for (_, batch) in rest {
        gpu.step(cfg, &mut resident, &batch)?;
    }
    let loss = gpu.download(
        resident,
        &mut StepTables {
            nodes: &mut table,
            node_state: &mut state,
            relations,
            relation_state,
        },
    )?;
    let (mut at, mut st) = (0, 0);
    let tables = parts
        .iter_mut()
        .map(|(_, part)| (&mut part.table[..], &mut part.state[..]))
        .chain(foreign.iter_mut().flat_map(|f| {
            f.pools.iter_mut().map(|pool| {
                let (_, rows, states) = pool.split_mut();
                (rows, states)
            })
        }));
    for (t, s) in tables {
        let (n, w) = (t.len(), s.len());
        t.copy_from_slice(&table[at..at + n]);
        s.copy_from_slice(&state[st..st + w]);
        (at, st) = (at + n, st + w);
    }
    Ok(loss)
}

/// Refuses settings only the CPU backend implements.
pub(super) fn gpu_supports(cfg: &TrainConfig) -> Result<()> {
    if cfg.drift_penalty > 0.0 {
        return Err(EngineError::Config(
            "drift_penalty is applied by the CPU backend only: train with --device cpu".into(),
        ));
    }
    if cfg.optimizer == Optimizer::Adam {
        return Err(EngineError::Config(
            "the adam optimizer runs on the CPU backend only: train with --device cpu or use adagrad".into(),
        ));
    }
    if cfg.corrupt == crate::Sides::Either {
        return Err(EngineError::Config(
            "corrupt = \"either\" runs on the CPU backend only: train with --device cpu".into(),
        ));
    }
    if cfg.mix_relations {
        return Err(EngineError::Config(
            "mix_relations runs on the CPU backend only: train with --device cpu".into(),
        ));
    }
    Ok(())
}
