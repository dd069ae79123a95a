//! Segment files: immutable, checksummed containers of aligned arrays that are
//! memory-mapped for reading (see `docs/format.md`).
//!
//! A segment is written under a temporary name, fsynced, renamed into place and
//! the directory fsynced; only then is it referenced from the catalog, with its
//! length and CRC-32, so a crash leaves either no reference or a whole file.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

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
    Model = 4,
}

/// A segment being written: a temporary file of its final size, mapped, whose
/// sections the caller fills in place. `finish` checksums it, fsyncs it and
/// renames it into place. Dropped unfinished, the temporary file is removed.
pub(crate) struct SegmentWriter {
    dir: PathBuf,
    name: String,
    tmp: PathBuf,
    file: File,
    map: MmapMut,
    table: Vec<(usize, usize)>,
    finished: bool,
}

impl SegmentWriter {
    /// Creates `dir/name.tmp` holding a header and sections of the given byte lengths.
    pub(crate) fn create(dir: &Path, name: &str, kind: Kind, lens: &[usize]) -> Result<Self> {
        let tmp = dir.join(format!("{name}.tmp"));
        let mut table = Vec::with_capacity(lens.len());
        let mut offset = align(HEADER + 16 * lens.len() as u64);
        for &l in lens {
            table.push((offset as usize, l));
            offset = align(offset + l as u64);
        }
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .at(&tmp)?;
        // Blocks are reserved before the file is mapped: a sparse file would
        // turn a full disk into SIGBUS on the first store to the map.
        reserve(&file, offset).at(&tmp)?;
        // SAFETY: the file was created (truncated) just now under a temporary
        // name by this process, which holds the database lock; nothing else
        // maps or resizes it while the map lives.
        #[allow(unsafe_code)]
        let mut map = unsafe { MmapMut::map_mut(&file) }.at(&tmp)?;
        let mut header = Vec::with_capacity(HEADER as usize + 16 * table.len());
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&(kind as u32).to_le_bytes());
        header.extend_from_slice(&(lens.len() as u32).to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        for &(o, l) in &table {
            header.extend_from_slice(&(o as u64).to_le_bytes());
            header.extend_from_slice(&(l as u64).to_le_bytes());
        }
        map[..header.len()].copy_from_slice(&header);
        Ok(Self {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            tmp,
            file,
            map,
            table,
            finished: false,
        })
    }

    /// Writes a segment whose sections are already in memory.
    pub(crate) fn write(dir: &Path, name: &str, kind: Kind, sections: &[&[u8]]) -> Result<SegmentRef> {
        Self::filled(dir, name, kind, sections)?.finish()
    }

    /// A segment holding `sections`, still to be finished.
    pub(crate) fn filled(dir: &Path, name: &str, kind: Kind, sections: &[&[u8]]) -> Result<Self> {
        let lens: Vec<usize> = sections.iter().map(|s| s.len()).collect();
        let mut w = Self::create(dir, name, kind, &lens)?;
        for (dst, src) in w.sections().into_iter().zip(sections) {
            dst.copy_from_slice(src);
        }
        Ok(w)
    }

    /// The sections, mutable and disjoint, in order.
    pub(crate) fn sections(&mut self) -> Vec<&mut [u8]> {
        let mut rest: &mut [u8] = &mut self.map[..];
        let mut at = 0;
        let mut out = Vec::with_capacity(self.table.len());
        for &(o, l) in &self.table {
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(o - at);
            let (section, tail) = tail.split_at_mut(l);
            out.push(section);
            rest = tail;
            at = o + l;
        }
        out
    }

    /// Makes the segment durable under its final name and returns the
    /// reference to record in the catalog.
    pub(crate) fn finish(self) -> Result<SegmentRef> {
        self.map.flush().at(&self.tmp)?;
        self.file.sync_all().at(&self.tmp)?;
        let dir = self.dir.clone();
        let r = self.finish_unsynced()?;
        sync_dir(&dir)?;
        Ok(r)
    }

    /// Checksums the segment and renames it into place without syncing
    /// anything: for a file no catalog names yet, made durable by
    /// [`make_durable`] before one does.
    pub(crate) fn finish_unsynced(mut self) -> Result<SegmentRef> {
        let crc = crc32fast::hash(&self.map);
        let len = self.map.len() as u64;
        let path = self.dir.join(&self.name);
        fs::rename(&self.tmp, &path).at(&path)?;
        self.finished = true;
        Ok(SegmentRef {
            file: self.name.clone(),
            len,
            crc,
        })
    }
}

/// Syncs the unsynced segment `dir/from` and renames it to `to`; the caller
/// syncs the directory after its last rename.
pub(crate) fn make_durable(dir: &Path, from: &str, to: &str) -> Result<()> {
    let path = dir.join(from);
    File::open(&path).and_then(|f| f.sync_all()).at(&path)?;
    let dest = dir.join(to);
    fs::rename(&path, &dest).at(&dest)
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Gives `file` (new and empty) the length `len` with its blocks allocated,
/// so that a full disk is an error here and never a fault later.
#[cfg(target_os = "linux")]
fn reserve(file: &File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = i64::try_from(len).map_err(|_| std::io::Error::from(std::io::ErrorKind::FileTooLarge))?;
    // SAFETY: plain system call on a file descriptor this function borrows.
    #[allow(unsafe_code)]
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// Elsewhere the zeros are written out, which allocates the blocks as well.
#[cfg(not(target_os = "linux"))]
fn reserve(mut file: &File, len: u64) -> std::io::Result<()> {
    use std::io::{Read, Write};
    std::io::copy(&mut std::io::repeat(0).take(len), &mut file)?;
    file.flush()
}

/// CRC-32 of a whole file, read in pieces from its start.
fn crc_of_file(file: &File) -> std::io::Result<u32> {
    use std::os::unix::fs::FileExt;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        match file.read_at(&mut buf, at)? {
            0 => return Ok(hasher.finalize()),
            n => {
                hasher.update(&buf[..n]);
                at += n as u64;
            }
        }
    }
}

fn align(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
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
        Self::open_with(dir, r, kind, false)
    }

    /// [`Segment::open`] for a segment read at random, a few pages at a
    /// time: the CRC is computed from reads of the file (the page cache), not
    /// through the map, and the map is advised random (no read-ahead or
    /// fault-around), so that only the pages used become resident.
    pub(crate) fn open_random(dir: &Path, r: &SegmentRef, kind: Kind) -> Result<Self> {
        Self::open_with(dir, r, kind, true)
    }

    fn open_with(dir: &Path, r: &SegmentRef, kind: Kind, random: bool) -> Result<Self> {
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
        let crc = if random {
            map.advise(memmap2::Advice::Random).at(&path)?;
            crc_of_file(&file).at(&path)?
        } else {
            crc32fast::hash(&map)
        };
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
        let r = SegmentWriter::write(
            dir.path(),
            "s",
            Kind::Nodes,
            &[bytemuck::cast_slice(&[1u32, 2, 3]), b"hello", &[]],
        )
        .unwrap();
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
