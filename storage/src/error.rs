//! The storage layer's error type.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong in `quiver-storage`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An operating-system I/O error on a named file.
    #[error("I/O error on {}: {error}", path.display())]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The underlying error (shown in this error's message, so not its `source`).
        error: std::io::Error,
    },
    /// The store under the catalog and the delta (the database's `catalog/`
    /// directory) failed in a way that is neither I/O nor damage.
    #[error("the catalog store in {} failed: {message}", path.display())]
    CatalogStore {
        /// The catalog directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A file of the database is damaged.
    #[error(transparent)]
    Corruption(#[from] CorruptionError),
    /// The database was written by a format this build does not read.
    #[error(
        "unsupported database format version {found} (this build reads version {supported}); upgrade quiver"
    )]
    UnsupportedFormat {
        /// Version found in the database.
        found: u32,
        /// Version this build writes and reads.
        supported: u32,
    },
    /// The directory is not a quiver database.
    #[error("{} is not a quiver database (no `catalog` directory)", .0.display())]
    NotADatabase(PathBuf),
    /// `create` was called on a path that already holds something.
    #[error("{} already exists and is not empty", .0.display())]
    AlreadyExists(PathBuf),
    /// Another process (or handle) has the database open.
    #[error("database {} is locked: another process has it open, or this one does through another handle (close that first)", .0.display())]
    Locked(PathBuf),
    /// A node type name that the schema does not have.
    #[error("unknown node type `{0}`")]
    UnknownNodeType(String),
    /// A relation type name that the schema does not have.
    #[error("unknown relation type `{0}`")]
    UnknownRelation(String),
    /// A type of that name exists already with another definition.
    #[error("type `{0}` already exists")]
    DuplicateType(String),
    /// A model name that is not stored.
    #[error("no model named `{0}`")]
    ModelNotFound(String),
    /// A node key that is not in the database.
    #[error("no {node_type} node with key `{key}`")]
    NodeNotFound {
        /// The node type.
        node_type: String,
        /// The external key that was looked up.
        key: String,
    },
    /// A dense node id beyond the type's count.
    #[error("{node_type} has no node with id {id} (it has {count})")]
    InvalidId {
        /// The node type.
        node_type: String,
        /// The id given.
        id: u32,
        /// Number of nodes of the type.
        count: u32,
    },
    /// A relation used between node types other than those it declares.
    #[error("relation `{relation}` goes {expected}, not {found}")]
    WrongEndpointTypes {
        /// The relation.
        relation: String,
        /// Its declared `Src -> Dst`.
        expected: String,
        /// The types used.
        found: String,
    },
    /// A malformed argument: an empty key, a non-finite weight, too many ids.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A bulk import found bad lines and committed nothing.
    #[error("{0}")]
    ImportRejected(ImportErrors),
}

/// A damaged file: what is wrong and where. Its fields are private on purpose;
/// callers only report it.
#[derive(Debug, thiserror::Error)]
#[error("corrupted database file {}: {message}", file.display())]
pub struct CorruptionError {
    file: PathBuf,
    message: String,
}

impl CorruptionError {
    pub(crate) fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            message: message.into(),
        }
    }

    /// The damaged file.
    pub fn file(&self) -> &std::path::Path {
        &self.file
    }
}

/// One bad input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// Input file as given.
    pub file: String,
    /// 1-based line number.
    pub line: u64,
    /// 1-based byte column where the problem starts.
    pub column: u64,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

/// Bad lines found by an import: the first few in full, and how many in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportErrors {
    /// The first [`ImportErrors::SHOWN`] bad lines.
    pub first: Vec<LineError>,
    /// How many bad lines there were in all.
    pub total: u64,
}

impl ImportErrors {
    /// How many bad lines are kept in full.
    pub const SHOWN: usize = 20;

    pub(crate) fn push(&mut self, e: LineError) {
        if self.first.len() < Self::SHOWN {
            self.first.push(e);
        }
        self.total += 1;
    }
}

impl fmt::Display for ImportErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "import rejected, nothing committed: {} bad line(s)",
            self.total
        )?;
        for e in &self.first {
            write!(f, "\n  {e}")?;
        }
        let more = self.total - self.first.len() as u64;
        if more > 0 {
            write!(f, "\n  ... and {more} more")?;
        }
        Ok(())
    }
}

/// Short for `Result<T, StorageError>`.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Attaches a path to an `io::Error`.
/// The catalog store's errors as quiver's own, naming the catalog directory
/// (sled is an implementation detail and stays out of the public API).
pub(crate) trait CatalogContext<T> {
    /// `catalog` is the catalog directory (`DB/catalog`).
    fn in_catalog(self, catalog: &std::path::Path) -> Result<T>;
}

impl<T> CatalogContext<T> for std::result::Result<T, sled::Error> {
    fn in_catalog(self, catalog: &std::path::Path) -> Result<T> {
        self.map_err(|e| {
            let path = catalog.to_path_buf();
            match e {
                sled::Error::Io(error) => StorageError::Io { path, error },
                sled::Error::Corruption { .. } => {
                    CorruptionError::new(&path, "sled reports a damaged log").into()
                }
                other => StorageError::CatalogStore {
                    path,
                    message: other.to_string(),
                },
            }
        })
    }
}

pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|error| StorageError::Io {
            path: path.to_path_buf(),
            error,
        })
    }
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, a third-party reader that panics on some damaged files, and
/// gives `None` if it panicked: the caller turns that into an error about the
/// file. The panic message is not printed (the process's own hook still runs
/// for every other panic, on this thread and the others).
pub(crate) fn caught<R>(f: impl FnOnce() -> R) -> Option<R> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info)
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    r.ok()
}
