//! The command groups of the `quiver` binary, one module each; `main.rs`
//! parses the command line and dispatches here.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use quiver::Database;

pub mod bar;
pub mod demo;
pub mod embed;
pub mod exchange;
pub mod index;
pub mod interrupt;
pub mod model;
pub mod refresh;
pub mod serve;
pub mod shell;
pub mod store;
pub mod tune;
pub mod valid;

/// Opens an existing database, naming it in the error.
pub fn open(db: &Path) -> anyhow::Result<Database> {
    Database::open(db).with_context(|| format!("opening {}", db.display()))
}

/// Refuses an output path (given with `flag`) that is, or is inside, a
/// database directory: only the database writes there.
pub fn outside_database(flag: &str, path: &Path) -> anyhow::Result<()> {
    match quiver::database_containing(path) {
        Some(db) => anyhow::bail!(
            "{flag} {} is inside database {}; write it elsewhere",
            path.display(),
            db.display()
        ),
        None => Ok(()),
    }
}

/// Checks, before any work, that an output file given with `flag` can be
/// written: outside every database, not over an existing file unless
/// `force`, in a directory that exists.
pub fn output_file(flag: &str, path: &Path, force: bool) -> anyhow::Result<()> {
    outside_database(flag, path)?;
    if path.is_dir() {
        anyhow::bail!("{flag} {} is a directory; name a file", path.display());
    }
    if !force && path.exists() {
        anyhow::bail!("{flag} {} exists (--force overwrites it)", path.display());
    }
    let dir = quiver::dir_of(path);
    if !dir.is_dir() {
        anyhow::bail!("{flag} {}: no directory {}", path.display(), dir.display());
    }
    Ok(())
}

/// Milliseconds, for messages.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
