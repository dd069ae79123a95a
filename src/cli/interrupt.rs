//! Ctrl-C during a long command (`train`, `index`): the first sets a flag
//! the command checks at its next safe point (a training checkpoint between
//! buckets, an index build's next batch of rows), which then ends cleanly;
//! the second ends the process at once, as Ctrl-C does by default. The one
//! module of the command line with `unsafe`: installing a signal handler.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Once;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    if INTERRUPTED.swap(true, SeqCst) {
        // SAFETY: signal(2) and raise(3) are async-signal-safe.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::raise(libc::SIGINT);
        }
        return;
    }
    let say = b"\nstopping at the next safe point (Ctrl-C again to quit now)\n";
    // SAFETY: write(2) is async-signal-safe; the buffer outlives the call.
    unsafe {
        libc::write(2, say.as_ptr().cast(), say.len());
    }
}

/// Installs the handler (once) and returns the flag it sets.
pub fn flag() -> &'static AtomicBool {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: the handler only touches an atomic and async-signal-safe calls.
        unsafe {
            libc::signal(
                libc::SIGINT,
                on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    });
    &INTERRUPTED
}
