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

/// One edge with its weight, as the builders take it (and as sorted runs
/// store it on disk: 16 bytes, little-endian).
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
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

/// Where each node's groups and neighbours start, per direction, over all
/// node types (global node index = type's first index + id).
struct Shape {
    type_start: Vec<usize>,
    /// Per global node, its first neighbour; one more entry at the end.
    nbr_start: Vec<u64>,
    /// Per global node, its first group; one more entry at the end.
    grp_start: Vec<u64>,
}

fn endpoint(catalog: &Catalog, e: &WEdge, d: Direction) -> (u32, u32, u32) {
    let r = &catalog.relations[e.rel as usize];
    match d {
        Direction::Out => (r.src, e.src, e.dst),
        Direction::In => (r.dst, e.dst, e.src),
    }
}

impl Shape {
    /// Counts neighbours and relation groups per node. `edges` are sorted by
    /// (rel, src, dst), so a node's groups appear in increasing relation order
    /// and a group starts wherever the node's last relation changes.
    fn count(catalog: &Catalog, counts: &[u32], edges: &[WEdge], d: Direction) -> Self {
        let mut type_start = vec![0usize];
        for &c in counts {
            type_start.push(type_start[type_start.len() - 1] + c as usize);
        }
        let total = type_start[counts.len()];
        let mut nbr_start = vec![0u64; total + 1];
        let mut grp_start = vec![0u64; total + 1];
        let mut last_rel = vec![u32::MAX; total];
        for e in edges {
            let (t, node, _) = endpoint(catalog, e, d);
            let g = type_start[t as usize] + node as usize;
            nbr_start[g + 1] += 1;
            if last_rel[g] != e.rel {
                last_rel[g] = e.rel;
                grp_start[g + 1] += 1;
            }
        }
        for i in 0..total {
            nbr_start[i + 1] += nbr_start[i];
            grp_start[i + 1] += grp_start[i];
        }
        Self {
            type_start,
            nbr_start,
            grp_start,
        }
    }

    /// (neighbours, groups) of type `t`.
    fn sizes(&self, t: usize) -> (u64, u64) {
        let (a, b) = (self.type_start[t], self.type_start[t + 1]);
        (
            self.nbr_start[b] - self.nbr_start[a],
            self.grp_start[b] - self.grp_start[a],
        )
    }
}

/// One (node type, direction)'s CSR sections, mapped for writing.
struct CsrMut<'a> {
    node_off: &'a mut [u32],
    rels: &'a mut [u32],
    group_off: &'a mut [u32],
    nbrs: &'a mut [u32],
    weights: &'a mut [f32],
}

/// Fills one direction's five sections per node type (`secs[t]`) in place.
fn fill_csr(catalog: &Catalog, edges: &[WEdge], d: Direction, shape: &Shape, secs: Vec<[&mut [u8]; 5]>) {
    let mut arrays: Vec<CsrMut<'_>> = secs
        .into_iter()
        .map(|[a, b, c, e, w]| CsrMut {
            node_off: bytemuck::cast_slice_mut(a),
            rels: bytemuck::cast_slice_mut(b),
            group_off: bytemuck::cast_slice_mut(c),
            nbrs: bytemuck::cast_slice_mut(e),
            weights: bytemuck::cast_slice_mut(w),
        })
        .collect();
    let ts = &shape.type_start;
    for (
        t,
        CsrMut {
            node_off, group_off, ..
        },
    ) in arrays.iter_mut().enumerate()
    {
        let g0 = shape.grp_start[ts[t]];
        for (i, slot) in node_off.iter_mut().enumerate() {
            *slot = (shape.grp_start[ts[t] + i] - g0) as u32;
        }
        let (nbrs, _) = shape.sizes(t);
        if let Some(last) = group_off.last_mut() {
            *last = nbrs as u32;
        }
    }
    let mut nbr_cur = shape.nbr_start.clone();
    let mut grp_cur = shape.grp_start.clone();
    let mut last_rel = vec![u32::MAX; ts[ts.len() - 1]];
    for e in edges {
        let (t, node, other) = endpoint(catalog, e, d);
        let t = t as usize;
        let g = ts[t] + node as usize;
        let (e0, g0) = (shape.nbr_start[ts[t]], shape.grp_start[ts[t]]);
        let CsrMut {
            rels,
            group_off,
            nbrs,
            weights,
            ..
        } = &mut arrays[t];
        if last_rel[g] != e.rel {
            last_rel[g] = e.rel;
            let gi = (grp_cur[g] - g0) as usize;
            grp_cur[g] += 1;
            rels[gi] = e.rel;
            group_off[gi] = (nbr_cur[g] - e0) as u32;
        }
        let ni = (nbr_cur[g] - e0) as usize;
        nbr_cur[g] += 1;
        nbrs[ni] = other;
        if let Some(w) = weights.get_mut(ni) {
            *w = e.weight;
        }
    }
}

/// Writes the two base segments of generation `gen`.
///
/// `keys[t]` lists the keys of type `t` in id order; `edges` must be sorted
/// and deduplicated on `(rel, src, dst)`. The adjacency is built in place in
/// the mapped output file (two passes over `edges`, both directions on two
/// threads), so memory grows with the node count, not the edge count.
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
        let out = s.spawn(|| Shape::count(catalog, &counts, edges, Direction::Out));
        let inn = Shape::count(catalog, &counts, edges, Direction::In);
        (out.join(), inn)
    });
    let out = out.map_err(|_| crate::StorageError::InvalidInput("adjacency build failed".into()))?;
    let mut lens = Vec::with_capacity(10 * counts.len());
    for (t, &n) in counts.iter().enumerate() {
        for shape in [&out, &inn] {
            let (e, g) = shape.sizes(t);
            if e >= u32::MAX as u64 {
                return Err(crate::StorageError::InvalidInput(format!(
                    "node type {t} has {e} edges in one direction; the format holds fewer than 2^32"
                )));
            }
            let (e, g) = (e as usize, g as usize);
            lens.extend([
                4 * (n as usize + 1),
                4 * g,
                4 * (g + 1),
                4 * e,
                if weighted { 4 * e } else { 0 },
            ]);
        }
    }
    let mut adj = SegmentWriter::create(dir, &format!("base-{gen}.adj"), Kind::Adjacency, &lens)?;
    let mut sections = adj.sections().into_iter();
    let (mut out_secs, mut in_secs) = (Vec::new(), Vec::new());
    for _ in 0..counts.len() {
        for secs in [&mut out_secs, &mut in_secs] {
            secs.push(std::array::from_fn(|_| sections.next().unwrap_or_default()));
        }
    }
    std::thread::scope(|s| {
        s.spawn(|| fill_csr(catalog, edges, Direction::Out, &out, out_secs));
        fill_csr(catalog, edges, Direction::In, &inn, in_secs);
    });
    let adj = adj.finish()?;

    let mut owned: Vec<(Vec<u32>, Vec<u8>, Vec<u32>)> = Vec::with_capacity(keys.len());
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
        owned.push((offsets, bytes, sorted));
    }
    let sections: Vec<&[u8]> = owned
        .iter()
        .flat_map(|(o, b, s)| [bytemuck::cast_slice(o), b.as_slice(), bytemuck::cast_slice(s)])
        .collect();
    let nodes = SegmentWriter::write(dir, &format!("base-{gen}.nodes"), Kind::Nodes, &sections)?;
    Ok([nodes, adj])
}
