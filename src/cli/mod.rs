//! The command groups of the `quiver` binary, one module each; `main.rs`
//! parses the command line and dispatches here.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use quiver::Database;

pub mod demo;
pub mod embed;
pub mod exchange;
pub mod index;
pub mod interrupt;
pub mod model;
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
    let dir = dir_of(path);
    if !dir.is_dir() {
        anyhow::bail!("{flag} {}: no directory {}", path.display(), dir.display());
    }
    Ok(())
}

/// Writes file `path` whole or not at all: `body` writes into a temporary
/// file beside it, which is synced and then renamed into place (over an
/// existing file only when `force`). An error names the file and leaves no
/// temporary behind (as on a full disk).
pub fn write_file(
    path: &Path,
    force: bool,
    body: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let at = || format!("writing {}", path.display());
    let dir = dir_of(path);
    let name = path.file_name().context("no file name")?.to_string_lossy();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // The mode of a file created as usual (0666 less the umask), not 0600.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let tmp = builder.tempfile_in(dir).with_context(at)?;
    let mut w = std::io::BufWriter::new(tmp.as_file());
    body(&mut w)
        .and_then(|()| w.flush())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(at)?;
    drop(w);
    let placed = match force {
        true => tmp.persist(path),
        false => tmp.persist_noclobber(path),
    };
    placed.map_err(|e| e.error).with_context(at)?;
    Ok(())
}

/// The directory a file path names its file in (`.` for a bare name).
fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Milliseconds, for messages.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
