//! Parquet edge lists: the layouts of text files, as columns found by name.

use std::borrow::Cow;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use parquet::basic::Type as Physical;
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{ByteArray, DataType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::ColumnDescriptor;

use super::{Field, Layout, Progress, Run, PLAIN_HEADER, TYPED_HEADER};
use crate::error::{caught, IoContext, Result, StorageError};

/// Rows read from each column at a time.
const BATCH: usize = 1 << 16;

/// Whether `path` is a regular file that starts with Parquet's magic bytes
/// (a FIFO or standard input is never read twice).
pub(super) fn is_parquet(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    path.to_str() != Some("-")
        && path.metadata().is_ok_and(|m| m.is_file())
        && File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && &magic == b"PAR1"
}

fn bad(path: &Path, message: impl std::fmt::Display) -> StorageError {
    StorageError::InvalidInput(format!("{}: {message}", path.display()))
}

/// Reads one Parquet file into the import. The reader panics on some
/// damaged files; that is an error about the file, not the end of the process.
pub(super) fn read(path: &Path, run: &mut Run<'_>, progress: &mut dyn FnMut(Progress)) -> Result<()> {
    caught(|| read_file(path, run, progress))
        .unwrap_or_else(|| Err(bad(path, "a damaged Parquet file (its reader failed on it)")))
}

fn read_file(path: &Path, run: &mut Run<'_>, progress: &mut dyn FnMut(Progress)) -> Result<()> {
    let size = path.metadata().at(path)?.len();
    let reader = SerializedFileReader::new(File::open(path).at(path)?).map_err(|e| bad(path, e))?;
    let schema = reader.metadata().file_metadata().schema_descr();
    // Top-level names: a nested column's leaf is named for its place inside.
    let names: Vec<&str> = schema
        .columns()
        .iter()
        .map(|c| c.path().parts()[0].as_str())
        .collect();
    let find = |want: &[&str]| -> Option<Vec<usize>> {
        want.iter().map(|w| names.iter().position(|n| n == w)).collect()
    };
    let (layout, mut columns) = match (find(&TYPED_HEADER[..5]), find(PLAIN_HEADER)) {
        (Some(c), _) => (Layout::Typed, c),
        (None, Some(c)) => (Layout::Plain, c),
        (None, None) => {
            return Err(bad(
                path,
                format!(
                    "a Parquet edge list needs the columns {} or {}[, weight]; this file has {}",
                    PLAIN_HEADER.join(", "),
                    TYPED_HEADER[..5].join(", "),
                    names
                        .iter()
                        .fold(Vec::new(), |mut u, n| {
                            if !u.contains(n) {
                                u.push(*n);
                            }
                            u
                        })
                        .join(", ")
                ),
            ))
        }
    };
    if layout == Layout::Typed {
        columns.extend(names.iter().position(|n| *n == TYPED_HEADER[5]));
    }
    for &c in &columns {
        let d = schema.column(c);
        if d.max_rep_level() > 0 || d.path().parts().len() > 1 {
            return Err(bad(
                path,
                format!(
                    "column `{}` is nested; keys and weights are flat columns",
                    names[c]
                ),
            ));
        }
        if !matches!(
            d.physical_type(),
            Physical::BYTE_ARRAY | Physical::INT32 | Physical::INT64 | Physical::FLOAT | Physical::DOUBLE
        ) {
            return Err(bad(
                path,
                format!(
                    "column `{}` holds {}, not text or numbers",
                    d.name(),
                    d.physical_type()
                ),
            ));
        }
    }
    let name = path.display().to_string();
    let (mut row, mut bytes) = (0u64, 0u64);
    for g in 0..reader.num_row_groups() {
        let group = reader.get_row_group(g).map_err(|e| bad(path, e))?;
        for &c in &columns {
            // Checked here: the reader asserts it (a panic) on damaged files.
            let m = group.metadata().column(c);
            let start = m.dictionary_page_offset().unwrap_or(m.data_page_offset());
            let len = m.compressed_size();
            if start < 0 || len < 0 || (start as u64).saturating_add(len as u64) > size {
                return Err(bad(
                    path,
                    format!("row group {g}: column `{}` lies outside the file", names[c]),
                ));
            }
        }
        let mut readers = columns
            .iter()
            .map(|&c| Ok(Chunk::new(group.get_column_reader(c)?, schema.column(c))))
            .collect::<parquet::errors::Result<Vec<_>>>()
            .map_err(|e| bad(path, e))?;
        let mut left = group.metadata().num_rows() as usize;
        while left > 0 {
            let want = left.min(BATCH);
            for r in &mut readers {
                let got = r.read(want).map_err(|e| bad(path, e))?;
                if got != want {
                    return Err(bad(
                        path,
                        format!("row group {g} ends early (column `{}`)", r.name),
                    ));
                }
            }
            for i in 0..want {
                row += 1;
                run.lines += 1;
                let fields = readers
                    .iter()
                    .zip(&columns)
                    .map(|(r, &c)| {
                        let column = c as u64 + 1;
                        r.cell(i)
                            .map(|text| Field { column, text })
                            .map_err(|m| (column, m))
                    })
                    .collect::<std::result::Result<Vec<_>, _>>();
                run.record(&name, row, layout, fields.as_deref().map_err(Clone::clone))?;
            }
            left -= want;
        }
        bytes += group.metadata().compressed_size() as u64;
        progress(run.progress(bytes));
    }
    run.bytes_done += size;
    Ok(())
}

/// One column of a row group, read a batch at a time.
struct Chunk {
    name: String,
    reader: ColumnReader,
    values: Values,
    /// Definition levels of the batch's rows (a row below `max_def` is null).
    defs: Vec<i16>,
    max_def: i16,
    /// Index into `values` of each row of the batch, `None` where null.
    at: Vec<Option<u32>>,
}

enum Values {
    Bytes(Vec<ByteArray>),
    Int(Vec<i64>),
    Float(Vec<f64>),
}

impl Chunk {
    fn new(reader: ColumnReader, d: std::sync::Arc<ColumnDescriptor>) -> Self {
        let values = match reader {
            ColumnReader::ByteArrayColumnReader(_) => Values::Bytes(Vec::new()),
            ColumnReader::Int32ColumnReader(_) | ColumnReader::Int64ColumnReader(_) => {
                Values::Int(Vec::new())
            }
            _ => Values::Float(Vec::new()),
        };
        Self {
            name: d.name().to_string(),
            reader,
            values,
            defs: Vec::new(),
            max_def: d.max_def_level(),
            at: Vec::new(),
        }
    }

    /// Reads the next `n` rows; returns how many there were.
    fn read(&mut self, n: usize) -> parquet::errors::Result<usize> {
        fn batch<T: DataType>(
            r: &mut ColumnReaderImpl<T>,
            n: usize,
            defs: Option<&mut Vec<i16>>,
            out: &mut Vec<T::T>,
        ) -> parquet::errors::Result<usize> {
            out.clear();
            Ok(r.read_records(n, defs, None, out)?.0)
        }
        self.defs.clear();
        let defs = (self.max_def > 0).then_some(&mut self.defs);
        let rows = match (&mut self.reader, &mut self.values) {
            (ColumnReader::ByteArrayColumnReader(r), Values::Bytes(v)) => batch(r, n, defs, v)?,
            (ColumnReader::Int64ColumnReader(r), Values::Int(v)) => batch(r, n, defs, v)?,
            (ColumnReader::Int32ColumnReader(r), Values::Int(v)) => {
                let mut small = Vec::new();
                let rows = batch(r, n, defs, &mut small)?;
                v.clear();
                v.extend(small.into_iter().map(i64::from));
                rows
            }
            (ColumnReader::DoubleColumnReader(r), Values::Float(v)) => batch(r, n, defs, v)?,
            (ColumnReader::FloatColumnReader(r), Values::Float(v)) => {
                let mut small = Vec::new();
                let rows = batch(r, n, defs, &mut small)?;
                v.clear();
                v.extend(small.into_iter().map(f64::from));
                rows
            }
            _ => unreachable!("the column's physical type was checked and fixes its values"),
        };
        self.at.clear();
        if self.max_def > 0 {
            let mut next = 0u32;
            self.at.extend(self.defs.iter().map(|&d| {
                (d == self.max_def).then(|| {
                    next += 1;
                    next - 1
                })
            }));
        }
        Ok(rows)
    }

    /// The text of row `i` of the batch.
    fn cell(&self, i: usize) -> std::result::Result<Cow<'_, str>, String> {
        let v = match self.at.get(i) {
            None => i,
            Some(Some(v)) => *v as usize,
            Some(None) => return Err(format!("`{}` is null", self.name)),
        };
        Ok(match &self.values {
            Values::Bytes(b) => Cow::Borrowed(
                b[v].as_utf8()
                    .map_err(|_| format!("`{}` is not valid UTF-8", self.name))?,
            ),
            Values::Int(x) => Cow::Owned(x[v].to_string()),
            Values::Float(x) => Cow::Owned(x[v].to_string()),
        })
    }
}
