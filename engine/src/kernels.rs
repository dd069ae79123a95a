//! CPU kernels: scores of a chunk's queries against its candidates, the loss
//! and its gradient with respect to the scores, and the backward pass into
//! queries and candidates. Inner loops keep 16 independent accumulators so
//! that LLVM vectorizes them (float sums are not reassociated otherwise).

use crate::config::{Loss, Score};

const LANES: usize = 16;

#[inline(always)]
fn reduce(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += f(x[l], y[l]);
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(&x, &y)| f(x, y)).sum::<f32>()
}

/// a · b (8 wide with AVX2 where the CPU has it: the same sums in the same
/// order, so the same bits).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU was just found to support AVX2, the only target
        // feature of `dot_avx2`.
        unsafe {
            return dot_avx2(a, b);
        }
    }
    reduce(a, b, |x, y| x * y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    reduce(a, b, |x, y| x * y)
}

/// Σ (a − b)², 8 wide with AVX2 where the CPU has it (as [`dot`]).
pub(crate) fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU was just found to support AVX2, the only target
        // feature of `l2_squared_avx2`.
        unsafe {
            return l2_squared_avx2(a, b);
        }
    }
    reduce(a, b, |x, y| (x - y) * (x - y))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn l2_squared_avx2(a: &[f32], b: &[f32]) -> f32 {
    reduce(a, b, |x, y| (x - y) * (x - y))
}

/// `out[j] = q · rows_j` for the `d`-wide rows of `rows`: one query against
/// a block, bound by the per-row horizontal sum unless wide registers are
/// used, so AVX2 + FMA intrinsics where the CPU has them (the baseline
/// x86-64 target gives LLVM only SSE2, and it vectorizes this 2 wide).
pub(crate) fn dots(q: &[f32], rows: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU was just found to support AVX2 and FMA, the only
        // requirements of `dots_avx2`'s target features.
        unsafe {
            return dots_avx2(q, rows, out);
        }
    }
    for (x, o) in rows.chunks_exact(q.len()).zip(out) {
        *o = dot(q, x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dots_avx2(q: &[f32], rows: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let d = q.len();
    for (x, o) in rows.chunks_exact(d).zip(out) {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        #[allow(unsafe_code)]
        // SAFETY: `i + 32 <= d` or `i + 8 <= d` is checked before each read
        // of 8 floats at offset `i + 8l` of `q` and of `x`, both `d` long;
        // unaligned loads have no alignment requirement.
        unsafe {
            while i + 32 <= d {
                for (l, a) in acc.iter_mut().enumerate() {
                    let (pq, px) = (q.as_ptr().add(i + 8 * l), x.as_ptr().add(i + 8 * l));
                    *a = _mm256_fmadd_ps(_mm256_loadu_ps(pq), _mm256_loadu_ps(px), *a);
                }
                i += 32;
            }
            while i + 8 <= d {
                acc[0] = _mm256_fmadd_ps(
                    _mm256_loadu_ps(q.as_ptr().add(i)),
                    _mm256_loadu_ps(x.as_ptr().add(i)),
                    acc[0],
                );
                i += 8;
            }
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut lanes = [0f32; 8];
        #[allow(unsafe_code)]
        // SAFETY: `lanes` holds exactly the 8 floats stored.
        unsafe {
            _mm256_storeu_ps(lanes.as_mut_ptr(), sum)
        };
        let tail: f32 = q[i..].iter().zip(&x[i..]).map(|(a, b)| a * b).sum();
        *o = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
            + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
            + tail;
    }
}

/// The score of query `q` against candidate `k`: for distances the query is
/// h + r (tails) or t − r (heads), for dot it is h + r or t.
pub(crate) fn score(score: Score, q: &[f32], k: &[f32]) -> f32 {
    match score {
        Score::Dot => dot(q, k),
        Score::L2 => -reduce(q, k, |x, y| (x - y) * (x - y)).sqrt(),
        Score::L1 => {
            let mut s = [0f32];
            scores(Score::L1, q, k, q.len(), &mut s);
            s[0]
        }
    }
}

/// `s[i*m + j] = −Σ|q_i − k_j|`. Every pair is summed the same way whatever
/// its place in the blocks, so one pair scores the same alone or in a batch
/// (an answer and its rivals in a ranking compare exactly).
fn l1_scores(q: &[f32], k: &[f32], d: usize, s: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU was just found to support AVX2, the only target
        // feature of `l1_scores_avx2`.
        unsafe {
            return l1_scores_avx2(q, k, d, s);
        }
    }
    let m = k.len() / d;
    for (qi, row) in q.chunks_exact(d).zip(s.chunks_exact_mut(m)) {
        for (kj, out) in k.chunks_exact(d).zip(row.iter_mut()) {
            *out = -reduce(qi, kj, |x, y| (x - y).abs());
        }
    }
}

/// Candidates per cache block: 64 rows of d = 600 are 150 KiB (L2), reread
/// by every group of queries.
#[cfg(target_arch = "x86_64")]
const L1_ROW_BLOCK: usize = 64;

/// AVX2 L1 scores, 4 queries × 2 candidates per register tile: each 8-wide
/// load of a query serves two candidates and each candidate load four
/// queries. |x − y| = x + y − 2·min(x, y), so a pair costs a min and an add
/// per 8 coordinates (not a subtract, a mask and an add) and the row sums are
/// added once: Σ|q − k| = Σq + Σk − 2·Σmin(q, k).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn l1_scores_avx2(q: &[f32], k: &[f32], d: usize, s: &mut [f32]) {
    let (c, m) = (q.len() / d, k.len() / d);
    assert!(s.len() >= c * m && q.len() >= c * d && k.len() >= m * d);
    // Row sums in loops of this function's own (a closure would be compiled
    // without AVX2); `reduce` fixes the order, so the sums are the same bits.
    let (mut qs, mut ks) = (Vec::with_capacity(c), Vec::with_capacity(m));
    for (x, sums) in [(q, &mut qs), (k, &mut ks)] {
        for r in x.chunks_exact(d) {
            sums.push(reduce(r, r, |a, _| a));
        }
    }
    for j0 in (0..m).step_by(L1_ROW_BLOCK) {
        let j1 = (j0 + L1_ROW_BLOCK).min(m);
        let mut i = 0;
        while i < c {
            let wide = c - i >= 4;
            let mut j = j0;
            while j < j1 {
                let pair = j1 - j >= 2;
                let (qp, kp) = (&q[i * d..], &k[j * d..]);
                let (qs, ks) = (&qs[i..], &ks[j..]);
                let at = i * m + j;
                match (wide, pair) {
                    (true, true) => l1_tile::<4, 2>(qp, kp, qs, ks, d, s, at, m),
                    (true, false) => l1_tile::<4, 1>(qp, kp, qs, ks, d, s, at, m),
                    (false, true) => l1_tile::<1, 2>(qp, kp, qs, ks, d, s, at, m),
                    (false, false) => l1_tile::<1, 1>(qp, kp, qs, ks, d, s, at, m),
                }
                j += if pair { 2 } else { 1 };
            }
            i += if wide { 4 } else { 1 };
        }
    }
}

/// Scores of the first `QR` rows of `q` against the first `KR` rows of `k`
/// (all `d` wide, with row sums `qs` and `ks`) into `s[at + a*stride + b]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
#[allow(clippy::too_many_arguments)]
fn l1_tile<const QR: usize, const KR: usize>(
    q: &[f32],
    k: &[f32],
    qs: &[f32],
    ks: &[f32],
    d: usize,
    s: &mut [f32],
    at: usize,
    stride: usize,
) {
    use std::arch::x86_64::*;
    assert!(q.len() >= QR * d && k.len() >= KR * d);
    let mut acc = [[_mm256_setzero_ps(); KR]; QR];
    let mut l = 0;
    while l + 8 <= d {
        let mut kv = [_mm256_setzero_ps(); KR];
        for (b, v) in kv.iter_mut().enumerate() {
            #[allow(unsafe_code)]
            // SAFETY: `b*d + l + 8 <= KR*d <= k.len()`; unaligned load.
            unsafe {
                *v = _mm256_loadu_ps(k.as_ptr().add(b * d + l))
            };
        }
        for (a, row) in acc.iter_mut().enumerate() {
            #[allow(unsafe_code)]
            // SAFETY: `a*d + l + 8 <= QR*d <= q.len()`; unaligned load.
            let qv = unsafe { _mm256_loadu_ps(q.as_ptr().add(a * d + l)) };
            for (x, &kb) in row.iter_mut().zip(&kv) {
                *x = _mm256_add_ps(*x, _mm256_min_ps(qv, kb));
            }
        }
        l += 8;
    }
    for (a, row) in acc.iter().enumerate() {
        for (b, x) in row.iter().enumerate() {
            let mut lanes = [0f32; 8];
            #[allow(unsafe_code)]
            // SAFETY: `lanes` holds exactly the 8 floats stored.
            unsafe {
                _mm256_storeu_ps(lanes.as_mut_ptr(), *x)
            };
            let (qa, kb) = (&q[a * d..(a + 1) * d], &k[b * d..(b + 1) * d]);
            let tail: f32 = qa[l..].iter().zip(&kb[l..]).map(|(x, y)| x.min(*y)).sum();
            let mins = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
                + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
                + tail;
            s[at + a * stride + b] = -(qs[a] + ks[b] - 2.0 * mins).max(0.0);
        }
    }
}

/// A matrix operand: row-major data and whether to use its transpose.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    transposed: bool,
}

impl<'a> Mat<'a> {
    fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            transposed: false,
        }
    }
    fn t(self) -> Self {
        Self {
            transposed: !self.transposed,
            ..self
        }
    }
    /// (rows, cols, row stride, column stride) of the operand as used.
    fn shape(&self) -> (usize, usize, isize, isize) {
        if self.transposed {
            (self.cols, self.rows, 1, self.cols as isize)
        } else {
            (self.rows, self.cols, self.cols as isize, 1)
        }
    }
}

/// `c = alpha·a·b + beta·c` with `c` row-major `m × n`.
fn gemm(alpha: f32, a: Mat<'_>, b: Mat<'_>, beta: f32, c: &mut [f32]) {
    let (m, k, rsa, csa) = a.shape();
    let (k2, n, rsb, csb) = b.shape();
    assert!(
        k == k2 && a.data.len() >= a.rows * a.cols && b.data.len() >= b.rows * b.cols && c.len() >= m * n
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the assert above proves every index that sgemm computes from
    // these shapes and strides lies inside `a`, `b` and `c`; `c` is borrowed
    // mutably and does not alias `a` or `b`.
    #[allow(unsafe_code)]
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            rsa,
            csa,
            b.data.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// y += a·x (8 wide with AVX2 where the CPU has it; every element on its
/// own, a product then a sum, so the same bits).
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU was just found to support AVX2, the only target
        // feature of `axpy_avx2`.
        unsafe {
            return axpy_avx2(a, x, y);
        }
    }
    axpy_body(a, x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn axpy_avx2(a: f32, x: &[f32], y: &mut [f32]) {
    axpy_body(a, x, y)
}

#[inline(always)]
fn axpy_body(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

fn sq_norms(x: &[f32], d: usize) -> Vec<f32> {
    x.chunks_exact(d).map(|r| dot(r, r)).collect()
}

/// `s[i*m + j] = score(q_i, k_j)` for `c` queries and `m` candidates of
/// dimension `d`. Dot and L2 go through one matrix product (L2 expands
/// ‖q − k‖² = ‖q‖² + ‖k‖² − 2 q·k); L1 has no such form.
pub(crate) fn scores(kind: Score, q: &[f32], k: &[f32], d: usize, s: &mut [f32]) {
    let (c, m) = (q.len() / d, k.len() / d);
    match kind {
        Score::L1 => l1_scores(q, k, d, s),
        Score::Dot => gemm(1.0, Mat::new(q, c, d), Mat::new(k, m, d).t(), 0.0, s),
        Score::L2 => {
            gemm(-2.0, Mat::new(q, c, d), Mat::new(k, m, d).t(), 0.0, s);
            let (qn, kn) = (sq_norms(q, d), sq_norms(k, d));
            for (i, row) in s.chunks_exact_mut(m).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = -(*v + qn[i] + kn[j]).max(0.0).sqrt();
                }
            }
        }
    }
}

/// Adds dL/dq to `dq` and writes dL/dk into `dk`, given `g = dL/ds` and the
/// scores `s`. Only the rows of candidates that some `g` reaches are written
/// for sure (L1 leaves the others as they were), so `dk` needs no zeroing.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    kind: Score,
    q: &[f32],
    k: &[f32],
    s: &[f32],
    g: &[f32],
    d: usize,
    dq: &mut [f32],
    dk: &mut [f32],
) {
    let (c, m) = (q.len() / d, k.len() / d);
    match kind {
        Score::Dot => {
            gemm(1.0, Mat::new(g, c, m), Mat::new(k, m, d), 1.0, dq);
            gemm(1.0, Mat::new(g, c, m).t(), Mat::new(q, c, d), 0.0, dk);
        }
        Score::L2 => {
            // f = −‖q − k‖: ∂f/∂q = −(q − k)/‖q − k‖, ∂f/∂k = (q − k)/‖q − k‖. With
            // w = g/‖q − k‖: dq = w·k − rowsum(w)·q and dk = wᵀ·q − colsum(w)·k.
            let w: Vec<f32> = g
                .iter()
                .zip(s)
                .map(|(&gv, &sv)| if sv < 0.0 { gv / -sv } else { 0.0 })
                .collect();
            gemm(1.0, Mat::new(&w, c, m), Mat::new(k, m, d), 1.0, dq);
            gemm(1.0, Mat::new(&w, c, m).t(), Mat::new(q, c, d), 0.0, dk);
            for (i, dqi) in dq.chunks_exact_mut(d).enumerate() {
                let sum: f32 = w[i * m..(i + 1) * m].iter().sum();
                axpy(-sum, &q[i * d..(i + 1) * d], dqi);
            }
            // Column sums row by row: each column still adds its rows in order.
            let mut sums = vec![0f32; m];
            for row in w.chunks_exact(m) {
                for (a, b) in sums.iter_mut().zip(row) {
                    *a += b;
                }
            }
            for ((dkj, kj), sum) in dk.chunks_exact_mut(d).zip(k.chunks_exact(d)).zip(sums) {
                axpy(-sum, kj, dkj);
            }
        }
        Score::L1 => l1_backward(q, k, g, d, dq, dk),
    }
}

/// L1's backward: f = −Σ|q − k|, so ∂f/∂q = −sign(q − k) and ∂f/∂k = sign(q − k),
/// for the pairs whose score got a gradient. The subgradient of |x| at 0 is
/// taken as 0 (f32::signum would give 1): equal coordinates, as a query and
/// its self-negative have while r is still zero, pull nowhere.
fn l1_backward(q: &[f32], k: &[f32], g: &[f32], d: usize, dq: &mut [f32], dk: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU was just found to support AVX2, the only target
        // feature of `l1_backward_avx2`.
        unsafe {
            return l1_backward_avx2(q, k, g, d, dq, dk);
        }
    }
    l1_backward_body(q, k, g, d, dq, dk)
}

/// The same loops compiled for AVX2: the select of ±g vectorizes 8 wide.
/// Every coordinate is added to in the same order, so the bits are the same.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn l1_backward_avx2(q: &[f32], k: &[f32], g: &[f32], d: usize, dq: &mut [f32], dk: &mut [f32]) {
    l1_backward_body(q, k, g, d, dq, dk)
}

#[inline(always)]
fn l1_backward_body(q: &[f32], k: &[f32], g: &[f32], d: usize, dq: &mut [f32], dk: &mut [f32]) {
    let m = k.len() / d;
    for (j, (kj, dkj)) in k.chunks_exact(d).zip(dk.chunks_exact_mut(d)).enumerate() {
        let mut reached = false;
        for ((i, qi), dqi) in q.chunks_exact(d).enumerate().zip(dq.chunks_exact_mut(d)) {
            let gij = g[i * m + j];
            if gij == 0.0 {
                continue;
            }
            if !reached {
                dkj.fill(0.0);
                reached = true;
            }
            for (((&x, &y), a), b) in qi.iter().zip(kj).zip(dqi.iter_mut()).zip(dkj.iter_mut()) {
                let x = x - y;
                let sg = if x > 0.0 {
                    gij
                } else if x < 0.0 {
                    -gij
                } else {
                    0.0
                };
                *a -= sg;
                *b += sg;
            }
        }
    }
}

/// e^x, and 0 where it would be subnormal: subnormal arithmetic is two
/// orders of magnitude slower on x86, and hard negatives far below the
/// softmax's maximum produce them by the thousand.
fn exp_ftz(x: f32) -> f32 {
    if x < -80.0 {
        0.0
    } else {
        x.exp()
    }
}

/// ln(1 + eˣ) without overflow.
fn softplus(x: f32) -> f32 {
    x.max(0.0) + exp_ftz(-x.abs()).ln_1p()
}

fn sigmoid(x: f32) -> f32 {
    if x < -80.0 {
        0.0
    } else {
        1.0 / (1.0 + exp_ftz(-x))
    }
}

/// Loss of `c` rows of `m` scores and its gradient `g` (overwritten). Row i's
/// positive is column i (the chunk's own edge); its negatives are the other
/// chunk columns `j < c, j ≠ i` when `batch_negatives`, and every column
/// `j ≥ c` (uniform negatives). `weights[i]` scales row i (empty: all 1).
#[allow(clippy::too_many_arguments)]
pub(crate) fn loss(
    kind: Loss,
    margin: f32,
    temperature: f32,
    s: &[f32],
    c: usize,
    m: usize,
    batch_negatives: bool,
    weights: &[f32],
    g: &mut [f32],
) -> f64 {
    g.fill(0.0);
    let mut total = 0f64;
    // Negative columns of row i: the chunk's other columns (with batch
    // negatives), then every uniform column.
    let first = if batch_negatives { 0 } else { c.min(m) };
    for i in 0..c {
        let row = &s[i * m..(i + 1) * m];
        let grow = &mut g[i * m..(i + 1) * m];
        let w = weights.get(i).copied().unwrap_or(1.0);
        let pos = row[i];
        let negs = (first..m).filter(|&j| j != i);
        match kind {
            Loss::Margin => {
                let mut active = 0.0;
                for j in negs {
                    let v = margin - pos + row[j];
                    if v > 0.0 {
                        total += (w * v) as f64;
                        grow[j] = w;
                        active += w;
                    }
                }
                grow[i] = -active;
            }
            Loss::Softmax => {
                let max = negs.clone().map(|j| row[j]).fold(pos, f32::max);
                let mut z = exp_ftz(pos - max);
                for j in negs.clone() {
                    let e = exp_ftz(row[j] - max);
                    grow[j] = e;
                    z += e;
                }
                total += (w * (max + z.ln() - pos)) as f64;
                for j in negs {
                    grow[j] *= w / z;
                }
                grow[i] = w * (exp_ftz(pos - max) / z - 1.0);
            }
            Loss::Adversarial => {
                // Weights of the negatives: a softmax of temperature · score.
                let max = negs.clone().map(|j| row[j]).fold(f32::NEG_INFINITY, f32::max);
                let mut z = 0.0;
                for j in negs.clone() {
                    let e = exp_ftz(temperature * (row[j] - max));
                    grow[j] = e;
                    z += e;
                }
                let mut l = softplus(-(margin + pos));
                for j in negs {
                    let p = grow[j] / z;
                    l += p * softplus(margin + row[j]);
                    grow[j] = w * p * sigmoid(margin + row[j]);
                }
                total += (w * l) as f64;
                grow[i] = -w * sigmoid(-(margin + pos));
            }
        }
    }
    total
}

#[cfg(test)]
pub(crate) mod tests {
    //! Every kernel against a plain f64 reference on small random inputs.
    use super::*;

    /// `n` values uniform in [-1, 1) from `seed`, which moves on (the
    /// engine's unit tests share it).
    pub(crate) fn rand_vec(n: usize, seed: &mut u64) -> Vec<f32> {
        use rand_xoshiro::rand_core::{RngCore, SeedableRng};
        let mut rng = rand_xoshiro::SplitMix64::seed_from_u64(*seed);
        let v = (0..n)
            .map(|_| ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32)
            .collect();
        *seed = rng.next_u64();
        v
    }

    fn ref_score(kind: Score, q: &[f32], k: &[f32]) -> f64 {
        let it = q.iter().zip(k).map(|(&a, &b)| (a as f64, b as f64));
        match kind {
            Score::Dot => it.map(|(a, b)| a * b).sum(),
            Score::L2 => -it.map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt(),
            Score::L1 => -it.map(|(a, b)| (a - b).abs()).sum::<f64>(),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-4 * b.abs().max(1e-2)
    }

    #[test]
    fn scores_match_reference() {
        let mut seed = 1;
        let d = 37;
        let (q, k) = (rand_vec(5 * d, &mut seed), rand_vec(7 * d, &mut seed));
        for kind in [Score::Dot, Score::L1, Score::L2] {
            let mut s = vec![0.0; 35];
            scores(kind, &q, &k, d, &mut s);
            for i in 0..5 {
                for j in 0..7 {
                    let r = ref_score(kind, &q[i * d..(i + 1) * d], &k[j * d..(j + 1) * d]);
                    assert!(
                        close(s[i * 7 + j] as f64, r),
                        "{kind:?} {i} {j}: {} vs {r}",
                        s[i * 7 + j]
                    );
                }
            }
        }
    }

    /// Evaluation ranks an answer among its rivals by comparing their L1
    /// scores exactly: a pair must score the same bits alone and at every
    /// place of a batch (register tiles of 4 × 2 and their ragged edges).
    #[test]
    fn l1_pairs_score_the_same_alone_and_in_any_batch() {
        let mut seed = 3;
        for d in [1, 8, 37, 600] {
            let (q, k) = (rand_vec(9 * d, &mut seed), rand_vec(131 * d, &mut seed));
            let mut s = vec![0.0; 9 * 131];
            scores(Score::L1, &q, &k, d, &mut s);
            for (i, qi) in q.chunks_exact(d).enumerate() {
                for (j, kj) in k.chunks_exact(d).enumerate() {
                    let alone = score(Score::L1, qi, kj);
                    assert_eq!(s[i * 131 + j].to_bits(), alone.to_bits(), "d {d}, {i} × {j}");
                    assert!(close(alone as f64, ref_score(Score::L1, qi, kj)));
                }
            }
        }
    }

    /// Loss of the whole chunk in f64, for finite differences.
    fn ref_loss(kind: Score, lk: Loss, q: &[f32], k: &[f32], d: usize, c: usize, bn: bool) -> f64 {
        let m = k.len() / d;
        let mut s = vec![0f32; c * m];
        for i in 0..c {
            for j in 0..m {
                s[i * m + j] = ref_score(kind, &q[i * d..(i + 1) * d], &k[j * d..(j + 1) * d]) as f32;
            }
        }
        let mut g = vec![0f32; c * m];
        // Temperature 0: the adversarial weights are uniform, so the loss's
        // gradient is the true one and finite differences can check it.
        loss(lk, 0.5, 0.0, &s, c, m, bn, &[], &mut g)
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (c, m, d) = (3, 6, 8);
        for kind in [Score::Dot, Score::L2, Score::L1] {
            for lk in [Loss::Margin, Loss::Softmax, Loss::Adversarial] {
                let mut seed = 7 + kind as u64;
                let (q, k) = (rand_vec(c * d, &mut seed), rand_vec(m * d, &mut seed));
                let mut s = vec![0.0; c * m];
                scores(kind, &q, &k, d, &mut s);
                let mut g = vec![0.0; c * m];
                loss(lk, 0.5, 0.0, &s, c, m, true, &[], &mut g);
                let (mut dq, mut dk) = (vec![0.0; c * d], vec![0.0; m * d]);
                backward(kind, &q, &k, &s, &g, d, &mut dq, &mut dk);
                let central = |which: usize, idx: usize, h: f32| {
                    let (mut qp, mut kp) = (q.clone(), k.clone());
                    let (mut qm, mut km) = (q.clone(), k.clone());
                    if which == 0 {
                        qp[idx] += h;
                        qm[idx] -= h;
                    } else {
                        kp[idx] += h;
                        km[idx] -= h;
                    }
                    (ref_loss(kind, lk, &qp, &kp, d, c, true) - ref_loss(kind, lk, &qm, &km, d, c, true))
                        / (2.0 * h as f64)
                };
                let mut kinks = 0;
                for (which, analytic) in [(0, &dq), (1, &dk)] {
                    for (idx, &a) in analytic.iter().enumerate() {
                        let (num, finer) = (central(which, idx, 1e-3), central(which, idx, 2.5e-4));
                        // Margin and L1 are piecewise linear: where the two
                        // step sizes disagree, a kink lies between the probes
                        // and the difference means nothing.
                        if (num - finer).abs() > 1e-2 * (1.0 + num.abs()) {
                            kinks += 1;
                            continue;
                        }
                        let a = a as f64;
                        assert!(
                            (num - a).abs() < 2e-2 * (1.0 + a.abs()),
                            "{kind:?} {lk:?} {which} {idx}: {num} vs {a}"
                        );
                    }
                }
                assert!(kinks <= 2, "{kind:?} {lk:?}: {kinks} coordinates at a kink");
            }
        }
    }

    #[test]
    fn loss_respects_negative_masks_and_weights() {
        // Two rows, four columns: columns 0 and 1 are the chunk, 2 and 3 uniform.
        let s = [1.0, 0.9, 0.2, 1.5, 0.0, 2.0, -1.0, -1.0];
        let mut g = [0.0; 8];
        let l = loss(Loss::Margin, 1.0, 0.0, &s, 2, 4, false, &[1.0, 2.0], &mut g);
        // Row 0: negatives 2 and 3: (1 - 1 + 0.2) + (1 - 1 + 1.5); row 1 (weight 2): (1 - 2 - 1) < 0 twice.
        assert!((l - 1.7).abs() < 1e-6, "{l}");
        assert_eq!(g, [-2.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        let l = loss(Loss::Margin, 1.0, 0.0, &s, 2, 4, true, &[], &mut g);
        assert!((l - (1.7 + 0.9)).abs() < 1e-5, "{l}");
    }

    #[test]
    fn adversarial_loss_weights_hard_negatives() {
        // One row: the positive (score -1) and negatives scoring -0.5 and -3.
        let s = [-1.0f32, -0.5, -3.0];
        let (gamma, alpha) = (2.0f64, 1.5f64);
        let mut g = [0.0; 3];
        let l = loss(
            Loss::Adversarial,
            gamma as f32,
            alpha as f32,
            &s,
            1,
            3,
            false,
            &[],
            &mut g,
        );
        let sp = |x: f64| (1.0 + x.exp()).ln();
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let (e1, e2) = ((alpha * -0.5).exp(), (alpha * -3.0).exp());
        let (p1, p2) = (e1 / (e1 + e2), e2 / (e1 + e2));
        let want = sp(-(gamma - 1.0)) + p1 * sp(gamma - 0.5) + p2 * sp(gamma - 3.0);
        assert!((l - want).abs() < 1e-5, "{l} vs {want}");
        let gw = [-sig(-(gamma - 1.0)), p1 * sig(gamma - 0.5), p2 * sig(gamma - 3.0)];
        for (a, b) in g.iter().zip(gw) {
            assert!((*a as f64 - b).abs() < 1e-6, "{g:?} vs {gw:?}");
        }
        assert!(g[1] > 5.0 * g[2], "the harder negative dominates: {g:?}");
    }
}
