//! `quiver refresh`: a new version of a model trained on the graph's
//! changes since its state ([`quiver::refresh`]).

use std::path::PathBuf;
use std::time::Instant;

use quiver::refresh::{next_version, refresh_on_until, RefreshOptions};

/// `quiver refresh`: bring a model up to date with the writes since it was trained.
#[derive(clap::Args)]
pub struct RefreshArgs {
    /// Database directory.
    db: PathBuf,
    /// The model to refresh (kept until dropped).
    #[arg(long, default_value = "default")]
    model: String,
    /// Name of the new version (default: MODEL@2, or @N+1 after @N).
    #[arg(long = "as")]
    to: Option<String>,
    /// Epochs over the changed edges and their replay sample.
    #[arg(long, default_value_t = RefreshOptions::default().epochs)]
    epochs: usize,
    /// Old edges at the changed nodes trained again per added edge (all of them when there are fewer).
    #[arg(long, default_value_t = RefreshOptions::default().replay)]
    replay: f64,
    /// λ of the penalty that keeps moved rows near the old model's.
    #[arg(long, default_value_t = RefreshOptions::default().drift_penalty)]
    drift_penalty: f32,
    /// Training threads (default: one per core; 1: repeatable bit for bit).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn refresh(a: &RefreshArgs) -> anyhow::Result<()> {
    let db = super::open(&a.db)?;
    let to = a.to.clone().unwrap_or_else(|| next_version(&db, &a.model));
    let opts = RefreshOptions {
        epochs: a.epochs,
        replay: a.replay,
        drift_penalty: a.drift_penalty,
        threads: a.threads,
    };
    if let Some(c) = db.changes_since(&a.model)? {
        let nodes = |v: &[Vec<u32>]| v.iter().map(Vec::len).sum::<usize>();
        eprintln!(
            "since `{}` was trained: {} edges added, {} deleted; {} nodes added, {} deleted",
            a.model,
            c.edges_added.len(),
            c.edges_deleted.len(),
            nodes(&c.nodes_added),
            nodes(&c.nodes_deleted)
        );
    }
    let started = Instant::now();
    let stop = super::interrupt::flag();
    let mut bar = super::bar::RunBar::new(a.epochs);
    let mut log = |e: &quiver::TrainEvent| match *e {
        quiver::TrainEvent::Validation { epoch, mrr, .. } => {
            bar.println(&format!("  valid after epoch {}: MRR {mrr:.4}", epoch + 1))
        }
        _ => bar.event(e),
    };
    let done = refresh_on_until(&db, &a.model, &to, &opts, &quiver::Device::Cpu, &mut log, stop);
    if let Err(quiver::EngineError::Stopped(_)) = done {
        bar.abandon();
        eprintln!(
            "stopped: model `{to}` is saved at its last checkpoint; `quiver train {} --model {to} --resume` continues it",
            a.db.display()
        );
        std::process::exit(130);
    }
    done?;
    bar.finish();
    say!(
        "refreshed `{}` as `{to}` in {:.1} s",
        a.model,
        started.elapsed().as_secs_f64()
    );
    for line in super::index::describe(&db, &to)? {
        say!("{line}");
    }
    Ok(())
}
