//! The commands that use trained embeddings downstream (the TwHIN side):
//! `neighbors`, `quantize`, `eval recall`, `drift` and `rce`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use quiver::recall::{self, Method};
use quiver::tasks::{load_extended, NeighborQuery};
use quiver::{Device, Index, Int8Rows, Metric, Mixtures, Model, Snapshot};

/// `println!` that returns an error instead of panicking when stdout is closed.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($t)*)?
    }};
}

/// `quiver neighbors`: exact top-k for one or more nodes.
#[derive(clap::Args)]
pub struct NeighborsArgs {
    /// Database directory.
    db: PathBuf,
    /// Model name.
    #[arg(long, default_value = "default")]
    model: String,
    /// The query node, `TYPE:KEY`; repeat for a batch.
    #[arg(long = "node", required = true)]
    nodes: Vec<String>,
    /// Results per node.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Rank by `model` (the model's own score), dot, cosine, l2 or l1.
    #[arg(long, default_value = "model")]
    metric: String,
    /// Rank the relation's destinations by the translated query h + r (TransE's tail prediction).
    #[arg(long)]
    relation: Option<String>,
    /// Leave out nodes already connected to the query node (by --relation, or by any relation).
    #[arg(long)]
    exclude_connected: bool,
    /// Search the model's stored int8 copy (`quiver quantize`).
    #[arg(long)]
    quantized: bool,
    /// Scan every row even when the model has an index (`quiver index`).
    #[arg(long)]
    exact: bool,
    /// The index's search breadth for this call (default: the one it was built with).
    #[arg(long)]
    ef: Option<usize>,
    /// auto, gpu or cpu (GPU: top-k ≤ 32 on the device; filtering on the host).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print one JSON object per query node.
    #[arg(long)]
    json: bool,
}

fn parse_node(snap: &Snapshot, spec: &str) -> anyhow::Result<(u32, u32)> {
    let (ty, key) = spec
        .split_once(':')
        .with_context(|| format!("--node {spec}: expected TYPE:KEY"))?;
    let t = snap.catalog().node_type(ty)?;
    let id = snap
        .node_id(t, key)
        .with_context(|| format!("--node {spec}: no {ty} with key {key:?}"))?;
    Ok((t, id))
}

pub fn neighbors(a: &NeighborsArgs) -> anyhow::Result<()> {
    let db = super::open(&a.db)?;
    let snap = db.snapshot();
    let c = snap.catalog();
    let model = load_extended(&db, &a.model)?;
    let queries: Vec<(u32, u32)> = a
        .nodes
        .iter()
        .map(|n| parse_node(&snap, n))
        .collect::<anyhow::Result<_>>()?;
    let q = NeighborQuery {
        k: a.k,
        metric: match a.metric.as_str() {
            "model" => None,
            m => Some(Metric::parse(m)?),
        },
        relation: a.relation.as_deref().map(|r| c.relation(r)).transpose()?,
        exclude_connected: a.exclude_connected,
        quantized: a.quantized,
        exact: a.exact,
        ef: a.ef,
    };
    let metric = q.metric.unwrap_or(Metric::of_score(model.config.score));
    let started = std::time::Instant::now();
    let (target, results) = quiver::tasks::neighbors(
        &db,
        &snap,
        (&model, &a.model),
        &queries,
        &q,
        &Device::select(&a.device)?,
        &quiver::tasks::open_index(&db, &a.model),
    )?;
    let took = started.elapsed();
    for (spec, list) in a.nodes.iter().zip(&results) {
        if a.json {
            let rows: Vec<serde_json::Value> = list
                .iter()
                .map(|&(id, s)| serde_json::json!({"key": snap.node_key(target, id), "score": s}))
                .collect();
            say!("{}", serde_json::json!({"node": spec, "neighbors": rows}));
        } else {
            say!("{spec}:");
            for (rank, &(id, s)) in list.iter().enumerate() {
                say!(
                    "  {:>3}  {:<24} {s:.5}",
                    rank + 1,
                    snap.node_key(target, id).unwrap_or("?")
                );
            }
        }
    }
    if !a.json {
        say!(
            "({} queries, {} candidates, {:?}{}, {:.2} ms)",
            queries.len(),
            model.rows(target),
            metric,
            if a.quantized { ", int8" } else { "" },
            took.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// `quiver quantize`: store int8 copies and report their recall.
pub fn quantize(db: &Path, model: &str, types: &[String]) -> anyhow::Result<()> {
    let db = super::open(db)?;
    let m = Model::load(&db, model)?;
    let c = db.catalog();
    let ids: Vec<u32> = match types.is_empty() {
        true => (0..c.node_types.len() as u32)
            .filter(|&t| m.rows(t) > 0)
            .collect(),
        false => types.iter().map(|t| c.node_type(t)).collect::<Result<_, _>>()?,
    };
    for t in ids {
        let q = Int8Rows::store(&db, model, &m, t)?;
        // Recall@10 of the int8 copy against exact float search, for up to
        // 1,000 of the type's own rows as queries.
        let (d, n) = (m.dim(), m.rows(t) as usize);
        let step = n.div_ceil(1000).max(1);
        let queries: Vec<f32> = (0..n)
            .step_by(step)
            .flat_map(|i| m.node(t, i as u32).to_vec())
            .collect();
        let metric = Metric::of_score(m.config.score);
        let exact = Index::new(metric, &m.nodes[t as usize], d).search(&queries, 10, &|_, _| false);
        let approx = q.index(metric).search(&queries, 10, &|_, _| false);
        say!(
            "{}: {n} rows, int8 {:.2} MiB vs float {:.2} MiB ({:.2}x smaller); recall@10 against float search {:.4} ({} queries, {metric:?})",
            c.type_name(t),
            q.bytes() as f64 / 1048576.0,
            (n * d * 4) as f64 / 1048576.0,
            (n * d * 4) as f64 / q.bytes().max(1) as f64,
            quiver::overlap(&exact, &approx),
            exact.len()
        );
    }
    Ok(())
}

/// `quiver eval recall`.
#[derive(clap::Args)]
pub struct RecallArgs {
    #[command(flatten)]
    pub train: super::model::TrainArgs,
    /// The relation whose edges are held out.
    #[arg(long)]
    relation: String,
    /// Share of its edges held out.
    #[arg(long, default_value_t = 0.1)]
    holdout: f64,
    /// Cut-offs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,20,50")]
    k: Vec<usize>,
    /// translation (h + r against the destinations, the model's score) or knn (cosine of embeddings).
    #[arg(long, default_value = "translation")]
    method: String,
    /// Also report retrieval by mixtures (k-means modes of each source's neighbours).
    #[arg(long)]
    mixture: bool,
    /// Clusters for --mixture.
    #[arg(long, default_value_t = 50)]
    clusters: usize,
    /// Modes per node for --mixture [default: chosen on the model's validation edges among 1 (the
    /// node's own row: the mixture steps aside), 2, 3 and 5].
    #[arg(long)]
    modes: Option<usize>,
    /// Skip training: evaluate the stored MODEL-holdout model.
    #[arg(long)]
    no_train: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn eval_recall(a: &RecallArgs) -> anyhow::Result<()> {
    let db = super::open(&a.train.db)?;
    let name = format!("{}-holdout", a.train.model);
    let rel = db.catalog().relation(&a.relation)?;
    let seed = a.train.seed.unwrap_or(0);
    let holdout = quiver::Holdout {
        relation: rel,
        fraction: a.holdout,
        seed,
        pairs: true,
    };
    if a.train.auto && !a.no_train {
        super::tune::train_auto(&a.train, &db, &name, Some(holdout.clone()))?;
    } else if !a.no_train {
        let mut config = a.train.config(&db)?;
        config.holdout = Some(holdout.clone());
        let valid = a.train.valid.settle(&mut config, &db)?;
        let device = Device::select(&a.train.device)?;
        eprintln!(
            "training `{name}` without {:.0}% of {} on {}",
            100.0 * a.holdout,
            a.relation,
            device.describe()
        );
        let never = std::sync::atomic::AtomicBool::new(false);
        let mut log = super::model::epoch_logger();
        quiver::train_on_until(&db, &name, &config, &device, &mut log, &never, valid.as_ref())?;
    }
    let model = Model::load(&db, &name)?;
    let stored = model.config.holdout.clone();
    if stored.as_ref() != Some(&holdout) {
        bail!("model `{name}` was trained with holdout {stored:?}, not {holdout:?}");
    }
    let snap = db.snapshot();
    let method = match a.method.as_str() {
        "translation" => Method::Translation,
        "knn" => Method::Knn,
        m => bail!("--method {m}: expected translation or knn"),
    };
    let mut reports = vec![recall::recall(&snap, &model, &holdout, &a.k, method, None)?];
    if a.mixture {
        let device = Device::select(&a.train.device)?;
        let mix = match a.modes {
            Some(m) => Some(mixtures(
                &snap,
                &model,
                &holdout,
                a.clusters,
                m,
                &device,
                &|_, _, _| false,
            )?),
            None => {
                let (mix, tried) = chosen_mixtures(&snap, &model, &holdout, a.clusters, &device)?;
                let cells: Vec<String> = tried.iter().map(|(m, r)| format!("{m}: {r:.4}")).collect();
                eprintln!(
                    "modes chosen on validation (Recall@10 by modes, 1 = own row): {}",
                    cells.join(", ")
                );
                mix
            }
        };
        reports.push(match &mix {
            Some(mix) => recall::recall(&snap, &model, &holdout, &a.k, Method::Mixture, Some(mix))?,
            None => recall::RecallReport {
                method: Method::Mixture,
                modes: Some(1),
                ..recall::recall(&snap, &model, &holdout, &a.k, Method::Translation, None)?
            },
        });
    }
    if a.json {
        say!(
            "{}",
            serde_json::json!({"model": name, "relation": a.relation, "holdout": a.holdout, "reports": reports,
                "valid": serde_json::from_str::<serde_json::Value>(&db.model_info(&name)?.metrics)
                    .map_or(serde_json::Value::Null, |m| m["valid"].clone())})
        );
    } else {
        for r in &reports {
            let cells: Vec<String> = r
                .recall
                .iter()
                .map(|(k, v)| format!("Recall@{k} {v:.4}"))
                .collect();
            say!(
                "{}: {} ({} held-out {} edges from {} sources, {} of them with their reverse held out too, model `{name}`)",
                serde_json::to_value(r.method)?.as_str().unwrap_or("?"),
                cells.join("  "),
                r.held_out,
                a.relation,
                r.sources,
                r.with_reverse
            );
        }
    }
    Ok(())
}

/// Mixtures of the sources of `holdout`'s relation over its destination
/// type: k-means of the destinations' rows, modes from the kept edges (not
/// held out, nor `also_skip`ped) of every relation from the source type to
/// the destination type.
pub fn mixtures(
    snap: &Snapshot,
    model: &Model,
    holdout: &quiver::Holdout,
    clusters: usize,
    modes: usize,
    device: &Device,
    also_skip: &dyn Fn(u32, u32, u32) -> bool,
) -> anyhow::Result<Mixtures> {
    let c = snap.catalog();
    let def = &c.relations[holdout.relation as usize];
    let (src, dst) = (def.src, def.dst);
    let rels: Vec<u32> = (0..c.relations.len() as u32)
        .filter(|&r| c.relations[r as usize].src == src && c.relations[r as usize].dst == dst)
        .collect();
    let km = quiver::kmeans(
        &model.nodes[dst as usize],
        model.dim(),
        clusters,
        25,
        holdout.seed,
        device,
    )?;
    Ok(Mixtures::build(
        snap,
        src,
        &rels,
        km,
        model.dim(),
        modes,
        &|r, s, t| holdout.holds(r, s, t) || also_skip(r, s, t),
    ))
}

/// Modes a node may have that [`chosen_mixtures`] tries (1: its own row).
pub const MODE_CHOICES: [usize; 4] = [1, 2, 3, 5];

/// The mixtures chosen (None: stepped aside) and each choice's validation
/// Recall@10.
pub type ChosenMixtures = (Option<Mixtures>, Vec<(usize, f64)>);

/// Mixtures of the sources of `holdout`'s relation with the number of modes
/// chosen on the model's validation edges of that relation (those it held
/// out of training, [`quiver::AutoValid`]; the mixtures are built without
/// them): the [`MODE_CHOICES`] by Recall@10, 1 meaning the node's own row,
/// when the mixtures step aside (None). Also each choice's validation
/// Recall@10. An error when the model held out no such edges.
pub fn chosen_mixtures(
    snap: &Snapshot,
    model: &Model,
    holdout: &quiver::Holdout,
    clusters: usize,
    device: &Device,
) -> anyhow::Result<ChosenMixtures> {
    let rel = holdout.relation;
    let valid = model
        .config
        .validation
        .clone()
        .filter(|v| v.target.is_none_or(|t| t == rel));
    let Some(v) = valid else {
        bail!("choosing the modes needs the model's own validation edges of the relation (it was trained without; give --modes)");
    };
    let held = |s, t| v.holds(rel, s, t) && !holdout.holds(rel, s, t);
    let all = mixtures(
        snap,
        model,
        holdout,
        clusters,
        *MODE_CHOICES.iter().max().unwrap_or(&1),
        device,
        &|r, s, t| r == rel && held(s, t),
    )?;
    let mut tried = Vec::new();
    let mut best: (f64, usize) = (f64::NEG_INFINITY, 1);
    for &m in &MODE_CHOICES {
        let r = match m {
            1 => recall::recall_of(snap, model, (rel, &held), &[10], Method::Translation, None)?,
            m => recall::recall_of(
                snap,
                model,
                (rel, &held),
                &[10],
                Method::Mixture,
                Some(&all.truncated(m)),
            )?,
        };
        let r10 = r.recall[0].1;
        tried.push((m, r10));
        if r10 > best.0 {
            best = (r10, m);
        }
    }
    Ok(((best.1 > 1).then(|| all.truncated(best.1)), tried))
}

/// `quiver drift`.
pub fn drift(db: &Path, a: &str, b: &str, ty: &str, k: usize, sample: usize) -> anyhow::Result<()> {
    let db = super::open(db)?;
    let t = db.catalog().node_type(ty)?;
    let (ma, mb) = (Model::load(&db, a)?, Model::load(&db, b)?);
    let r = recall::drift(&ma, &mb, t, k, sample, 0)?;
    say!(
        "{ty}: mean cosine {:.4} over {} nodes; top-{} neighbour overlap {:.4} over {} sampled nodes",
        r.mean_cosine,
        r.nodes,
        r.k,
        r.neighbor_overlap,
        r.sampled
    );
    Ok(())
}

/// Most bytes of a predictions file.
const MAX_PREDICTIONS: u64 = 1 << 30;

/// Reads `probability label` pairs, one per line (tab, comma or space
/// separated; `#` starts a comment), naming file, line and column on error.
fn read_predictions(path: &Path) -> anyhow::Result<Vec<(f64, f64)>> {
    let text =
        quiver::read_text(path, MAX_PREDICTIONS).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let body = line.split('#').next().unwrap_or("");
        if body.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut col = 0;
        for piece in body.split(['\t', ',', ' ']) {
            if !piece.is_empty() {
                fields.push((col + 1, piece));
            }
            col += piece.len() + 1;
        }
        let at = |col: usize| format!("{}:{}:{col}", path.display(), n + 1);
        if fields.len() != 2 {
            bail!(
                "{}: expected `probability label`, found {} fields",
                at(1),
                fields.len()
            );
        }
        let p: f64 = fields[0]
            .1
            .parse()
            .ok()
            .filter(|p: &f64| (0.0..=1.0).contains(p))
            .with_context(|| {
                format!(
                    "{}: probability {:?} is not a number in [0, 1]",
                    at(fields[0].0),
                    fields[0].1
                )
            })?;
        let y: f64 = match fields[1].1 {
            "0" | "0.0" => 0.0,
            "1" | "1.0" => 1.0,
            other => bail!("{}: label {other:?} is not 0 or 1", at(fields[1].0)),
        };
        out.push((p, y));
    }
    Ok(out)
}

/// `quiver rce`.
pub fn rce(model: &Path, baseline: Option<&Path>) -> anyhow::Result<()> {
    let m = read_predictions(model)?;
    let b = baseline.map(read_predictions).transpose()?;
    if let Some(b) = &b {
        if let Some(i) = m.iter().zip(b).position(|(x, y)| x.1 != y.1) {
            bail!(
                "example {} has label {} in {} but {} in the baseline",
                i + 1,
                m[i].1,
                model.display(),
                b[i].1
            );
        }
    }
    let value = recall::rce(&m, b.as_deref())?;
    say!(
        "RCE {value:.3} ({} examples; baseline: {})",
        m.len(),
        baseline.map_or("the label mean".to_string(), |p| p.display().to_string())
    );
    Ok(())
}
