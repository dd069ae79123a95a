//! `quiver stats` and `quiver check`: counts, sizes and a full consistency check.

use std::path::Path;

use crate::base::Direction;
use crate::db::{Database, CATALOG_DIR};
use crate::error::Result;

/// Summary of a degree distribution.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DegreeSummary {
    /// Smallest degree.
    pub min: u64,
    /// Median degree.
    pub median: u64,
    /// Mean degree.
    pub mean: f64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest degree.
    pub max: u64,
}

impl DegreeSummary {
    fn of(mut d: Vec<u64>) -> Self {
        if d.is_empty() {
            return Self::default();
        }
        d.sort_unstable();
        let n = d.len();
        Self {
            min: d[0],
            median: d[n / 2],
            mean: d.iter().sum::<u64>() as f64 / n as f64,
            p99: d[(n * 99 / 100).min(n - 1)],
            max: d[n - 1],
        }
    }
}

/// Counts and sizes of a database.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// (type name, node count), in type-id order.
    pub node_types: Vec<(String, u64)>,
    /// (relation name, source type, destination type, edge count).
    pub relations: Vec<(String, String, String, u64)>,
    /// Total nodes.
    pub nodes: u64,
    /// Total distinct edges.
    pub edges: u64,
    /// Out-degree over all nodes, all relations.
    pub out_degree: DegreeSummary,
    /// In-degree over all nodes, all relations.
    pub in_degree: DegreeSummary,
    /// Edge changes held in the delta (folded in by the next compaction).
    pub delta_changes: u64,
    /// Base generation.
    pub generation: u64,
    /// (component, bytes on disk).
    pub disk: Vec<(String, u64)>,
}

/// What `check` found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Problems found; empty when the database is consistent.
    pub problems: Vec<String>,
    /// Short notes that are not problems (e.g. stale buckets).
    pub notes: Vec<String>,
}

impl CheckReport {
    /// True when no problem was found.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn dir_size(p: &Path) -> u64 {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|it| it.filter_map(|e| e.ok()).map(|e| dir_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

impl Database {
    /// Counts, degree summary and disk size per component.
    pub fn stats(&self) -> Result<Stats> {
        let snap = self.snapshot();
        let c = snap.catalog();
        let mut rel_counts = vec![0u64; c.relations.len()];
        let (mut outd, mut ind) = (Vec::new(), Vec::new());
        for t in 0..c.node_types.len() as u32 {
            for n in 0..snap.node_count(t) {
                for r in snap.relations_of(t, n, Direction::Out) {
                    rel_counts[r as usize] += snap.degree(r, n, Direction::Out);
                }
                outd.push(snap.total_degree(t, n, Direction::Out));
                ind.push(snap.total_degree(t, n, Direction::In));
            }
        }
        let mut disk = vec![(
            "catalog (sled)".to_string(),
            dir_size(&self.path().join(CATALOG_DIR)),
        )];
        for (name, r) in ["base nodes", "base adjacency"].iter().zip(&c.base) {
            disk.push((name.to_string(), r.len));
        }
        for b in &c.buckets {
            disk.push((format!("buckets P={}", b.partitions), b.segment.len));
        }
        Ok(Stats {
            node_types: c
                .node_types
                .iter()
                .map(|t| (t.name.clone(), t.count as u64))
                .collect(),
            relations: c
                .relations
                .iter()
                .zip(&rel_counts)
                .map(|(r, &n)| {
                    (
                        r.name.clone(),
                        c.type_name(r.src).into(),
                        c.type_name(r.dst).into(),
                        n,
                    )
                })
                .collect(),
            nodes: c.node_types.iter().map(|t| t.count as u64).sum(),
            edges: rel_counts.iter().sum(),
            out_degree: DegreeSummary::of(outd),
            in_degree: DegreeSummary::of(ind),
            delta_changes: snap.state.delta.edge_changes(|rel| c.relations[rel as usize].src),
            generation: c.generation,
            disk,
        })
    }

    /// Verifies everything: keys and ids map both ways, in- and out-adjacency
    /// mirror each other, stored buckets equal the adjacency, checksums match
    /// (segments, every stored model's included, are re-read and re-hashed
    /// by reopening them).
    pub fn check(&self) -> Result<CheckReport> {
        let mut rep = CheckReport::default();
        let snap = self.snapshot();
        let c = snap.catalog();
        for (t, def) in c.node_types.iter().enumerate() {
            let t = t as u32;
            for id in 0..def.count {
                if snap.is_deleted(t, id) {
                    let degree =
                        snap.total_degree(t, id, Direction::Out) + snap.total_degree(t, id, Direction::In);
                    if degree > 0 {
                        rep.problems
                            .push(format!("{} id {id} is deleted but has {degree} edges", def.name));
                    }
                    continue;
                }
                match snap.node_key(t, id) {
                    None => rep.problems.push(format!("{} id {id} has no key", def.name)),
                    Some(k) => match snap.node_id(t, k) {
                        Some(back) if back == id => {}
                        other => rep
                            .problems
                            .push(format!("{} key `{k}` maps to {other:?}, not {id}", def.name)),
                    },
                }
            }
        }
        let mut out_edges = Vec::new();
        let mut in_edges = Vec::new();
        for t in 0..c.node_types.len() as u32 {
            for n in 0..snap.node_count(t) {
                for r in snap.relations_of(t, n, Direction::Out) {
                    let nb = snap.out_neighbors(r, n);
                    if nb.windows(2).any(|w| w[0] >= w[1]) {
                        rep.problems.push(format!(
                            "out-neighbours of {t}/{n} by relation {r} are not sorted and distinct"
                        ));
                    }
                    out_edges.extend(nb.iter().map(|&d| (r, n, d)));
                }
                for r in snap.relations_of(t, n, Direction::In) {
                    in_edges.extend(snap.in_neighbors(r, n).iter().map(|&s| (r, s, n)));
                }
            }
        }
        out_edges.sort_unstable();
        in_edges.sort_unstable();
        if out_edges != in_edges {
            rep.problems.push(format!(
                "out-adjacency ({} edges) and in-adjacency ({} edges) differ",
                out_edges.len(),
                in_edges.len()
            ));
        }
        for b in &c.buckets {
            if b.edge_version != c.edge_version {
                rep.notes.push(format!(
                    "buckets for P={} are stale (rebuilt before training)",
                    b.partitions
                ));
                continue;
            }
            let buckets = match self.buckets(b.partitions) {
                Ok(x) => x,
                Err(e) => {
                    rep.problems.push(format!("buckets for P={}: {e}", b.partitions));
                    continue;
                }
            };
            let mut seen = Vec::with_capacity(out_edges.len());
            for i in 0..b.partitions {
                for j in 0..b.partitions {
                    for e in buckets.bucket(i, j) {
                        let r = &c.relations[e.rel as usize];
                        if buckets.partition_of(r.src, e.src) != i || buckets.partition_of(r.dst, e.dst) != j
                        {
                            rep.problems.push(format!(
                                "edge {e:?} is in bucket ({i}, {j}) but belongs elsewhere"
                            ));
                        }
                        seen.push((e.rel, e.src, e.dst));
                    }
                }
            }
            seen.sort_unstable();
            if seen != out_edges {
                rep.problems.push(format!(
                    "buckets for P={} do not equal the adjacency",
                    b.partitions
                ));
            }
        }
        // Reopening re-hashes every segment against the checksums in the catalog.
        if let Err(e) = crate::base::Base::open(self.path(), c) {
            rep.problems.push(e.to_string());
        }
        for m in &c.models {
            for (key, _) in &m.parts {
                if let Err(e) = self.model_blob(&m.name, key) {
                    rep.problems.push(format!("model `{}`, part {key}: {e}", m.name));
                }
            }
        }
        Ok(rep)
    }
}
