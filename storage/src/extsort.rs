//! Sorting edges for a base build in bounded memory: edges are pushed in
//! chunks; a full chunk is sorted, deduplicated and spilled to a run file in
//! the database directory; `finish` merges the runs into one sorted file that
//! is memory-mapped. Imports that fit in one chunk never touch the disk here.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::base::{sort_dedup, WEdge};
use crate::error::{IoContext, Result};

/// Edges held in memory before a run is spilled: 4 Mi edges, 64 MiB.
pub const DEFAULT_CHUNK_EDGES: usize = 1 << 22;

/// Edges sorted by (rel, src, dst), without duplicates.
pub(crate) enum SortedEdges {
    Memory(Vec<WEdge>),
    /// A merged run file, deleted on drop.
    Mapped(Mmap, PathBuf),
}

impl Deref for SortedEdges {
    type Target = [WEdge];
    fn deref(&self) -> &[WEdge] {
        match self {
            SortedEdges::Memory(v) => v,
            // The file was written by this process from whole `WEdge`s; a
            // length that is not a multiple would only mean a short write,
            // which `finish` has already reported.
            SortedEdges::Mapped(m, _) => bytemuck::try_cast_slice(m).unwrap_or(&[]),
        }
    }
}

impl Drop for SortedEdges {
    fn drop(&mut self) {
        if let SortedEdges::Mapped(_, path) = self {
            let _ = fs::remove_file(path);
        }
    }
}

/// Accepts edges in any order; of equal edges the last pushed wins.
pub(crate) struct EdgeSorter {
    dir: PathBuf,
    chunk: Vec<WEdge>,
    limit: usize,
    runs: Vec<PathBuf>,
    pushed: u64,
}

impl EdgeSorter {
    pub(crate) fn new(dir: &Path, limit: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            chunk: Vec::new(),
            limit: limit.max(1),
            runs: Vec::new(),
            pushed: 0,
        }
    }

    pub(crate) fn push(&mut self, e: WEdge) -> Result<()> {
        self.chunk.push(e);
        self.pushed += 1;
        if self.chunk.len() >= self.limit {
            self.spill()?;
        }
        Ok(())
    }

    /// Number of edges pushed.
    pub(crate) fn pushed(&self) -> u64 {
        self.pushed
    }

    fn spill(&mut self) -> Result<()> {
        let sorted = sort_dedup(&self.chunk);
        self.chunk.clear();
        let path = self.dir.join(format!("sort-run-{}.tmp", self.runs.len()));
        self.runs.push(path.clone());
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path).at(&path)?);
        w.write_all(bytemuck::cast_slice(&sorted)).at(&path)?;
        w.flush().at(&path)
    }

    pub(crate) fn finish(mut self) -> Result<SortedEdges> {
        if self.runs.is_empty() {
            return Ok(SortedEdges::Memory(sort_dedup(&std::mem::take(&mut self.chunk))));
        }
        if !self.chunk.is_empty() {
            self.spill()?;
        }
        // Runs are merged FAN_IN at a time, so that open files stay bounded
        // however small the chunks; consecutive groups keep the push order.
        let mut level = 0;
        while self.runs.len() > FAN_IN {
            let groups: Vec<Vec<PathBuf>> = self.runs.chunks(FAN_IN).map(<[PathBuf]>::to_vec).collect();
            let mut merged = Vec::with_capacity(groups.len());
            for (g, group) in groups.iter().enumerate() {
                let path = self.dir.join(format!("sort-run-{level}-{g}.tmp"));
                merge(group, &path)?;
                merged.push(path);
                for r in group {
                    let _ = fs::remove_file(r);
                }
            }
            self.runs = merged;
            level += 1;
        }
        let path = self.dir.join("sort-merged.tmp");
        merge(&self.runs, &path)?;
        for r in self.runs.drain(..) {
            let _ = fs::remove_file(r);
        }
        let file = File::open(&path).at(&path)?;
        if file.metadata().at(&path)?.len() == 0 {
            let _ = fs::remove_file(&path);
            return Ok(SortedEdges::Memory(Vec::new()));
        }
        // SAFETY: a temporary file this process just wrote and closed, inside
        // the locked database directory; nothing else writes it.
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.at(&path)?;
        Ok(SortedEdges::Mapped(map, path))
    }
}

/// Most runs merged at once (one open file each).
const FAN_IN: usize = 64;

/// Merges sorted runs into `path`; among equal edges the last run's wins.
fn merge(runs: &[PathBuf], path: &Path) -> Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).at(path)?);
    let mut readers = Vec::with_capacity(runs.len());
    for r in runs {
        readers.push((BufReader::with_capacity(1 << 16, File::open(r).at(r)?), r));
    }
    let next = |i: usize, readers: &mut Vec<(BufReader<File>, &PathBuf)>| -> Result<Option<WEdge>> {
        let mut buf = [0u8; size_of::<WEdge>()];
        let (reader, path) = &mut readers[i];
        match reader.read_exact(&mut buf) {
            Ok(()) => Ok(Some(bytemuck::pod_read_unaligned(&buf))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e).at(path),
        }
    };
    let key = |e: &WEdge| (e.rel as u128) << 64 | (e.src as u128) << 32 | e.dst as u128;
    // Min-heap on (edge, run); among equal edges the highest run (pushed last) wins.
    let mut heads: Vec<Option<WEdge>> = Vec::with_capacity(readers.len());
    let mut heap = BinaryHeap::new();
    for i in 0..readers.len() {
        let e = next(i, &mut readers)?;
        if let Some(e) = &e {
            heap.push(Reverse((key(e), i)));
        }
        heads.push(e);
    }
    let mut pending: Option<WEdge> = None;
    while let Some(Reverse((k, i))) = heap.pop() {
        let Some(e) = heads[i].take() else { continue };
        match &mut pending {
            Some(p) if key(p) == k => p.weight = e.weight,
            _ => {
                if let Some(p) = pending.replace(e) {
                    out.write_all(bytemuck::bytes_of(&p)).at(path)?;
                }
            }
        }
        if let Some(n) = next(i, &mut readers)? {
            heap.push(Reverse((key(&n), i)));
            heads[i] = Some(n);
        }
    }
    if let Some(p) = pending {
        out.write_all(bytemuck::bytes_of(&p)).at(path)?;
    }
    out.into_inner().map_err(|e| e.into_error()).at(path)?;
    Ok(())
}

impl Drop for EdgeSorter {
    fn drop(&mut self) {
        for r in &self.runs {
            let _ = fs::remove_file(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(rel: u32, src: u32, dst: u32, weight: f32) -> WEdge {
        WEdge {
            rel,
            src,
            dst,
            weight,
        }
    }

    #[test]
    fn spilled_runs_merge_like_one_sort() {
        let dir = tempfile::tempdir().unwrap();
        use rand_xoshiro::rand_core::{RngCore, SeedableRng};
        let mut rng = rand_xoshiro::SplitMix64::seed_from_u64(7);
        let mut all = Vec::new();
        for i in 0..10_000 {
            let x = rng.next_u64();
            all.push(e(
                (x % 3) as u32,
                (x >> 8) as u32 % 50,
                (x >> 20) as u32 % 50,
                i as f32,
            ));
        }
        let expected = sort_dedup(&all);
        // 13 runs merge at once; 10,000 runs of one edge merge in three levels.
        for chunk in [777, 1] {
            let mut s = EdgeSorter::new(dir.path(), chunk);
            for &x in &all {
                s.push(x).unwrap();
            }
            let got = s.finish().unwrap();
            assert!(matches!(got, SortedEdges::Mapped(..)));
            assert_eq!(&*got, &expected[..]);
            drop(got);
            assert_eq!(
                fs::read_dir(dir.path()).unwrap().count(),
                0,
                "temporary files left behind"
            );
        }
    }
}
