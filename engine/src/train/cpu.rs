//! The CPU step: a chunk's scores, loss and gradients against its candidates,
//! the optimizer step on every touched row, and Hogwild threads sharing a
//! bucket's chunks through relaxed atomics.

use super::*;

/// Views `x` as atomics for shared, lock-free updates.
pub(super) fn atomics(x: &mut [f32]) -> &[AtomicU32] {
    // SAFETY: `AtomicU32` has the same size and alignment as `u32`, hence as
    // `f32` (4 and 4), and any bit pattern is valid for both. The exclusive
    // borrow of `x` guarantees that, while the view lives, every access to
    // these floats goes through the atomics.
    #[allow(unsafe_code)]
    unsafe {
        &*(x as *mut [f32] as *const [AtomicU32])
    }
}

/// The tables a bucket trains, shared by the training threads.
pub(super) struct Params<'a> {
    pub(super) d: usize,
    /// Optimizer state floats per row.
    pub(super) width: usize,
    pub(super) part_size: &'a [u32],
    pub(super) views: Vec<PartView<'a>>,
    pub(super) foreign: Vec<ForeignView<'a>>,
    pub(super) relations: &'a [AtomicU32],
    pub(super) relation_state: &'a [AtomicU32],
    /// The warm-start model, when rows are held near it.
    pub(super) prev: Option<&'a Model>,
}

impl Params<'_> {
    /// Appends a row's values to `out` (zeros if the row is not resident,
    /// which the bucket check before training rules out).
    pub(super) fn read(&self, row: Option<&[AtomicU32]>, out: &mut Vec<f32>) {
        match row {
            Some(row) => load_row(row, out),
            None => out.extend(std::iter::repeat_n(0.0, self.d)),
        }
    }
    /// A row's values and optimizer state.
    pub(super) fn node(&self, row: Row) -> Option<(&[AtomicU32], &[AtomicU32])> {
        let (t, x) = match row {
            Row::Node { ty, id } => (ty, id),
            Row::Pooled { ty, slot } => {
                let f = self.foreign.iter().find(|f| f.t == ty)?;
                let (_, row, state) = f.slot(slot, self.d, self.width)?;
                return Some((row, state));
            }
        };
        let p = x / self.part_size[t as usize];
        let v = self.views.iter().find(|v| v.t == t && v.p == p)?;
        let r = (x - v.start) as usize;
        Some((
            v.table.get(r * self.d..(r + 1) * self.d)?,
            v.state.get(r * self.width..(r + 1) * self.width)?,
        ))
    }
    /// (node type, node id) of a row (a pooled one's node).
    pub(super) fn id(&self, row: Row) -> (u32, u32) {
        match row {
            Row::Node { ty, id } => (ty, id),
            Row::Pooled { ty, slot } => {
                let f = self.foreign.iter().find(|f| f.t == ty);
                match f.and_then(|f| f.slot(slot, self.d, self.width)) {
                    Some((id, ..)) => (ty, id),
                    None => (ty, slot),
                }
            }
        }
    }
    /// Whether every row of node type `t` that a chunk may draw is inside the
    /// max-norm ball: its resident partitions were when loaded, and it has no
    /// pooled rows (not checked; few).
    pub(super) fn in_ball(&self, t: u32) -> bool {
        self.views.iter().filter(|v| v.t == t).all(|v| v.in_ball)
            && self.foreign.iter().all(|f| f.t != t || f.len == 0)
    }
    /// (rows outside the bucket, rows sampled from them) of node type `t`.
    pub(super) fn foreign_share(&self, t: u32) -> (u32, u32) {
        self.foreign
            .iter()
            .find(|f| f.t == t)
            .map_or((0, 0), |f| (f.total, f.len))
    }
    pub(super) fn relation(&self, r: u32) -> Option<(&[AtomicU32], &[AtomicU32])> {
        let r = r as usize;
        Some((
            self.relations.get(r * self.d..(r + 1) * self.d)?,
            self.relation_state.get(r * self.width..(r + 1) * self.width)?,
        ))
    }
}

/// One side's buffers: queries, candidates, scores and their gradients.
#[derive(Default)]
pub(super) struct Side {
    pub(super) q: Vec<f32>,
    pub(super) k: Vec<f32>,
    pub(super) s: Vec<f32>,
    pub(super) g: Vec<f32>,
    pub(super) dq: Vec<f32>,
    pub(super) dk: Vec<f32>,
}

/// A thread's buffers, reused across chunks.
#[derive(Default)]
pub(super) struct Work {
    pub(super) side: Side,
    pub(super) r: Vec<f32>,
    pub(super) row: Vec<f32>,
    /// (node type, row) of each candidate.
    pub(super) rows: Vec<Row>,
    pub(super) w: Vec<f32>,
    /// (node type, row) → slot in `grads`.
    pub(super) slots: HashMap<Row, usize>,
    pub(super) grads: Vec<f32>,
    /// The relation rows the chunk's queries use, in first use order; their
    /// values (`r`) and gradients (`rel_grad`) by that position.
    pub(super) rel_rows: Vec<u32>,
    pub(super) rel_grad: Vec<f32>,
    /// Each query's position in `rel_rows`.
    pub(super) rel_of: Vec<usize>,
}

impl Work {
    /// `row`'s gradient, `d` wide (zeros when new).
    pub(super) fn slot(&mut self, row: Row, d: usize) -> &mut [f32] {
        let next = self.slots.len();
        let slot = *self.slots.entry(row).or_insert(next);
        if slot == next {
            self.grads.resize((slot + 1) * d, 0.0);
        }
        &mut self.grads[slot * d..(slot + 1) * d]
    }

    pub(super) fn grad(&mut self, row: Row, g: &[f32]) {
        for (a, b) in self.slot(row, g.len()).iter_mut().zip(g) {
            *a += b;
        }
    }

    /// Relation row `r`'s position in `rel_rows`, reading it on first use.
    fn relation(&mut self, params: &Params<'_>, r: u32) -> usize {
        if let Some(at) = self.rel_rows.iter().position(|&x| x == r) {
            return at;
        }
        self.rel_rows.push(r);
        params.read(params.relation(r).map(|(row, _)| row), &mut self.r);
        self.rel_grad.resize(self.rel_rows.len() * params.d, 0.0);
        self.rel_rows.len() - 1
    }
}

/// Trains a bucket visit's chunks on the threads of `works`; `tick(done)`
/// hears, about every [`TICK`], how many chunks are done.
#[allow(clippy::too_many_arguments)]
pub(super) fn train_bucket(
    params: &Params<'_>,
    cfg: &TrainConfig,
    buckets: &Buckets,
    ends: &[(u32, u32)],
    visit: &Visit,
    rng: &mut Xoshiro256PlusPlus,
    works: &mut [Work],
    tick: &mut dyn FnMut(usize),
) -> Result<f64> {
    let (i, j) = visit.bucket;
    let edges = buckets.bucket(i, j);
    let (order, chunks) = (&visit.order, &visit.chunks);
    let seeds: Vec<u64> = works.iter().map(|_| rng.next_u64()).collect();
    let stride = works.len();
    let done = AtomicUsize::new(0);
    let run = |t: usize, work: &mut Work| -> f64 {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seeds[t]);
        let mut loss = 0.0;
        for range in chunks.iter().skip(t).step_by(stride) {
            let idx = &order[range.clone()];
            let rels: Vec<u32> = idx.iter().map(|&e| edges[e as usize].rel).collect();
            let (src_t, dst_t) = ends[rels[0] as usize];
            let heads: Vec<u32> = idx.iter().map(|&e| edges[e as usize].src).collect();
            let tails: Vec<u32> = idx.iter().map(|&e| edges[e as usize].dst).collect();
            work.w.clear();
            work.w
                .extend(idx.iter().filter_map(|&e| visit.weights.get(e as usize)));
            let negs = (
                negative_pool(buckets, &visit.needed, src_t),
                negative_pool(buckets, &visit.needed, dst_t),
            );
            loss += train_chunk(
                params,
                cfg,
                &rels,
                (src_t, dst_t),
                &heads,
                &tails,
                negs,
                &mut rng,
                work,
            );
            done.fetch_add(1, Relaxed);
        }
        loss
    };
    on_threads(works, run, (&done, tick))
}

/// How many candidate rows ahead of the copy [`prefetch`] asks for.
const PREFETCH_AHEAD: usize = 8;

/// Asks the CPU to bring `row` into cache (a hint: no effect on results).
fn prefetch(row: &[AtomicU32]) {
    #[cfg(target_arch = "x86_64")]
    for line in row.chunks(16) {
        #[allow(unsafe_code)]
        // SAFETY: a prefetch reads nothing architecturally and cannot fault;
        // the pointer is into a live slice anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast())
        };
    }
}

/// Trains one chunk of edges of relations `rels` (one per edge, all
/// between the same node types); returns its loss.
#[allow(clippy::too_many_arguments)]
pub(super) fn train_chunk(
    params: &Params<'_>,
    cfg: &TrainConfig,
    rels: &[u32],
    (src_t, dst_t): (u32, u32),
    heads: &[u32],
    tails: &[u32],
    (head_negs, tail_negs): (Vec<Range<u32>>, Vec<Range<u32>>),
    rng: &mut Xoshiro256PlusPlus,
    work: &mut Work,
) -> f64 {
    let (d, c, n) = (cfg.dim, heads.len(), cfg.uniform_negatives);
    // A candidate whose scores got no gradient (a negative the margin leaves
    // inactive) has a zero row gradient; where a zero gradient changes
    // nothing (Adagrad or SGD with no penalty, and a row the max-norm
    // projection leaves alone) it is not stepped.
    let sparse = matches!(cfg.optimizer, Optimizer::Adagrad | Optimizer::Sgd)
        && cfg.regularization == 0.0
        && cfg.drift_penalty == 0.0;
    work.slots.clear();
    work.grads.clear();
    work.rel_rows.clear();
    work.rel_grad.clear();
    work.r.clear();
    let mut loss = 0.0;
    let relations = params.relations.len() as u32 / d as u32 / (1 + u32::from(cfg.reciprocal));
    let sides: &[Corrupt] = match cfg.corrupt {
        Sides::Both => &Corrupt::BOTH,
        Sides::Either => {
            let one = (rng.next_u64() & 1) as usize;
            &Corrupt::BOTH[one..=one]
        }
    };
    for &corrupt in sides {
        let (q_type, k_type) = corrupt.types((src_t, dst_t));
        let (q_nodes, k_nodes, negs) = match corrupt {
            Corrupt::Tails => (heads, tails, &tail_negs),
            Corrupt::Heads => (tails, heads, &head_negs),
        };
        // The side's form (its sign); each edge's relation row is in rel_of.
        let query = corrupt.query(cfg, rels[0], relations);
        work.rel_of.clear();
        for &rel in rels {
            let at = work.relation(params, corrupt.query(cfg, rel, relations).relation);
            work.rel_of.push(at);
        }
        work.rows.clear();
        work.rows
            .extend(k_nodes.iter().map(|&id| Row::Node { ty: k_type, id }));
        // When both ends have one type, the chunk's query entities are
        // negatives too: each for itself (h is not its own tail) and for the
        // others; without them h + r ≈ h wins whenever r is short.
        if cfg.self_negatives && q_type == k_type {
            work.rows
                .extend(q_nodes.iter().map(|&id| Row::Node { ty: q_type, id }));
        }
        for _ in 0..n {
            work.rows
                .push(draw(k_type, negs, params.foreign_share(k_type), rng));
        }
        let side = &mut work.side;
        side.q.clear();
        for (&x, &at) in q_nodes.iter().zip(&work.rel_of) {
            work.row.clear();
            params.read(
                params.node(Row::Node { ty: q_type, id: x }).map(|(row, _)| row),
                &mut work.row,
            );
            query.form(&work.row, &work.r[at * d..(at + 1) * d], &mut side.q);
        }
        side.k.clear();
        for (i, &r) in work.rows.iter().enumerate() {
            // Candidate rows are scattered over the table: fetching a later
            // one while this one is copied hides most of the memory latency.
            if let Some((ahead, _)) = work.rows.get(i + PREFETCH_AHEAD).and_then(|&a| params.node(a)) {
                prefetch(ahead);
            }
            params.read(params.node(r).map(|(row, _)| row), &mut side.k);
        }
        let m = work.rows.len();
        side.s.resize(c * m, 0.0);
        side.g.resize(c * m, 0.0);
        kernels::scores(cfg.score, &side.q, &side.k, d, &mut side.s);
        loss += kernels::loss(
            cfg.loss,
            cfg.margin,
            cfg.adversarial_temperature,
            &side.s,
            c,
            m,
            cfg.batch_negatives,
            &work.w,
            &mut side.g,
        );
        side.dq.clear();
        side.dq.resize(c * d, 0.0);
        side.dk.resize(m * d, 0.0);
        kernels::backward(
            cfg.score,
            &side.q,
            &side.k,
            &side.s,
            &side.g,
            d,
            &mut side.dq,
            &mut side.dk,
        );
        // Chain rule: q = node + sign · relation.
        let sign = query.sign;
        let (dq, dk) = (
            std::mem::take(&mut work.side.dq),
            std::mem::take(&mut work.side.dk),
        );
        for (a, &x) in q_nodes.iter().enumerate() {
            let g = &dq[a * d..(a + 1) * d];
            work.grad(Row::Node { ty: q_type, id: x }, g);
            let at = work.rel_of[a];
            for (rg, gv) in work.rel_grad[at * d..(at + 1) * d].iter_mut().zip(g) {
                *rg += sign * gv;
            }
        }
        let rows = std::mem::take(&mut work.rows);
        let in_ball = params.in_ball(k_type);
        for (a, &r) in rows.iter().enumerate() {
            // A candidate no score gradient reached has no row in `dk`.
            if (0..c).any(|i| work.side.g[i * m + a] != 0.0) {
                work.grad(r, &dk[a * d..(a + 1) * d]);
            } else if !sparse || (!in_ball && outside_ball(cfg, &work.side.k[a * d..(a + 1) * d])) {
                work.slot(r, d);
            }
        }
        (work.side.dq, work.side.dk, work.rows) = (dq, dk, rows);
    }
    apply(params, cfg, work);
    loss
}

/// Whether a row whose values are `x` lies outside the max-norm ball (for a
/// candidate, the chunk's copy of it: nothing writes a row before the
/// chunk's `apply`, so with one thread it is the row itself): a zero gradient
/// leaves a row as it is, except that a stepped row is projected into the
/// ball, so such a row is stepped even when its gradient is zero. The norm is
/// computed as `apply` computes it.
///
/// A projected row's norm is `max_norm` only up to rounding (often an ulp
/// above it), so "outside" allows [`BALL_SLACK`]: every row a step wrote
/// counts as inside. Without the slack, whether a partition was inside the
/// ball depended on when it was loaded (a resumed run loads every partition
/// afresh, an uninterrupted one keeps them), and a resumed run stepped rows
/// that the uninterrupted run skipped.
pub(super) fn outside_ball(cfg: &TrainConfig, x: &[f32]) -> bool {
    cfg.max_norm > 0.0
        && cfg.score != Score::Dot
        && kernels::dot(x, x).sqrt() > cfg.max_norm * (1.0 + BALL_SLACK)
}

/// Relative slack of [`outside_ball`]: far above a projection's rounding
/// error (a few ulps of the norm), far below any step's effect on it.
const BALL_SLACK: f32 = 1e-4;

/// One optimizer step on a shared row and its state (`Optimizer::state_width`
/// floats); `scratch` receives the row's new value. Shared floats are read
/// and written one relaxed atomic at a time; the arithmetic runs on plain
/// copies so that it vectorizes (Adam's root and division dominate a step).
pub(super) fn step(
    opt: Optimizer,
    lr: f32,
    row: &[AtomicU32],
    state: &[AtomicU32],
    g: &[f32],
    scratch: &mut Vec<f32>,
) {
    let load = |a: &AtomicU32| f32::from_bits(a.load(Relaxed));
    scratch.clear();
    load_row(row, scratch);
    match opt {
        Optimizer::Sgd => kernels::axpy(-lr, g, scratch),
        Optimizer::Adagrad => {
            let s = load(&state[0]) + kernels::dot(g, g) / g.len() as f32;
            state[0].store(s.to_bits(), Relaxed);
            kernels::axpy(-lr / (s.sqrt() + 1e-10), g, scratch);
        }
        Optimizer::Adam => {
            let d = g.len();
            let (m, rest) = state.split_at(d);
            let (v, t) = rest.split_at(d);
            let steps = load(&t[0]) + 1.0;
            t[0].store(steps.to_bits(), Relaxed);
            // Bias corrections folded into the step size.
            let a = lr * (1.0 - B2.powf(steps)).sqrt() / (1.0 - B1.powf(steps));
            // scratch: the row, then m, then v; cut back to the row after.
            scratch.extend(m.iter().chain(v).map(load));
            let (x, moments) = scratch.split_at_mut(d);
            let (mc, vc) = moments.split_at_mut(d);
            adam_update(a, x, g, mc, vc);
            write(m, mc);
            write(v, vc);
            scratch.truncate(d);
        }
    }
}

/// Adam's β₁ and β₂.
const B1: f32 = 0.9;
const B2: f32 = 0.999;

/// Adam's moment and row update with step size `a` (bias corrections
/// folded in). The root and the division dominate: 8 wide with AVX2 where
/// the CPU has it, 4 wide (SSE2, the baseline) otherwise; both round every
/// operation as IEEE single precision does, so the results are the same bits.
fn adam_update(a: f32, x: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU was just found to support AVX2, the only target
        // feature of `adam_update_avx2`.
        unsafe {
            return adam_update_avx2(a, x, g, m, v);
        }
    }
    adam_update_body(a, x, g, m, v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn adam_update_avx2(a: f32, x: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    adam_update_body(a, x, g, m, v)
}

#[inline(always)]
fn adam_update_body(a: f32, x: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    for (((x, &gv), m), v) in x.iter_mut().zip(g).zip(m).zip(v) {
        *m = B1 * *m + (1.0 - B1) * gv;
        *v = B2 * *v + (1.0 - B2) * gv * gv;
        *x -= a * *m / (v.sqrt() + 1e-8);
    }
}

/// Appends a shared row's values to `out`. Each float is read as a relaxed
/// atomic load; LLVM never merges atomic accesses, so a row of 600 floats
/// took 600 scalar loads and stores, a third of the accuracy config's epoch.
/// With AVX the floats are read 8 at a time by one `vmovups` in inline
/// assembly, which the compiler treats as opaque: on x86-64 an aligned
/// 4-byte element of a vector load is read whole (single-copy atomic), so
/// the instruction is a sequence of relaxed loads of the row's floats, the
/// same guarantee as the scalar path (Hogwild: no order between floats).
pub(super) fn load_row(row: &[AtomicU32], out: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU was just found to support AVX, the only target
        // feature of `load_row_avx`.
        unsafe {
            return load_row_avx(row, out);
        }
    }
    out.extend(row.iter().map(|a| f32::from_bits(a.load(Relaxed))));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn load_row_avx(row: &[AtomicU32], out: &mut Vec<f32>) {
    use std::arch::x86_64::{__m256, _mm256_storeu_ps};
    let (start, wide) = (out.len(), row.len() / 8 * 8);
    out.reserve(row.len());
    for i in (0..wide).step_by(8) {
        let v: __m256;
        #[allow(unsafe_code)]
        // SAFETY: `i + 8 <= row.len()`, so the 32 bytes read are the row's
        // floats i..i + 8, live for the borrow (see `load_row` for why the
        // read races with nothing it must not); `reserve` made room for
        // `row.len()` floats after `start`, and `i + 8 <= row.len()`.
        unsafe {
            std::arch::asm!(
                "vmovups {v}, ymmword ptr [{src}]",
                src = in(reg) row.as_ptr().add(i),
                v = out(ymm_reg) v,
                options(nostack, preserves_flags, readonly),
            );
            _mm256_storeu_ps(out.as_mut_ptr().add(start + i), v);
        }
    }
    #[allow(unsafe_code)]
    // SAFETY: the first `wide` floats after `start` were written above, and
    // the capacity holds them.
    unsafe {
        out.set_len(start + wide)
    };
    out.extend(row[wide..].iter().map(|a| f32::from_bits(a.load(Relaxed))));
}

/// Stores `values` into a shared row: relaxed atomic stores of each float,
/// 8 at a time with AVX (the mirror of [`load_row`]).
pub(super) fn write(row: &[AtomicU32], values: &[f32]) {
    assert_eq!(row.len(), values.len());
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU was just found to support AVX, the only target
        // feature of `write_avx`.
        unsafe {
            return write_avx(row, values);
        }
    }
    for (a, v) in row.iter().zip(values) {
        a.store(v.to_bits(), Relaxed);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn write_avx(row: &[AtomicU32], values: &[f32]) {
    use std::arch::x86_64::_mm256_loadu_ps;
    let wide = row.len() / 8 * 8;
    for i in (0..wide).step_by(8) {
        #[allow(unsafe_code)]
        // SAFETY: `i + 8 <= row.len() == values.len()`: the 32 bytes read
        // and written are floats i..i + 8 of each; the store is a sequence
        // of relaxed stores of the row's floats (see `load_row`).
        unsafe {
            let v = _mm256_loadu_ps(values.as_ptr().add(i));
            std::arch::asm!(
                "vmovups ymmword ptr [{dst}], {v}",
                dst = in(reg) row.as_ptr().add(i),
                v = in(ymm_reg) v,
                options(nostack, preserves_flags),
            );
        }
    }
    for (a, v) in row[wide..].iter().zip(&values[wide..]) {
        a.store(v.to_bits(), Relaxed);
    }
}

pub(super) fn apply(params: &Params<'_>, cfg: &TrainConfig, work: &mut Work) {
    let d = cfg.dim;
    let mut scratch = std::mem::take(&mut work.row);
    // The rows and their optimizer state are read next, row after row:
    // asking for all of them first lets the misses overlap (Adam's state is
    // 2d + 1 floats a row).
    for &r in work.slots.keys() {
        if let Some((row, state)) = params.node(r) {
            prefetch(row);
            prefetch(state);
        }
    }
    for (&r, &slot) in &work.slots {
        let Some((row, state)) = params.node(r) else {
            continue;
        };
        // A refresh moves only the rows its change touched.
        if cfg.scope.as_ref().is_some_and(|s| {
            let (t, x) = params.id(r);
            !s.0.touched(t, x)
        }) {
            continue;
        }
        if cfg.regularization > 0.0 {
            let g = &mut work.grads[slot * d..(slot + 1) * d];
            for (gv, a) in g.iter_mut().zip(row) {
                *gv += cfg.reg_grad(f32::from_bits(a.load(Relaxed)));
            }
        }
        let prev = params.prev.filter(|_| cfg.drift_penalty > 0.0);
        if let Some((prev, (t, x))) = prev
            .map(|p| (p, params.id(r)))
            .filter(|(p, (t, x))| *x < p.rows(*t))
        {
            let g = &mut work.grads[slot * d..(slot + 1) * d];
            for ((gv, a), p) in g.iter_mut().zip(row).zip(prev.node(t, x)) {
                *gv += 2.0 * cfg.drift_penalty * (f32::from_bits(a.load(Relaxed)) - p);
            }
        }
        step(
            cfg.optimizer,
            cfg.lr,
            row,
            state,
            &work.grads[slot * d..(slot + 1) * d],
            &mut scratch,
        );
        if cfg.max_norm > 0.0 && cfg.score != Score::Dot {
            let max = cfg.max_norm;
            let norm = kernels::dot(&scratch, &scratch).sqrt();
            if norm > max {
                scratch.iter_mut().for_each(|v| *v *= max / norm);
            }
        }
        write(row, &scratch);
    }
    let lr = cfg.relation_lr.unwrap_or(cfg.lr);
    for (at, &r) in work.rel_rows.iter().enumerate() {
        if let (true, Some((row, state))) = (lr > 0.0, params.relation(r)) {
            step(
                cfg.optimizer,
                lr,
                row,
                state,
                &work.rel_grad[at * d..(at + 1) * d],
                &mut scratch,
            );
            write(row, &scratch);
        }
    }
    work.row = scratch;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector copies in and out of shared rows, every length a row may
    /// have (whole 8-float blocks and a tail), and appending after data.
    #[test]
    fn shared_rows_copy_in_and_out_exactly() {
        for n in 0..=37 {
            let values: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let mut shared = vec![f32::NAN; n];
            write(atomics(&mut shared), &values);
            assert_eq!(shared, values, "write, {n} floats");
            let mut out = vec![7.0];
            load_row(atomics(&mut shared), &mut out);
            assert_eq!(out[0], 7.0);
            assert_eq!(out[1..], values[..], "load, {n} floats");
        }
    }

    #[test]
    fn adam_step_matches_reference() {
        let d = 5;
        let mut row: Vec<f32> = vec![0.5, -1.0, 0.0, 2.0, 0.25];
        let mut state = vec![0f32; Optimizer::Adam.state_width(d)];
        let grads: [[f32; 5]; 3] = [
            [0.1, -0.2, 0.0, 1.5, -0.01],
            [0.3, 0.2, 0.05, -1.0, -0.01],
            [-0.2, 0.0, 0.05, 0.5, 0.02],
        ];
        // PyTorch's Adam in f64: bias-corrected moments, ε added after the root.
        let (lr, b1, b2, eps) = (0.01f64, 0.9f64, 0.999f64, 1e-8f64);
        let mut x: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let (mut m, mut v) = (vec![0f64; d], vec![0f64; d]);
        let mut scratch = Vec::new();
        for (k, g) in grads.iter().enumerate() {
            let t = (k + 1) as i32;
            for i in 0..d {
                let gi = g[i] as f64;
                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                let (mh, vh) = (m[i] / (1.0 - b1.powi(t)), v[i] / (1.0 - b2.powi(t)));
                x[i] -= lr * mh / (vh.sqrt() + eps);
            }
            step(
                Optimizer::Adam,
                lr as f32,
                atomics(&mut row),
                atomics(&mut state),
                g,
                &mut scratch,
            );
            row.copy_from_slice(&scratch);
        }
        for (a, b) in row.iter().zip(&x) {
            assert!(
                (*a as f64 - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{row:?} vs {x:?}"
            );
        }
        assert_eq!(state[2 * d], 3.0, "step count");
    }
}
