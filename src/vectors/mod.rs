//! Vectors from anywhere as a model: `quiver import-model --format npy`
//! reads the layout `quiver export --format npy` writes (`STEM.npy`, float32
//! rows, and `STEM.keys.tsv`, `row<TAB>key`, per node type), and Python's
//! `import_embeddings` gives one type's rows from memory. Either way the
//! result is a stored model like a trained one (searched, indexed, exported).
//! [`export_model`] writes that layout (or TSV) from a stored model.

use std::path::Path;

use quiver_engine::{EngineError, Model, Score, TrainConfig};
use quiver_storage::Database;

use crate::Result;

mod export;
pub use export::{export_model, file_stem};

/// How searches compare imported vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    /// Inner product.
    Dot,
    /// Euclidean distance.
    L2,
    /// Cosine: rows are stored at unit length and compared by inner product
    /// (the same ranking for any query; scores are cosines times the
    /// query's norm).
    Cosine,
}

impl Comparator {
    /// Parses `dot`, `l2` or `cosine`.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "dot" => Self::Dot,
            "l2" => Self::L2,
            "cosine" => Self::Cosine,
            other => {
                return Err(
                    EngineError::Config(format!("score `{other}`: expected dot, l2 or cosine")).into(),
                )
            }
        })
    }
}

/// Largest `.npy` file read (16 GiB).
const MAX_NPY: u64 = 16 << 30;

fn bad(path: &Path, m: impl std::fmt::Display) -> crate::Error {
    EngineError::Input(format!("{}: {m}", path.display())).into()
}

/// A float32 matrix from an NPY file (format 1.0–3.0, little-endian `<f4`,
/// C order, two dimensions): (values, rows, columns).
pub fn read_npy(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let bytes = crate::read_bytes(path, MAX_NPY).map_err(|e| bad(path, e))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, "not an NPY file (no \\x93NUMPY magic)"));
    }
    let (hlen, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(path, format!("NPY format version {v} is not supported"))),
    };
    let header = bytes
        .get(start..start.saturating_add(hlen))
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad(path, "the NPY header runs past the end of the file"))?;
    let field = |name: &str| -> Option<&str> {
        let at = header.find(&format!("'{name}'"))? + name.len() + 2;
        Some(header[at..].trim_start().strip_prefix(':')?.trim_start())
    };
    match field("descr") {
        Some(d) if d.starts_with("'<f4'") => {}
        other => {
            return Err(bad(
                path,
                format!(
                    "dtype {}: expected little-endian float32 ('<f4'; numpy: a.astype(np.float32))",
                    other.and_then(|d| d.split(',').next()).unwrap_or("?")
                ),
            ))
        }
    }
    if !field("fortran_order").is_some_and(|f| f.starts_with("False")) {
        return Err(bad(
            path,
            "Fortran-ordered arrays are not supported (numpy: np.ascontiguousarray)",
        ));
    }
    let shape = field("shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad(path, "the NPY header has no shape"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(path, format!("shape ({shape})")))
        })
        .collect::<Result<_>>()?;
    let [rows, cols] = dims[..] else {
        return Err(bad(
            path,
            format!("shape ({shape}): expected two dimensions, rows × columns"),
        ));
    };
    let data = &bytes[start + hlen..];
    if cols == 0 || rows.checked_mul(cols).and_then(|n| n.checked_mul(4)) != Some(data.len()) {
        return Err(bad(
            path,
            format!(
                "shape ({rows}, {cols}) needs {} bytes of data, the file has {}",
                rows * cols * 4,
                data.len()
            ),
        ));
    }
    let values: Vec<f32> = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(bad(
            path,
            format!(
                "row {}, column {}: {} is not a finite number",
                i / cols,
                i % cols,
                values[i]
            ),
        ));
    }
    Ok((values, rows, cols))
}

/// The keys of a `STEM.keys.tsv` (`row<TAB>key` per line, rows 0, 1, …;
/// `\t`, `\n`, `\r` and `\\` escaped in keys, as export writes them).
pub fn read_keys(path: &Path, rows: usize) -> Result<Vec<String>> {
    let text = crate::read_text(path, MAX_NPY).map_err(|e| bad(path, e))?;
    let mut keys = Vec::with_capacity(rows);
    for (i, line) in text.lines().enumerate() {
        let (row, key) = line
            .split_once('\t')
            .ok_or_else(|| bad(path, format!("line {}: expected row<TAB>key", i + 1)))?;
        if row.parse::<usize>().ok() != Some(i) {
            return Err(bad(path, format!("line {}: row {row:?}, expected {i}", i + 1)));
        }
        let mut k = String::with_capacity(key.len());
        let mut chars = key.chars();
        while let Some(c) = chars.next() {
            k.push(match (c, c == '\\') {
                (_, true) => match chars.next() {
                    Some('t') => '\t',
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some('\\') => '\\',
                    other => {
                        return Err(bad(
                            path,
                            format!("line {}: bad escape \\{}", i + 1, other.unwrap_or(' ')),
                        ))
                    }
                },
                (c, false) => c,
            });
        }
        keys.push(k);
    }
    if keys.len() != rows {
        return Err(bad(path, format!("{} keys for {rows} rows", keys.len())));
    }
    Ok(keys)
}

/// Sets node type `ty`'s rows of model `name` to `rows` (`keys.len() × d`),
/// row i being node `keys[i]`: the model is created when missing (other
/// types' rows zero, relation vectors zero) and replaced in one catalog
/// change otherwise (its indexes go with the old version). A key not in the
/// database is an error naming it, unless `create_nodes`. Returns the number
/// of the type's nodes that got no row (left at zero).
pub fn import_rows(
    db: &Database,
    name: &str,
    score: Comparator,
    (ty, keys, rows, d): (u32, &[String], &[f32], usize),
    create_nodes: bool,
) -> Result<usize> {
    if d == 0 || rows.len() != keys.len() * d {
        return Err(EngineError::Input(format!(
            "{} values for {} keys of {d} columns",
            rows.len(),
            keys.len()
        ))
        .into());
    }
    if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
        return Err(EngineError::Input(format!("row {}: {} is not a finite number", i / d, rows[i])).into());
    }
    let snap = db.snapshot();
    let c = snap.catalog();
    let tname = c.type_name(ty).to_string();
    let missing: Vec<&String> = keys.iter().filter(|k| snap.node_id(ty, k).is_none()).collect();
    if let Some(first) = missing.first() {
        if !create_nodes {
            return Err(EngineError::Input(format!(
                "{} of the keys are not {tname} nodes of the database, the first `{first}` (--create-nodes / create_nodes=True adds them)",
                missing.len()
            ))
            .into());
        }
        let mut b = db.batch();
        for k in &missing {
            b.insert_node(ty, k.as_str());
        }
        db.commit(b)?;
    }
    let snap = db.snapshot();
    let c = snap.catalog();
    let counts: Vec<usize> = (0..c.node_types.len() as u32)
        .map(|t| snap.node_count(t) as usize)
        .collect();
    let config = TrainConfig {
        dim: d,
        score: match score {
            Comparator::L2 => Score::L2,
            _ => Score::Dot,
        },
        reciprocal: false,
        epochs: 0,
        ..TrainConfig::default()
    };
    let mut model = match Model::load(db, name) {
        Ok(m) if m.dim() == d && m.config.score == config.score => m,
        Ok(m) => {
            return Err(EngineError::Model {
                name: name.to_string(),
                message: format!(
                "has {} columns compared by {:?}; these are {d} by {score:?} (drop it or use another name)",
                m.dim(),
                m.config.score
            ),
            }
            .into())
        }
        Err(_) => Model {
            relations: vec![0.0; c.relations.len() * d],
            nodes: Vec::new(),
            config,
        },
    };
    // Rows for every type and node the database has now (new nodes zero).
    model.nodes.resize(counts.len(), Vec::new());
    for (t, n) in counts.iter().enumerate() {
        model.nodes[t].resize(n * d, 0.0);
    }
    let relation_rows = c.relations.len() * (1 + usize::from(model.config.reciprocal));
    model.relations.resize(relation_rows * d, 0.0);
    let table = &mut model.nodes[ty as usize];
    let mut given = vec![false; counts[ty as usize]];
    for (key, row) in keys.iter().zip(rows.chunks_exact(d)) {
        let id = snap.node_id(ty, key).unwrap_or(0) as usize;
        let dst = &mut table[id * d..(id + 1) * d];
        dst.copy_from_slice(row);
        if score == Comparator::Cosine {
            let norm = dst.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                dst.iter_mut().for_each(|x| *x /= norm);
            }
        }
        given[id] = true;
    }
    // Stored under a temporary name and renamed over `name` in one change.
    let staging = format!("{name}~import");
    let _ = db.drop_model(&staging);
    model.store(db, &staging)?;
    db.replace_model(&staging, name, None)?;
    Ok(given.iter().filter(|g| !**g).count())
}

/// [`import_rows`] for every `STEM.npy` with its `STEM.keys.tsv` in `dir`
/// (the stem is the node type's name as export writes it; `_relations` is
/// skipped). Returns (type, rows, nodes left without a row) per type.
pub fn import_npy_dir(
    db: &Database,
    dir: &Path,
    name: &str,
    score: Comparator,
    create_nodes: bool,
) -> Result<Vec<(String, usize, usize)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| bad(dir, e))?;
    let mut stems: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|f| f.strip_suffix(".npy"))
                .map(str::to_string)
        })
        .filter(|s| s != "_relations")
        .collect();
    stems.sort();
    if stems.is_empty() {
        return Err(bad(
            dir,
            "no STEM.npy files (quiver export --format npy writes them)",
        ));
    }
    let mut out = Vec::new();
    for stem in stems {
        let type_name = unescape_stem(&stem);
        let ty = match db.catalog().node_type(&type_name) {
            Ok(t) => t,
            Err(_) if create_nodes => db.create_node_type(&type_name)?,
            Err(_) => {
                return Err(bad(
                    &dir.join(format!("{stem}.npy")),
                    format!("the database has no node type `{type_name}` (--create-nodes creates it)"),
                ))
            }
        };
        let (rows, n, d) = read_npy(&dir.join(format!("{stem}.npy")))?;
        let keys = read_keys(&dir.join(format!("{stem}.keys.tsv")), n)?;
        let left = import_rows(db, name, score, (ty, &keys, &rows, d), create_nodes)?;
        out.push((type_name, n, left));
    }
    Ok(out)
}

/// The node type name a file stem stands for (`%XX` decoded, as
/// `quiver export` encodes names).
fn unescape_stem(stem: &str) -> String {
    let b = stem.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            stem.get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
