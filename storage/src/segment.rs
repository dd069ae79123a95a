//! Segment files: immutable, checksummed containers of aligned arrays that are
//! memory-mapped for reading (see `docs/format.md`).
//!
//! A segment is written under a temporary name, fsynced, renamed into place and
//! the directory fsynced; only then is it referenced from the catalog, with its
//! length and CRC-32, so a crash leaves either no reference or a whole file.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::catalog::{SegmentRef, FORMAT_VERSION};
use crate::error::{CorruptionError, IoContext, Result};

pub(crate) const MAGIC: &[u8; 8] = b"QUIVSEG\0";
/// Sections start at multiples of this (a cache line; more than any element needs).
pub(crate) const ALIGN: u64 = 64;
const HEADER: u64 = 24;

/// What a segment holds; stored in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Nodes = 1,
    Adjacency = 2,
    Buckets = 3,
}

/// Collects sections and writes them as one segment file.
pub(crate) struct SegmentWriter {
    kind: Kind,
    sections: Vec<Vec<u8>>,
}

impl SegmentWriter {
    pub(crate) fn new(kind: Kind) -> Self {
        Self {
            kind,
            sections: Vec::new(),
        }
    }

    pub(crate) fn push<T: bytemuck::Pod>(&mut self, data: &[T]) {
        self.sections.push(bytemuck::cast_slice(data).to_vec());
    }

    /// Writes `dir/name` atomically and returns the reference to record.
    pub(crate) fn write(self, dir: &Path, name: &str) -> Result<SegmentRef> {
        let tmp = dir.join(format!("{name}.tmp"));
        let path = dir.join(name);
        let mut table = Vec::with_capacity(self.sections.len());
        let mut offset = align(HEADER + 16 * self.sections.len() as u64);
        for s in &self.sections {
            table.push((offset, s.len() as u64));
            offset = align(offset + s.len() as u64);
        }
        let mut hasher = crc32fast::Hasher::new();
        let file = File::create(&tmp).at(&tmp)?;
        let mut w = HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            hasher: &mut hasher,
            pos: 0,
        };
        let mut header = Vec::with_capacity(HEADER as usize + 16 * table.len());
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&(self.kind as u32).to_le_bytes());
        header.extend_from_slice(&(self.sections.len() as u32).to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        for (o, l) in &table {
            header.extend_from_slice(&o.to_le_bytes());
            header.extend_from_slice(&l.to_le_bytes());
        }
        w.write_all(&header).at(&tmp)?;
        for (s, (o, _)) in self.sections.iter().zip(&table) {
            w.pad_to(*o).at(&tmp)?;
            w.write_all(s).at(&tmp)?;
        }
        w.pad_to(offset).at(&tmp)?;
        let len = w.pos;
        let file = w.inner.into_inner().map_err(|e| e.into_error()).at(&tmp)?;
        file.sync_all().at(&tmp)?;
        drop(file);
        fs::rename(&tmp, &path).at(&path)?;
        sync_dir(dir)?;
        Ok(SegmentRef {
            file: name.to_string(),
            len,
            crc: hasher.finalize(),
        })
    }
}

fn align(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

struct HashingWriter<'a, W: Write> {
    inner: W,
    hasher: &'a mut crc32fast::Hasher,
    pos: u64,
}

impl<W: Write> HashingWriter<'_, W> {
    fn pad_to(&mut self, to: u64) -> std::io::Result<()> {
        let zeros = [0u8; ALIGN as usize];
        while self.pos < to {
            let n = ((to - self.pos) as usize).min(zeros.len());
            self.write_all(&zeros[..n])?;
        }
        Ok(())
    }
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Fsyncs a directory so that a rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// A mapped, verified segment.
pub(crate) struct Segment {
    path: PathBuf,
    map: Mmap,
    sections: Vec<(usize, usize)>,
}

impl Segment {
    /// Maps `dir/r.file`, checks length, CRC, header and section table.
    pub(crate) fn open(dir: &Path, r: &SegmentRef, kind: Kind) -> Result<Self> {
        let path = dir.join(&r.file);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                CorruptionError::new(&path, "segment file is missing").into()
            } else {
                crate::StorageError::Io {
                    path: path.clone(),
                    error: e,
                }
            }
        })?;
        let corrupt = |m: String| CorruptionError::new(&path, m);
        let len = file.metadata().at(&path)?.len();
        if len != r.len {
            return Err(corrupt(format!("length {len}, catalog says {}", r.len)).into());
        }
        // An empty file cannot be mapped; a valid segment is never empty.
        if len < HEADER {
            return Err(corrupt("shorter than a segment header".into()).into());
        }
        // SAFETY: segment files are immutable once renamed into place, and the
        // directory lock keeps other quiver processes from replacing them.
        // Another program truncating the file while mapped is outside what we
        // defend against (as for every mmap-based database).
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.at(&path)?;
        let crc = crc32fast::hash(&map);
        if crc != r.crc {
            return Err(corrupt(format!("checksum {crc:08x}, catalog says {:08x}", r.crc)).into());
        }
        let u32_at = |o: usize| u32::from_le_bytes(map[o..o + 4].try_into().unwrap_or_default());
        if &map[..8] != MAGIC {
            return Err(corrupt("bad magic".into()).into());
        }
        if u32_at(8) != FORMAT_VERSION {
            return Err(corrupt(format!("segment format version {}", u32_at(8))).into());
        }
        if u32_at(12) != kind as u32 {
            return Err(corrupt(format!("segment kind {}, expected {}", u32_at(12), kind as u32)).into());
        }
        let n = u32_at(16) as u64;
        if HEADER + 16 * n > len {
            return Err(corrupt("section table runs past the end".into()).into());
        }
        let mut sections = Vec::with_capacity(n as usize);
        for i in 0..n as usize {
            let at = HEADER as usize + 16 * i;
            let o = u64::from_le_bytes(map[at..at + 8].try_into().unwrap_or_default());
            let l = u64::from_le_bytes(map[at + 8..at + 16].try_into().unwrap_or_default());
            if o % ALIGN != 0 || o.checked_add(l).is_none_or(|end| end > len) {
                return Err(corrupt(format!("section {i} out of bounds")).into());
            }
            sections.push((o as usize, l as usize));
        }
        Ok(Self { path, map, sections })
    }

    pub(crate) fn section_count(&self) -> usize {
        self.sections.len()
    }

    pub(crate) fn bytes(&self, i: usize) -> &[u8] {
        match self.sections.get(i) {
            Some(&(o, l)) => &self.map[o..o + l],
            None => &[],
        }
    }

    /// Section `i` as an array; the caller has checked (in its own `open`) that
    /// the section length is a multiple of `size_of::<T>()`.
    pub(crate) fn array<T: bytemuck::Pod>(&self, i: usize) -> &[T] {
        bytemuck::try_cast_slice(self.bytes(i)).unwrap_or(&[])
    }

    /// Checks that section `i` is a whole number of `T`s.
    pub(crate) fn check_array<T: bytemuck::Pod>(&self, i: usize) -> Result<&[T]> {
        bytemuck::try_cast_slice(self.bytes(i)).map_err(|_| {
            CorruptionError::new(
                &self.path,
                format!("section {i} is not an array of {}-byte items", size_of::<T>()),
            )
            .into()
        })
    }

    pub(crate) fn corrupt(&self, message: impl Into<String>) -> CorruptionError {
        CorruptionError::new(&self.path, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_open_and_detect_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::new(Kind::Nodes);
        w.push(&[1u32, 2, 3]);
        w.push::<u8>(b"hello");
        w.push::<u32>(&[]);
        let r = w.write(dir.path(), "s").unwrap();
        let s = Segment::open(dir.path(), &r, Kind::Nodes).unwrap();
        assert_eq!(s.array::<u32>(0), &[1, 2, 3]);
        assert_eq!(s.bytes(1), b"hello");
        assert_eq!(s.array::<u32>(2), &[] as &[u32]);
        assert!(Segment::open(dir.path(), &r, Kind::Adjacency).is_err());
        let mut bytes = fs::read(dir.path().join("s")).unwrap();
        bytes[70] ^= 1;
        fs::write(dir.path().join("s"), &bytes).unwrap();
        let e = Segment::open(dir.path(), &r, Kind::Nodes).err().unwrap();
        assert!(e.to_string().contains("checksum"), "{e}");
    }
}
