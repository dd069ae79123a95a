//! quiver's storage layer: a typed heterogeneous graph on disk.
//!
//! A database is a directory. sled holds the catalog (schema, counts, which
//! segment files are current) and the *delta* (nodes and edge changes since the
//! last bulk build); immutable, checksummed *segment files* beside it hold the
//! *base*: node key dictionaries and CSR adjacency, memory-mapped for reading,
//! and the partitioned edge buckets that the engine trains against. Bulk import
//! and [`Database::compact`] fold the delta into a new base generation. See
//! `ARCHITECTURE.md` and `docs/format.md`.

#[cfg(target_endian = "big")]
compile_error!("quiver's segment files are little-endian and mapped without conversion");

mod base;
mod buckets;
mod catalog;
mod check;
mod db;
mod delta;
mod error;
pub mod import;
mod keys;
mod segment;

pub use base::Direction;
pub use buckets::{BucketEdge, Buckets};
pub use catalog::{BucketRef, Catalog, NodeTypeDef, RelationDef, SegmentRef, Value, FORMAT_VERSION};
pub use check::{CheckReport, DegreeSummary, Stats};
pub use db::{CommitInfo, Database, Neighbors, NodeRef, Snapshot, WriteBatch};
pub use error::{CorruptionError, ImportErrors, LineError, Result, StorageError};
