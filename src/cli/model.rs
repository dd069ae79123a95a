//! The model commands: `train`, `eval`, `models`, `export`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use quiver::Database;

use super::open;
use super::valid::ValidArgs;
use quiver::vectors::file_stem;

/// Logs one line per training epoch to standard error.
pub fn epoch_logger() -> impl FnMut(&quiver::TrainEvent) {
    |e| match e {
        quiver::TrainEvent::Epoch(s) => eprintln!(
            "epoch {:>3}: loss {:.4e}, {} edges in {:.2} s",
            s.epoch + 1,
            s.loss,
            s.edges,
            s.seconds
        ),
        quiver::TrainEvent::Validation {
            epoch,
            mrr,
            best_epoch,
            ..
        } => eprintln!(
            "  valid after epoch {}: MRR {mrr:.4} (best after epoch {})",
            epoch + 1,
            best_epoch + 1
        ),
        quiver::TrainEvent::Start { held_out, .. } if *held_out > 0 => {
            eprintln!("validation: {held_out} held-out edges; the best epoch is kept")
        }
        quiver::TrainEvent::WeightSpread { .. } => weight_warning(e),
        _ => {}
    }
}

/// Says that a relation's weights span orders of magnitude.
fn weight_warning(e: &quiver::TrainEvent) {
    if let quiver::TrainEvent::WeightSpread { relation, min, max } = e {
        eprintln!(
            "warning: the weights of relation {relation} span {min} to {max} ({:.0} orders of magnitude); a few edges may swamp training (--weights log1p or ignore)",
            (max / min).log10().floor()
        );
    }
}

/// `quiver train`: settings come from `--config FILE.toml` (the fields of
/// `TrainConfig`), then from the flags given, then from the defaults.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Name to store the model under.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// TOML file with training settings (see configs/).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// auto (a hardware GPU if wgpu finds one, else the CPU), gpu (any adapter, lavapipe included) or cpu.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Embedding dimension.
    #[arg(long)]
    pub dim: Option<usize>,
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Partitions per node type.
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f32>,
    /// Uniform negatives per chunk and side.
    #[arg(long)]
    pub negatives: Option<usize>,
    /// Edges per chunk (the chunk's other edges are negatives too).
    #[arg(long)]
    pub chunk: Option<usize>,
    /// margin, softmax (the default) or adversarial (self-adversarial negative sampling).
    #[arg(long)]
    pub loss: Option<String>,
    /// l1, l2 or dot (the default: (h + r) · t, as TwHIN).
    #[arg(long)]
    pub score: Option<String>,
    /// Margin of the margin loss; γ of the adversarial loss.
    #[arg(long)]
    pub margin: Option<f32>,
    /// Temperature of the adversarial loss's negative weights.
    #[arg(long)]
    pub adversarial_temperature: Option<f32>,
    /// Weight of the penalty on touched node rows (0: none).
    #[arg(long)]
    pub regularization: Option<f32>,
    /// l2 or n3.
    #[arg(long)]
    pub regularizer: Option<String>,
    /// What stored edge weights do in the loss: ignore (the default), raw, log1p, or normalize (each relation's mean weight is 1).
    #[arg(long)]
    pub weights: Option<String>,
    /// Learning rate of the relation vectors (default: --lr).
    #[arg(long)]
    pub relation_lr: Option<f32>,
    /// Chunks per GPU training step.
    #[arg(long)]
    pub gpu_chunks: Option<usize>,
    /// Project node rows into the ball of this radius after updates (distance scores; 0: off).
    #[arg(long)]
    pub max_norm: Option<f32>,
    /// Initial rows are uniform in ±init_scale/√dim.
    #[arg(long)]
    pub init_scale: Option<f32>,
    /// Seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Training threads (0: one per core; 1: bit-for-bit repeatable).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Keep resident partitions under this many MiB beyond the current bucket's (0: no limit).
    #[arg(long)]
    pub memory_budget: Option<usize>,
    /// Visits of every bucket per epoch, each training a share of its edges (PBG's num_edge_chunks).
    #[arg(long)]
    pub passes: Option<usize>,
    /// With P > 1, rows of each node type kept in memory (split over its partitions) as negatives from the partitions a bucket does not hold (0: the bucket's partitions only, as PBG).
    #[arg(long)]
    pub foreign_sample: Option<usize>,
    #[command(flatten)]
    pub valid: ValidArgs,
    /// Continue the stopped run of --model from its last finished bucket (its stored settings apply).
    #[arg(long)]
    pub resume: bool,
    /// Replace a model of that name (without it, an existing model is an error).
    #[arg(long)]
    pub force: bool,
    /// Start from this stored model's embeddings (new nodes from their neighbours').
    #[arg(long)]
    pub warm_start: Option<String>,
    /// Weight of the penalty λ‖θ − θ_prev‖² against drift from --warm-start (CPU backend).
    #[arg(long)]
    pub drift_penalty: Option<f32>,
    /// Train on these relations only, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub relations: Vec<String>,
    /// Try a few settings (the defaults, relation balance, L2 with the margin loss and d = 64) on
    /// the graph's own held-out edges within --budget and keep the best as the model.
    #[arg(long, conflicts_with = "resume")]
    pub auto: bool,
    /// Time --auto may spend starting points (the first always runs): 90s, 10m, 1h [default: 10m].
    #[arg(long, requires = "auto", value_parser = budget)]
    pub budget: Option<std::time::Duration>,
    /// Relation sampling temperature α in (0, 1]: each relation's share of an epoch's edges grows
    /// as its edge count to the power α, so that a dominant relation does not drown the rest (1: every edge once).
    #[arg(long)]
    pub relation_balance: Option<f32>,
    /// A relation's loss weight, NAME=W (repeatable; PBG's per-relation weight).
    #[arg(long)]
    pub relation_weight: Vec<String>,
}

impl TrainArgs {
    pub fn config(&self, db: &Database) -> anyhow::Result<quiver::TrainConfig> {
        let mut c: quiver::TrainConfig = match &self.config {
            Some(path) => {
                let text = quiver::read_text(path, quiver::MAX_SETTINGS_FILE)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("{}", path.display()))?
            }
            None => quiver::TrainConfig::default(),
        };
        let word = |v: &str| serde_json::Value::String(v.to_string());
        macro_rules! set {
            ($($field:ident <- $value:expr),* $(,)?) => { $( if let Some(v) = $value { c.$field = v; } )* };
        }
        set!(dim <- self.dim, epochs <- self.epochs, partitions <- self.partitions, lr <- self.lr,
             uniform_negatives <- self.negatives, chunk_size <- self.chunk, margin <- self.margin,
             init_scale <- self.init_scale, seed <- self.seed, threads <- self.threads,
             memory_budget_mib <- self.memory_budget, adversarial_temperature <- self.adversarial_temperature,
             regularization <- self.regularization, gpu_chunks <- self.gpu_chunks, passes <- self.passes,
             foreign_sample <- self.foreign_sample);
        if let Some(r) = self.relation_lr {
            c.relation_lr = Some(r);
        }
        if let Some(r) = &self.regularizer {
            c.regularizer = serde_json::from_value(word(r))
                .with_context(|| format!("--regularizer {r}: expected l2 or n3"))?;
        }
        if let Some(w) = &self.weights {
            c.weights = serde_json::from_value(word(w))
                .with_context(|| format!("--weights {w}: expected ignore, raw, log1p or normalize"))?;
        }
        if let Some(l) = &self.loss {
            c.loss = serde_json::from_value(word(l))
                .with_context(|| format!("--loss {l}: expected margin, softmax or adversarial"))?;
        }
        if let Some(s) = &self.score {
            c.score = serde_json::from_value(word(s))
                .with_context(|| format!("--score {s}: expected l1, l2 or dot"))?;
        }
        if let Some(m) = self.max_norm {
            c.max_norm = m;
        }
        if let Some(w) = &self.warm_start {
            c.warm_start = Some(w.clone());
        }
        if let Some(p) = self.drift_penalty {
            c.drift_penalty = p;
        }
        if let Some(a) = self.relation_balance {
            c.relation_balance = a;
        }
        for rw in &self.relation_weight {
            let (name, w) = (rw.rsplit_once('='))
                .with_context(|| format!("--relation-weight {rw}: expected NAME=WEIGHT"))?;
            let w: f32 = w
                .parse()
                .with_context(|| format!("--relation-weight {rw}: {w} is not a number"))?;
            c.relation_weights.insert(name.to_string(), w);
        }
        if !self.relations.is_empty() {
            let catalog = db.catalog();
            c.only_relations = self
                .relations
                .iter()
                .map(|r| catalog.relation(r))
                .collect::<Result<_, _>>()?;
        }
        Ok(c)
    }
}

/// `90s`, `10m`, `1h` or seconds.
fn budget(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = match text.char_indices().last() {
        Some((i, c @ ('s' | 'm' | 'h'))) => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text}: expected 90s, 10m, 1h or seconds"))?;
    let secs = n * match unit {
        'h' => 3600.0,
        'm' => 60.0,
        _ => 1.0,
    };
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("{text}: {e}"))
}

/// `quiver train`, with a progress bar on a terminal and a loss curve beside DB.
pub fn train(args: &TrainArgs) -> anyhow::Result<()> {
    let database = open(&args.db)?;
    let exists = || -> anyhow::Result<()> {
        if !args.resume && !args.force && database.model_info(&args.model).is_ok() {
            bail!(
                "model `{}` exists: --force replaces it, --resume continues it",
                args.model
            );
        }
        Ok(())
    };
    if args.auto {
        args.config(&database)?;
        exists()?;
        return super::tune::train_auto(args, &database, &args.model, None);
    }
    let (config, valid) = match args.resume {
        true => (
            serde_json::from_str::<serde_json::Value>(&database.model_info(&args.model)?.settings)
                .ok()
                .and_then(|s| serde_json::from_value::<quiver::TrainConfig>(s["config"].clone()).ok())
                .unwrap_or_default(),
            args.valid.validation()?,
        ),
        false => {
            let mut config = args.config(&database)?;
            let valid = args.valid.settle(&mut config, &database)?;
            (config, valid)
        }
    };
    exists()?;
    let relation_name = |r: u32| {
        database
            .catalog()
            .relations
            .get(r as usize)
            .map_or_else(|| r.to_string(), |d| d.name.clone())
    };
    let mut bar = super::bar::RunBar::new(config.epochs);
    let mut curve = Vec::new();
    let mut valid_curve = vec!["epoch\tmrr\thits@10".to_string()];
    let mut log = |e: &quiver::TrainEvent| match *e {
        quiver::TrainEvent::Bucket { .. } | quiver::TrainEvent::Chunks { .. } => bar.event(e),
        quiver::TrainEvent::Epoch(s) => {
            curve.push(s.loss);
            bar.event(e);
        }
        quiver::TrainEvent::Validation {
            epoch,
            mrr,
            hits10,
            best_epoch,
            best,
        } => {
            valid_curve.push(format!("{}\t{mrr}\t{hits10}", epoch + 1));
            let line = format!(
                "  valid after epoch {}: MRR {mrr:.4}, Hits@10 {hits10:.4} (best {best:.4} after epoch {})",
                epoch + 1,
                best_epoch + 1
            );
            bar.println(&line);
        }
        quiver::TrainEvent::Start {
            epochs: n,
            held_out,
            fraction,
            target,
        } => {
            bar.epochs = n;
            if held_out > 0 {
                eprintln!(
                    "validation: {held_out} held-out edges ({:.2}% of {}), validated as it trains for at most {n} epochs; the best epoch is kept (--valid none: no split)",
                    100.0 * fraction,
                    target.map_or_else(|| "the edges".to_string(), |t| format!("relation {}", relation_name(t)))
                );
            }
        }
        quiver::TrainEvent::WeightSpread { .. } => weight_warning(e),
    };
    let device = quiver::Device::select(&args.device)?;
    eprintln!("training on {}", device.describe());
    let started = Instant::now();
    let stop = super::interrupt::flag();
    let done = match args.resume {
        true => quiver::resume_on_until(&database, &args.model, &device, &mut log, stop, valid.as_ref()),
        false => quiver::train_on_until(
            &database,
            &args.model,
            &config,
            &device,
            &mut log,
            stop,
            valid.as_ref(),
        ),
    };
    if let Err(quiver::EngineError::Stopped(_)) = done {
        bar.abandon();
        eprintln!(
            "stopped: model `{}` is saved at its last checkpoint; `quiver train {} --model {} --resume` continues it",
            args.model,
            args.db.display(),
            args.model
        );
        std::process::exit(130);
    }
    done?;
    bar.finish();
    say!(
        "trained model `{}` in {:.1} s",
        args.model,
        started.elapsed().as_secs_f64()
    );
    if !curve.is_empty() {
        let path = args.db.join(format!("{}.loss.svg", file_stem(&args.model)));
        std::fs::write(&path, loss_svg(&args.model, &curve))
            .with_context(|| format!("writing {}", path.display()))?;
        say!("loss curve: {}", path.display());
    }
    if valid_curve.len() > 1 {
        let path = args.db.join(format!("{}.valid.tsv", file_stem(&args.model)));
        std::fs::write(&path, valid_curve.join("\n") + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        say!("validation curve: {}", path.display());
    }
    Ok(())
}

/// `quiver models`: lists the stored models, or drops one.
pub fn models(db: &Path, drop: Option<&str>, json: bool) -> anyhow::Result<()> {
    if let Some(name) = drop {
        open(db)?.drop_model(name)?;
        say!("dropped model `{name}`");
        return Ok(());
    }
    let database = open(db)?;
    if json {
        for m in quiver::tasks::models_json(&database)?
            .as_array()
            .into_iter()
            .flatten()
        {
            say!("{m}");
        }
        return Ok(());
    }
    for m in database.models() {
        let settings: serde_json::Value = serde_json::from_str(&m.settings).unwrap_or_default();
        let c = &settings["config"];
        let state = if m.progress.is_empty() {
            "finished".to_string()
        } else {
            format!("stopped at {}", m.progress)
        };
        say!(
            "{}: dim {} epochs {} partitions {} score {} loss {}; {state}; metrics {}",
            m.name,
            c["dim"],
            c["epochs"],
            c["partitions"],
            c["score"],
            c["loss"],
            if m.metrics.is_empty() { "none" } else { &m.metrics }
        );
        let since = match database.changes_since(&m.name)? {
            None => "no record of the graph it was trained on".to_string(),
            Some(c) if c.is_empty() => "the graph is as it was trained on".to_string(),
            Some(c) => {
                let nodes = |v: &[Vec<u32>]| v.iter().map(Vec::len).sum::<usize>();
                format!(
                    "since trained: {} edges added, {} deleted; {} nodes added, {} deleted (`quiver refresh` trains on them)",
                    c.edges_added.len(),
                    c.edges_deleted.len(),
                    nodes(&c.nodes_added),
                    nodes(&c.nodes_deleted)
                )
            }
        };
        say!("  {since}");
        for line in super::index::describe(&database, &m.name)? {
            say!("{line}");
        }
    }
    Ok(())
}

/// `quiver eval`: filtered link-prediction metrics, stored with the model.
pub fn eval(
    db: Option<PathBuf>,
    model: &str,
    test: Option<PathBuf>,
    filter: &[PathBuf],
    json: bool,
    device: &str,
) -> anyhow::Result<()> {
    let (Some(db), Some(test)) = (db, test) else {
        bail!("eval needs DB and --test FILE");
    };
    let device = quiver::Device::select(device)?;
    let database = open(&db)?;
    let test = quiver::read_triples(&test)?;
    let mut known = Vec::new();
    for f in filter {
        known.extend(quiver::read_triples(f)?);
    }
    let obj = quiver::tasks::evaluate_stored(&database, model, &test, &known, &device)?;
    if json {
        say!("{obj}");
    } else {
        say!(
            "MRR {:.4}  MR {:.1}  Hits@1 {:.4}  Hits@3 {:.4}  Hits@10 {:.4}  ({} triples ranked both ways, {} skipped: entity or relation not in the database; {:.1} s)",
            obj["mrr"].as_f64().unwrap_or(f64::NAN),
            obj["mr"].as_f64().unwrap_or(f64::NAN),
            obj["hits@1"].as_f64().unwrap_or(f64::NAN),
            obj["hits@3"].as_f64().unwrap_or(f64::NAN),
            obj["hits@10"].as_f64().unwrap_or(f64::NAN),
            obj["triples"],
            obj["skipped"],
            obj["seconds"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

/// A small SVG line chart of the loss per epoch.
fn loss_svg(name: &str, losses: &[f64]) -> String {
    let (w, h, pad) = (640.0, 360.0, 48.0);
    let max = losses
        .iter()
        .cloned()
        .fold(f64::MIN, f64::max)
        .max(f64::MIN_POSITIVE);
    let min = losses.iter().cloned().fold(f64::MAX, f64::min).min(max);
    let span = (max - min).max(max * 1e-9);
    let n = losses.len().max(2) - 1;
    let points: Vec<String> = losses
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let x = pad + (w - 2.0 * pad) * i as f64 / n as f64;
            let y = h - pad - (h - 2.0 * pad) * (l - min) / span;
            format!("{x:.1},{y:.1}")
        })
        .collect();
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{pad}" y="24">{} — training loss per epoch</text>
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="black"/>
<text x="4" y="{pad}">{max:.3e}</text><text x="4" y="{b}">{min:.3e}</text>
<text x="{pad}" y="{lb}">epoch 1</text><text x="{rl}" y="{lb}">epoch {}</text>
<polyline fill="none" stroke="steelblue" stroke-width="2" points="{}"/>
</svg>
"##,
        name.replace('&', "&amp;").replace('<', "&lt;"),
        losses.len(),
        points.join(" "),
        b = h - pad,
        r = w - pad,
        lb = h - pad + 20.0,
        rl = w - pad - 50.0,
    )
}
