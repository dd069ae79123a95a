//! Which end of an edge is corrupted, and how the query is formed: the one
//! description both training backends and [`crate::Model`]'s link
//! prediction use.

use crate::config::{Score, TrainConfig};

/// The end of an edge (h, r, t) that a training side corrupts, or that a
/// prediction asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Corrupt {
    /// Queries from heads, candidates are tails: q = h + r.
    Tails,
    /// Queries from tails, candidates are heads: q = t + r′ with reciprocal
    /// head relations, t − r for the distance scores, t for the dot score.
    Heads,
}

/// How a side's query is formed: q = node + sign · relation row `relation`
/// (sign 1, −1 or 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Query {
    /// Row in the relation table (reciprocal head relations follow the others).
    pub relation: u32,
    pub sign: f32,
}

impl Corrupt {
    /// Tails first, then heads: the order every chunk trains its sides in.
    pub(crate) const BOTH: [Corrupt; 2] = [Corrupt::Tails, Corrupt::Heads];

    /// A (head side, tail side) pair as (query side, candidate side): for a
    /// relation's node types, or an edge's nodes.
    pub(crate) fn types(self, (src, dst): (u32, u32)) -> (u32, u32) {
        match self {
            Corrupt::Tails => (src, dst),
            Corrupt::Heads => (dst, src),
        }
    }

    /// The query of relation `rel` for this side; `relations` is the number
    /// of relations (the reciprocal rows start there).
    pub(crate) fn query(self, cfg: &TrainConfig, rel: u32, relations: u32) -> Query {
        match (self, cfg.reciprocal, cfg.score != Score::Dot) {
            (Corrupt::Tails, ..) => Query {
                relation: rel,
                sign: 1.0,
            },
            (Corrupt::Heads, true, _) => Query {
                relation: relations + rel,
                sign: 1.0,
            },
            (Corrupt::Heads, false, true) => Query {
                relation: rel,
                sign: -1.0,
            },
            (Corrupt::Heads, false, false) => Query {
                relation: rel,
                sign: 0.0,
            },
        }
    }
}

impl Query {
    /// Appends node + sign · relation to `out` (exactly: a sum, a difference
    /// or the node row itself).
    pub(crate) fn form(self, node: &[f32], relation: &[f32], out: &mut Vec<f32>) {
        match self.sign {
            s if s > 0.0 => out.extend(node.iter().zip(relation).map(|(a, b)| a + b)),
            s if s < 0.0 => out.extend(node.iter().zip(relation).map(|(a, b)| a - b)),
            _ => out.extend_from_slice(node),
        }
    }
}
