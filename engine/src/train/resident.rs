//! What is in memory during a run: resident partitions (loaded, initialised,
//! evicted under the budget), the pools of the other partitions' rows, and
//! the estimate of a run's working memory that refuses settings beyond it.

use super::*;

/// A resident partition of a node type's table and its optimizer state.
pub(super) struct Part {
    pub(super) table: Vec<f32>,
    pub(super) state: Vec<f32>,
    pub(super) last_used: usize,
    /// Changed since the last checkpoint.
    pub(super) dirty: bool,
    /// Every row was inside the max-norm ball when loaded (and so still is).
    pub(super) in_ball: bool,
}

/// One resident partition as the training threads see it.
pub(super) struct PartView<'a> {
    pub(super) t: u32,
    pub(super) p: u32,
    pub(super) start: u32,
    pub(super) table: &'a [AtomicU32],
    pub(super) state: &'a [AtomicU32],
    pub(super) in_ball: bool,
}

/// The pools of the partitions of node type `t` that a bucket does not hold,
/// trained in place as its negatives (`TrainConfig::foreign_sample`); their
/// rows, in partition order, are the bucket's foreign slots.
pub(super) struct Foreign<'a> {
    pub(super) t: u32,
    /// Rows of the partitions pooled.
    pub(super) total: u32,
    pub(super) pools: Vec<&'a mut Pool>,
}

impl Foreign<'_> {
    /// Foreign slots.
    pub(super) fn len(&self) -> u32 {
        self.pools.iter().map(|p| p.len() as u32).sum()
    }
}

/// One pool as the training threads see it: its first slot, node ids (their
/// bits), rows and states.
pub(super) type PoolView<'a> = (u32, &'a [f32], &'a [AtomicU32], &'a [AtomicU32]);

/// A type's foreign slots as the training threads see them.
pub(super) struct ForeignView<'a> {
    pub(super) t: u32,
    pub(super) total: u32,
    pub(super) len: u32,
    pub(super) pools: Vec<PoolView<'a>>,
}

impl ForeignView<'_> {
    /// (node id, row, state) of slot `x`.
    pub(super) fn slot(&self, x: u32, d: usize, width: usize) -> Option<(u32, &[AtomicU32], &[AtomicU32])> {
        let &(start, ids, rows, states) = self.pools.iter().rev().find(|(start, ..)| *start <= x)?;
        let r = (x - start) as usize;
        Some((
            ids.get(r)?.to_bits(),
            rows.get(r * d..(r + 1) * d)?,
            states.get(r * width..(r + 1) * width)?,
        ))
    }
}

/// The foreign rows of a bucket: for every node type it trains, the pools of
/// the partitions of that type it does not hold, in partition order.
pub(super) fn foreign_pools<'a>(
    settings: &Settings,
    needed: &[PartId],
    pools: &'a mut HashMap<PartId, Pool>,
) -> Vec<Foreign<'a>> {
    let mut mine: Vec<(&PartId, &mut Pool)> = pools
        .iter_mut()
        .filter(|(id, pool)| pool.len() > 0 && !needed.contains(id) && needed.iter().any(|n| n.ty == id.ty))
        .collect();
    mine.sort_unstable_by_key(|(k, _)| **k);
    let mut out: Vec<Foreign> = Vec::new();
    for (&PartId { ty: t, part: q }, pool) in mine {
        let rows = settings.part_range(t as usize, q).len() as u32;
        match out.last_mut() {
            Some(f) if f.t == t => {
                f.total += rows;
                f.pools.push(pool);
            }
            _ => out.push(Foreign {
                t,
                total: rows,
                pools: vec![pool],
            }),
        }
    }
    out
}

/// Refills `pool` with `size` rows drawn from a resident partition holding
/// nodes `range` (with replacement, each kept once; the whole partition if
/// it is no larger).
pub(super) fn fill_pool(
    pool: &mut Pool,
    part: &Part,
    range: Range<u32>,
    size: usize,
    rng: &mut Xoshiro256PlusPlus,
) {
    let n = range.len() as u32;
    let mut rows: Vec<u32> = match size >= n as usize {
        true => (0..n).collect(),
        false => (0..size).map(|_| below(rng, n)).collect(),
    };
    rows.sort_unstable();
    rows.dedup();
    pool.clear();
    let (d, width) = (pool.dim(), pool.width());
    for r in rows {
        let r = r as usize;
        pool.push(
            range.start + r as u32,
            &part.table[r * d..(r + 1) * d],
            &part.state[r * width..(r + 1) * width],
        );
    }
}

/// Starting rows of node type `t`'s rows `range`: the warm-start model's
/// where it has them, else inferred from neighbours there, else random.
pub(super) fn first_rows(
    cfg: &TrainConfig,
    prev: Option<&Model>,
    snap: &Snapshot,
    PartId { ty: t, part: p }: PartId,
    range: Range<u32>,
) -> Vec<f32> {
    let mut rows = init_rows(cfg, part_seed(cfg, Some((t as usize, p))), range.len());
    if let Some(m) = prev {
        let d = cfg.dim;
        for (i, id) in range.enumerate() {
            let row = &mut rows[i * d..(i + 1) * d];
            if id < m.rows(t) {
                row.copy_from_slice(m.node(t, id));
            } else if let Some(x) = m.infer(snap, t, id) {
                row.copy_from_slice(&x);
            }
        }
    }
    rows
}

/// The optimizer state partition `id` (rows `range`) starts from: a
/// refresh's old state for the rows the old model had, zeros otherwise.
pub(super) fn first_state(ctx: &RunCtx<'_>, id: PartId, range: Range<u32>) -> Vec<f32> {
    let w = ctx.width;
    let mut state = vec![0.0; range.len() * w];
    if let Some(old) = ctx.old_state.as_ref().and_then(|o| o.nodes.get(id.ty as usize)) {
        let (start, have) = (range.start as usize * w, (old.len() / w.max(1)) as u32);
        let end = range.end.min(have).max(range.start) as usize * w;
        state[..end - start].copy_from_slice(&old[start..end]);
    }
    state
}

fn range_of(ctx: &RunCtx<'_>, id: PartId) -> Range<u32> {
    ctx.settings.part_range(id.ty as usize, id.part)
}

/// A copy of `values` in memory that the kernel is asked to back with 2 MiB
/// pages (Linux's transparent huge pages; a hint, which changes no value).
/// Training reads rows at random all over a partition: with 4 KiB pages
/// nearly every row read misses the TLB and walks the page tables (the
/// FB15k-237 config's epoch at d = 600: 6.0–6.3 s with huge pages, 6.5–6.9 s
/// without).
fn huge_pages(values: &[f32]) -> Vec<f32> {
    let mut v = Vec::with_capacity(values.len());
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_ptr() as usize;
        let (first, end) = (
            start.next_multiple_of(HUGE),
            (start + 4 * values.len()) / HUGE * HUGE,
        );
        if first < end {
            // SAFETY: [first, end) lies inside the vector's allocation, which
            // nothing else refers to; MADV_HUGEPAGE only changes how the
            // kernel backs those pages, never their contents. Failure (an
            // old kernel, THP off) leaves 4 KiB pages, so it is ignored.
            #[allow(unsafe_code)]
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE)
            };
        }
    }
    v.extend_from_slice(values);
    v
}

/// Takes out least recently used partitions that this bucket does not need
/// until the resident set and `incoming` bytes fit the budget (0: no limit);
/// returns them (a dirty one must be staged: see [`make_resident`]).
pub(super) fn evict(
    resident: &mut [Option<Part>],
    p: u32,
    budget_mib: usize,
    needed: &[PartId],
    incoming: usize,
) -> Vec<(PartId, Part)> {
    let mut out = Vec::new();
    if budget_mib == 0 {
        return out;
    }
    let bytes = |r: &[Option<Part>]| -> usize {
        r.iter()
            .flatten()
            .map(|x| 4 * (x.table.len() + x.state.len()))
            .sum()
    };
    while bytes(resident) + incoming > budget_mib << 20 {
        let victim = resident
            .iter()
            .enumerate()
            .filter(|(idx, slot)| slot.is_some() && !needed.contains(&PartId::of_slot(*idx, p)))
            .min_by_key(|(_, slot)| slot.as_ref().map_or(usize::MAX, |x| x.last_used))
            .map(|(idx, _)| idx);
        match victim.and_then(|idx| Some((PartId::of_slot(idx, p), resident[idx].take()?))) {
            Some(gone) => out.push(gone),
            None => return out,
        }
    }
    out
}

/// Refuses settings whose working memory (the resident tables and each
/// thread's chunk buffers, estimated from the settings and the graph's node
/// counts) exceeds this machine's physical memory, or whose per-thread
/// buffers alone exceed the memory budget; the message gives the estimate.
pub(super) fn check_memory(cfg: &TrainConfig, node_counts: &[u32], threads: usize) -> Result<()> {
    const MIB: u128 = 1 << 20;
    let (d, width) = (cfg.dim as u128, cfg.optimizer.state_width(cfg.dim) as u128);
    let rows: u128 = node_counts.iter().map(|&n| n as u128).sum();
    // At P > 1 two partitions of each type are resident, plus what the budget keeps.
    let resident = match cfg.partitions {
        1 => rows,
        p => (2 * rows).div_ceil(p as u128),
    };
    let tables = resident * (d + width) * 4 + cfg.memory_budget_mib as u128 * MIB;
    // Per side: the chunk's answers, its self-negatives and the uniform negatives.
    let (chunk, candidates) = (
        cfg.chunk_size as u128,
        2 * cfg.chunk_size as u128 + cfg.uniform_negatives as u128,
    );
    let per_thread = 2 * 4 * (2 * chunk * candidates + 2 * candidates * d + 2 * chunk * d);
    let work = per_thread * threads as u128;
    let mib = |b: u128| b.div_ceil(MIB);
    if cfg.memory_budget_mib > 0 && work > cfg.memory_budget_mib as u128 * MIB {
        return Err(EngineError::Config(format!(
            "chunk_size {}, uniform_negatives {}, dim {d} and {threads} threads need about {} MiB of chunk buffers, more than memory_budget_mib {}",
            cfg.chunk_size,
            cfg.uniform_negatives,
            mib(work),
            cfg.memory_budget_mib
        )));
    }
    if let Some(physical) = physical_memory() {
        if tables + work > physical as u128 {
            return Err(EngineError::Config(format!(
                "training would need about {} MiB ({} MiB of tables, {} MiB of chunk buffers for {threads} threads at chunk_size {}, uniform_negatives {}, dim {d}); this machine has {} MiB",
                mib(tables + work),
                mib(tables),
                mib(work),
                cfg.chunk_size,
                cfg.uniform_negatives,
                mib(physical as u128)
            )));
        }
    }
    Ok(())
}

/// Bytes of physical memory, where the system says.
pub(crate) fn physical_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Partitions staged since the last checkpoint ([`Database::stage_model_part`]);
/// a run that ends without taking them into a checkpoint (an error, a
/// panic) deletes their files.
pub(super) struct Staged<'a> {
    db: &'a Database,
    pub(super) parts: HashMap<PartId, StagedPart>,
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        for (_, s) in self.parts.drain() {
            self.db.discard_staged(s);
        }
    }
}

/// What a run holds between buckets. A checkpoint ([`checkpoint`]) saves
/// all that changed since the last one at once with the position: the dirty
/// resident partitions, the staged ones, the relation vectors and the pools
/// that changed. [`load_state`] rebuilds it from those parts, which is why a
/// resumed run continues exactly (from the last checkpoint).
pub(super) struct RunState<'a> {
    pub(super) relations: Vec<f32>,
    pub(super) relation_state: Vec<f32>,
    /// Resident partitions, by `t * P + q`.
    pub(super) resident: Vec<Option<Part>>,
    /// Dirty partitions evicted since the last checkpoint, written but not
    /// yet a part of the model.
    pub(super) staged: Staged<'a>,
    /// Every trained partition's pool, by (node type, partition).
    pub(super) pools: HashMap<PartId, Pool>,
    /// Node types whose pools changed since the last checkpoint.
    pub(super) dirty_pools: Vec<u32>,
    /// Bucket visits so far (eviction drops the least recently used).
    pub(super) clock: usize,
}

/// The stored relation vectors and pools (or the warm start's vectors, or
/// zeros), and no partition resident yet.
pub(super) fn load_state<'a>(ctx: &RunCtx<'a>) -> Result<RunState<'a>> {
    let cfg = ctx.cfg();
    let (d, p, width) = (cfg.dim, cfg.partitions, ctx.width);
    let rows = ctx.settings.relation_rows();
    let (relations, relation_state) = match ctx.db.model_part(ctx.name, RELATIONS_KEY)? {
        Some(part) if part.array(0).len() == rows * d && part.array(1).len() == rows * width => {
            (part.array(0).to_vec(), part.array(1).to_vec())
        }
        Some(_) => return Err(ctx.wrong_size(RELATIONS_KEY)),
        None => (
            match ctx.prev {
                Some(m) if m.relations.len() == rows * d => m.relations.clone(),
                _ => vec![0.0; rows * d],
            },
            (ctx.old_state.as_ref())
                .map(|o| o.relations.clone())
                .filter(|s| s.len() == rows * width)
                .unwrap_or_else(|| vec![0.0; rows * width]),
        ),
    };
    let types = ctx.settings.node_counts.len();
    let mut pools: HashMap<PartId, Pool> = HashMap::default();
    for t in 0..types {
        for (q, pool) in (0..p).zip(load_pools(ctx.db, ctx.name, t, p, (d, width))?) {
            if let Some(pool) = pool {
                pools.insert(
                    PartId {
                        ty: t as u32,
                        part: q,
                    },
                    pool,
                );
            }
        }
    }
    Ok(RunState {
        relations,
        relation_state,
        resident: (0..types * p as usize).map(|_| None).collect(),
        staged: Staged {
            db: ctx.db,
            parts: HashMap::default(),
        },
        pools,
        dirty_pools: Vec::new(),
        clock: 0,
    })
}

/// Makes the `needed` partitions resident: room first (so the budget holds
/// at every moment), then each loaded from its part or initialised, with
/// its pool's newer rows written back. Returns how many were brought in.
pub(super) fn make_resident(ctx: &RunCtx<'_>, state: &mut RunState<'_>, needed: &[PartId]) -> Result<u64> {
    let cfg = ctx.cfg();
    let (d, p, width) = (cfg.dim, cfg.partitions, ctx.width);
    state.clock += 1;
    let incoming: usize = needed
        .iter()
        .filter(|id| state.resident[id.slot(p)].is_none())
        .map(|id| 4 * ctx.settings.part_range(id.ty as usize, id.part).len() * (d + width))
        .sum();
    for (id, part) in evict(&mut state.resident, p, cfg.memory_budget_mib, needed, incoming) {
        if part.dirty {
            let staged = ctx.db.stage_model_part(&[&part.table, &part.state])?;
            if let Some(old) = state.staged.parts.insert(id, staged) {
                ctx.db.discard_staged(old);
            }
        }
    }
    let mut loads = 0;
    for &id in needed {
        let PartId { ty: t, part: q } = id;
        let slot = &mut state.resident[id.slot(p)];
        let fresh = slot.is_none();
        if fresh {
            loads += 1;
            let range = ctx.settings.part_range(t as usize, q);
            let rows = range.len();
            let key = id.key();
            // A staged copy is newer than the model's part.
            let staged = state.staged.parts.remove(&id);
            let stored = match &staged {
                Some(s) => Some(ctx.db.staged_part(s)?),
                None => ctx.db.model_part(ctx.name, &key)?,
            };
            *slot = Some(match stored {
                Some(part) if part.array(0).len() == rows * d && part.array(1).len() == rows * width => {
                    Part {
                        table: huge_pages(part.array(0)),
                        state: huge_pages(part.array(1)),
                        last_used: state.clock,
                        dirty: staged.is_some(),
                        in_ball: false,
                    }
                }
                Some(_) => return Err(ctx.wrong_size(&key)),
                None => Part {
                    table: huge_pages(&first_rows(cfg, ctx.prev, &ctx.snap, id, range)),
                    state: huge_pages(&first_state(ctx, id, range_of(ctx, id))),
                    last_used: state.clock,
                    dirty: true,
                    in_ball: false,
                },
            });
            if let Some(s) = staged {
                ctx.db.discard_staged(s);
            }
        }
        if let Some(part) = slot {
            part.last_used = state.clock;
            // Its pool's rows may have moved since it was saved.
            if let Some(pool) = state.pools.get(&id) {
                let start = q * ctx.part_size[t as usize];
                for (id, row, st) in pool.iter() {
                    let r = (id - start) as usize;
                    part.table[r * d..(r + 1) * d].copy_from_slice(row);
                    part.state[r * width..(r + 1) * width].copy_from_slice(st);
                }
            }
            // A partition loaded inside the max-norm ball stays inside: every
            // step projects the row it writes.
            if fresh {
                part.in_ball = part.table.chunks_exact(d).all(|row| !outside_ball(cfg, row));
            }
        }
    }
    Ok(loads)
}

/// The bucket's partitions get fresh pools (seeded by the epoch and visit).
pub(super) fn refresh_pools(
    ctx: &RunCtx<'_>,
    state: &mut RunState<'_>,
    needed: &[PartId],
    (epoch, b): (usize, usize),
) {
    let cfg = ctx.cfg();
    let (d, p) = (cfg.dim, cfg.partitions);
    if cfg.foreign_sample == 0 || p == 1 {
        return;
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(
        cfg.seed
            ^ 0x3c6e_f372_fe94_f82b
            ^ ((epoch as u64) << 32 | b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    for &id in needed {
        if let Some(part) = &state.resident[id.slot(p)] {
            let range = ctx.settings.part_range(id.ty as usize, id.part);
            let size = cfg.foreign_sample.div_ceil(p as usize);
            let pool = state.pools.entry(id).or_insert_with(|| Pool::new(d, ctx.width));
            fill_pool(pool, part, range, size, &mut rng);
            state.dirty_pools.push(id.ty);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::huge_pages;

    /// The huge-page copy holds exactly the values given, for sizes below,
    /// at and across the 2 MiB boundaries the hint is aligned to.
    #[test]
    fn huge_pages_copy_exactly() {
        for n in [0, 1, 1000, (2 << 20) / 4, 3 * (1 << 20) + 7] {
            let values: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 1.0).collect();
            assert_eq!(huge_pages(&values), values, "{n} floats");
        }
    }
}
