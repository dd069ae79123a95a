#![doc = include_str!("../README.md")]

pub mod demo;
pub mod pbg;
#[cfg(feature = "serve")]
pub mod serve;
pub mod tasks;
pub mod tune;
pub mod vectors;

/// Values in query parameters and results.
pub use quiver_query::Value as QueryValue;
pub use quiver_query::{
    writes as query_writes, Graph, Limits, Params, Pos, Prepared, QueryError, Rows,
    MAX_DEPTH as QUERY_MAX_DEPTH,
};

pub use quiver_storage::{
    database_containing, import, BucketEdge, Buckets, Catalog, Changes, CheckReport, CommitInfo,
    CorruptionError, Database, DegreeSummary, Direction, ImportErrors, LineError, Neighbors, NodeRef,
    Snapshot, Stats, StorageError, StoredPart, Value, WriteBatch,
};

pub use quiver_engine::refresh;
pub use quiver_engine::{
    evaluate, index_key, index_model, kmeans, overlap, read_triples, recall, resume, resume_on,
    resume_on_until, settled, train, train_on, train_on_until, AdapterChoice, AnnIndex, AutoValid, Device,
    EdgeWeights, EngineError, EpochStats, EvalReport, GpuContext, Holdout, Index, IndexInfo, IndexSettings,
    Int8Rows, KMeans, Loss, Metric, Mixtures, Model, Optimizer, Quantization, Score, TrainConfig, TrainEvent,
    Triple, ValidMetric, Validation,
};

/// Most bytes of a settings file (TOML config, PBG's `config.json`).
pub const MAX_SETTINGS_FILE: u64 = 16 << 20;

/// Reads a whole text file of at most `max` bytes. Only a regular file: a
/// FIFO or a device (which may never end, or block forever) is refused
/// before it is opened, and the size is checked before the text is read.
pub fn read_text(path: &std::path::Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read_bytes(path, max)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()))
}

/// [`read_text`] for bytes.
pub fn read_bytes(path: &std::path::Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "not a regular file (a FIFO or a device is refused)",
        ));
    }
    let too_big = |n: u64| {
        Error::new(
            ErrorKind::InvalidData,
            format!("{n} bytes; at most {max} are read"),
        )
    };
    if meta.len() > max {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)?.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Writes file `path` whole or not at all: `body` writes into a temporary
/// file beside it, which is synced and then renamed into place (over an
/// existing file only when `force`). An error names the file and leaves no
/// temporary behind (as on a full disk).
pub fn write_file(
    path: &std::path::Path,
    force: bool,
    body: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<()> {
    use std::io::Write as _;
    let io = |error: std::io::Error| StorageError::Io {
        path: path.to_path_buf(),
        error,
    };
    let name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no file name",
        ))
    })?;
    let prefix = format!(".{}.", name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // The mode of a file created as usual (0666 less the umask), not 0600.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let tmp = builder.tempfile_in(dir_of(path)).map_err(io)?;
    let mut w = std::io::BufWriter::new(tmp.as_file());
    body(&mut w)
        .and_then(|()| w.flush())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io)?;
    drop(w);
    let placed = match force {
        true => tmp.persist(path),
        false => tmp.persist_noclobber(path),
    };
    placed.map_err(|e| io(e.error))?;
    Ok(())
}

/// The directory a file path names its file in (`.` for a bare name).
pub fn dir_of(path: &std::path::Path) -> &std::path::Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
}

/// Any error quiver returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// From the storage layer.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// From the embedding engine.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// From the query language.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A PyTorch-BigGraph file that cannot be written or read, or does not
    /// match the database.
    #[error("{}: {message}", path.display())]
    Pbg {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Short for `Result<T, quiver::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
