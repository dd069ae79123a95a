//! `quiver export` and `quiver import-model`: a model's rows, or the graph,
//! out in other tools' formats (NPY, TSV, PyTorch-BigGraph's), and models
//! from them in.

use std::path::Path;

use anyhow::{bail, Context};

use super::open;

/// `quiver export`.
pub fn export_model(db: &Path, model: &str, format: &str, out: &Path, force: bool) -> anyhow::Result<()> {
    let database = open(db)?;
    let trained = quiver::Model::load(&database, model)?;
    super::outside_database("--out", out)?;
    let files = quiver::vectors::export_model(&database, &trained, format, out, force)?;
    say!("wrote {files} files to {}", out.display());
    Ok(())
}

/// `quiver export --format pbg`: the graph as PyTorch-BigGraph's input.
pub fn export_pbg(
    db: &Path,
    partitions: u32,
    config: Option<&Path>,
    out: &Path,
    force: bool,
) -> anyhow::Result<()> {
    if partitions == 0 {
        bail!("--partitions must be at least 1");
    }
    let cfg: quiver::TrainConfig = match config {
        Some(path) => {
            let text = quiver::read_text(path, quiver::MAX_SETTINGS_FILE)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?
        }
        None => quiver::TrainConfig::default(),
    };
    // Settings PBG could not load (`margin = nan`) are refused before a file is written.
    cfg.validate()?;
    let database = open(db)?;
    let r = quiver::pbg::export_graph(&database, partitions, &cfg, out, force)?;
    say!(
        "wrote {} files ({} edges in {} buckets) to {}; train with: torchbiggraph_train {}",
        r.files,
        r.edges,
        partitions * partitions,
        out.display(),
        out.join("config.py").display()
    );
    Ok(())
}

/// `quiver export --format pbg-checkpoint`: a model as PBG's init_path.
pub fn export_pbg_checkpoint(
    db: &Path,
    model: &str,
    partitions: u32,
    out: &Path,
    force: bool,
) -> anyhow::Result<()> {
    let database = open(db)?;
    let files = quiver::pbg::export_checkpoint(&database, model, partitions, out, force)?;
    say!(
        "wrote {files} files to {}: a PBG checkpoint of `{model}` (init_path = '{}')",
        out.display(),
        out.display()
    );
    Ok(())
}

/// `quiver import-model`: a model trained elsewhere, stored.
pub fn import_model(db: &Path, checkpoint: &Path, format: &str, model: &str) -> anyhow::Result<()> {
    if format != "pbg" {
        bail!("--format {format}: expected pbg or npy");
    }
    let database = open(db)?;
    quiver::pbg::import_checkpoint(&database, checkpoint, model)?;
    say!("stored model `{model}` from {}", checkpoint.display());
    Ok(())
}

/// `quiver import-model --format npy`.
pub fn import_npy(
    db: &std::path::Path,
    dir: &std::path::Path,
    model: &str,
    score: &str,
    create: bool,
) -> anyhow::Result<()> {
    let database = super::open(db)?;
    let score = quiver::vectors::Comparator::parse(score)?;
    for (ty, rows, left) in quiver::vectors::import_npy_dir(&database, dir, model, score, create)? {
        println!(
            "{ty}: {rows} rows into model `{model}`{}",
            match left {
                0 => String::new(),
                n => format!(" ({n} nodes of the type have no row: zeros)"),
            }
        );
    }
    Ok(())
}
