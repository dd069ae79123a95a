//! Exact nearest-neighbour search over a table of embeddings: blocks of
//! queries against blocks of rows through one matrix product each (L1 has no
//! product form and is scored row by row), a running top-k per query, and the
//! work split over threads by queries, or by rows for a single query.

use crate::config::Score;
use crate::kernels;

/// How neighbours are ranked; higher scores are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// q · x
    Dot,
    /// q · x / (‖q‖ ‖x‖); rows or queries of norm 0 score 0.
    Cosine,
    /// −‖q − x‖₂
    L2,
    /// −‖q − x‖₁
    L1,
}

impl Metric {
    /// The metric that ranks like a model's score (TransE's translated
    /// queries compared by distance, or by dot product).
    pub fn of_score(score: Score) -> Self {
        match score {
            Score::Dot => Metric::Dot,
            Score::L2 => Metric::L2,
            Score::L1 => Metric::L1,
        }
    }

    /// `dot`, `cosine`, `l2` or `l1`, as [`Metric::parse`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Dot => "dot",
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::L1 => "l1",
        }
    }

    /// Parses `dot`, `cosine`, `l2` or `l1`.
    pub fn parse(s: &str) -> crate::Result<Self> {
        Ok(match s {
            "dot" => Metric::Dot,
            "cosine" => Metric::Cosine,
            "l2" => Metric::L2,
            "l1" => Metric::L1,
            other => {
                return Err(crate::EngineError::Config(format!(
                    "metric `{other}`: expected dot, cosine, l2 or l1"
                )))
            }
        })
    }
}

/// Rows per block of the score matrix, and queries per block.
const ROW_BLOCK: usize = 1024;
const QUERY_BLOCK: usize = 512;
/// Below this many queries in a block, rows are scored by direct dot products.
const DIRECT_BELOW: usize = 8;

/// The best `k` (id, score) seen so far; among equal scores the lower id.
/// Candidates above the floor collect in a buffer of up to 2k that is cut
/// back to the best k (a selection, linear) when full, so an offer costs
/// O(1) amortized whatever k is (a sorted insert cost O(k), and a k near
/// the row count made a search quadratic).
struct TopK {
    k: usize,
    items: Vec<(u32, f32)>,
    /// The k-th best score at the last cut (below it nothing can enter).
    floor: f32,
}

/// Best first: higher score, then lower id.
fn better(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            items: Vec::new(),
            floor: f32::NEG_INFINITY,
        }
    }

    /// The score a candidate must beat to enter.
    fn floor(&self) -> f32 {
        self.floor
    }

    fn push(&mut self, id: u32, s: f32) {
        self.items.push((id, s));
        if self.items.len() >= 2 * self.k {
            self.cut();
        }
    }

    /// Keeps the best k.
    fn cut(&mut self) {
        if self.items.len() > self.k {
            self.items.select_nth_unstable_by(self.k - 1, better);
            self.items.truncate(self.k);
            self.floor = self.items[self.k - 1].1;
        }
    }

    /// Scores `s` of rows `first..`, leaving out ids for which `exclude` holds.
    fn offer(&mut self, first: u32, s: &[f32], exclude: &dyn Fn(u32) -> bool) {
        if self.k == 0 {
            return;
        }
        let mut floor = self.floor();
        for (j, &x) in s.iter().enumerate() {
            // NaN never passes `>`; an equal score keeps the earlier id.
            if x > floor || (floor == f32::NEG_INFINITY && x == floor) {
                let id = first + j as u32;
                if !exclude(id) {
                    self.push(id, x);
                    floor = self.floor();
                }
            }
        }
    }

    /// Merges lists of disjoint row ranges into the best `k`.
    fn merge(k: usize, lists: impl IntoIterator<Item = Vec<(u32, f32)>>) -> Vec<(u32, f32)> {
        let mut all: Vec<(u32, f32)> = lists.into_iter().flatten().collect();
        all.sort_unstable_by(better);
        all.truncate(k);
        all
    }

    fn into_vec(mut self) -> Vec<(u32, f32)> {
        self.cut();
        self.items.sort_unstable_by(better);
        self.items
    }
}

/// Rows an index searches: floats, or int8 codes with one scale per row
/// ([`crate::Int8Rows`]), turned back into floats a block at a time.
#[derive(Clone, Copy)]
enum Rows<'a> {
    F32(&'a [f32]),
    I8 { codes: &'a [i8], scales: &'a [f32] },
}

impl Rows<'_> {
    fn values(&self) -> usize {
        match self {
            Rows::F32(r) => r.len(),
            Rows::I8 { codes, .. } => codes.len(),
        }
    }

    /// Rows `r0..r1` as floats: borrowed, or decoded into `scratch`.
    fn block<'s>(&'s self, r0: usize, r1: usize, d: usize, scratch: &'s mut Vec<f32>) -> &'s [f32] {
        match *self {
            Rows::F32(r) => &r[r0 * d..r1 * d],
            Rows::I8 { codes, scales } => {
                scratch.clear();
                for (row, &scale) in codes[r0 * d..r1 * d].chunks_exact(d).zip(&scales[r0..r1]) {
                    scratch.extend(row.iter().map(|&c| c as f32 * scale));
                }
                scratch
            }
        }
    }
}

/// An exact index over a table of rows (`dim` columns), with the per-row
/// norms its metric needs computed once.
pub struct Index<'a> {
    metric: Metric,
    dim: usize,
    rows: Rows<'a>,
    /// Cosine: 1/‖x‖ (0 for a zero row); L2: ‖x‖²; otherwise empty.
    norms: Vec<f32>,
    threads: usize,
}

impl<'a> Index<'a> {
    /// An index over `rows` (row-major); `rows.len()` must be a multiple of `dim`.
    pub fn new(metric: Metric, rows: &'a [f32], dim: usize) -> Self {
        Self::over(metric, Rows::F32(rows), dim)
    }

    /// An index over int8 codes, row `i` being `codes[i·dim..] × scales[i]`.
    pub(crate) fn new_i8(metric: Metric, codes: &'a [i8], scales: &'a [f32], dim: usize) -> Self {
        assert!(codes.len() == scales.len() * dim, "one scale per row of codes");
        Self::over(metric, Rows::I8 { codes, scales }, dim)
    }

    fn over(metric: Metric, rows: Rows<'a>, dim: usize) -> Self {
        assert!(
            dim > 0 && rows.values().is_multiple_of(dim),
            "rows must be whole rows of dim"
        );
        let n = rows.values() / dim;
        let mut norms = Vec::new();
        if matches!(metric, Metric::Cosine | Metric::L2) {
            let mut scratch = Vec::new();
            for r0 in (0..n).step_by(ROW_BLOCK) {
                let block = rows.block(r0, (r0 + ROW_BLOCK).min(n), dim, &mut scratch);
                norms.extend(block.chunks_exact(dim).map(|r| match metric {
                    Metric::Cosine => inverse_norm(kernels::dot(r, r)),
                    _ => kernels::dot(r, r),
                }));
            }
        }
        Self {
            metric,
            dim,
            rows,
            norms,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// Searches with at most `threads` threads (default: one per core).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.values() / self.dim
    }

    /// True when the index has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.values() == 0
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// The `k` best rows for each query in `queries` (row-major, `dim`
    /// columns), best first, ties to the lower id; `exclude(i, id)` leaves
    /// row `id` out of query `i`'s answer (asked only of rows that would
    /// enter it). NaN scores never enter.
    pub fn search(
        &self,
        queries: &[f32],
        k: usize,
        exclude: &(dyn Fn(usize, u32) -> bool + Sync),
    ) -> Vec<Vec<(u32, f32)>> {
        let d = self.dim;
        assert!(
            queries.len().is_multiple_of(d),
            "queries must be whole rows of dim"
        );
        let nq = queries.len() / d;
        let n = self.len();
        if nq == 0 {
            return Vec::new();
        }
        // No answer is longer than the rows: a huge k allocates nothing.
        let k = k.min(n);
        if k == 0 || n == 0 {
            return vec![Vec::new(); nq];
        }
        let threads = self.threads.min(nq.max(n / ROW_BLOCK)).max(1);
        if nq >= threads {
            // Split the queries.
            let per = nq.div_ceil(threads);
            let mut out: Vec<Vec<(u32, f32)>> = Vec::with_capacity(nq);
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..nq)
                    .step_by(per)
                    .map(|q0| {
                        let q1 = (q0 + per).min(nq);
                        s.spawn(move || self.search_range(&queries[q0 * d..q1 * d], q0, 0..n, k, exclude))
                    })
                    .collect();
                for h in handles {
                    out.extend(h.join().expect("search thread panicked"));
                }
            });
            out
        } else {
            // Few queries: split the rows and merge.
            let per = n.div_ceil(threads);
            let parts: Vec<Vec<Vec<(u32, f32)>>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..n)
                    .step_by(per)
                    .map(|r0| {
                        s.spawn(move || self.search_range(queries, 0, r0..(r0 + per).min(n), k, exclude))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("search thread panicked"))
                    .collect()
            });
            (0..nq)
                .map(|i| TopK::merge(k, parts.iter().map(|p| p[i].clone())))
                .collect()
        }
    }

    /// Queries `queries` (numbered from `first`) against rows `range`.
    fn search_range(
        &self,
        queries: &[f32],
        first: usize,
        range: std::ops::Range<usize>,
        k: usize,
        exclude: &(dyn Fn(usize, u32) -> bool + Sync),
    ) -> Vec<Vec<(u32, f32)>> {
        let d = self.dim;
        let nq = queries.len() / d;
        let mut tops: Vec<TopK> = (0..nq).map(|_| TopK::new(k)).collect();
        let mut s = vec![0f32; QUERY_BLOCK.min(nq) * ROW_BLOCK.min(range.len())];
        let mut scratch = Vec::new();
        for q0 in (0..nq).step_by(QUERY_BLOCK) {
            let q1 = (q0 + QUERY_BLOCK).min(nq);
            let q = &queries[q0 * d..q1 * d];
            let qn: Vec<f32> = match self.metric {
                Metric::Cosine => q
                    .chunks_exact(d)
                    .map(|r| inverse_norm(kernels::dot(r, r)))
                    .collect(),
                Metric::L2 => q.chunks_exact(d).map(|r| kernels::dot(r, r)).collect(),
                Metric::Dot | Metric::L1 => Vec::new(),
            };
            for r0 in range.clone().step_by(ROW_BLOCK) {
                let r1 = (r0 + ROW_BLOCK).min(range.end);
                let m = r1 - r0;
                let block = self.rows.block(r0, r1, d, &mut scratch);
                let s = &mut s[..(q1 - q0) * m];
                match self.metric {
                    Metric::L1 => kernels::scores(Score::L1, q, block, d, s),
                    // A matrix product packs the block first: not worth it for a few queries.
                    _ if q1 - q0 < DIRECT_BELOW => {
                        for (qi, row) in q.chunks_exact(d).zip(s.chunks_exact_mut(m)) {
                            kernels::dots(qi, block, row);
                        }
                    }
                    _ => kernels::scores(Score::Dot, q, block, d, s),
                }
                for (i, row) in s.chunks_exact_mut(m).enumerate() {
                    match self.metric {
                        Metric::Cosine => {
                            for (x, inv) in row.iter_mut().zip(&self.norms[r0..r1]) {
                                *x *= inv * qn[i];
                            }
                        }
                        Metric::L2 => {
                            for (x, nx) in row.iter_mut().zip(&self.norms[r0..r1]) {
                                *x = -(qn[i] + nx - 2.0 * *x).max(0.0).sqrt();
                            }
                        }
                        Metric::Dot | Metric::L1 => {}
                    }
                    let qi = first + q0 + i;
                    tops[q0 + i].offer(r0 as u32, row, &|id| exclude(qi, id));
                }
            }
        }
        tops.into_iter().map(TopK::into_vec).collect()
    }
}

/// The share of `exact`'s results that `approx` also returned, over all
/// queries: recall@k of an approximate search, or the agreement of two.
pub fn overlap(exact: &[Vec<(u32, f32)>], approx: &[Vec<(u32, f32)>]) -> f64 {
    let hits: usize = exact
        .iter()
        .zip(approx)
        .map(|(e, a)| {
            let ids: rustc_hash::FxHashSet<u32> = e.iter().map(|x| x.0).collect();
            a.iter().filter(|p| ids.contains(&p.0)).count()
        })
        .sum();
    hits as f64 / exact.iter().map(Vec::len).sum::<usize>().max(1) as f64
}

fn inverse_norm(sq: f32) -> f32 {
    if sq > 0.0 {
        1.0 / sq.sqrt()
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(metric: Metric, rows: &[f32], q: &[f32], d: usize, k: usize, skip: u32) -> Vec<(u32, f64)> {
        let mut all: Vec<(u32, f64)> = rows
            .chunks_exact(d)
            .enumerate()
            .filter(|&(i, _)| i as u32 % 7 != skip)
            .map(|(i, x)| {
                let dot: f64 = q.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum();
                let nq: f64 = q.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
                let nx: f64 = x.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
                let s = match metric {
                    Metric::Dot => dot,
                    Metric::Cosine => dot / (nq * nx),
                    Metric::L2 => -q
                        .iter()
                        .zip(x)
                        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                        .sum::<f64>()
                        .sqrt(),
                    Metric::L1 => -q
                        .iter()
                        .zip(x)
                        .map(|(&a, &b)| (a as f64 - b as f64).abs())
                        .sum::<f64>(),
                };
                (i as u32, s)
            })
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }

    #[test]
    fn matches_an_f64_sort_for_every_metric_and_split() {
        use rand_xoshiro::rand_core::{RngCore, SeedableRng};
        let mut rng = rand_xoshiro::SplitMix64::seed_from_u64(0x2545_f491_4f6c_dd1du64);
        let mut rand = move || (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        for (n, d, nq) in [(5000, 24, 3), (300, 7, 1), (4100, 33, 300)] {
            let rows: Vec<f32> = (0..n * d).map(|_| rand()).collect();
            let queries: Vec<f32> = (0..nq * d).map(|_| rand()).collect();
            for metric in [Metric::Dot, Metric::Cosine, Metric::L2, Metric::L1] {
                for threads in [1, 3] {
                    let index = Index::new(metric, &rows, d).with_threads(threads);
                    let got = index.search(&queries, 10, &|i, id| id % 7 == i as u32 % 7);
                    for (i, q) in queries.chunks_exact(d).enumerate() {
                        let want = reference(metric, &rows, q, d, 10, i as u32 % 7);
                        let ids: Vec<u32> = got[i].iter().map(|p| p.0).collect();
                        let want_ids: Vec<u32> = want.iter().map(|p| p.0).collect();
                        assert_eq!(
                            ids, want_ids,
                            "{metric:?} n={n} d={d} query {i} threads {threads}"
                        );
                        for (g, w) in got[i].iter().zip(&want) {
                            assert!(
                                (g.1 as f64 - w.1).abs() <= 1e-4 * w.1.abs().max(1.0),
                                "{metric:?}: {} vs {}",
                                g.1,
                                w.1
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn ties_go_to_the_lower_id_and_nan_never_enters() {
        let rows = [1.0, 1.0, f32::NAN, 1.0, 0.5];
        let index = Index::new(Metric::Dot, &rows, 1).with_threads(2);
        let got = index.search(&[1.0], 3, &|_, _| false);
        assert_eq!(got, vec![vec![(0, 1.0), (1, 1.0), (3, 1.0)]]);
        assert_eq!(index.search(&[1.0], 0, &|_, _| false), vec![Vec::new()]);
    }

    /// A k as large as the rows (`quiver drift --k N`) costs a sort, not k
    /// work per candidate: ascending scores made every candidate enter,
    /// and each entry shifted up to k others (and the overlap compared
    /// every pair), so 4,000 rows took seconds per few hundred queries.
    #[test]
    fn a_k_as_large_as_the_rows_is_not_quadratic() {
        let (n, nq) = (4000, 300);
        let rows: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let index = Index::new(Metric::Dot, &rows, 1).with_threads(1);
        let queries = vec![1.0; nq];
        let started = std::time::Instant::now();
        let got = index.search(&queries, n, &|_, _| false);
        let same = overlap(&got, &got);
        let took = started.elapsed().as_secs_f64();
        assert_eq!(got[0].len(), n);
        assert!(got[0].windows(2).all(|w| w[0].1 > w[1].1));
        assert_eq!(same, 1.0);
        assert!(took < 1.0, "{took:.2} s");
    }
}
