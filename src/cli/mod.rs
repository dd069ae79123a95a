//! The command groups of the `quiver` binary, one module each; `main.rs`
//! parses the command line and dispatches here.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use quiver::Database;

pub mod demo;
pub mod embed;
pub mod model;
pub mod shell;
pub mod store;
pub mod tune;

/// Opens an existing database, naming it in the error.
pub fn open(db: &Path) -> anyhow::Result<Database> {
    Database::open(db).with_context(|| format!("opening {}", db.display()))
}

/// Milliseconds, for messages.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
