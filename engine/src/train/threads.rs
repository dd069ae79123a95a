//! A bucket visit's training threads: run, summed, failures reported, and
//! progress heard while they run.

use super::*;

/// How often a bucket visit reports its progress.
pub(super) const TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs `f(t, &mut works[t])` on a thread per item and sums the results,
/// calling `tick(done)` from this thread about every [`TICK`] until they
/// end. A thread that cannot start, or panics, is an error (for training:
/// the bucket is not saved, so a resume trains it again).
pub(super) fn on_threads<W: Send>(
    works: &mut [W],
    f: impl Fn(usize, &mut W) -> f64 + Sync,
    (done, tick): (&AtomicUsize, &mut dyn FnMut(usize)),
) -> Result<f64> {
    /// Says a thread ended, however it ended (a panic included).
    struct Ended(std::sync::mpsc::Sender<()>);
    impl Drop for Ended {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let f = &f;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(works.len());
        let mut failed = None;
        for (t, w) in works.iter_mut().enumerate() {
            let ended = Ended(tx.clone());
            match std::thread::Builder::new().spawn_scoped(s, move || {
                let _ended = ended;
                f(t, w)
            }) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    failed = Some(format!("starting training thread {t}: {e}"));
                    break;
                }
            }
        }
        let mut running = handles.len();
        while running > 0 {
            match rx.recv_timeout(TICK) {
                Ok(()) => running -= 1,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => tick(done.load(Relaxed)),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let mut sum = 0.0;
        for h in handles {
            match h.join() {
                Ok(x) => sum += x,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    failed.get_or_insert(format!("a training thread panicked: {what}"));
                }
            }
        }
        match failed {
            Some(message) => Err(EngineError::Training(message)),
            None => Ok(sum),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_thread_is_an_error_not_a_nan_loss() {
        let mut works = vec![(); 4];
        let done = AtomicUsize::new(0);
        assert_eq!(
            on_threads(&mut works, |t, _| t as f64, (&done, &mut |_| {})).unwrap(),
            6.0
        );
        let e = on_threads(
            &mut works,
            |t, _| if t == 2 { panic!("boom at {t}") } else { 1.0 },
            (&done, &mut |_| {}),
        )
        .unwrap_err();
        assert!(
            matches!(&e, EngineError::Training(m) if m.contains("panicked: boom at 2")),
            "{e}"
        );
    }

    /// A slow visit is heard from while it runs, with its count so far.
    #[test]
    fn a_long_visit_reports_its_chunks_as_they_finish() {
        let mut works = vec![(); 2];
        let done = AtomicUsize::new(0);
        let mut heard = Vec::new();
        let sum = on_threads(
            &mut works,
            |_, _| {
                for _ in 0..4 {
                    std::thread::sleep(TICK / 2);
                    done.fetch_add(1, Relaxed);
                }
                1.0
            },
            (&done, &mut |n| heard.push(n)),
        )
        .unwrap();
        assert_eq!(sum, 2.0);
        assert!(
            !heard.is_empty() && heard.windows(2).all(|w| w[0] <= w[1]),
            "{heard:?}"
        );
        assert!(heard.iter().all(|&n| n <= 8), "{heard:?}");
    }
}
