//! What is in memory during a run: resident partitions (loaded, initialised,
//! evicted under the budget), the pools of the other partitions' rows, and
//! the estimate of a run's working memory that refuses settings beyond it.

use super::*;

/// A resident partition of a node type's table and its optimizer state.
pub(super) struct Part {
    pub(super) table: Vec<f32>,
    pub(super) state: Vec<f32>,
    pub(super) last_used: usize,
}

/// One resident partition as the training threads see it.
pub(super) struct PartView<'a> {
    pub(super) t: u32,
    pub(super) p: u32,
    pub(super) start: u32,
    pub(super) table: &'a [AtomicU32],
    pub(super) state: &'a [AtomicU32],
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
    needed: &[(u32, u32)],
    pools: &'a mut HashMap<(u32, u32), Pool>,
) -> Vec<Foreign<'a>> {
    let mut mine: Vec<(&(u32, u32), &mut Pool)> = pools
        .iter_mut()
        .filter(|(&(t, q), pool)| {
            pool.len() > 0 && !needed.contains(&(t, q)) && needed.iter().any(|&(ty, _)| ty == t)
        })
        .collect();
    mine.sort_unstable_by_key(|(k, _)| **k);
    let mut out: Vec<Foreign> = Vec::new();
    for (&(t, q), pool) in mine {
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
    (t, p): (u32, u32),
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

/// Drops least recently used partitions that this bucket does not need until
/// the resident set and `incoming` bytes fit the budget (0: no limit). Every
/// partition was saved after the bucket that last changed it, so dropping
/// loses nothing.
pub(super) fn evict(
    resident: &mut [Option<Part>],
    p: u32,
    budget_mib: usize,
    needed: &[(u32, u32)],
    incoming: usize,
) {
    if budget_mib == 0 {
        return;
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
            .filter(|(idx, slot)| {
                slot.is_some() && !needed.contains(&((idx / p as usize) as u32, (idx % p as usize) as u32))
            })
            .min_by_key(|(_, slot)| slot.as_ref().map_or(usize::MAX, |x| x.last_used))
            .map(|(idx, _)| idx);
        match victim {
            Some(idx) => resident[idx] = None,
            None => return,
        }
    }
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
pub(super) fn physical_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
