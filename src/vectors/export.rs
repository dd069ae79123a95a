//! A model's rows out: `STEM.npy` (float32) with `STEM.keys.tsv`, or
//! `STEM.tsv`, per node type and for the relation vectors (`_relations`).

use std::path::Path;

use quiver_engine::{EngineError, Model};
use quiver_storage::Database;

use crate::Result;

/// Writes one matrix and one key table per node type, and one for the
/// relation vectors (`_relations`); returns the file count. Names become
/// file names only through [`file_stem`]; nothing is written into a
/// database directory, or over an existing file unless `force`.
pub fn export_model(db: &Database, model: &Model, format: &str, out: &Path, force: bool) -> Result<usize> {
    if !matches!(format, "npy" | "tsv") {
        return Err(EngineError::Input(format!("format `{format}`: expected npy or tsv")).into());
    }
    if let Some(inside) = quiver_storage::database_containing(out) {
        let m = format!(
            "{} is inside database {}; write it elsewhere",
            out.display(),
            inside.display()
        );
        return Err(EngineError::Input(m).into());
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
            let m = format!(
                "{} exists (--force, or force=True in Python, overwrites it)",
                there.display()
            );
            return Err(EngineError::Input(m).into());
        }
    }
    std::fs::create_dir_all(out).map_err(|error| quiver_storage::StorageError::Io {
        path: out.to_path_buf(),
        error,
    })?;
    let d = model.dim();
    let mut files = 0;
    for (t, def) in c.node_types.iter().enumerate() {
        let table = model.nodes.get(t).map_or(&[][..], |v| v.as_slice());
        let key = |id: usize| snap.node_key(t as u32, id as u32).unwrap_or("").to_string();
        files += write_matrix(out, &file_stem(&def.name), table, d, format, force, key)?;
    }
    let names = crate::tasks::relation_row_names(&snap, model);
    let key = |row: usize| names.get(row).cloned().unwrap_or_default();
    files += write_matrix(out, "_relations", &model.relations, d, format, force, key)?;
    Ok(files)
}

/// A type's or model's name as a file name: bytes other than ASCII letters, digits,
/// `-` and `_` (and a leading `_`, which `_relations` uses) are written as
/// `%XX`, so no name can leave the output directory or collide with another.
pub fn file_stem(name: &str) -> String {
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
    out: &Path,
    stem: &str,
    data: &[f32],
    d: usize,
    format: &str,
    force: bool,
    key: impl Fn(usize) -> String,
) -> Result<usize> {
    let rows = data.len() / d;
    // (Existing files were refused for all names before the first was written.)
    let file = |name: String, body: &dyn Fn(&mut dyn std::io::Write) -> std::io::Result<()>| {
        crate::write_file(&out.join(name), force, body)
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
