//! Corruption test: flip random bytes in each file of a small database; opening
//! and reading either return an error or succeed, and never panic. Segment
//! files are checksummed, so damage there must always be reported, naming the file.

use std::path::{Path, PathBuf};

use quiver_storage::{Database, Direction, StorageError};

fn build(path: &Path) {
    let db = Database::create(path).unwrap();
    db.create_node_type("A").unwrap();
    db.create_relation_type("r", "A", "A").unwrap();
    let mut b = db.batch();
    for i in 0..300u32 {
        b.insert_edge(
            0,
            format!("n{i}"),
            format!("n{}", (i * 17 + 5) % 300),
            Some(1.0 + (i % 3) as f32),
        );
    }
    db.commit(b).unwrap();
    db.compact().unwrap();
    let mut b = db.batch();
    for i in 0..40u32 {
        b.insert_edge(0, format!("n{i}"), format!("m{i}"), None);
        b.delete_edge(
            0,
            format!("n{}", i + 100),
            format!("n{}", ((i + 100) * 17 + 5) % 300),
        );
    }
    db.commit(b).unwrap();
    db.buckets(2).unwrap();
    db.flush().unwrap();
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if std::fs::metadata(&p).unwrap().len() > 0 {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// Opens and reads everything; an `Err` is fine, a panic is not.
fn exercise(path: &Path) -> Result<(), StorageError> {
    let db = Database::open(path)?;
    let snap = db.snapshot();
    for t in 0..snap.catalog().node_types.len() as u32 {
        for n in 0..snap.node_count(t) {
            let _ = snap.node_key(t, n);
            for (r, d) in snap.all_neighbors(t, n, Direction::Out) {
                let _ = snap.edge_weight(r, n, d);
            }
            let _ = snap.all_neighbors(t, n, Direction::In);
        }
    }
    db.check()?;
    db.buckets(2)?;
    db.stats()?;
    Ok(())
}

#[test]
fn flipped_bytes_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean");
    build(&clean);
    exercise(&clean).unwrap();
    let mut rng = 0x1234_5678_9abc_def1u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut trials = 0;
    for file in files(&clean) {
        let rel = file.strip_prefix(&clean).unwrap().to_path_buf();
        if rel == Path::new("LOCK") {
            continue;
        }
        let segment =
            rel.to_string_lossy().starts_with("base-") || rel.to_string_lossy().starts_with("buckets-");
        for trial in 0..8 {
            let copy = dir.path().join(format!("t{trials}"));
            trials += 1;
            copy_dir(&clean, &copy);
            let target = copy.join(&rel);
            let mut bytes = std::fs::read(&target).unwrap();
            for _ in 0..1 + trial % 3 {
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] ^= 1 + (next() % 255) as u8;
            }
            std::fs::write(&target, &bytes).unwrap();
            let result = std::panic::catch_unwind(|| exercise(&copy));
            let result = result.unwrap_or_else(|_| {
                panic!("panic reading {} with damaged {}", copy.display(), rel.display())
            });
            if segment {
                let e = result.expect_err("damage in a segment file went unnoticed");
                assert!(
                    e.to_string().contains(&*rel.to_string_lossy()),
                    "error does not name {}: {e}",
                    rel.display()
                );
            }
            std::fs::remove_dir_all(&copy).unwrap();
        }
    }
    assert!(trials >= 24, "only {trials} trials");
}
