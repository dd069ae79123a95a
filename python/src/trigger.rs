//! The embedded library's refresh trigger: a write that takes a model
//! `refresh_after` changed edges past its state starts a refresh on a
//! thread of its own ([`quiver::refresh::due`]); the write has returned by
//! then, and `close` stops the refresh at its next bucket boundary
//! (resumable with `train(name, resume=True)`).

use std::sync::atomic::Ordering;

use pyo3::prelude::*;
use quiver::refresh::{due, next_version, refresh_on_until, RefreshOptions};

use crate::Database;

impl Database {
    /// The catalog's edge version (0 when closed).
    pub(crate) fn edge_version(&self) -> u64 {
        self.with(|g| Ok(g.database().catalog().edge_version))
            .unwrap_or(0)
    }
}

/// After a call that may have written: when edges changed since `before`
/// and no refresh is under way, one is checked for and run in the background.
pub(crate) fn after_write(db: &Bound<'_, Database>, before: u64) {
    let this = db.borrow();
    if this.edge_version() == before || this.refreshing.swap(true, Ordering::AcqRel) {
        return;
    }
    let handle: Py<Database> = db.clone().unbind();
    std::thread::spawn(move || {
        Python::attach(|py| {
            let this = handle.borrow(py);
            let stop = &this.closing;
            let run = this.with(|g| {
                let db = g.database();
                py.detach(|| -> quiver::Result<()> {
                    if let Some(from) = due(db)?.into_iter().next() {
                        let to = next_version(db, &from);
                        let opts = RefreshOptions::default();
                        refresh_on_until(db, &from, &to, &opts, &quiver::Device::Cpu, &mut |_| {}, stop)?;
                    }
                    Ok(())
                })
                .map_err(crate::errors::py_err)
            });
            if let Err(e) = run {
                if !stop.load(Ordering::Relaxed) {
                    eprintln!("quiver: a triggered refresh failed: {e}");
                }
            }
            this.refreshing.store(false, Ordering::Release);
        })
    });
}
