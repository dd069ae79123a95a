//! `quiver tune`: a grid over a config's settings, chosen on validation.

use std::path::PathBuf;

use anyhow::{bail, Context};
use quiver::tune::{self, Axis};

use super::open;
use super::valid::ValidArgs;
use quiver::vectors::file_stem;

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
    let mut log = point_logger(&points);
    let judge = tune::Judge {
        valid: Some(&valid),
        deadline: None,
        stop: None,
    };
    let trials = tune::run(&db, &args.model, &points, &device, judge, &mut log)?;
    let (chosen, lines) = report(&args.db, &args.model, args.valid.metric(), &trials)?;
    for line in lines {
        say!("{line}");
    }
    if let Some(out) = &args.save_config {
        let text = toml::to_string(&trials[chosen].point.table)?;
        super::output_file("--save-config", out, args.force)?;
        quiver::write_file(out, args.force, |w| w.write_all(text.as_bytes()))?;
        say!("config: {}", out.display());
    }
    say!(
        "score it on test once: quiver eval DB --model {} --test TEST --filter VALID",
        args.model
    );
    Ok(())
}

/// Logs which point trains and its validation scorings.
fn point_logger(points: &[tune::Point]) -> impl FnMut(usize, &quiver::TrainEvent) + '_ {
    let mut current = usize::MAX;
    move |i, e| {
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
    }
}

/// Writes the trials beside the database as `MODEL.tune.tsv`; returns the
/// chosen one's index and the lines to print (the chosen one marked).
fn report(
    db: &std::path::Path,
    model: &str,
    metric: &str,
    trials: &[tune::Trial],
) -> anyhow::Result<(usize, Vec<String>)> {
    let chosen = tune::chosen(trials).context("no points")?;
    let mut table = vec![format!(
        "settings\tvalid {metric}\tepoch kept\tepochs run\tseconds"
    )];
    for t in trials {
        table.push(format!(
            "{}\t{:.4}\t{}\t{}\t{:.1}",
            tune::describe(&t.point.settings),
            t.best,
            t.epoch,
            t.epochs_run,
            t.seconds
        ));
    }
    let mut lines: Vec<String> = (table.iter().enumerate())
        .map(|(i, line)| format!("{} {line}", if i == chosen + 1 { "*" } else { " " }))
        .collect();
    let path = db.join(format!("{}.tune.tsv", file_stem(model)));
    std::fs::write(&path, table.join("\n") + "\n").with_context(|| format!("writing {}", path.display()))?;
    lines.push(format!(
        "chosen: {} (valid {metric} {:.4}, epoch {}), stored as model `{model}`; table: {}",
        tune::describe(&trials[chosen].point.settings),
        trials[chosen].best,
        trials[chosen].epoch,
        path.display()
    ));
    Ok((chosen, lines))
}

/// `quiver train --auto` (and `eval recall --auto`, with its `holdout`):
/// [`tune::AUTO_POINTS`] over the run's settings, each judged on the same
/// held-out edges, until `--budget` (10 minutes) has passed; the best is
/// kept as model `name`.
pub fn train_auto(
    args: &super::model::TrainArgs,
    db: &quiver::Database,
    name: &str,
    holdout: Option<quiver::Holdout>,
) -> anyhow::Result<()> {
    let budget = args.budget.unwrap_or(std::time::Duration::from_secs(600));
    let mut base = args.config(db)?;
    base.holdout = holdout;
    args.valid.settle(&mut base, db)?;
    if args.valid.valid.is_some() {
        bail!("--auto judges on the graph's own held-out edges: it takes no --valid");
    }
    let (points, split) = tune::auto_points(db, &base)?;
    let device = quiver::Device::select(&args.device)?;
    eprintln!(
        "--auto: up to {} points on {} for {:.0} s, judged by validation MRR on the same {:.2}% of held-out edges",
        points.len(),
        device.describe(),
        budget.as_secs_f64(),
        100.0 * split.fraction
    );
    let judge = tune::Judge {
        valid: None,
        deadline: Some(std::time::Instant::now() + budget),
        stop: Some(super::interrupt::flag()),
    };
    let trials = tune::run(db, name, &points, &device, judge, &mut point_logger(&points))?;
    let metric = match split.metric {
        quiver::ValidMetric::Mrr => "mrr",
        quiver::ValidMetric::Hits10 => "hits@10",
    };
    // On standard error: `eval recall --auto --json` prints its JSON alone.
    for line in report(&args.db, name, metric, &trials)?.1 {
        eprintln!("{line}");
    }
    Ok(())
}
