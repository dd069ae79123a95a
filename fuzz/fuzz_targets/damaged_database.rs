//! A small database with a base, a delta and buckets, with bytes of one of its
//! files overwritten as the input says: opening and reading everything returns
//! errors, never panics.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quiver_storage::{Database, Direction};

fn template() -> &'static (tempfile::TempDir, Vec<PathBuf>) {
    static T: OnceLock<(tempfile::TempDir, Vec<PathBuf>)> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("db")).unwrap();
        db.create_node_type("A").unwrap();
        db.create_relation_type("r", "A", "A").unwrap();
        let mut b = db.batch();
        for i in 0..60u32 {
            b.insert_edge(0, format!("n{i}"), format!("n{}", (i * 7 + 1) % 60), Some(1.0 + (i % 2) as f32));
        }
        db.commit(b).unwrap();
        db.compact().unwrap();
        let mut b = db.batch();
        b.insert_edge(0, "n1", "x", None).delete_edge(0, "n2", "n15");
        db.commit(b).unwrap();
        db.buckets(2).unwrap();
        db.flush().unwrap();
        drop(db);
        let mut files = Vec::new();
        collect(&dir.path().join("db"), &mut files);
        files.retain(|f| !f.ends_with("LOCK"));
        files.sort();
        (dir, files)
    })
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let d = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy(&p, &d);
        } else {
            std::fs::copy(&p, &d).unwrap();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (tmpl, files) = template();
    if data.len() < 5 || files.is_empty() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let db_path = work.path().join("db");
    copy(&tmpl.path().join("db"), &db_path);
    let file = &files[data[0] as usize % files.len()];
    let target = db_path.join(file.strip_prefix(tmpl.path().join("db")).unwrap());
    let mut bytes = std::fs::read(&target).unwrap();
    if bytes.is_empty() {
        return;
    }
    // Pairs of (offset u32, byte) to write.
    for chunk in data[1..].chunks_exact(5) {
        let at = u32::from_le_bytes(chunk[..4].try_into().unwrap()) as usize % bytes.len();
        bytes[at] = chunk[4];
    }
    std::fs::write(&target, &bytes).unwrap();
    let Ok(db) = Database::open(&db_path) else { return };
    let snap = db.snapshot();
    for t in 0..snap.catalog().node_types.len() as u32 {
        for n in 0..snap.node_count(t) {
            let _ = snap.node_key(t, n);
            let _ = snap.all_neighbors(t, n, Direction::Out);
            let _ = snap.all_neighbors(t, n, Direction::In);
        }
    }
    let _ = db.check();
    let _ = db.buckets(2);
    let _ = db.stats();
});
