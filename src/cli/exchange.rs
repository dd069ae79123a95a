//! `quiver export` and `quiver import-model`: a model's rows, or the graph,
//! out in other tools' formats (NPY, TSV, PyTorch-BigGraph's), and models
//! from them in.

use std::path::Path;

use anyhow::{bail, Context};
use quiver::Database;

use super::open;

/// `quiver export`.
pub fn export_model(db: &Path, model: &str, format: &str, out: &Path, force: bool) -> anyhow::Result<()> {
    let database = open(db)?;
    let trained = quiver::Model::load(&database, model)?;
    let files = export(&database, &trained, format, out, force)?;
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
    super::outside_database("--out", out)?;
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
    let names = quiver::tasks::relation_row_names(&snap, model);
    let key = |row: usize| names.get(row).cloned().unwrap_or_default();
    files += write_matrix(out, "_relations", &model.relations, d, format, force, key)?;
    Ok(files)
}

/// A type's or model's name as a file name: bytes other than ASCII letters, digits,
/// `-` and `_` (and a leading `_`, which `_relations` uses) are written as
/// `%XX`, so no name can leave the output directory or collide with another.
pub(crate) fn file_stem(name: &str) -> String {
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
    let rows = data.len() / d;
    // (Existing files were refused for all names before the first was written.)
    let file = |name: String, body: &dyn Fn(&mut dyn std::io::Write) -> std::io::Result<()>| {
        super::write_file(&out.join(name), force, body)
    };
    if format == "tsv" {
        file(format!("{stem}.tsv"), &|w| {
            for (id, row) in data.chunks_exact(d).enumerate() {
                write!(w, "{}", tsv_field(&key(id)))?;
                for v in row {
                    write!(w, "\t{v}")?;
                }
                writeln!(w)?;
            }
            Ok(())
        })?;
        return Ok(1);
    }
    file(format!("{stem}.npy"), &|w| {
        // NPY 1.0: magic, version, header length, a Python dict padded to 64 bytes.
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {d}), }}");
        let len = (10 + dict.len() + 1).div_ceil(64) * 64 - 10;
        w.write_all(b"\x93NUMPY\x01\x00")?;
        w.write_all(&(len as u16).to_le_bytes())?;
        writeln!(w, "{dict:<width$}", width = len - 1)?;
        for block in data.chunks(1 << 14) {
            let bytes: Vec<u8> = block.iter().flat_map(|v| v.to_le_bytes()).collect();
            w.write_all(&bytes)?;
        }
        Ok(())
    })?;
    file(format!("{stem}.keys.tsv"), &|w| {
        for id in 0..rows {
            writeln!(w, "{id}\t{}", tsv_field(&key(id)))?;
        }
        Ok(())
    })?;
    Ok(2)
}
