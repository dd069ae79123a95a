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
mod extsort;
pub mod import;
mod keys;
mod models;
mod seen;
mod segment;

pub use base::Direction;
pub use buckets::{BucketEdge, Buckets};
pub use catalog::{
    BucketRef, Catalog, ModelRef, NodeTypeDef, RelationDef, SegmentRef, Value, FORMAT_VERSION,
};
pub use check::{CheckReport, DegreeSummary, Stats};
pub use db::{
    database_containing, CommitInfo, Database, Neighbors, NodeRef, Snapshot, Txn, WriteBatch, LARGE_COMMIT,
    MAX_NAME,
};
pub use error::{CorruptionError, ImportErrors, LineError, Result, StorageError};
pub use models::{StagedPart, StoredPart};
pub use seen::{Changes, SEEN_KEY};

/// Entry points for the fuzz targets in `fuzz/`; not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use std::path::Path;

    /// Decodes a catalog record; must return an error, never panic, on any input.
    pub fn decode_catalog(bytes: &[u8]) -> bool {
        crate::catalog::Catalog::decode(bytes, Path::new("fuzz")).is_ok()
    }

    /// Decodes a property value record.
    pub fn decode_value(bytes: &[u8]) -> bool {
        crate::catalog::Value::decode(bytes, Path::new("fuzz")).is_ok()
    }

    /// Writes `bytes` as a segment file whose catalog entry matches it (so the
    /// checksum passes) and opens it as each kind, reading every section.
    pub fn open_segment(dir: &Path, bytes: &[u8]) -> usize {
        use crate::segment::{Kind, Segment};
        if std::fs::write(dir.join("seg"), bytes).is_err() {
            return 0;
        }
        let r = crate::catalog::SegmentRef {
            file: "seg".into(),
            len: bytes.len() as u64,
            crc: crc32fast::hash(bytes),
        };
        let mut n = 0;
        for kind in [Kind::Nodes, Kind::Adjacency, Kind::Buckets] {
            if let Ok(s) = Segment::open(dir, &r, kind) {
                for i in 0..s.section_count() {
                    n += s.bytes(i).len() + s.array::<u32>(i).len();
                }
            }
        }
        n
    }
}
