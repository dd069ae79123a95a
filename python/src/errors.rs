//! The exception classes (named and pickled as `quiver.StorageError` and
//! so on: their module is the public package, which re-exports them) and
//! the mapping of quiver's errors onto them.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use quiver::{EngineError as EngineErr, QueryError as QueryErr, StorageError as StoreErr};

create_exception!(quiver, Error, PyException, "Any error quiver reports.");
create_exception!(
    quiver,
    QuerySyntaxError,
    Error,
    "A query that does not parse or does not fit the schema; `line` and `column` say where."
);
create_exception!(quiver, QueryError, Error, "A query that failed while it ran.");
create_exception!(
    quiver,
    StorageError,
    Error,
    "The database could not be read or written."
);
create_exception!(
    quiver,
    CorruptionError,
    StorageError,
    "Stored data failed its checks."
);
create_exception!(
    quiver,
    LockedError,
    StorageError,
    "Another process holds the database."
);
create_exception!(
    quiver,
    EngineError,
    Error,
    "Training, evaluation or a stored model failed."
);
create_exception!(
    quiver,
    ConfigError,
    EngineError,
    "A training or evaluation setting that cannot work."
);

/// A quiver error as the matching Python exception.
pub(crate) fn py_err(e: impl Into<quiver::Error>) -> PyErr {
    let e: quiver::Error = e.into();
    let msg = e.to_string();
    match e {
        quiver::Error::Query(q) => query_err(q),
        quiver::Error::Storage(s) => storage_err(s, msg),
        quiver::Error::Engine(en) => engine_err(en, msg),
        _ => Error::new_err(msg),
    }
}

pub(crate) fn storage_err(e: StoreErr, msg: String) -> PyErr {
    match e {
        StoreErr::Locked(_) => LockedError::new_err(msg),
        StoreErr::Corruption(_) => CorruptionError::new_err(msg),
        _ => StorageError::new_err(msg),
    }
}

pub(crate) fn engine_err(e: EngineErr, msg: String) -> PyErr {
    match e {
        EngineErr::Storage(s) => storage_err(s, msg),
        EngineErr::Config(_) => ConfigError::new_err(msg),
        _ => EngineError::new_err(msg),
    }
}

pub(crate) fn query_err(e: QueryErr) -> PyErr {
    let msg = e.to_string();
    match e {
        QueryErr::Syntax { pos, .. } | QueryErr::Semantic { pos, .. } => Python::attach(|py| {
            let err = QuerySyntaxError::new_err(msg);
            let value = err.value(py);
            let line = (pos.line > 0).then_some(pos.line);
            let column = (pos.line > 0).then_some(pos.column);
            if value
                .setattr("line", line)
                .and(value.setattr("column", column))
                .is_err()
            {
                return Error::new_err("could not build a QuerySyntaxError");
            }
            err
        }),
        QueryErr::Storage(s) => storage_err(s, msg),
        QueryErr::Engine(en) => engine_err(en, msg),
        _ => QueryError::new_err(msg),
    }
}

/// Runs `f`, turning a panic into `quiver.Error` (never a PanicException).
pub(crate) fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(Error::new_err(format!(
            "internal error (please report it): {what}"
        )))
    })
}
