//! The `quiver` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use quiver::import::ImportOptions;

/// `println!` that returns an error instead of panicking when stdout is
/// closed (as under `quiver stats DB | head`).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($t)*)?
    }};
}

mod cli;

use cli::{demo, embed, exchange, index, model, refresh, serve, shell, store, tune};

/// quiver: an embedded graph database with a built-in embedding engine.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import edge lists (TSV/CSV, optionally gzip, or Parquet) into DB, creating it if needed.
    Import {
        /// Database directory.
        db: PathBuf,
        /// Input files: `head<TAB>relation<TAB>tail`, or
        /// `src_type<TAB>src_key<TAB>relation<TAB>dst_type<TAB>dst_key[<TAB>weight]`;
        /// Parquet files with columns of those names.
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
    Train(Box<model::TrainArgs>),
    /// Train every point of a grid over a config's settings with validation and keep the best (settings are chosen on validation only).
    Tune(Box<tune::TuneArgs>),
    /// Bring a model up to date with the writes since it was trained: a new version trained on the changed edges.
    Refresh(Box<refresh::RefreshArgs>),
    /// List the stored models with their settings, progress, metrics and the changes since each was trained.
    Models {
        /// Database directory.
        db: PathBuf,
        /// Drop this model (versions are kept until dropped).
        #[arg(long)]
        drop: Option<String>,
        /// One JSON object per model.
        #[arg(long)]
        json: bool,
    },
    /// Write a model's embeddings: per node type a matrix and a key table.
    Export {
        /// Database directory.
        db: PathBuf,
        /// Model name.
        #[arg(long, default_value = "default")]
        model: String,
        /// `npy` (TYPE.npy, float32 rows, plus TYPE.keys.tsv) or `tsv` (TYPE.tsv: key then values)
        /// for a model; `pbg` for the graph as PyTorch-BigGraph's training input (no model);
        /// `pbg-checkpoint` for the model as a PBG checkpoint (PBG's init_path).
        #[arg(long, default_value = "npy")]
        format: String,
        /// Output directory (created).
        #[arg(long)]
        out: PathBuf,
        /// Overwrite files that are already there.
        #[arg(long)]
        force: bool,
        /// With --format pbg or pbg-checkpoint: partitions per node type.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// With --format pbg: a TOML file of training settings for the config.py written.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Store a model trained elsewhere: `--format pbg` reads a PyTorch-BigGraph
    /// checkpoint directory (its latest version and config.json); `--format npy`
    /// the layout `export --format npy` writes (TYPE.npy and TYPE.keys.tsv per
    /// node type: any vectors, a text encoder's say), into a new model or over
    /// those types' rows of an existing one.
    ImportModel {
        /// Database directory.
        db: PathBuf,
        /// The checkpoint directory.
        checkpoint: PathBuf,
        /// The format of the checkpoint: pbg or npy.
        #[arg(long, default_value = "pbg")]
        format: String,
        /// Name of the stored model.
        #[arg(long, default_value = "default")]
        model: String,
        /// With --format npy: how searches compare the vectors, dot, l2 or cosine.
        #[arg(long, default_value = "dot")]
        score: String,
        /// With --format npy: create the node types and nodes the keys name that the
        /// database lacks (otherwise the first such key is an error).
        #[arg(long)]
        create_nodes: bool,
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
    /// Build an approximate nearest-neighbour index (HNSW) of a model's node type(s),
    /// stored with the model and used by every neighbour search while the model is unchanged.
    Index(Box<index::IndexArgs>),
    /// Serve the database over HTTP: a JSON API for many clients (one process owns the database).
    Serve(Box<serve::ServeArgs>),
    /// Nearest neighbours of nodes by a model's embeddings (its index when it has one; exact; or its int8 copy).
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
        /// A parameter, `name=value` (integers, floats, true, false and null are typed; else a string), or `name:TYPE=value` with TYPE str, int, float, bool or json (`json=@FILE` reads a file).
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
        /// Where to put the demo database, kept afterwards (default: a temporary directory, removed).
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

/// Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid or not
/// set" when the GPU is probed without one (a CPU-only machine, a service):
/// a private directory is given when the environment has none.
fn runtime_dir() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    // One per user (as the Makefile's), private to them.
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    let dir = std::env::temp_dir().join(format!("quiver-xdg-{uid}"));
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir);
    if made.is_ok() {
        // SAFETY: called first thing in `main`, before any other thread
        // exists, so nothing reads the environment concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("XDG_RUNTIME_DIR", &dir)
        };
    }
}

fn main() -> ExitCode {
    runtime_dir();
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
            let opts = ImportOptions {
                node_type,
                skip_bad,
                create_types,
                memory_edges,
            };
            store::import_files(&db, &files, opts)?
        }
        Command::Stats { db, json } => store::print_stats(&cli::open(&db)?, json)?,
        Command::Check { db } => return store::check(&db),
        Command::Buckets { db, partitions } => store::buckets(&db, partitions)?,
        Command::Compact { db } => store::compact(&db)?,
        Command::Demo { dir, users } => demo::demo(dir, users)?,
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
        Command::Train(args) => model::train(&args)?,
        Command::Tune(args) => tune::tune(&args)?,
        Command::Neighbors(a) => embed::neighbors(&a)?,
        Command::Index(a) => index::index(&a)?,
        Command::Serve(a) => serve::serve(&a)?,
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
        Command::Models { db, drop, json } => model::models(&db, drop.as_deref(), json)?,
        Command::Refresh(a) => refresh::refresh(&a)?,
        Command::Export {
            db,
            format,
            out,
            force,
            partitions,
            config,
            ..
        } if format == "pbg" => exchange::export_pbg(&db, partitions, config.as_deref(), &out, force)?,
        Command::Export {
            db,
            model,
            format,
            out,
            force,
            partitions,
            ..
        } if format == "pbg-checkpoint" => {
            exchange::export_pbg_checkpoint(&db, &model, partitions, &out, force)?
        }
        Command::Export {
            db,
            model,
            format,
            out,
            force,
            ..
        } => exchange::export_model(&db, &model, &format, &out, force)?,
        Command::ImportModel {
            db,
            checkpoint,
            format,
            model,
            score,
            create_nodes,
        } if format == "npy" => exchange::import_npy(&db, &checkpoint, &model, &score, create_nodes)?,
        Command::ImportModel {
            db,
            checkpoint,
            format,
            model,
            ..
        } => exchange::import_model(&db, &checkpoint, &format, &model)?,
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
        } => model::eval(db, &model, test, &filter, json, &device)?,
    }
    Ok(ExitCode::SUCCESS)
}
