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
//! and the path `-` is standard input.
//!
//! Parquet files (found by their magic bytes, whatever their name) hold the
//! same two layouts as columns named as the headers above (other columns are
//! ignored); keys may be strings or integers, weights any number type. A
//! Parquet error's line is the row (1-based) and its column the column's
//! position in the file's schema. Input is streamed; the import is
//! built in memory as sorted arrays and committed as one new base generation,
//! so it is atomic: a rejected or interrupted import leaves the database as it was.

use std::path::PathBuf;
use std::time::Instant;

use rustc_hash::FxHashMap as HashMap;

use crate::base::WEdge;
use crate::catalog::{Catalog, NodeTypeDef, RelationDef};
use crate::db::{check_name, Database, MAX_NAME};
use crate::error::{ImportErrors, LineError, Result, StorageError};
use crate::extsort::EdgeSorter;
pub use crate::extsort::DEFAULT_CHUNK_EDGES as DEFAULT_MEMORY_EDGES;
pub use text::{open, read_line, split_fields, Field, MAX_LINE, MAX_SKIP};

mod parquet;
mod text;

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

/// One import in progress: the schema view, the sorted edges, the bad records.
struct Run<'a> {
    b: Builder<'a>,
    sorter: EdgeSorter,
    errors: ImportErrors,
    /// Records (lines or rows) read, blank and header lines included.
    lines: u64,
    /// Input bytes of the files done, and of all of them.
    bytes_done: u64,
    total_bytes: u64,
}

impl Run<'_> {
    /// Takes one record of `file`: its fields, or why it has none.
    fn record(
        &mut self,
        file: &str,
        line: u64,
        layout: Layout,
        fields: std::result::Result<&[Field<'_>], (u64, String)>,
    ) -> Result<()> {
        match fields.and_then(|f| self.b.line(layout, f)) {
            Ok(edge) => self.sorter.push(edge),
            Err((column, message)) => {
                self.errors.push(LineError {
                    file: file.to_string(),
                    line,
                    column,
                    message,
                });
                Ok(())
            }
        }
    }

    /// Where the import is, `bytes` into the current file.
    fn progress(&self, bytes: u64) -> Progress {
        Progress {
            bytes: self.bytes_done + bytes,
            total_bytes: self.total_bytes,
            lines: self.lines,
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
        let sorter = self.sorter_with(&snap, opts.memory_edges)?;
        let existing = sorter.pushed();
        let mut run = Run {
            b: Builder {
                snap: snap.clone(),
                catalog,
                new_keys: vec![Vec::new(); types],
                new_ids: vec![HashMap::default(); types],
                type_ids,
                rel_ids,
                plain_type: None,
                opts,
            },
            sorter,
            errors: ImportErrors {
                first: Vec::new(),
                total: 0,
            },
            lines: 0,
            bytes_done: 0,
            total_bytes: files.iter().map(|f| f.metadata().map_or(0, |m| m.len())).sum(),
        };
        for path in files {
            if parquet::is_parquet(path) {
                parquet::read(path, &mut run, progress)?;
            } else {
                text::read(path, &mut run, progress)?;
            }
        }
        progress(run.progress(0));
        let Run {
            b,
            sorter,
            errors,
            lines,
            ..
        } = run;
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
