//! PyTorch-BigGraph's file formats, so that a graph stored in quiver can be
//! trained by PBG's distributed trainer and the result served by quiver:
//! [`export_graph`] writes PBG's training input (entity counts and names per
//! partition, one HDF5 file of edges per bucket, a `config.py`), and
//! [`import_checkpoint`] stores a PBG checkpoint as a quiver model.
//!
//! The partitions are quiver's own (contiguous id ranges of ⌈n/P⌉ per node
//! type), so row r of quiver's partition p is row r of PBG's partition p.
//! When every relation joins the same two entity types (a knowledge graph)
//! the relations are PBG's "dynamic" ones (one operator per side, which
//! PBG's filtered evaluation requires): an edge scores c(u + t_lhs, v) for
//! tail ranking and c(u, v + t_rhs) for head ranking, which is quiver's
//! TransE with reciprocal relations, r = t_lhs and r′ = t_rhs. Otherwise
//! (User→Tweet beside User→User) they are "static" ones, one entry per
//! relation with its own types and the translation on the right-hand side:
//! c(u, v + t_r), quiver's h + r ≈ t with r = −t_r. Both hold exactly for
//! the l2 comparators that TransE uses.

use std::path::Path;

use quiver_engine::Score;
use quiver_storage::Database;

use crate::{Error, Result};

mod checkpoint;
#[cfg(feature = "pbg")]
mod export;
#[cfg(feature = "pbg")]
mod import;
mod restore;

pub use checkpoint::{checkpoint_files, CheckpointFiles, Dataset};
#[cfg(feature = "pbg")]
pub use export::{export_checkpoint, export_graph, Exported};
#[cfg(feature = "pbg")]
pub use import::import_checkpoint;
pub use restore::{import_checkpoint_with, Datasets};

/// The one (source, destination) type pair every relation has, when there
/// is one: then PBG's dynamic relations express the graph.
fn shared_types(c: &quiver_storage::Catalog) -> Option<(u32, u32)> {
    let first = c.relations.first().map(|r| (r.src, r.dst))?;
    c.relations
        .iter()
        .all(|r| (r.src, r.dst) == first)
        .then_some(first)
}

fn fail(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Pbg {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Most partitions an export writes: P² bucket files (and P files per node
/// type) are already 16,384 files at this cap.
pub const MAX_PARTITIONS: u32 = 128;

/// Refuses a partition count of 0, above [`MAX_PARTITIONS`] or above the
/// largest node type's count (partitions past it would all be empty).
fn check_partitions(db: &Database, out: &Path, partitions: u32) -> Result<()> {
    let snap = db.snapshot();
    let most = (0..snap.catalog().node_types.len() as u32)
        .map(|t| snap.node_count(t))
        .max()
        .unwrap_or(0)
        .max(1);
    if partitions == 0 || partitions > MAX_PARTITIONS.min(most) {
        return Err(fail(
            out,
            format!(
                "--partitions {partitions}: from 1 to {} (at most {MAX_PARTITIONS}, and no more than the {most} nodes of the largest type)",
                MAX_PARTITIONS.min(most)
            ),
        ));
    }
    Ok(())
}

/// Refuses an output directory that is, or is inside, a database.
fn refuse_database(out: &Path) -> Result<()> {
    match quiver_storage::database_containing(out) {
        Some(db) => Err(fail(
            out,
            format!("is inside database {}; export elsewhere", db.display()),
        )),
        None => Ok(()),
    }
}
