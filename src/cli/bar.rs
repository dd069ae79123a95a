//! The progress bar of a training run (`quiver train`, `quiver refresh`).

use std::io::IsTerminal;
use std::time::Instant;

/// A run's progress on standard error: in a terminal a bar that moves with
/// every bucket and chunk (epoch, bucket, mean loss, edges/s, ETA), and a
/// line per epoch above it; elsewhere only the lines.
pub struct RunBar {
    bar: Option<indicatif::ProgressBar>,
    /// Epochs the run trains (its `Start` event may settle it).
    pub epochs: usize,
    epoch_start: Instant,
}

impl RunBar {
    pub fn new(epochs: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {msg} eta {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        RunBar {
            bar,
            epochs,
            epoch_start: Instant::now(),
        }
    }

    /// Moves the bar for a bucket or chunk event; prints an epoch's line.
    pub fn event(&mut self, e: &quiver::TrainEvent) {
        let epochs = self.epochs;
        match *e {
            quiver::TrainEvent::Bucket {
                epoch,
                bucket,
                buckets,
                edges,
                loss,
            } => {
                if let Some(b) = &self.bar {
                    // Thousandths of a bucket, so that chunk progress moves it too.
                    b.set_length((epochs * buckets * 1000) as u64);
                    b.set_position(((epoch * buckets + bucket + 1) * 1000) as u64);
                    b.set_message(format!(
                        "epoch {}/{} bucket {}/{buckets} loss {loss:.3e} {:.0} edges/s",
                        epoch + 1,
                        epochs,
                        bucket + 1,
                        edges as f64 / self.epoch_start.elapsed().as_secs_f64()
                    ));
                }
            }
            quiver::TrainEvent::Chunks {
                epoch,
                bucket,
                buckets,
                done,
                chunks,
            } => {
                if let Some(b) = &self.bar {
                    b.set_length((epochs * buckets * 1000) as u64);
                    b.set_position(((epoch * buckets + bucket) * 1000 + done * 1000 / chunks.max(1)) as u64);
                }
            }
            quiver::TrainEvent::Epoch(s) => {
                self.epoch_start = Instant::now();
                self.println(&format!(
                    "epoch {:>3}: loss {:.4e}, {} edges in {:.2} s ({:.0} edges/s, {:.0}% moving partitions)",
                    s.epoch + 1,
                    s.loss,
                    s.edges,
                    s.seconds,
                    s.edges as f64 / s.seconds,
                    100.0 * s.io_share
                ));
            }
            _ => {}
        }
    }

    /// A line above the bar (or on standard error).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Leaves the bar where a stopped run left it.
    pub fn abandon(&self) {
        if let Some(b) = &self.bar {
            b.abandon();
        }
    }

    /// Clears the bar of a finished run.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
