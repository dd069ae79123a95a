//! The base: immutable node dictionaries and adjacency (CSR) of one
//! generation, memory-mapped from two segment files and validated at open so
//! that reads never index out of bounds.
//!
//! Per node type `t`, the nodes segment holds three sections:
//! `3t`: key offsets (u32, n+1), `3t+1`: key bytes, `3t+2`: ids sorted by key.
//! Per node type `t` and direction `d` (0 out, 1 in), the adjacency segment
//! holds five sections starting at `5(2t+d)`: node offsets into groups (n+1),
//! group relation ids (G), group offsets into neighbours (G+1), neighbours (E),
//! and weights (E, or empty when every weight is 1).

use std::path::Path;

use crate::catalog::{Catalog, SegmentRef};
use crate::error::Result;
use crate::segment::{Kind, Segment, SegmentWriter};

/// Edge direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Edges leaving the node.
    Out,
    /// Edges entering the node.
    In,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::Out => 0,
            Direction::In => 1,
        }
    }
}

pub(crate) struct Base {
    nodes: Option<Segment>,
    adj: Option<Segment>,
    counts: Vec<u32>,
}

fn adj_section(t: u32, d: Direction, k: usize) -> usize {
    (2 * t as usize + d.index()) * 5 + k
}

impl Base {
    pub(crate) fn empty() -> Self {
        Self {
            nodes: None,
            adj: None,
            counts: Vec::new(),
        }
    }

    pub(crate) fn open(dir: &Path, catalog: &Catalog) -> Result<Self> {
        let [nodes_ref, adj_ref] = match catalog.base.as_slice() {
            [a, b] => [a, b],
            _ => return Ok(Self::empty()),
        };
        let nodes = Segment::open(dir, nodes_ref, Kind::Nodes)?;
        let adj = Segment::open(dir, adj_ref, Kind::Adjacency)?;
        let counts = catalog.base_counts.clone();
        let types = counts.len();
        if nodes.section_count() != 3 * types {
            return Err(nodes
                .corrupt(format!(
                    "{} sections for {types} node types",
                    nodes.section_count()
                ))
                .into());
        }
        if adj.section_count() != 10 * types {
            return Err(adj
                .corrupt(format!("{} sections for {types} node types", adj.section_count()))
                .into());
        }
        for (t, &n) in counts.iter().enumerate() {
            let n = n as usize;
            let offsets = nodes.check_array::<u32>(3 * t)?;
            let bytes = nodes.bytes(3 * t + 1);
            let sorted = nodes.check_array::<u32>(3 * t + 2)?;
            if offsets.len() != n + 1
                || sorted.len() != n
                || offsets[n] as usize != bytes.len()
                || offsets[0] != 0
            {
                return Err(nodes
                    .corrupt(format!("node dictionary of type {t} has wrong lengths"))
                    .into());
            }
            for w in offsets.windows(2) {
                if w[0] > w[1] || std::str::from_utf8(&bytes[w[0] as usize..w[1] as usize]).is_err() {
                    return Err(nodes
                        .corrupt(format!("node dictionary of type {t}: bad key offsets or UTF-8"))
                        .into());
                }
            }
            if sorted.iter().any(|&id| id as usize >= n) {
                return Err(nodes
                    .corrupt(format!("node dictionary of type {t}: id out of range"))
                    .into());
            }
            for d in [Direction::Out, Direction::In] {
                check_csr(&adj, catalog, &counts, t as u32, d)?;
            }
        }
        Ok(Self {
            nodes: Some(nodes),
            adj: Some(adj),
            counts,
        })
    }

    /// Nodes of type `t` in the base.
    pub(crate) fn count(&self, t: u32) -> u32 {
        self.counts.get(t as usize).copied().unwrap_or(0)
    }

    pub(crate) fn key(&self, t: u32, id: u32) -> Option<&str> {
        let s = self.nodes.as_ref()?;
        let off = s.array::<u32>(3 * t as usize);
        let (a, b) = (*off.get(id as usize)?, *off.get(id as usize + 1)?);
        std::str::from_utf8(s.bytes(3 * t as usize + 1).get(a as usize..b as usize)?).ok()
    }

    pub(crate) fn lookup(&self, t: u32, key: &str) -> Option<u32> {
        let s = self.nodes.as_ref()?;
        let sorted = s.array::<u32>(3 * t as usize + 2);
        let i = sorted
            .binary_search_by(|&id| self.key(t, id).unwrap_or("").cmp(key))
            .ok()?;
        Some(sorted[i])
    }

    /// The relation groups of a node: `(group_rel, group_off)` windows.
    fn groups(&self, t: u32, d: Direction, node: u32) -> Option<(&[u32], &[u32], &[u32])> {
        let s = self.adj.as_ref()?;
        let node_off = s.array::<u32>(adj_section(t, d, 0));
        let (a, b) = (
            *node_off.get(node as usize)? as usize,
            *node_off.get(node as usize + 1)? as usize,
        );
        let rels = s.array::<u32>(adj_section(t, d, 1)).get(a..b)?;
        let offs = s.array::<u32>(adj_section(t, d, 2)).get(a..b + 1)?;
        Some((rels, offs, s.array::<u32>(adj_section(t, d, 3))))
    }

    /// Neighbours of `node` (of type `t`) by relation `rel`, sorted, and their
    /// weights (empty when all are 1).
    pub(crate) fn neighbors(&self, t: u32, d: Direction, node: u32, rel: u32) -> (&[u32], &[f32]) {
        let Some((rels, offs, nbrs)) = self.groups(t, d, node) else {
            return (&[], &[]);
        };
        let Ok(g) = rels.binary_search(&rel) else {
            return (&[], &[]);
        };
        let (a, b) = (offs[g] as usize, offs[g + 1] as usize);
        let weights = self.weights(t, d);
        (&nbrs[a..b], weights.get(a..b).unwrap_or(&[]))
    }

    fn weights(&self, t: u32, d: Direction) -> &[f32] {
        self.adj
            .as_ref()
            .map_or(&[], |s| s.array::<f32>(adj_section(t, d, 4)))
    }

    /// All `(relation, neighbour slice)` groups of a node, by relation id.
    pub(crate) fn all_neighbors(
        &self,
        t: u32,
        d: Direction,
        node: u32,
    ) -> impl Iterator<Item = (u32, &[u32])> {
        let g = self.groups(t, d, node);
        let n = g.map_or(0, |(r, _, _)| r.len());
        (0..n).filter_map(move |i| {
            let (rels, offs, nbrs) = g?;
            Some((rels[i], nbrs.get(offs[i] as usize..offs[i + 1] as usize)?))
        })
    }

    /// Degree across all relations, without touching the neighbour lists.
    pub(crate) fn degree(&self, t: u32, d: Direction, node: u32) -> u64 {
        self.groups(t, d, node)
            .map_or(0, |(_, offs, _)| (offs[offs.len() - 1] - offs[0]) as u64)
    }

    /// Number of edges leaving nodes of type `t`.
    pub(crate) fn edge_count(&self, t: u32) -> u64 {
        self.adj.as_ref().map_or(0, |s| {
            s.array::<u32>(adj_section(t, Direction::Out, 3)).len() as u64
        })
    }
}

fn check_csr(adj: &Segment, catalog: &Catalog, counts: &[u32], t: u32, d: Direction) -> Result<()> {
    let n = counts[t as usize] as usize;
    let node_off = adj.check_array::<u32>(adj_section(t, d, 0))?;
    let rels = adj.check_array::<u32>(adj_section(t, d, 1))?;
    let offs = adj.check_array::<u32>(adj_section(t, d, 2))?;
    let nbrs = adj.check_array::<u32>(adj_section(t, d, 3))?;
    let weights = adj.check_array::<f32>(adj_section(t, d, 4))?;
    let bad = |m: &str| Err(adj.corrupt(format!("adjacency of type {t} {d:?}: {m}")).into());
    if node_off.len() != n + 1 || node_off[0] != 0 || node_off[n] as usize != rels.len() {
        return bad("node offsets have wrong length or ends");
    }
    if node_off.windows(2).any(|w| w[0] > w[1]) {
        return bad("node offsets decrease");
    }
    if offs.len() != rels.len() + 1 || offs[0] != 0 || offs[rels.len()] as usize != nbrs.len() {
        return bad("group offsets have wrong length or ends");
    }
    if !weights.is_empty() && weights.len() != nbrs.len() {
        return bad("weights do not match neighbours");
    }
    for g in 0..rels.len() {
        let Some(r) = catalog.relations.get(rels[g] as usize) else {
            return bad("unknown relation id");
        };
        let (own, other) = match d {
            Direction::Out => (r.src, r.dst),
            Direction::In => (r.dst, r.src),
        };
        if own != t || offs[g] > offs[g + 1] {
            return bad("relation group of the wrong type or with bad offsets");
        }
        let limit = counts.get(other as usize).copied().unwrap_or(0);
        if nbrs[offs[g] as usize..offs[g + 1] as usize]
            .iter()
            .any(|&x| x >= limit)
        {
            return bad("neighbour id out of range");
        }
    }
    Ok(())
}

/// One edge with its weight, as the builders take it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WEdge {
    pub rel: u32,
    pub src: u32,
    pub dst: u32,
    pub weight: f32,
}

/// Sorts edges by (rel, src, dst) and drops duplicates; of equal edges the
/// last one's weight wins. Sorting packed 128-bit keys (with the position as
/// the lowest 32 bits) is several times faster than a stable sort of structs.
pub(crate) fn sort_dedup(edges: &[WEdge]) -> Vec<WEdge> {
    let mut keys: Vec<u128> = edges
        .iter()
        .enumerate()
        .map(|(i, e)| (e.rel as u128) << 96 | (e.src as u128) << 64 | (e.dst as u128) << 32 | i as u128)
        .collect();
    keys.sort_unstable();
    let mut out: Vec<WEdge> = Vec::with_capacity(keys.len());
    let mut prev = None;
    for k in keys {
        let e = edges[k as u32 as usize];
        if prev == Some(k >> 32) {
            if let Some(last) = out.last_mut() {
                last.weight = e.weight;
            }
        } else {
            out.push(e);
            prev = Some(k >> 32);
        }
    }
    out
}

/// The five CSR arrays of one (node type, direction).
struct Csr {
    node_off: Vec<u32>,
    rels: Vec<u32>,
    group_off: Vec<u32>,
    nbrs: Vec<u32>,
    weights: Vec<f32>,
}

/// Builds the CSR of every node type for direction `d`. `edges` are sorted by
/// (rel, src, dst), so a stable counting sort on the node id alone yields each
/// node's edges ordered by (rel, neighbour): linear time, no comparisons.
fn build_csr(catalog: &Catalog, counts: &[u32], edges: &[WEdge], d: Direction, weighted: bool) -> Vec<Csr> {
    let mut type_start = Vec::with_capacity(counts.len() + 1);
    type_start.push(0usize);
    for &c in counts {
        type_start.push(type_start[type_start.len() - 1] + c as usize);
    }
    let side = |e: &WEdge| {
        let r = &catalog.relations[e.rel as usize];
        match d {
            Direction::Out => (type_start[r.src as usize] + e.src as usize, e.dst),
            Direction::In => (type_start[r.dst as usize] + e.dst as usize, e.src),
        }
    };
    let total = type_start[counts.len()];
    let mut start = vec![0usize; total + 1];
    for e in edges {
        start[side(e).0 + 1] += 1;
    }
    for i in 0..total {
        start[i + 1] += start[i];
    }
    let mut next = start.clone();
    let mut order = vec![0u32; edges.len()];
    for (i, e) in edges.iter().enumerate() {
        let slot = &mut next[side(e).0];
        order[*slot] = i as u32;
        *slot += 1;
    }
    (0..counts.len())
        .map(|t| {
            let nodes = type_start[t]..type_start[t + 1];
            let (first, last) = (start[nodes.start], start[nodes.end]);
            let mut csr = Csr {
                node_off: Vec::with_capacity(nodes.len() + 1),
                rels: Vec::new(),
                group_off: Vec::new(),
                nbrs: Vec::with_capacity(last - first),
                weights: Vec::new(),
            };
            for g in nodes {
                csr.node_off.push(csr.rels.len() as u32);
                let mut prev = None;
                for &i in &order[start[g]..start[g + 1]] {
                    let e = &edges[i as usize];
                    if prev != Some(e.rel) {
                        csr.rels.push(e.rel);
                        csr.group_off.push(csr.nbrs.len() as u32);
                        prev = Some(e.rel);
                    }
                    csr.nbrs.push(side(e).1);
                    if weighted {
                        csr.weights.push(e.weight);
                    }
                }
            }
            csr.node_off.push(csr.rels.len() as u32);
            csr.group_off.push(csr.nbrs.len() as u32);
            csr
        })
        .collect()
}

/// Writes the two base segments of generation `gen`.
///
/// `keys[t]` lists the keys of type `t` in id order; `edges` must be sorted
/// and deduplicated on `(rel, src, dst)`.
pub(crate) fn write_base(
    dir: &Path,
    gen: u64,
    catalog: &Catalog,
    keys: &[Vec<&str>],
    edges: &[WEdge],
) -> Result<[SegmentRef; 2]> {
    let counts: Vec<u32> = keys.iter().map(|k| k.len() as u32).collect();
    let weighted = edges.iter().any(|e| e.weight != 1.0);
    let (out, inn) = std::thread::scope(|s| {
        let out = s.spawn(|| build_csr(catalog, &counts, edges, Direction::Out, weighted));
        let inn = build_csr(catalog, &counts, edges, Direction::In, weighted);
        (out.join(), inn)
    });
    let out = out.map_err(|_| crate::StorageError::InvalidInput("adjacency build failed".into()))?;
    let mut nodes = SegmentWriter::new(Kind::Nodes);
    for ks in keys {
        let mut offsets = Vec::with_capacity(ks.len() + 1);
        let mut bytes = Vec::new();
        offsets.push(0u32);
        for k in ks {
            bytes.extend_from_slice(k.as_bytes());
            let end = u32::try_from(bytes.len()).map_err(|_| {
                crate::StorageError::InvalidInput("keys of one node type exceed 4 GiB".into())
            })?;
            offsets.push(end);
        }
        let mut sorted: Vec<u32> = (0..ks.len() as u32).collect();
        sorted.sort_unstable_by(|&a, &b| ks[a as usize].cmp(ks[b as usize]));
        nodes.push(&offsets);
        nodes.push(&bytes);
        nodes.push(&sorted);
    }
    let mut adj = SegmentWriter::new(Kind::Adjacency);
    for (o, i) in out.iter().zip(&inn) {
        for c in [o, i] {
            adj.push(&c.node_off);
            adj.push(&c.rels);
            adj.push(&c.group_off);
            adj.push(&c.nbrs);
            adj.push(&c.weights);
        }
    }
    Ok([
        nodes.write(dir, &format!("base-{gen}.nodes"))?,
        adj.write(dir, &format!("base-{gen}.adj"))?,
    ])
}
