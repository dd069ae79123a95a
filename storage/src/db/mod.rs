//! The database handle, write batches and snapshots.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;

use crate::base::{self, Base, Direction, WEdge};
use crate::catalog::{Catalog, NodeTypeDef, RelationDef, Value, FORMAT_VERSION};
use crate::delta::{Delta, EdgeCtx, NodeDelta};
use crate::error::{CatalogContext, CorruptionError, IoContext, Result, StorageError};
use crate::extsort::{EdgeSorter, DEFAULT_CHUNK_EDGES};
use crate::keys;
use crate::segment::sync_dir;

mod batch;
mod commit;
mod open;
mod snapshot;
mod txn;

pub use batch::{CommitInfo, NodeRef, WriteBatch};
pub use commit::LARGE_COMMIT;
pub use snapshot::{Neighbors, Snapshot};
pub use txn::Txn;

/// Name of the sled directory inside a database directory.
pub(crate) const CATALOG_DIR: &str = "catalog";
const LOCK_FILE: &str = "LOCK";

/// The database directory that `path` is or lies inside (at any depth), if
/// any: where nothing but the database itself may write. The path need not
/// exist; links in its existing part and `..` are resolved first, so no
/// spelling of a path reaches a database's files unnoticed.
pub fn database_containing(path: &Path) -> Option<PathBuf> {
    let mut resolved = PathBuf::new();
    for c in std::path::absolute(path).ok()?.components() {
        match c {
            std::path::Component::ParentDir => {
                resolved.pop();
            }
            std::path::Component::CurDir => {}
            c => resolved.push(c),
        }
        // Links are followed as the file system would follow them.
        if let Ok(real) = fs::canonicalize(&resolved) {
            resolved = real;
        }
    }
    resolved
        .ancestors()
        .find(|dir| dir.join(CATALOG_DIR).is_dir())
        .map(Path::to_path_buf)
}

/// What readers see: one catalog, one base, one delta, all immutable.
#[derive(Clone)]
pub(crate) struct State {
    pub catalog: Arc<Catalog>,
    pub base: Arc<Base>,
    pub delta: Arc<Delta>,
}

/// An open quiver database: a directory holding sled (catalog, key maps,
/// delta) and segment files (base adjacency, node dictionaries, buckets).
///
/// `Database` is `Send + Sync`: any number of threads read through
/// [`Database::snapshot`] while one at a time writes; a commit holds the
/// reader-visible lock only to swap in the new in-memory state.
pub struct Database {
    dir: PathBuf,
    pub(crate) sled: sled::Db,
    pub(crate) state: RwLock<Arc<State>>,
    /// Serialises writers; held across a writer's I/O, never by readers.
    pub(crate) writer: Mutex<()>,
    /// Model parts staged so far by this handle (names their files).
    pub(crate) staged: std::sync::atomic::AtomicU64,
    _lock: File,
}

impl Database {
    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The catalog store's directory, for errors.
    pub(crate) fn catalog_dir(&self) -> PathBuf {
        self.dir.join(CATALOG_DIR)
    }

    /// A consistent, immutable view of the current data. Cheap: two atomic
    /// operations; later commits do not change it.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.state.read().clone(),
        }
    }

    /// The current catalog (schema, counts, segments).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.state.read().catalog.clone()
    }

    /// Makes every commit so far durable: when it returns, they survive a
    /// crash or a power cut (sled's log is written and fsynced). Imports,
    /// compactions, bucket builds and model saves flush on their own.
    pub fn flush(&self) -> Result<()> {
        self.sled.flush().in_catalog(&self.catalog_dir())?;
        Ok(())
    }
}

/// Longest node type or model name, in bytes: such names become file names
/// (export, loss curves), and escaped (three bytes for one) they still fit a
/// file system's 255. Relation names never do and have no limit.
pub const MAX_NAME: usize = 80;

/// Checks a type, relation or model name (`what` says which, for the message)
/// of at most `max_len` bytes.
pub(crate) fn check_name(what: &str, name: &str, max_len: usize) -> Result<()> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(StorageError::InvalidInput(format!(
            "{what} name {name:?} is empty or has control characters"
        )));
    }
    if name.len() > max_len {
        return Err(StorageError::InvalidInput(format!(
            "{what} name of {} bytes is longer than {max_len}",
            name.len()
        )));
    }
    Ok(())
}

pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StorageError::InvalidInput("empty node key".into()));
    }
    Ok(())
}

pub(crate) fn check_weight(w: f32) -> Result<()> {
    if !w.is_finite() || w < 0.0 {
        return Err(StorageError::InvalidInput(format!(
            "edge weight {w} is not a finite number ≥ 0"
        )));
    }
    Ok(())
}
