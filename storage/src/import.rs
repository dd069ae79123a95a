//! Bulk import of edge lists.
//!
//! Two line formats, chosen per file by the first line's column count:
//! - plain triples `head<TAB>relation<TAB>tail` (FB15k-237, WN18RR, PyKEEN,
//!   DGL-KE, LibKGE) into one node type; relations are created as needed;
//! - typed edges `src_type<TAB>src_key<TAB>relation<TAB>dst_type<TAB>dst_key[<TAB>weight]`,
//!   checked against the schema.
//!
//! Files named `*.csv` (or `*.csv.gz`) are comma-separated with RFC 4180
//! quoting; others are tab-separated with no quoting. LF and CRLF endings both
//! work, a UTF-8 byte-order mark is dropped, blank lines are skipped, a first
//! line naming the columns (`head,relation,tail` or
//! `src_type,src_key,relation,dst_type,dst_key[,weight]`) is a header, lines
//! are at most [`MAX_LINE`] bytes, gzip input is detected by its magic bytes,
//! and the path `-` is standard input. Input is streamed; the import is
//! built in memory as sorted arrays and committed as one new base generation,
//! so it is atomic: a rejected or interrupted import leaves the database as it was.

use std::borrow::Cow;
use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use rustc_hash::FxHashMap as HashMap;

use crate::base::WEdge;
use crate::catalog::{Catalog, NodeTypeDef, RelationDef};
use crate::db::{check_name, Database, MAX_NAME};
use crate::error::{ImportErrors, IoContext, LineError, Result, StorageError};
pub use crate::extsort::DEFAULT_CHUNK_EDGES as DEFAULT_MEMORY_EDGES;

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Node type for plain triples (default `Entity`).
    pub node_type: String,
    /// Skip bad lines instead of rejecting the whole import.
    pub skip_bad: bool,
    /// Create unknown node and relation types met in typed files.
    pub create_types: bool,
    /// Edges held in memory before a sorted run spills to a temporary file in
    /// the database directory (16 bytes each; default 4 Mi, 64 MiB).
    pub memory_edges: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            node_type: "Entity".into(),
            skip_bad: false,
            create_types: false,
            memory_edges: DEFAULT_MEMORY_EDGES,
        }
    }
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// Lines read (blank and header lines included).
    pub lines: u64,
    /// Edge lines accepted.
    pub edges_read: u64,
    /// Distinct edges the database gained.
    pub edges_added: u64,
    /// Nodes created.
    pub nodes_added: u64,
    /// Lines skipped with `skip_bad`.
    pub skipped: ImportErrors,
    /// Wall time.
    pub seconds: f64,
}

/// Where an import is.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Input bytes read so far (compressed bytes for gzip files).
    pub bytes: u64,
    /// Total input bytes.
    pub total_bytes: u64,
    /// Lines read so far.
    pub lines: u64,
}

/// A field of a parsed line and its 1-based byte column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    /// Column where the field starts.
    pub column: u64,
    /// The field's text, unquoted.
    pub text: Cow<'a, str>,
}

/// Splits one line (without its line ending) into fields. With `quoting`
/// (CSV), a field may be enclosed in double quotes, with `""` for a quote.
/// Errors carry the 1-based column of the problem.
pub fn split_fields(
    line: &[u8],
    delim: u8,
    quoting: bool,
) -> std::result::Result<Vec<Field<'_>>, (u64, String)> {
    let text = utf8(line, 0)?;
    if !(quoting && text.contains('"')) {
        // Fast path: no quotes to honour, so fields are the pieces between delimiters.
        let mut column = 1;
        return Ok(text
            .split(delim as char)
            .map(|f| {
                let field = Field {
                    column,
                    text: Cow::Borrowed(f),
                };
                column += f.len() as u64 + 1;
                field
            })
            .collect());
    }
    split_quoted(text.as_bytes(), delim)
}

/// The RFC 4180 path: a field may be enclosed in double quotes, with `""`
/// for a quote. `line` is valid UTF-8.
fn split_quoted(line: &[u8], delim: u8) -> std::result::Result<Vec<Field<'_>>, (u64, String)> {
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let start = i;
        let text: Cow<'_, [u8]> = if line.get(i) == Some(&b'"') {
            let mut buf = Vec::new();
            i += 1;
            loop {
                match line.get(i) {
                    None => return Err((start as u64 + 1, "unclosed quote".into())),
                    Some(b'"') if line.get(i + 1) == Some(&b'"') => {
                        buf.push(b'"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        buf.push(c);
                        i += 1;
                    }
                }
            }
            if i < line.len() && line[i] != delim {
                return Err((
                    i as u64 + 1,
                    "expected a delimiter after the closing quote".into(),
                ));
            }
            Cow::Owned(buf)
        } else {
            let end = line[i..]
                .iter()
                .position(|&c| c == delim)
                .map_or(line.len(), |p| i + p);
            let f = &line[i..end];
            i = end;
            Cow::Borrowed(f)
        };
        let text = match text {
            Cow::Borrowed(b) => Cow::Borrowed(utf8(b, start)?),
            Cow::Owned(b) => Cow::Owned(utf8(&b, start)?.to_string()),
        };
        fields.push(Field {
            column: start as u64 + 1,
            text,
        });
        if i >= line.len() {
            return Ok(fields);
        }
        i += 1; // the delimiter
    }
}

fn utf8(b: &[u8], start: usize) -> std::result::Result<&str, (u64, String)> {
    std::str::from_utf8(b).map_err(|e| ((start + e.valid_up_to()) as u64 + 1, "invalid UTF-8".to_string()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Plain,
    Typed,
}

/// The import's view of the schema and the ids it hands out.
struct Builder<'a> {
    snap: crate::db::Snapshot,
    catalog: Catalog,
    new_keys: Vec<Vec<String>>,
    new_ids: Vec<HashMap<String, u32>>,
    /// Name → id caches of the catalog's linear lists.
    type_ids: HashMap<String, u32>,
    rel_ids: HashMap<String, u32>,
    /// The node type of plain triples, once resolved.
    plain_type: Option<u32>,
    opts: &'a ImportOptions,
}

impl Builder<'_> {
    fn node_type(&mut self, name: &str, create: bool) -> std::result::Result<u32, String> {
        if let Some(&t) = self.type_ids.get(name) {
            return Ok(t);
        }
        if !create {
            return Err(format!(
                "unknown node type `{name}` (use --create-types to create it)"
            ));
        }
        check_name("node type", name, MAX_NAME).map_err(|e| match e {
            StorageError::InvalidInput(m) => m,
            other => other.to_string(),
        })?;
        self.catalog.node_types.push(NodeTypeDef {
            name: name.to_string(),
            count: 0,
        });
        self.new_keys.push(Vec::new());
        self.new_ids.push(HashMap::default());
        let t = self.catalog.node_types.len() as u32 - 1;
        self.type_ids.insert(name.to_string(), t);
        Ok(t)
    }

    fn relation(&mut self, name: &str, src: u32, dst: u32, create: bool) -> std::result::Result<u32, String> {
        if let Some(&r) = self.rel_ids.get(name) {
            let def = &self.catalog.relations[r as usize];
            if (def.src, def.dst) != (src, dst) {
                let c = &self.catalog;
                return Err(format!(
                    "relation `{name}` goes {} -> {}, not {} -> {}",
                    c.type_name(def.src),
                    c.type_name(def.dst),
                    c.type_name(src),
                    c.type_name(dst)
                ));
            }
            return Ok(r);
        }
        if !create {
            return Err(format!(
                "unknown relation `{name}` (use --create-types to create it)"
            ));
        }
        self.catalog.relations.push(RelationDef {
            name: name.to_string(),
            src,
            dst,
        });
        let r = self.catalog.relations.len() as u32 - 1;
        self.rel_ids.insert(name.to_string(), r);
        Ok(r)
    }

    /// Id of `key`, assigning a new one if needed.
    fn node(&mut self, ty: u32, key: &str) -> u32 {
        if let Some(id) = self.snap.node_id(ty, key) {
            return id;
        }
        let t = ty as usize;
        if let Some(&id) = self.new_ids[t].get(key) {
            return id;
        }
        let id = self.catalog.node_types[t].count;
        self.catalog.node_types[t].count += 1;
        self.new_ids[t].insert(key.to_string(), id);
        self.new_keys[t].push(key.to_string());
        id
    }

    /// Interprets one line's fields. Nothing is changed when it fails.
    fn line(&mut self, layout: Layout, f: &[Field<'_>]) -> std::result::Result<WEdge, (u64, String)> {
        let saved = (self.catalog.node_types.len(), self.catalog.relations.len());
        let r = self.line_inner(layout, f);
        if r.is_err() {
            self.truncate_types(saved);
        }
        r
    }

    fn line_inner(&mut self, layout: Layout, f: &[Field<'_>]) -> std::result::Result<WEdge, (u64, String)> {
        let key = |f: &Field<'_>, what: &str| {
            if f.text.is_empty() {
                Err((f.column, format!("empty {what} key")))
            } else {
                Ok(())
            }
        };
        let (st, sk, rel, dt, dk, weight) = match layout {
            Layout::Plain => {
                if f.len() != 3 {
                    let col = f.get(3).map_or(1, |x| x.column);
                    return Err((
                        col,
                        format!("expected 3 columns (head, relation, tail), found {}", f.len()),
                    ));
                }
                key(&f[0], "head")?;
                key(&f[2], "tail")?;
                if f[1].text.is_empty() {
                    return Err((f[1].column, "empty relation".into()));
                }
                let t = match self.plain_type {
                    Some(t) => t,
                    None => {
                        let t = self.node_type(&self.opts.node_type, true).map_err(|m| (1, m))?;
                        self.plain_type = Some(t);
                        t
                    }
                };
                (t, &f[0], &f[1], t, &f[2], 1.0)
            }
            Layout::Typed => {
                if !(5..=6).contains(&f.len()) {
                    let col = f.get(6).map_or(1, |x| x.column);
                    return Err((
                        col,
                        format!(
                            "expected 5 or 6 columns (src_type, src_key, relation, dst_type, dst_key[, weight]), found {}",
                            f.len()
                        ),
                    ));
                }
                key(&f[1], "source")?;
                key(&f[4], "destination")?;
                let weight = match f.get(5) {
                    None => 1.0,
                    Some(w) => match w.text.trim().parse::<f32>() {
                        Ok(x) if x.is_finite() && x >= 0.0 => x,
                        _ => {
                            return Err((
                                w.column,
                                format!("weight `{}` is not a finite number ≥ 0", w.text),
                            ))
                        }
                    },
                };
                let create = self.opts.create_types;
                let st = self.node_type(&f[0].text, create).map_err(|m| (f[0].column, m))?;
                let dt = self.node_type(&f[3].text, create).map_err(|m| (f[3].column, m))?;
                if f[2].text.is_empty() {
                    return Err((f[2].column, "empty relation".to_string()));
                }
                (st, &f[1], &f[2], dt, &f[4], weight)
            }
        };
        let create_rel = layout == Layout::Plain || self.opts.create_types;
        let r = self
            .relation(&rel.text, st, dt, create_rel)
            .map_err(|m| (rel.column, m))?;
        let src = self.node(st, &sk.text);
        let dst = self.node(dt, &dk.text);
        Ok(WEdge {
            rel: r,
            src,
            dst,
            weight,
        })
    }

    fn truncate_types(&mut self, (types, rels): (usize, usize)) {
        self.plain_type = self.plain_type.filter(|&t| (t as usize) < types);
        self.type_ids.retain(|_, t| (*t as usize) < types);
        self.rel_ids.retain(|_, r| (*r as usize) < rels);
        self.catalog.node_types.truncate(types);
        self.new_keys.truncate(types);
        self.new_ids.truncate(types);
        self.catalog.relations.truncate(rels);
    }
}

const PLAIN_HEADER: &[&str] = &["head", "relation", "tail"];
const TYPED_HEADER: &[&str] = &["src_type", "src_key", "relation", "dst_type", "dst_key", "weight"];

fn is_header(f: &[Field<'_>]) -> bool {
    let names: Vec<&str> = f.iter().map(|x| x.text.as_ref()).collect();
    names == PLAIN_HEADER || names == TYPED_HEADER || names == TYPED_HEADER[..5]
}

struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Longest line an import reads (no key or weight comes near it).
pub const MAX_LINE: usize = 1 << 20;

/// Opens an input file as imports read it: `-` is standard input, gzip is
/// decompressed.
pub fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    open_input(path, Rc::new(Cell::new(0)))
}

fn open_input(path: &Path, count: Rc<Cell<u64>>) -> Result<Box<dyn BufRead>> {
    let file: Box<dyn Read> = match path.to_str() {
        Some("-") => Box::new(std::io::stdin()),
        _ => Box::new(File::open(path).at(path)?),
    };
    let mut raw = BufReader::with_capacity(1 << 16, Counting { inner: file, count });
    let gz = raw.fill_buf().at(path)?.starts_with(&[0x1f, 0x8b]);
    Ok(if gz {
        Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(raw),
        ))
    } else {
        Box::new(raw)
    })
}

/// Most bytes of one line skipped before the input is given up on (an
/// endless line, as `/dev/zero` gives, would otherwise be read forever).
pub const MAX_SKIP: usize = 64 << 20;

/// Reads one line into `buf` (at most [`MAX_LINE`] bytes of it; the rest of a
/// longer line, up to [`MAX_SKIP`], is read and dropped). Returns the bytes
/// read, 0 at the end, and whether the line was whole.
pub fn read_line(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> std::io::Result<(usize, bool)> {
    let read = input.take(MAX_LINE as u64 + 1).read_until(b'\n', buf)?;
    if buf.len() <= MAX_LINE || buf.ends_with(b"\n") {
        return Ok((read, true));
    }
    let mut skipped = read;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok((skipped, false));
        }
        let (used, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        input.consume(used);
        skipped += used;
        if done {
            return Ok((skipped, false));
        }
        if skipped > MAX_SKIP {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a line longer than {MAX_SKIP} bytes (is this a text file?)"),
            ));
        }
    }
}

impl Database {
    /// Imports edge-list files (see the module docs for formats). Atomic: with
    /// bad lines and without `skip_bad` nothing is committed and the error lists
    /// them by file, line and column.
    pub fn import(
        &self,
        files: &[PathBuf],
        opts: &ImportOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ImportReport> {
        let started = Instant::now();
        if opts.memory_edges == 0 {
            return Err(StorageError::InvalidInput(
                "memory_edges must be at least 1".into(),
            ));
        }
        let _w = self.writer.lock();
        let snap = self.snapshot();
        let catalog = snap.catalog().clone();
        let types = catalog.node_types.len();
        let type_ids = catalog
            .node_types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i as u32))
            .collect();
        let rel_ids = catalog
            .relations
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i as u32))
            .collect();
        let mut b = Builder {
            snap: snap.clone(),
            catalog,
            new_keys: vec![Vec::new(); types],
            new_ids: vec![HashMap::default(); types],
            type_ids,
            rel_ids,
            plain_type: None,
            opts,
        };
        let mut sorter = self.sorter_with(&snap, opts.memory_edges)?;
        let existing = sorter.pushed();
        let total_bytes = files.iter().map(|f| f.metadata().map_or(0, |m| m.len())).sum();
        let mut errors = ImportErrors {
            first: Vec::new(),
            total: 0,
        };
        let (mut lines, mut bytes_done) = (0u64, 0u64);
        let mut buf = Vec::with_capacity(256);
        for path in files {
            let count = Rc::new(Cell::new(0));
            let mut input = open_input(path, count.clone())?;
            let name = path.display().to_string();
            let file_name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase());
            let csv = file_name.is_some_and(|n| n.ends_with(".csv") || n.ends_with(".csv.gz"));
            let (delim, quoting) = if csv { (b',', true) } else { (b'\t', false) };
            let mut layout = None;
            let mut line_no = 0u64;
            loop {
                buf.clear();
                let (read, whole) = read_line(&mut input, &mut buf).at(path)?;
                if read == 0 {
                    break;
                }
                line_no += 1;
                lines += 1;
                if !whole {
                    errors.push(LineError {
                        file: name.clone(),
                        line: line_no,
                        column: 1,
                        message: format!("line longer than {} MiB", MAX_LINE >> 20),
                    });
                    continue;
                }
                if line_no == 1 && buf.starts_with(b"\xEF\xBB\xBF") {
                    buf.drain(..3);
                }
                if lines % 65536 == 0 {
                    progress(Progress {
                        bytes: bytes_done + count.get(),
                        total_bytes,
                        lines,
                    });
                }
                let mut line = buf.as_slice();
                line = line.strip_suffix(b"\n").unwrap_or(line);
                line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.is_empty() {
                    continue;
                }
                let result = split_fields(line, delim, quoting).and_then(|f| {
                    if layout.is_none() {
                        if is_header(&f) {
                            layout = Some(if f.len() == 3 {
                                Layout::Plain
                            } else {
                                Layout::Typed
                            });
                            return Ok(None);
                        }
                        layout = Some(if f.len() >= 5 {
                            Layout::Typed
                        } else {
                            Layout::Plain
                        });
                    }
                    b.line(layout.unwrap_or(Layout::Plain), &f).map(Some)
                });
                match result {
                    Ok(Some(edge)) => sorter.push(edge)?,
                    Ok(None) => {}
                    Err((column, message)) => errors.push(LineError {
                        file: name.clone(),
                        line: line_no,
                        column,
                        message,
                    }),
                }
            }
            bytes_done += count.get();
        }
        progress(Progress {
            bytes: bytes_done,
            total_bytes,
            lines,
        });
        if errors.total > 0 && !opts.skip_bad {
            return Err(StorageError::ImportRejected(errors));
        }
        let edges_read = sorter.pushed() - existing;
        let nodes_added: u64 = b.new_keys.iter().map(|k| k.len() as u64).sum();
        let before = snap.edge_count();
        let edges = sorter.finish()?;
        let Builder {
            catalog, new_keys, ..
        } = b;
        let deleted = snap.state.delta.deleted.clone();
        self.rebuild_base(
            &snap,
            catalog,
            &new_keys,
            &edges,
            (edges_read > 0, sled::Batch::default(), deleted),
        )?;
        let after = self.snapshot().edge_count();
        Ok(ImportReport {
            lines,
            edges_read,
            edges_added: after - before,
            nodes_added,
            skipped: errors,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str, d: u8, q: bool) -> Vec<String> {
        split_fields(line.as_bytes(), d, q)
            .unwrap()
            .into_iter()
            .map(|f| f.text.into_owned())
            .collect()
    }

    #[test]
    fn splits_tsv_and_csv() {
        assert_eq!(texts("a\tb\tc", b'\t', false), ["a", "b", "c"]);
        assert_eq!(texts("a\t\"b\"\tc", b'\t', false), ["a", "\"b\"", "c"]);
        assert_eq!(texts("a,\"b,\"\"x\"\"\",c", b',', true), ["a", "b,\"x\"", "c"]);
        assert_eq!(texts("a,,c", b',', true), ["a", "", "c"]);
        assert_eq!(split_fields(b"a,\"b", b',', true).unwrap_err().0, 3);
        assert_eq!(split_fields(b"a,\"b\"x", b',', true).unwrap_err().0, 6);
        assert_eq!(
            split_fields(b"ab\t\xffc", b'\t', false).unwrap_err(),
            (4, "invalid UTF-8".into())
        );
        let f = split_fields(b"ab\tcd", b'\t', false).unwrap();
        assert_eq!(f[1].column, 4);
    }
}
