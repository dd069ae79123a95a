//! `quiver tune`: a grid over a config's settings, chosen on validation.

use std::path::PathBuf;

use anyhow::{bail, Context};
use quiver::tune::{self, Axis};

use super::exchange::file_stem;
use super::model::ValidArgs;
use super::open;

/// `quiver tune DB --config BASE.toml --valid valid.txt --set lr=0.02,0.05 --set margin=5,7`.
#[derive(clap::Args)]
pub struct TuneArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Name the chosen model is stored under (replacing a model of that name).
    #[arg(long, default_value = "tuned")]
    pub model: String,
    /// TOML file with the settings the grid starts from (see configs/); the defaults without it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// One axis of the grid: a setting and the values to try, `key=v1,v2,...` (values as in a
    /// config file; bare words are strings). Every combination of the axes is trained.
    #[arg(long = "set", value_name = "KEY=VALUES", required = true)]
    pub axes: Vec<String>,
    /// auto, gpu or cpu (as for train).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Write the chosen point's config here: the base file's settings with the chosen values (TOML).
    #[arg(long)]
    pub save_config: Option<PathBuf>,
    /// Let --save-config overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub valid: ValidArgs,
}

/// Parses `key=v1,v2`: each value as a TOML value, or a string.
fn axis(spec: &str) -> anyhow::Result<Axis> {
    let Some((key, values)) = spec.split_once('=') else {
        bail!("--set {spec}: expected KEY=VALUE,VALUE,...");
    };
    let values = values
        .split(',')
        .map(|raw| {
            let raw = raw.trim();
            toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.to_string()))
        })
        .collect();
    Ok(Axis {
        key: key.trim().to_string(),
        values,
    })
}

pub fn tune(args: &TuneArgs) -> anyhow::Result<()> {
    // A bad target is found now, not after the whole grid has trained.
    if let Some(out) = &args.save_config {
        super::output_file("--save-config", out, args.force)?;
    }
    let db = open(&args.db)?;
    let Some(valid) = args.valid.validation()? else {
        bail!("tune needs --valid FILE: settings are chosen on the validation split");
    };
    let base: toml::Table = match &args.config {
        Some(path) => {
            let text = quiver::read_text(path, quiver::MAX_SETTINGS_FILE)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?
        }
        None => toml::Table::new(),
    };
    let axes: Vec<Axis> = args.axes.iter().map(|a| axis(a)).collect::<anyhow::Result<_>>()?;
    let points = tune::grid(&base, &axes)?;
    let device = quiver::Device::select(&args.device)?;
    eprintln!(
        "{} points on {}, chosen by validation {} on {} triples",
        points.len(),
        device.describe(),
        args.valid.metric(),
        valid.triples.len()
    );
    let mut current = usize::MAX;
    let mut log = |i: usize, e: &quiver::TrainEvent| {
        if i != current {
            current = i;
            eprintln!(
                "point {}/{}: {}",
                i + 1,
                points.len(),
                tune::describe(&points[i].settings)
            );
        }
        if let quiver::TrainEvent::Validation {
            epoch, mrr, hits10, ..
        } = e
        {
            eprintln!(
                "  valid after epoch {}: MRR {mrr:.4}, Hits@10 {hits10:.4}",
                epoch + 1
            );
        }
    };
    let trials = tune::run(&db, &args.model, &points, &device, &valid, &mut log)?;
    let chosen = tune::chosen(&trials).context("no points")?;
    let mut table = vec![format!(
        "settings\tvalid {}\tepoch kept\tepochs run\tseconds",
        args.valid.metric()
    )];
    for t in &trials {
        table.push(format!(
            "{}\t{:.4}\t{}\t{}\t{:.1}",
            tune::describe(&t.point.settings),
            t.best,
            t.epoch,
            t.epochs_run,
            t.seconds
        ));
    }
    for (i, line) in table.iter().enumerate() {
        let mark = if i == chosen + 1 { "*" } else { " " };
        say!("{mark} {line}");
    }
    let path = args.db.join(format!("{}.tune.tsv", file_stem(&args.model)));
    std::fs::write(&path, table.join("\n") + "\n").with_context(|| format!("writing {}", path.display()))?;
    say!(
        "chosen: {} (valid {} {:.4}, epoch {}), stored as model `{}`; table: {}",
        tune::describe(&trials[chosen].point.settings),
        args.valid.metric(),
        trials[chosen].best,
        trials[chosen].epoch,
        args.model,
        path.display()
    );
    if let Some(out) = &args.save_config {
        let text = toml::to_string(&trials[chosen].point.table)?;
        super::output_file("--save-config", out, args.force)?;
        super::write_file(out, args.force, |w| w.write_all(text.as_bytes()))?;
        say!("config: {}", out.display());
    }
    say!(
        "score it on test once: quiver eval DB --model {} --test TEST --filter VALID",
        args.model
    );
    Ok(())
}
