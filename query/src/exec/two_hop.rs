//! Two hops from one node without a row per path: the distinct ends as one
//! bitmap per end type, or the number of paths from degrees.

use super::*;

impl Ctx<'_> {
    /// The distinct ends of two steps from the row's `a.from`, by node type:
    /// the union of the middle nodes' neighbour lists, as one bitmap of the
    /// type's ids (a bit per node, zeroed lazily by the allocator, so a
    /// query touches only the pages its ends fall in). Relationship
    /// uniqueness can only remove the start node itself (reached back over
    /// the edge that left it), so that one is checked path by path.
    pub(super) fn two_hop(&self, a: &Step, b: &Step, row: &Row) -> Result<Vec<Ends>> {
        let Value::Node {
            ty: from_ty,
            id: from,
        } = row[a.from]
        else {
            return Ok(Vec::new());
        };
        let c = self.snap.catalog();
        let mut mids = Vec::new();
        self.expand(a, row, &mut |e, x| {
            mids.push((e, x));
            Ok(())
        })?;
        let mut ends: Vec<Ends> = Vec::new();
        // Whether some path back to the start uses two different edges.
        let mut back = false;
        for (e1, x) in &mids {
            let Value::Node { ty, id } = *x else { continue };
            for (rel, d) in self.step_rels(b, ty, id) {
                let def = &c.relations[rel as usize];
                let to_ty = if d == Direction::Out { def.dst } else { def.src };
                if b.to_types.as_ref().is_some_and(|t| !t.contains(&to_ty)) {
                    continue;
                }
                self.tick()?;
                let nbrs = self.snap.neighbors(rel, id, d);
                if to_ty == from_ty && !back && nbrs.binary_search(&from).is_ok() {
                    let e2 = match d {
                        Direction::Out => Value::Edge {
                            rel,
                            src: id,
                            dst: from,
                        },
                        Direction::In => Value::Edge {
                            rel,
                            src: from,
                            dst: id,
                        },
                    };
                    back = e2 != *e1;
                }
                let set = match ends.iter().position(|e| e.ty == to_ty) {
                    Some(i) => &mut ends[i],
                    None => {
                        ends.push(Ends::new(to_ty, self.snap.node_count(to_ty)));
                        ends.last_mut().expect("just pushed")
                    }
                };
                for &n in nbrs.iter() {
                    set.insert(n);
                }
            }
        }
        if !back {
            if let Some(e) = ends.iter_mut().find(|e| e.ty == from_ty) {
                e.remove(from);
            }
        }
        Ok(ends)
    }

    /// The number of two-step paths from the row's `a.from` along `a` then
    /// `b` (`b` directed): per middle node, its degree along `b`, less the
    /// edge that led to it when `b` could take it back (relationship
    /// uniqueness), without listing a neighbour.
    pub(super) fn two_hop_paths(&self, a: &Step, b: &Step, row: &Row) -> Result<u64> {
        let c = self.snap.catalog();
        let mut n = 0;
        let mut mids = Vec::new();
        self.expand(a, row, &mut |e, x| {
            mids.push((e, x));
            Ok(())
        })?;
        for (e1, x) in &mids {
            let (Value::Node { ty, id }, Value::Edge { rel: r1, src, dst }) = (x, e1) else {
                continue;
            };
            for (rel, d) in self.step_rels(b, *ty, *id) {
                let def = &c.relations[rel as usize];
                let to_ty = if d == Direction::Out { def.dst } else { def.src };
                if b.to_types.as_ref().is_some_and(|t| !t.contains(&to_ty)) {
                    continue;
                }
                self.tick()?;
                let back = rel == *r1 && if d == Direction::Out { src == id } else { dst == id };
                n += self.snap.degree(rel, *id, d) - u64::from(back);
            }
        }
        Ok(n)
    }
}

/// A set of node ids of one type, a bit each, with its size.
pub(super) struct Ends {
    pub(super) ty: u32,
    bits: Vec<u64>,
    pub(super) count: u64,
}

impl Ends {
    fn new(ty: u32, nodes: u32) -> Self {
        Ends {
            ty,
            bits: vec![0; (nodes as usize).div_ceil(64)],
            count: 0,
        }
    }

    fn insert(&mut self, id: u32) {
        if let Some(w) = self.bits.get_mut(id as usize / 64) {
            let bit = 1u64 << (id % 64);
            self.count += u64::from(*w & bit == 0);
            *w |= bit;
        }
    }

    fn remove(&mut self, id: u32) {
        if let Some(w) = self.bits.get_mut(id as usize / 64) {
            let bit = 1u64 << (id % 64);
            self.count -= u64::from(*w & bit != 0);
            *w &= !bit;
        }
    }

    /// The ids in increasing order.
    pub(super) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.bits.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let b = w.trailing_zeros();
                    w &= w - 1;
                    i as u32 * 64 + b
                })
            })
        })
    }
}
