//! The `quiver` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use quiver::import::{ImportOptions, Progress};
use quiver::{Database, Direction};

mod embed;
mod shell;

/// `println!` that returns an error instead of panicking when stdout is
/// closed (as under `quiver stats DB | head`).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($t)*)?
    }};
}

/// quiver: an embedded graph database with a built-in embedding engine.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import edge lists (TSV/CSV, optionally gzip) into DB, creating it if needed.
    Import {
        /// Database directory.
        db: PathBuf,
        /// Input files: `head<TAB>relation<TAB>tail`, or
        /// `src_type<TAB>src_key<TAB>relation<TAB>dst_type<TAB>dst_key[<TAB>weight]`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Node type for plain triples.
        #[arg(long, default_value = "Entity")]
        node_type: String,
        /// Import the good lines and report the bad ones instead of rejecting the import.
        #[arg(long)]
        skip_bad: bool,
        /// Create unknown node and relation types found in typed files.
        #[arg(long)]
        create_types: bool,
        /// Edges sorted in memory before spilling a sorted run to disk (16 bytes each).
        #[arg(long, default_value_t = quiver::import::DEFAULT_MEMORY_EDGES)]
        memory_edges: usize,
    },
    /// Print counts per type, a degree summary and disk size per component.
    Stats {
        /// Database directory.
        db: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Verify the database; exit status 1 with a report when it is inconsistent.
    Check {
        /// Database directory.
        db: PathBuf,
    },
    /// Build the P×P edge buckets the trainer reads and print their sizes.
    Buckets {
        /// Database directory.
        db: PathBuf,
        /// Partitions per node type.
        #[arg(long, short = 'p', default_value_t = 4)]
        partitions: u32,
    },
    /// Fold pending writes into a new base generation.
    Compact {
        /// Database directory.
        db: PathBuf,
    },
    /// Train TransE embeddings on the database's edges (on the CPU, or a GPU with --device).
    Train(Box<TrainArgs>),
    /// List the stored models with their settings, progress and metrics.
    Models {
        /// Database directory.
        db: PathBuf,
        /// Drop this model (versions are kept until dropped).
        #[arg(long)]
        drop: Option<String>,
    },
    /// Write a model's embeddings: per node type a matrix and a key table.
    Export {
        /// Database directory.
        db: PathBuf,
        /// Model name.
        #[arg(long, default_value = "default")]
        model: String,
        /// `npy` (TYPE.npy, float32 rows, plus TYPE.keys.tsv) or `tsv` (TYPE.tsv: key then values).
        #[arg(long, default_value = "npy")]
        format: String,
        /// Output directory (created).
        #[arg(long)]
        out: PathBuf,
        /// Overwrite files that are already there.
        #[arg(long)]
        force: bool,
    },
    /// Filtered link-prediction metrics of a stored model on test triples;
    /// `eval recall` for Recall@K of held-out edges.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Eval {
        #[command(subcommand)]
        what: Option<EvalWhat>,
        /// Database directory.
        #[arg(required = true)]
        db: Option<PathBuf>,
        /// Model name.
        #[arg(long, default_value = "default")]
        model: String,
        /// Test triples, `head<TAB>relation<TAB>tail`.
        #[arg(long, required = true)]
        test: Option<PathBuf>,
        /// Further known triples to filter (e.g. the validation split).
        #[arg(long)]
        filter: Vec<PathBuf>,
        /// auto (a hardware GPU if any, else the CPU), gpu (any adapter, lavapipe included) or cpu.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Nearest neighbours of nodes by a model's embeddings (exact; or its int8 copy).
    Neighbors(Box<embed::NeighborsArgs>),
    /// Store an int8 copy (one scale per row) of a model's embeddings and report its recall.
    Quantize {
        /// Database directory.
        db: PathBuf,
        /// Model name.
        #[arg(long, default_value = "default")]
        model: String,
        /// Node types to quantize (default: all).
        #[arg(long = "type")]
        types: Vec<String>,
    },
    /// How far two versions of a model drifted: mean cosine and top-k neighbour overlap.
    Drift {
        /// Database directory.
        db: PathBuf,
        /// The older model.
        model_a: String,
        /// The newer model.
        model_b: String,
        /// Node type compared.
        #[arg(long = "type")]
        ty: String,
        /// Neighbours compared per node.
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Nodes whose neighbours are compared.
        #[arg(long, default_value_t = 1000)]
        sample: usize,
    },
    /// Relative cross-entropy of a classifier's predictions (`probability label` per line).
    Rce {
        /// The model's predictions.
        predictions: PathBuf,
        /// A baseline's predictions for the same examples (default: predict the label mean).
        #[arg(long)]
        baseline: Option<PathBuf>,
    },
    /// Run queries given with -e, or a script of `;`-ended statements from standard input.
    Query {
        /// Database directory (created if missing).
        db: PathBuf,
        /// The query text.
        #[arg(short = 'e', long = "execute")]
        execute: Option<String>,
        /// A parameter, `name=value` (integers, floats, true, false and null are typed; else a string), or `name:TYPE=value` with TYPE str, int, float or bool.
        #[arg(long = "param")]
        params: Vec<String>,
        /// table, json (an array of objects keyed by column) or csv.
        #[arg(long, default_value = "table")]
        format: String,
        /// Most rows a query may return or buffer.
        #[arg(long, default_value_t = quiver::Limits::default().max_rows)]
        max_rows: u64,
        /// Stop a query after this many milliseconds (0: never).
        #[arg(long, default_value_t = 60_000)]
        timeout_ms: u64,
    },
    /// An interactive query shell with line editing and history.
    Shell {
        /// Database directory (created if missing).
        db: PathBuf,
    },
    /// Run the built-in demo: generate a TwHIN-like network, import, inspect.
    Demo {
        /// Where to put the demo database (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Number of users.
        #[arg(long, default_value_t = 2000)]
        users: u32,
    },
}

#[derive(Subcommand)]
enum EvalWhat {
    /// Hold out a share of one relation's edges, train on the rest, and
    /// report Recall@K when each source retrieves its top K.
    Recall(Box<embed::RecallArgs>),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        // A reader that closed the pipe (`quiver stats DB | head -1`) wanted no more.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs one line per training epoch to standard error.
fn epoch_logger() -> impl FnMut(&quiver::TrainEvent) {
    |e| match e {
        quiver::TrainEvent::Epoch(s) => eprintln!(
            "epoch {:>3}: loss {:.4e}, {} edges in {:.2} s",
            s.epoch + 1,
            s.loss,
            s.edges,
            s.seconds
        ),
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

/// An input is `-` (standard input) or a path that exists and is not a
/// directory (pipes, FIFOs and process substitution included).
fn check_input(path: &std::path::Path) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        return Ok(());
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => bail!("input {} is a directory", path.display()),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("input file {} does not exist", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn open(db: &PathBuf) -> anyhow::Result<Database> {
    Database::open(db).with_context(|| format!("opening {}", db.display()))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Import {
            db,
            files,
            node_type,
            skip_bad,
            create_types,
            memory_edges,
        } => {
            for f in &files {
                check_input(f)?;
            }
            let database =
                Database::open_or_create(&db).with_context(|| format!("opening {}", db.display()))?;
            let opts = ImportOptions {
                node_type,
                skip_bad,
                create_types,
                memory_edges,
            };
            import(&database, &files, &opts)?;
        }
        Command::Stats { db, json } => print_stats(&open(&db)?, json)?,
        Command::Check { db } => {
            let report = open(&db)?.check()?;
            for n in &report.notes {
                say!("note: {n}");
            }
            if !report.ok() {
                for p in &report.problems {
                    say!("problem: {p}");
                }
                say!("check FAILED: {} problem(s)", report.problems.len());
                return Ok(ExitCode::from(1));
            }
            say!("check passed");
        }
        Command::Buckets { db, partitions } => {
            let database = open(&db)?;
            let t = Instant::now();
            let b = database.buckets(partitions)?;
            say!(
                "{} edges in {}x{} buckets ({:.1} ms)",
                b.edge_count(),
                partitions,
                partitions,
                ms(t.elapsed())
            );
            for i in 0..partitions {
                let row: Vec<String> = (0..partitions)
                    .map(|j| b.bucket(i, j).len().to_string())
                    .collect();
                say!("  {}", row.join("\t"));
            }
        }
        Command::Compact { db } => {
            let t = Instant::now();
            open(&db)?.compact()?;
            say!("compacted in {:.1} ms", ms(t.elapsed()));
        }
        Command::Demo { dir, users } => demo(dir, users)?,
        Command::Query {
            db,
            execute,
            params,
            format,
            max_rows,
            timeout_ms,
        } => {
            let limits = quiver::Limits {
                max_rows,
                timeout: (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms)),
            };
            shell::query(
                &db,
                execute,
                &shell::params(&params)?,
                shell::Format::parse(&format)?,
                limits,
            )?;
        }
        Command::Shell { db } => shell::shell(&db)?,
        Command::Train(args) => {
            let database = open(&args.db)?;
            let config = match args.resume {
                true => {
                    serde_json::from_str::<serde_json::Value>(&database.model_info(&args.model)?.settings)
                        .ok()
                        .and_then(|s| serde_json::from_value::<quiver::TrainConfig>(s["config"].clone()).ok())
                        .unwrap_or_default()
                }
                false => args.config(&database)?,
            };
            let bar = std::io::stderr().is_terminal().then(|| {
                let b = indicatif::ProgressBar::new(0);
                b.set_style(
                    indicatif::ProgressStyle::with_template("{bar:30} {msg} eta {eta}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b
            });
            let mut curve = Vec::new();
            let mut epoch_start = Instant::now();
            let mut log = |e: &quiver::TrainEvent| match *e {
                quiver::TrainEvent::Bucket {
                    epoch,
                    bucket,
                    buckets,
                    edges,
                    loss,
                } => {
                    if let Some(b) = &bar {
                        b.set_length((config.epochs * buckets) as u64);
                        b.set_position((epoch * buckets + bucket + 1) as u64);
                        b.set_message(format!(
                            "epoch {}/{} bucket {}/{buckets} loss {loss:.3e} {:.0} edges/s",
                            epoch + 1,
                            config.epochs,
                            bucket + 1,
                            edges as f64 / epoch_start.elapsed().as_secs_f64()
                        ));
                    }
                }
                quiver::TrainEvent::Epoch(s) => {
                    epoch_start = Instant::now();
                    curve.push(s.loss);
                    let line = format!(
                        "epoch {:>3}: loss {:.4e}, {} edges in {:.2} s ({:.0} edges/s, {:.0}% moving partitions)",
                        s.epoch + 1,
                        s.loss,
                        s.edges,
                        s.seconds,
                        s.edges as f64 / s.seconds,
                        100.0 * s.io_share
                    );
                    match &bar {
                        Some(b) => b.println(line),
                        None => eprintln!("{line}"),
                    }
                }
                quiver::TrainEvent::WeightSpread { .. } => weight_warning(e),
            };
            let device = quiver::Device::select(&args.device)?;
            eprintln!("training on {}", device.describe());
            let started = Instant::now();
            if args.resume {
                quiver::resume_on(&database, &args.model, &device, &mut log)?;
            } else {
                quiver::train_on(&database, &args.model, &config, &device, &mut log)?;
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
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
        }
        Command::Neighbors(a) => embed::neighbors(&a)?,
        Command::Quantize { db, model, types } => embed::quantize(&db, &model, &types)?,
        Command::Drift {
            db,
            model_a,
            model_b,
            ty,
            k,
            sample,
        } => embed::drift(&db, &model_a, &model_b, &ty, k, sample)?,
        Command::Rce {
            predictions,
            baseline,
        } => embed::rce(&predictions, baseline.as_deref())?,
        Command::Models { db, drop: Some(name) } => {
            open(&db)?.drop_model(&name)?;
            say!("dropped model `{name}`");
        }
        Command::Models { db, drop: None } => {
            for m in open(&db)?.models() {
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
            }
        }
        Command::Export {
            db,
            model,
            format,
            out,
            force,
        } => {
            let database = open(&db)?;
            let trained = quiver::Model::load(&database, &model)?;
            let files = export(&database, &trained, &format, &out, force)?;
            say!("wrote {files} files to {}", out.display());
        }
        Command::Eval {
            what: Some(EvalWhat::Recall(a)),
            ..
        } => embed::eval_recall(&a)?,
        Command::Eval {
            what: None,
            db,
            model,
            test,
            filter,
            json,
            device,
        } => {
            let (Some(db), Some(test)) = (db, test) else {
                bail!("eval needs DB and --test FILE");
            };
            let device = quiver::Device::select(&device)?;
            let database = open(&db)?;
            let trained = quiver::Model::load(&database, &model)?;
            let test = quiver::read_triples(&test)?;
            let mut known = Vec::new();
            for f in &filter {
                known.extend(quiver::read_triples(f)?);
            }
            let r = quiver::evaluate(&database, &trained, &test, &known, &device)?;
            let obj = serde_json::json!({
                "mrr": r.mrr, "mr": r.mr, "hits@1": r.hits1, "hits@3": r.hits3, "hits@10": r.hits10,
                "triples": r.triples, "skipped": r.skipped, "seconds": r.seconds,
                "ties": "realistic", "unknown_entities": "skipped", "device": device.describe(),
            });
            database.set_model_metrics(&model, &obj.to_string())?;
            if json {
                say!("{obj}");
            } else {
                say!(
                    "MRR {:.4}  MR {:.1}  Hits@1 {:.4}  Hits@3 {:.4}  Hits@10 {:.4}  ({} triples ranked both ways, {} skipped: entity or relation not in the database; {:.1} s)",
                    r.mrr, r.mr, r.hits1, r.hits3, r.hits10, r.triples, r.skipped, r.seconds
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `quiver train`: settings come from `--config FILE.toml` (the fields of
/// `TrainConfig`), then from the flags given, then from the defaults.
#[derive(clap::Args)]
struct TrainArgs {
    /// Database directory.
    db: PathBuf,
    /// Name to store the model under.
    #[arg(long, default_value = "default")]
    model: String,
    /// TOML file with training settings (see configs/).
    #[arg(long)]
    config: Option<PathBuf>,
    /// auto (a hardware GPU if wgpu finds one, else the CPU), gpu (any adapter, lavapipe included) or cpu.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Embedding dimension.
    #[arg(long)]
    dim: Option<usize>,
    /// Epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Partitions per node type.
    #[arg(long)]
    partitions: Option<u32>,
    /// Learning rate.
    #[arg(long)]
    lr: Option<f32>,
    /// Uniform negatives per chunk and side.
    #[arg(long)]
    negatives: Option<usize>,
    /// Edges per chunk (the chunk's other edges are negatives too).
    #[arg(long)]
    chunk: Option<usize>,
    /// margin, softmax or adversarial (self-adversarial negative sampling).
    #[arg(long)]
    loss: Option<String>,
    /// l1, l2 or dot.
    #[arg(long)]
    score: Option<String>,
    /// Margin of the margin loss; γ of the adversarial loss.
    #[arg(long)]
    margin: Option<f32>,
    /// Temperature of the adversarial loss's negative weights.
    #[arg(long)]
    adversarial_temperature: Option<f32>,
    /// Weight of the penalty on touched node rows (0: none).
    #[arg(long)]
    regularization: Option<f32>,
    /// l2 or n3.
    #[arg(long)]
    regularizer: Option<String>,
    /// What stored edge weights do in the loss: ignore (the default), raw, log1p, or normalize (each relation's mean weight is 1).
    #[arg(long)]
    weights: Option<String>,
    /// Learning rate of the relation vectors (default: --lr).
    #[arg(long)]
    relation_lr: Option<f32>,
    /// Chunks per GPU training step.
    #[arg(long)]
    gpu_chunks: Option<usize>,
    /// Project node rows into the ball of this radius after updates (distance scores; 0: off).
    #[arg(long)]
    max_norm: Option<f32>,
    /// Initial rows are uniform in ±init_scale/√dim.
    #[arg(long)]
    init_scale: Option<f32>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Training threads (0: one per core; 1: bit-for-bit repeatable).
    #[arg(long)]
    threads: Option<usize>,
    /// Keep resident partitions under this many MiB beyond the current bucket's (0: no limit).
    #[arg(long)]
    memory_budget: Option<usize>,
    /// Visits of every bucket per epoch, each training a share of its edges (PBG's num_edge_chunks).
    #[arg(long)]
    passes: Option<usize>,
    /// With P > 1, rows of each node type kept in memory (split over its partitions) as negatives from the partitions a bucket does not hold (0: the bucket's partitions only, as PBG).
    #[arg(long)]
    foreign_sample: Option<usize>,
    /// Continue the stopped run of --model from its last finished bucket (its stored settings apply).
    #[arg(long)]
    resume: bool,
    /// Start from this stored model's embeddings (new nodes from their neighbours').
    #[arg(long)]
    warm_start: Option<String>,
    /// Weight of the penalty λ‖θ − θ_prev‖² against drift from --warm-start (CPU backend).
    #[arg(long)]
    drift_penalty: Option<f32>,
    /// Train on these relations only, comma-separated.
    #[arg(long, value_delimiter = ',')]
    relations: Vec<String>,
}

impl TrainArgs {
    fn config(&self, db: &Database) -> anyhow::Result<quiver::TrainConfig> {
        let mut c: quiver::TrainConfig = match &self.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
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

/// Writes one matrix and one key table per node type, and one for the
/// relation vectors (`_relations`); returns the file count. Names become
/// file names only through [`file_stem`]; nothing is written into a
/// database directory, or over an existing file unless `force`.
fn export(
    db: &Database,
    model: &quiver::Model,
    format: &str,
    out: &std::path::Path,
    force: bool,
) -> anyhow::Result<usize> {
    if !matches!(format, "npy" | "tsv") {
        bail!("--format {format}: expected npy or tsv");
    }
    if out.join("catalog").is_dir() || out.join("LOCK").is_file() {
        bail!(
            "--out {} is a database directory; export elsewhere",
            out.display()
        );
    }
    let snap = db.snapshot();
    let c = snap.catalog();
    if !force {
        let stems = c.node_types.iter().map(|t| file_stem(&t.name));
        let names = stems
            .chain(["_relations".to_string()])
            .flat_map(|stem| match format {
                "tsv" => vec![format!("{stem}.tsv")],
                _ => vec![format!("{stem}.npy"), format!("{stem}.keys.tsv")],
            });
        if let Some(there) = names.map(|n| out.join(n)).find(|p| p.exists()) {
            bail!("{} exists (--force overwrites it)", there.display());
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let d = model.dim();
    let mut files = 0;
    for (t, def) in c.node_types.iter().enumerate() {
        let table = model.nodes.get(t).map_or(&[][..], |v| v.as_slice());
        let key = |id: usize| snap.node_key(t as u32, id as u32).unwrap_or("").to_string();
        files += write_matrix(out, &file_stem(&def.name), table, d, format, force, key)?;
    }
    let relations = c.relations.len();
    let key = |row: usize| match c.relations.get(row) {
        Some(r) => r.name.clone(),
        None => format!(
            "{} (head)",
            c.relations.get(row - relations).map_or("?", |r| r.name.as_str())
        ),
    };
    files += write_matrix(out, "_relations", &model.relations, d, format, force, key)?;
    Ok(files)
}

/// A type's or model's name as a file name: bytes other than ASCII letters, digits,
/// `-` and `_` (and a leading `_`, which `_relations` uses) are written as
/// `%XX`, so no name can leave the output directory or collide with another.
fn file_stem(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'-' || (b == b'_' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A key in a TSV field: `\`, tab, newline and carriage return as `\\`,
/// `\t`, `\n` and `\r` (PostgreSQL's text format), so every key is one field.
fn tsv_field(key: &str) -> std::borrow::Cow<'_, str> {
    if !key.contains(['\\', '\t', '\n', '\r']) {
        return key.into();
    }
    let mut out = String::with_capacity(key.len() + 2);
    for c in key.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.into()
}

/// `STEM.npy` (NPY 1.0, float32, rows × d) plus `STEM.keys.tsv` (row, key),
/// or `STEM.tsv` (key, then the values); returns the file count.
fn write_matrix(
    out: &std::path::Path,
    stem: &str,
    data: &[f32],
    d: usize,
    format: &str,
    force: bool,
    key: impl Fn(usize) -> String,
) -> anyhow::Result<usize> {
    use std::io::Write as _;
    let rows = data.len() / d;
    let create = |name: String| -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
        let path = out.join(name);
        let file = std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .create_new(!force)
            .open(&path);
        let file = match file {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                bail!("{} exists (--force overwrites it)", path.display())
            }
            f => f.with_context(|| format!("creating {}", path.display()))?,
        };
        Ok(std::io::BufWriter::new(file))
    };
    if format == "tsv" {
        let mut w = create(format!("{stem}.tsv"))?;
        for (id, row) in data.chunks_exact(d).enumerate() {
            write!(w, "{}", tsv_field(&key(id)))?;
            for v in row {
                write!(w, "\t{v}")?;
            }
            writeln!(w)?;
        }
        w.flush()?;
        return Ok(1);
    }
    let mut w = create(format!("{stem}.npy"))?;
    // NPY 1.0: magic, version, header length, a Python dict padded to 64 bytes.
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {d}), }}");
    let len = (10 + dict.len() + 1).div_ceil(64) * 64 - 10;
    w.write_all(b"\x93NUMPY\x01\x00")?;
    w.write_all(&(len as u16).to_le_bytes())?;
    writeln!(w, "{dict:<width$}", width = len - 1)?;
    for v in data {
        w.write_all(&v.to_le_bytes())?;
    }
    w.flush()?;
    let mut k = create(format!("{stem}.keys.tsv"))?;
    for id in 0..rows {
        writeln!(k, "{id}\t{}", tsv_field(&key(id)))?;
    }
    k.flush()?;
    Ok(2)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn import(db: &Database, files: &[PathBuf], opts: &ImportOptions) -> anyhow::Result<()> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut last_log = Instant::now();
    let mut on_progress = |p: Progress| match &bar {
        Some(b) => {
            b.set_length(p.total_bytes);
            b.set_position(p.bytes);
            b.set_message(format!("{} lines", p.lines));
        }
        None if last_log.elapsed() > Duration::from_secs(2) => {
            last_log = Instant::now();
            eprintln!("import: {} lines, {}/{} bytes", p.lines, p.bytes, p.total_bytes);
        }
        None => {}
    };
    let result = db.import(files, opts, &mut on_progress);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let r = result?;
    if r.skipped.total > 0 {
        eprintln!("skipped {} bad line(s):", r.skipped.total);
        for e in &r.skipped.first {
            eprintln!("  {e}");
        }
        if r.skipped.total > r.skipped.first.len() as u64 {
            eprintln!(
                "  ... and {} more",
                r.skipped.total - r.skipped.first.len() as u64
            );
        }
    }
    say!(
        "imported {} edge lines: {} new edges, {} new nodes in {:.3} s",
        r.edges_read,
        r.edges_added,
        r.nodes_added,
        r.seconds
    );
    Ok(())
}

fn print_stats(db: &Database, json: bool) -> anyhow::Result<()> {
    let s = db.stats()?;
    if json {
        let obj = serde_json::json!({
            "nodes": s.nodes,
            "edges": s.edges,
            "node_types": s.node_types.iter().map(|(n, c)| (n.clone(), serde_json::json!(c))).collect::<serde_json::Map<_, _>>(),
            "relation_types": s.relations.iter().map(|(n, _, _, c)| (n.clone(), serde_json::json!(c))).collect::<serde_json::Map<_, _>>(),
            "out_degree": degree_json(&s.out_degree),
            "in_degree": degree_json(&s.in_degree),
            "delta_changes": s.delta_changes,
            "generation": s.generation,
            "disk_bytes": s.disk.iter().map(|(n, b)| (n.clone(), serde_json::json!(b))).collect::<serde_json::Map<_, _>>(),
        });
        say!("{obj}");
        return Ok(());
    }
    say!(
        "{} nodes, {} edges (base generation {}, {} pending changes)",
        s.nodes,
        s.edges,
        s.generation,
        s.delta_changes
    );
    say!("node types:");
    for (n, c) in &s.node_types {
        say!("  {n:<24} {c:>12}");
    }
    say!("relation types:");
    for (n, src, dst, c) in &s.relations {
        say!("  {:<40} {c:>12}", format!("{n} ({src} -> {dst})"));
    }
    for (label, d) in [("out-degree", &s.out_degree), ("in-degree", &s.in_degree)] {
        say!(
            "{label}: min {} median {} mean {:.2} p99 {} max {}",
            d.min,
            d.median,
            d.mean,
            d.p99,
            d.max
        );
    }
    say!("disk:");
    let mut total = 0;
    for (n, b) in &s.disk {
        total += b;
        say!("  {n:<24} {:>10.2} MiB", *b as f64 / 1048576.0);
    }
    say!("  {:<24} {:>10.2} MiB", "total", total as f64 / 1048576.0);
    Ok(())
}

fn degree_json(d: &quiver::DegreeSummary) -> serde_json::Value {
    serde_json::json!({"min": d.min, "median": d.median, "mean": d.mean, "p99": d.p99, "max": d.max})
}

/// The talk's table: Recall@K of held-out follows when each user retrieves
/// by (u + Follows) · v, for embeddings of the follow graph alone, of the
/// whole network, and of the whole network with mixtures.
fn demo_recall(db: &Database, follows: u32, base: &quiver::TrainConfig) -> anyhow::Result<()> {
    let holdout = quiver::Holdout {
        relation: follows,
        fraction: 0.1,
        seed: 7,
        pairs: true,
    };
    say!("== Recall@K of 10% held-out follows (each user retrieves by (u + Follows) · v; follows it keeps are left out)");
    let ks = [10, 20, 50];
    let mut rows = Vec::new();
    for (label, only) in [("follow graph only", vec![follows]), ("whole network", vec![])] {
        let config = quiver::TrainConfig {
            holdout: Some(holdout.clone()),
            only_relations: only.clone(),
            ..base.clone()
        };
        let started = Instant::now();
        let name = format!("recall-{}", if only.is_empty() { "network" } else { "follows" });
        let model = quiver::train(db, &name, &config, &mut |_| {})?;
        let seconds = started.elapsed().as_secs_f64();
        let snap = db.snapshot();
        let r = quiver::recall::recall(
            &snap,
            &model,
            &holdout,
            &ks,
            quiver::recall::Method::Translation,
            None,
        )?;
        rows.push((label.to_string(), r.recall.clone(), seconds, r.held_out));
        if only.is_empty() {
            let mix = embed::mixtures(&snap, &model, &holdout, 50, 3, &quiver::Device::Cpu)?;
            let r = quiver::recall::recall(
                &snap,
                &model,
                &holdout,
                &ks,
                quiver::recall::Method::Mixture,
                Some(&mix),
            )?;
            rows.push((
                "whole network, mixture (50 clusters, 3 modes)".into(),
                r.recall,
                0.0,
                r.held_out,
            ));
        }
        db.drop_model(&name)?;
    }
    say!("  | embeddings | Recall@10 | Recall@20 | Recall@50 |");
    say!("  |---|---|---|---|");
    for (label, r, _, _) in &rows {
        say!("  | {label} | {:.3} | {:.3} | {:.3} |", r[0].1, r[1].1, r[2].1);
    }
    say!(
        "  ({} held-out follows; training {:.1} s and {:.1} s)",
        rows[0].3,
        rows[0].2,
        rows[1].2
    );
    Ok(())
}

/// A user created after training gets an embedding from its neighbours.
fn demo_cold_start(
    graph: &quiver::Graph,
    (user, follows): (u32, u32),
    communities: u32,
    community: &dyn Fn(u32) -> Option<u32>,
) -> anyhow::Result<()> {
    say!("== cold start: `newbie` joins after training and follows 6 users of community 3; no retraining");
    let db = graph.database();
    let snap = db.snapshot();
    let mut b = db.batch();
    for v in (0..6).map(|i| 3 + communities * i) {
        b.insert_edge(
            follows,
            "newbie",
            snap.node_key(user, v).context("user missing")?,
            None,
        );
    }
    db.commit(b)?;
    let text = "MATCH (n:User {key: 'newbie'})\n\
                CALL quiver.predict(n, 'Follows', 10, 'twhin') YIELD node, score\n\
                RETURN node.key AS who, score";
    for line in text.lines() {
        say!("  {line}");
    }
    let rows = graph.query(text, &quiver::Params::new())?;
    let snap = db.snapshot();
    let mut same = 0;
    for row in &rows.rows {
        if let Some(quiver::QueryValue::Str(k)) = row.first() {
            same += usize::from(snap.node_id(user, k.as_str()).and_then(community) == Some(3));
        }
    }
    for line in rows.to_table().lines() {
        say!("  {line}");
    }
    say!("  {same} of {} are in community 3 (the inferred row is the mean of (v − Follows) over its followees)", rows.rows.len());
    Ok(())
}

fn demo(dir: Option<PathBuf>, users: u32) -> anyhow::Result<()> {
    let tmp;
    let dir = match dir {
        Some(d) => d,
        None => {
            tmp = std::env::temp_dir().join(format!("quiver-demo-{}", std::process::id()));
            tmp.clone()
        }
    };
    if dir.exists() {
        bail!("{} exists; pass another --dir", dir.display());
    }
    std::fs::create_dir_all(&dir)?;
    let shape = quiver::demo::Shape {
        users,
        ..Default::default()
    };
    let input = dir.join("twhin.tsv");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&input)?);
    let lines = quiver::demo::write(&shape, &mut w)?;
    std::io::Write::flush(&mut w)?;
    drop(w);
    say!(
        "== generated a TwHIN-like network: {lines} typed edge lines ({} users, seed {})",
        shape.users,
        shape.seed
    );
    let db_path = dir.join("db");
    let db = Database::create(&db_path)?;
    quiver::demo::create_schema(&db)?;
    say!("== import");
    import(&db, &[input], &ImportOptions::default())?;
    say!("== stats");
    print_stats(&db, false)?;
    say!("== neighbours of u0");
    let snap = db.snapshot();
    let c = snap.catalog();
    let user = c.node_type("User")?;
    let alice = snap.node_id(user, "u0").context("u0 missing")?;
    for (rel, nbr) in snap
        .all_neighbors(user, alice, Direction::Out)
        .into_iter()
        .take(12)
    {
        let r = &c.relations[rel as usize];
        let w = snap.edge_weight(rel, alice, nbr).unwrap_or(1.0);
        say!(
            "  u0 -{}-> {} (weight {w})",
            r.name,
            snap.node_key(r.dst, nbr).unwrap_or("?")
        );
    }
    say!("== a write batch: u0 follows u1, unfollows its first followee");
    let follows = c.relation("Follows")?;
    let first = snap.out_neighbors(follows, alice).first().copied();
    let mut b = db.batch();
    b.insert_edge(follows, "u0", "u1", None);
    if let Some(f) = first {
        b.delete_edge(follows, alice, f);
    }
    b.set_property(user, "u0", "name", quiver::Value::Str("alice".into()));
    db.commit(b)?;
    db.flush()?;
    let after = db.snapshot();
    say!(
        "  u0 now follows {} users; name = {:?}",
        after.degree(follows, alice, Direction::Out),
        db.property(user, alice, "name")?
    );
    say!("== buckets for P=4 (what training streams)");
    let b = db.buckets(4)?;
    say!(
        "  {} edges in 16 buckets; bucket (0,0) holds {}",
        b.edge_count(),
        b.bucket(0, 0).len()
    );
    say!("== train TransE (translation + dot, as TwHIN) on the whole network: 64 dims, 10 epochs, P=4");
    let config = quiver::TrainConfig {
        dim: 64,
        epochs: 10,
        partitions: 4,
        score: quiver::Score::Dot,
        loss: quiver::Loss::Softmax,
        seed: 1,
        ..Default::default()
    };
    let started = Instant::now();
    let model = quiver::train(&db, "twhin", &config, &mut |_| {})?;
    say!("  trained in {:.1} s", started.elapsed().as_secs_f64());
    say!("== who should u0 follow? top 10 by (u0 + Follows) · v, among users u0 does not follow");
    let snap = db.snapshot();
    let followed = snap.out_neighbors(follows, alice);
    let index = quiver::Index::new(quiver::Metric::Dot, &model.nodes[user as usize], model.dim());
    let ranked = index
        .search(
            &model.tail_query(follows, model.node(user, alice)),
            10,
            &|_, v| v == alice || followed.binary_search(&v).is_ok(),
        )
        .remove(0);
    let community = |v: u32| {
        snap.node_key(user, v)
            .and_then(|k| k[1..].parse::<u32>().ok())
            .map(|n| n % shape.communities)
    };
    let same = ranked
        .iter()
        .filter(|&&(v, _)| community(v) == community(alice))
        .count();
    for (v, score) in &ranked {
        say!(
            "  {:<6} score {score:>8.3}",
            snap.node_key(user, *v).unwrap_or("?")
        );
    }
    say!(
        "  {same} of the 10 are in u0's community (the generator puts 80% of follows there; chance is 1 in {})",
        shape.communities
    );
    demo_recall(&db, follows, &config)?;
    say!("== the same question in the query language: friends of friends, ranked by the model");
    let text = "MATCH (a:User {key: $k})-[:Follows]->()-[:Follows]->(c)\n\
                WHERE c <> a AND NOT (a)-[:Follows]->(c)\n\
                RETURN DISTINCT c.key AS who, quiver.score(a, 'Follows', c) AS score\n\
                ORDER BY score DESC LIMIT 5";
    for line in text.lines() {
        say!("  {line}");
    }
    let graph = quiver::Graph::new(db);
    let rows = graph.query(text, &quiver::Params::from([("k".into(), "u0".into())]))?;
    for line in rows.to_table().lines() {
        say!("  {line}");
    }
    demo_cold_start(&graph, (user, follows), shape.communities, &community)?;
    let db = graph.database();
    say!("== check");
    let report = db.check()?;
    say!(
        "  {}",
        if report.ok() {
            "check passed".to_string()
        } else {
            format!("{:?}", report.problems)
        }
    );
    drop(graph);
    std::fs::remove_dir_all(&dir).ok();
    if !report.ok() {
        bail!("demo database failed its check");
    }
    Ok(())
}
