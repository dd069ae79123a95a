//! Text edge lists: TSV and CSV lines, gzip, standard input.

use std::borrow::Cow;
use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use super::{is_header, Layout, Progress, Run};
use crate::error::{IoContext, Result};

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

/// Reads one text file into the import.
pub(super) fn read(path: &Path, run: &mut Run<'_>, progress: &mut dyn FnMut(Progress)) -> Result<()> {
    let count = Rc::new(Cell::new(0));
    let mut input = open_input(path, count.clone())?;
    let name = path.display().to_string();
    let file_name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase());
    let csv = file_name.is_some_and(|n| n.ends_with(".csv") || n.ends_with(".csv.gz"));
    let (delim, quoting) = if csv { (b',', true) } else { (b'\t', false) };
    let mut layout = None;
    let mut line_no = 0u64;
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        let (read, whole) = read_line(&mut input, &mut buf).at(path)?;
        if read == 0 {
            break;
        }
        line_no += 1;
        run.lines += 1;
        if !whole {
            let long = format!("line longer than {} MiB", MAX_LINE >> 20);
            run.record(&name, line_no, Layout::Plain, Err((1, long)))?;
            continue;
        }
        if line_no == 1 && buf.starts_with(b"\xEF\xBB\xBF") {
            buf.drain(..3);
        }
        if run.lines.is_multiple_of(65536) {
            progress(run.progress(count.get()));
        }
        let mut line = buf.as_slice();
        line = line.strip_suffix(b"\n").unwrap_or(line);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let fields = split_fields(line, delim, quoting);
        if let (None, Ok(f)) = (layout, &fields) {
            let header = is_header(f);
            layout = Some(if f.len() >= 5 {
                Layout::Typed
            } else {
                Layout::Plain
            });
            if header {
                continue;
            }
        }
        let layout = layout.unwrap_or(Layout::Plain);
        run.record(&name, line_no, layout, fields.as_deref().map_err(Clone::clone))?;
    }
    run.bytes_done += count.get();
    Ok(())
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
