//! Filtered link prediction: for each test triple (h, r, t), the rank of t
//! among all nodes of r's destination type for (h, r, ?), and of h among all
//! nodes of its source type for (?, r, t). Candidates known to be true (in the
//! database's edges, the test triples and any filter files) are left out, the
//! true answer excepted. Ties count as the mean of the optimistic and the
//! pessimistic rank ("realistic", as PyKEEN).

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::Path;
use std::time::Instant;

use quiver_storage::import::split_fields;
use quiver_storage::{Database, Direction};

use crate::kernels;
use crate::model::Model;
use crate::{EngineError, Result};

/// A triple by names, as in a test file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triple {
    /// Head key.
    pub head: String,
    /// Relation name.
    pub relation: String,
    /// Tail key.
    pub tail: String,
}

/// Reads `head<TAB>relation<TAB>tail` lines (LF or CRLF; gzip, a path of
/// `-` for standard input, a leading byte-order mark and line lengths as
/// `quiver import`).
pub fn read_triples(path: &Path) -> Result<Vec<Triple>> {
    let mut input = quiver_storage::import::open(path)?;
    let io = |e: std::io::Error| EngineError::Input(format!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for n in 1.. {
        buf.clear();
        // A line past the limit ends the read at once (the rest of an
        // endless line, as /dev/zero gives, is never skipped through).
        let max = quiver_storage::import::MAX_LINE;
        let read = (&mut input)
            .take(max as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(io)?;
        if read == 0 {
            break;
        }
        let whole = buf.len() <= max || buf.ends_with(b"\n");
        let at = |col: u64| format!("{}:{n}:{col}", path.display());
        if !whole {
            return Err(EngineError::Input(format!("{}: line longer than 1 MiB", at(1))));
        }
        let mut line = buf.as_slice();
        if n == 1 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        line = line.strip_suffix(b"\n").unwrap_or(line);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let f = split_fields(line, b'\t', false)
            .map_err(|(col, m)| EngineError::Input(format!("{}: {m}", at(col))))?;
        if f.len() != 3 {
            return Err(EngineError::Input(format!(
                "{}: expected 3 columns (head, relation, tail), found {}",
                at(1),
                f.len()
            )));
        }
        out.push(Triple {
            head: f[0].text.to_string(),
            relation: f[1].text.to_string(),
            tail: f[2].text.to_string(),
        });
    }
    Ok(out)
}

/// Filtered ranking metrics over both directions.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EvalReport {
    /// Mean reciprocal rank.
    pub mrr: f64,
    /// Mean rank.
    pub mr: f64,
    /// Share of ranks ≤ 1.
    pub hits1: f64,
    /// Share of ranks ≤ 3.
    pub hits3: f64,
    /// Share of ranks ≤ 10.
    pub hits10: f64,
    /// Test triples ranked (each gives two ranks).
    pub triples: u64,
    /// Test triples skipped because their relation or an entity is not in the database.
    pub skipped: u64,
    /// Wall time.
    pub seconds: f64,
}

/// One ranking task: the query row, the answer and the candidates to leave out.
struct Task {
    ty: u32,
    query: Vec<f32>,
    answer: u32,
    known: Vec<u32>,
}

/// Queries scored together against all candidates: one matrix product.
const QUERY_BLOCK: usize = 64;

/// Ranks every test triple in both directions. `filter` holds further known
/// triples (e.g. the validation split); the test triples filter each other.
pub fn evaluate(
    db: &Database,
    model: &Model,
    test: &[Triple],
    filter: &[Triple],
    device: &crate::Device,
) -> Result<EvalReport> {
    let started = Instant::now();
    let snap = db.snapshot();
    let c = snap.catalog();
    let resolve = |t: &Triple| -> Option<(u32, u32, u32)> {
        let r = c.relation(&t.relation).ok()?;
        let def = &c.relations[r as usize];
        let h = snap.node_id(def.src, &t.head)?;
        let tl = snap.node_id(def.dst, &t.tail)?;
        ((h as usize)
            < model
                .nodes
                .get(def.src as usize)
                .map_or(0, |v| v.len() / model.dim())
            && (tl as usize)
                < model
                    .nodes
                    .get(def.dst as usize)
                    .map_or(0, |v| v.len() / model.dim()))
        .then_some((r, h, tl))
    };
    let mut tails_of: HashMap<(u32, u32), Vec<u32>> = HashMap::new();
    let mut heads_of: HashMap<(u32, u32), Vec<u32>> = HashMap::new();
    let mut resolved = Vec::with_capacity(test.len());
    for t in test {
        if let Some(x) = resolve(t) {
            resolved.push(x);
        }
    }
    if resolved.is_empty() {
        return Err(EngineError::Input(match test.len() {
            0 => "nothing to evaluate: no test triples".into(),
            n => format!(
                "nothing to evaluate: all {n} test triples name an entity or relation the model does not have"
            ),
        }));
    }
    for &(r, h, t) in filter
        .iter()
        .filter_map(resolve)
        .collect::<Vec<_>>()
        .iter()
        .chain(&resolved)
    {
        tails_of.entry((r, h)).or_default().push(t);
        heads_of.entry((r, t)).or_default().push(h);
    }
    let d = model.dim();
    let mut tasks = Vec::with_capacity(2 * resolved.len());
    for &(r, h, t) in &resolved {
        let def = &c.relations[r as usize];
        let (he, te, re) = (model.node(def.src, h), model.node(def.dst, t), model.relation(r));
        let mut known: Vec<u32> = snap.neighbors(r, h, Direction::Out).to_vec();
        known.extend(tails_of.get(&(r, h)).into_iter().flatten());
        tasks.push(Task {
            ty: def.dst,
            query: he.iter().zip(re).map(|(a, b)| a + b).collect(),
            answer: t,
            known,
        });
        let mut known: Vec<u32> = snap.neighbors(r, t, Direction::In).to_vec();
        known.extend(heads_of.get(&(r, t)).into_iter().flatten());
        let query = model.head_query(r, te);
        tasks.push(Task {
            ty: def.src,
            query,
            answer: h,
            known,
        });
    }
    // Tasks sharing a candidate type go together so blocks reuse cached rows.
    tasks.sort_by_key(|t| t.ty);
    // The CPU splits the tasks over its cores; a GPU takes them in large blocks.
    let (threads, block) = match device {
        crate::Device::Gpu(_) => (1, 1024),
        crate::Device::Cpu => (
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            QUERY_BLOCK,
        ),
    };
    let per = tasks.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<f64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = tasks
            .chunks(per)
            .map(|part| s.spawn(move || rank_tasks(model, part, d, block, device)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(EngineError::Internal("a ranking thread panicked".into())))
            })
            .collect()
    });
    let mut ranks = Vec::with_capacity(tasks.len());
    for part in parts {
        ranks.extend(part?);
    }
    let n = ranks.len().max(1) as f64;
    let share = |k: f64| ranks.iter().filter(|&&r| r <= k).count() as f64 / n;
    Ok(EvalReport {
        mrr: ranks.iter().map(|r| 1.0 / r).sum::<f64>() / n,
        mr: ranks.iter().sum::<f64>() / n,
        hits1: share(1.0),
        hits3: share(3.0),
        hits10: share(10.0),
        triples: resolved.len() as u64,
        skipped: (test.len() - resolved.len()) as u64,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn rank_tasks(
    model: &Model,
    tasks: &[Task],
    d: usize,
    block: usize,
    device: &crate::Device,
) -> Result<Vec<f64>> {
    let mut ranks = Vec::with_capacity(tasks.len());
    let mut scores = Vec::new();
    for block in tasks
        .chunk_by(|a, b| a.ty == b.ty)
        .flat_map(|same| same.chunks(block))
    {
        let table = &model.nodes[block[0].ty as usize];
        let n = table.len() / d;
        let queries: Vec<f32> = block.iter().flat_map(|t| t.query.iter().copied()).collect();
        if let crate::Device::Gpu(gpu) = device {
            // Scores stay on the device; only the counts come back.
            let answers: Vec<u32> = block.iter().map(|t| t.answer).collect();
            let known: Vec<Vec<u32>> = block.iter().map(|t| t.known.clone()).collect();
            ranks.extend(gpu.ranks(model.config.score, &queries, table, d, &answers, &known)?);
            continue;
        }
        scores.clear();
        scores.resize(block.len() * n, 0f32);
        kernels::scores(model.config.score, &queries, table, d, &mut scores);
        for (qi, task) in block.iter().enumerate() {
            let row = &scores[qi * n..(qi + 1) * n];
            let n = row.len();
            let target = row[task.answer as usize];
            let (mut greater, mut equal) = (0u64, 0u64);
            for &s in row {
                greater += (s > target) as u64;
                equal += (s == target) as u64;
            }
            equal -= 1; // the answer itself
            let mut known = task.known.clone();
            known.sort_unstable();
            known.dedup();
            for &k in known.iter().filter(|&&k| k != task.answer && (k as usize) < n) {
                let s = row[k as usize];
                greater -= (s > target) as u64;
                equal -= (s == target) as u64;
            }
            ranks.push(1.0 + greater as f64 + equal as f64 / 2.0);
        }
    }
    Ok(ranks)
}
