//! The validation flags of `train`, `eval recall` and `tune`: a file of
//! triples, `none`, or the run's own held-out edges and their schedule.

use std::path::{Path, PathBuf};

use anyhow::bail;
use quiver::Database;

/// Validation during training (`train`, `tune`).
#[derive(clap::Args)]
pub struct ValidArgs {
    /// Validation triples (head, relation, tail per line), or `none`. Without it, `train` holds out
    /// a seeded sample of the graph's own edges (about 5%, at most 5,000; a pair's edges together)
    /// and validates on them. Every --eval-every epochs the model is scored (filtered, both
    /// directions), the best is kept as the model, and --patience scorings without improvement
    /// end the run.
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Epochs between validation scorings [default: 1].
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Scorings without improvement before stopping (0: train all epochs) [default: 3 on the
    /// held-out edges, 0 with a file].
    #[arg(long)]
    pub patience: Option<usize>,
    /// mrr or hits@10: what the best model is chosen by [default: mrr].
    #[arg(long)]
    pub metric: Option<String>,
    /// Hold out and score only this relation's edges: the task the model is for (e.g. Follows).
    #[arg(long)]
    pub target: Option<String>,
}

impl ValidArgs {
    /// `--valid none`.
    fn off(&self) -> bool {
        self.valid.as_deref() == Some(Path::new("none"))
    }

    /// The validation file's schedule, when `--valid FILE` is given.
    pub fn validation(&self) -> anyhow::Result<Option<quiver::Validation>> {
        let path = match &self.valid {
            Some(path) if !self.off() => path,
            _ => {
                if self.eval_every.is_some() || self.patience.is_some() || self.metric.is_some() {
                    bail!("--eval-every, --patience and --metric need --valid FILE");
                }
                return Ok(None);
            }
        };
        if self.target.is_some() {
            bail!("--target chooses the held-out edges, which a --valid FILE replaces");
        }
        Ok(Some(quiver::Validation {
            triples: quiver::read_triples(path)?,
            every: self.every()?.unwrap_or(1),
            patience: self.patience.unwrap_or(0),
            metric: self.parsed_metric()?,
        }))
    }

    /// For `train`: the validation file's schedule, or the flags applied to
    /// the config's held-out edges (`--valid none`: no validation).
    pub fn settle(
        &self,
        cfg: &mut quiver::TrainConfig,
        db: &Database,
    ) -> anyhow::Result<Option<quiver::Validation>> {
        if self.valid.is_some() && !self.off() {
            return self.validation();
        }
        let flags = self.eval_every.is_some()
            || self.patience.is_some()
            || self.metric.is_some()
            || self.target.is_some();
        if self.off() {
            cfg.validation = None;
        }
        let Some(v) = &mut cfg.validation else {
            if flags {
                bail!("--eval-every, --patience, --metric and --target need validation (--valid none or the config turns it off)");
            }
            return Ok(None);
        };
        if let Some(every) = self.every()? {
            v.every = every;
        }
        if let Some(p) = self.patience {
            v.patience = p;
        }
        if self.metric.is_some() {
            v.metric = self.parsed_metric()?;
        }
        if let Some(t) = &self.target {
            v.target = Some(db.catalog().relation(t)?);
        }
        Ok(None)
    }

    fn every(&self) -> anyhow::Result<Option<usize>> {
        match self.eval_every {
            Some(0) => bail!("--eval-every 0: validate every 1 or more epochs"),
            n => Ok(n),
        }
    }

    fn parsed_metric(&self) -> anyhow::Result<quiver::ValidMetric> {
        Ok(match self.metric() {
            "mrr" => quiver::ValidMetric::Mrr,
            "hits@10" => quiver::ValidMetric::Hits10,
            m => bail!("--metric {m}: expected mrr or hits@10"),
        })
    }

    /// The metric's name as given (mrr when not).
    pub fn metric(&self) -> &str {
        self.metric.as_deref().unwrap_or("mrr")
    }
}
