//! `quiver index`: approximate nearest-neighbour indexes stored with a
//! model, and their lines in `quiver models`.

use std::io::IsTerminal;
use std::path::PathBuf;

use quiver::{AnnIndex, Database, IndexSettings, Quantization};

/// `quiver index`: build the index of a model's node type(s).
#[derive(clap::Args)]
pub struct IndexArgs {
    /// Database directory.
    db: PathBuf,
    /// Model name.
    #[arg(long, default_value = "default")]
    model: String,
    /// Node type to index; repeat for several (default: every type).
    #[arg(long = "type")]
    types: Vec<String>,
    /// How vectors are stored in the index: f32, f16 or i8.
    #[arg(long, default_value = "f32")]
    quantization: String,
    /// Edges per node in the graph (HNSW's M).
    #[arg(long, default_value_t = IndexSettings::default().connectivity)]
    connectivity: usize,
    /// Search breadth while building (HNSW's ef_construction).
    #[arg(long, default_value_t = IndexSettings::default().expansion_add)]
    expansion_add: usize,
    /// Default search breadth (HNSW's ef; `neighbors --ef` overrides it per call).
    #[arg(long, default_value_t = IndexSettings::default().expansion_search)]
    expansion_search: usize,
    /// Build threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn index(a: &IndexArgs) -> anyhow::Result<()> {
    let db = super::open(&a.db)?;
    let settings = IndexSettings {
        quantization: Quantization::parse(&a.quantization)?,
        connectivity: a.connectivity,
        expansion_add: a.expansion_add,
        expansion_search: a.expansion_search,
        threads: a.threads,
    };
    let c = db.catalog();
    let trained = quiver::Model::load(&db, &a.model)?.nodes.len() as u32;
    let types: Vec<u32> = match a.types.is_empty() {
        true => (0..trained).collect(),
        false => a.types.iter().map(|t| c.node_type(t)).collect::<Result<_, _>>()?,
    };
    for ty in types {
        let name = c.type_name(ty);
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} rows of {msg} eta {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_message(name.to_string());
            b
        });
        let stop = super::interrupt::flag();
        let built = quiver::index_model(&db, &a.model, ty, &settings, &|done, total| {
            if let Some(b) = &bar {
                b.set_length(total as u64);
                b.set_position(done as u64);
            }
            !stop.load(std::sync::atomic::Ordering::SeqCst)
        });
        if let Err(quiver::EngineError::Interrupted) = built {
            eprintln!("stopped: no index of {name} was stored");
            std::process::exit(130);
        }
        let info = built?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        println!(
            "indexed {} rows of {name} in {:.1} s ({}, M {}, ef_construction {}, ef {})",
            info.rows,
            info.build_seconds,
            a.quantization,
            info.settings.connectivity,
            info.settings.expansion_add,
            info.settings.expansion_search
        );
    }
    Ok(())
}

/// One line per index of model `name`, for `quiver models`.
pub fn describe(db: &Database, name: &str) -> anyhow::Result<Vec<String>> {
    let info = db.model_info(name)?;
    let c = db.catalog();
    let mut out = Vec::new();
    for ty in 0..c.node_types.len() as u32 {
        let Some(index) = AnnIndex::open(db, name, ty)? else {
            continue;
        };
        let i = index.info();
        out.push(format!(
            "  index over {}: {} rows, {}, M {}, ef_construction {}, ef {}, {:.1} MiB, built in {:.1} s{}",
            c.type_name(ty),
            i.rows,
            serde_json::to_value(i.settings.quantization)?
                .as_str()
                .unwrap_or("?"),
            i.settings.connectivity,
            i.settings.expansion_add,
            i.settings.expansion_search,
            index.file_bytes() as f64 / (1 << 20) as f64,
            i.build_seconds,
            match (index.is_current(&info), i.reinserted) {
                (false, _) => "; stale (the model changed since: run `quiver index` again)".to_string(),
                (true, Some(n)) => format!(
                    "; carried over by a refresh: {n} rows added again, {} deleted nodes removed",
                    i.removed
                ),
                (true, None) => String::new(),
            }
        ));
    }
    Ok(out)
}
