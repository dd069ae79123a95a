//! `quiver demo`: a TwHIN-like network generated, imported, inspected, trained and measured.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use quiver::import::ImportOptions;
use quiver::{Database, Direction};

use super::embed;
use super::store::{import, print_stats};

/// The talk's table: Recall@K of held-out follows when each user retrieves
/// by (u + Follows) · v, for embeddings of the follow graph alone, of the
/// whole network, and of the whole network with mixtures.
fn demo_recall(db: &Database, follows: u32, base: &quiver::TrainConfig) -> anyhow::Result<()> {
    let holdout = quiver::Holdout {
        relation: follows,
        fraction: 0.1,
        seed: 7,
        pairs: true,
    };
    say!("== Recall@K of 10% held-out follows (each user retrieves by (u + Follows) · v; follows it keeps are left out)");
    let ks = [10, 20, 50];
    let mut rows = Vec::new();
    for (label, only) in [("follow graph only", vec![follows]), ("whole network", vec![])] {
        let config = quiver::TrainConfig {
            holdout: Some(holdout.clone()),
            only_relations: only.clone(),
            ..base.clone()
        };
        let started = Instant::now();
        let name = format!("recall-{}", if only.is_empty() { "network" } else { "follows" });
        let model = quiver::train(db, &name, &config, &mut |_| {})?;
        let seconds = started.elapsed().as_secs_f64();
        let snap = db.snapshot();
        let r = quiver::recall::recall(
            &snap,
            &model,
            &holdout,
            &ks,
            quiver::recall::Method::Translation,
            None,
        )?;
        rows.push((label.to_string(), r.recall.clone(), seconds, r.held_out));
        if only.is_empty() {
            let (mix, _) = embed::chosen_mixtures(&snap, &model, &holdout, 50, &quiver::Device::Cpu)?;
            let label = match &mix {
                Some(m) => format!(
                    "whole network, mixture (50 clusters, {} modes chosen on validation)",
                    m.max_modes
                ),
                None => "whole network, mixture (stepped aside on validation: each user's own row)".into(),
            };
            let method = match mix {
                Some(_) => quiver::recall::Method::Mixture,
                None => quiver::recall::Method::Translation,
            };
            let r = quiver::recall::recall(&snap, &model, &holdout, &ks, method, mix.as_ref())?;
            rows.push((label, r.recall, 0.0, r.held_out));
        }
        db.drop_model(&name)?;
    }
    say!("  | embeddings | Recall@10 | Recall@20 | Recall@50 |");
    say!("  |---|---|---|---|");
    for (label, r, _, _) in &rows {
        say!("  | {label} | {:.3} | {:.3} | {:.3} |", r[0].1, r[1].1, r[2].1);
    }
    say!(
        "  ({} held-out follows; training {:.1} s and {:.1} s)",
        rows[0].3,
        rows[0].2,
        rows[1].2
    );
    Ok(())
}

/// A user created after training gets an embedding from its neighbours.
fn demo_cold_start(
    graph: &quiver::Graph,
    (user, follows): (u32, u32),
    communities: u32,
    community: &dyn Fn(u32) -> Option<u32>,
) -> anyhow::Result<()> {
    say!("== cold start: `newbie` joins after training and follows 6 users of community 3; no retraining");
    let db = graph.database();
    let snap = db.snapshot();
    let mut b = db.batch();
    for v in (0..6).map(|i| 3 + communities * i) {
        b.insert_edge(
            follows,
            "newbie",
            snap.node_key(user, v).context("user missing")?,
            None,
        );
    }
    db.commit(b)?;
    let text = "MATCH (n:User {key: 'newbie'})\n\
                CALL quiver.predict(n, 'Follows', 10, 'twhin') YIELD node, score\n\
                RETURN node.key AS who, score";
    for line in text.lines() {
        say!("  {line}");
    }
    let rows = graph.query(text, &quiver::Params::new())?;
    let snap = db.snapshot();
    let mut same = 0;
    for row in &rows.rows {
        if let Some(quiver::QueryValue::Str(k)) = row.first() {
            same += usize::from(snap.node_id(user, k.as_str()).and_then(community) == Some(3));
        }
    }
    for line in rows.to_table().lines() {
        say!("  {line}");
    }
    say!("  {same} of {} are in community 3 (the inferred row is the mean of (v − Follows) over its followees)", rows.rows.len());
    Ok(())
}

pub fn demo(dir: Option<PathBuf>, users: u32) -> anyhow::Result<()> {
    // A directory the user named is kept for them to explore; a temporary one is removed.
    let keep = dir.is_some();
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join(format!("quiver-demo-{}", std::process::id())));
    if dir.exists() {
        bail!("{} exists; pass another --dir", dir.display());
    }
    std::fs::create_dir_all(&dir)?;
    let shape = quiver::demo::Shape {
        users,
        ..Default::default()
    };
    let input = dir.join("twhin.tsv");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&input)?);
    let lines = quiver::demo::write(&shape, &mut w)?;
    std::io::Write::flush(&mut w)?;
    drop(w);
    say!(
        "== generated a TwHIN-like network: {lines} typed edge lines ({} users, seed {})",
        shape.users,
        shape.seed
    );
    let db_path = dir.join("db");
    let db = Database::create(&db_path)?;
    quiver::demo::create_schema(&db)?;
    say!("== import");
    import(&db, &[input], &ImportOptions::default())?;
    say!("== stats");
    print_stats(&db, false)?;
    say!("== neighbours of u0");
    let snap = db.snapshot();
    let c = snap.catalog();
    let user = c.node_type("User")?;
    let alice = snap.node_id(user, "u0").context("u0 missing")?;
    for (rel, nbr) in snap
        .all_neighbors(user, alice, Direction::Out)
        .into_iter()
        .take(12)
    {
        let r = &c.relations[rel as usize];
        let w = snap.edge_weight(rel, alice, nbr).unwrap_or(1.0);
        say!(
            "  u0 -{}-> {} (weight {w})",
            r.name,
            snap.node_key(r.dst, nbr).unwrap_or("?")
        );
    }
    say!("== a write batch: u0 follows u1, unfollows its first followee");
    let follows = c.relation("Follows")?;
    let first = snap.out_neighbors(follows, alice).first().copied();
    let mut b = db.batch();
    b.insert_edge(follows, "u0", "u1", None);
    if let Some(f) = first {
        b.delete_edge(follows, alice, f);
    }
    b.set_property(user, "u0", "name", quiver::Value::Str("alice".into()));
    db.commit(b)?;
    db.flush()?;
    let after = db.snapshot();
    say!(
        "  u0 now follows {} users; name = {:?}",
        after.degree(follows, alice, Direction::Out),
        db.property(user, alice, "name")?
    );
    say!("== buckets for P=4 (what training streams)");
    let b = db.buckets(4)?;
    say!(
        "  {} edges in 16 buckets; bucket (0,0) holds {}",
        b.edge_count(),
        b.bucket(0, 0).len()
    );
    say!("== train TransE (translation + dot, as TwHIN) on the whole network: 64 dims, 10 epochs, P=4");
    let config = quiver::TrainConfig {
        dim: 64,
        epochs: 10,
        partitions: 4,
        score: quiver::Score::Dot,
        loss: quiver::Loss::Softmax,
        // TwHIN's: one translation per relation, 50 negatives per chunk.
        reciprocal: false,
        uniform_negatives: 50,
        seed: 1,
        ..Default::default()
    };
    let started = Instant::now();
    let model = quiver::train(&db, "twhin", &config, &mut |_| {})?;
    say!("  trained in {:.1} s", started.elapsed().as_secs_f64());
    say!("== who should u0 follow? top 10 by (u0 + Follows) · v, among users u0 does not follow");
    let snap = db.snapshot();
    let followed = snap.out_neighbors(follows, alice);
    let index = quiver::Index::new(quiver::Metric::Dot, &model.nodes[user as usize], model.dim());
    let ranked = index
        .search(
            &model.tail_query(follows, model.node(user, alice)),
            10,
            &|_, v| v == alice || followed.binary_search(&v).is_ok(),
        )
        .remove(0);
    let community = |v: u32| {
        snap.node_key(user, v)
            .and_then(|k| k[1..].parse::<u32>().ok())
            .map(|n| n % shape.communities)
    };
    let same = ranked
        .iter()
        .filter(|&&(v, _)| community(v) == community(alice))
        .count();
    for (v, score) in &ranked {
        say!(
            "  {:<6} score {score:>8.3}",
            snap.node_key(user, *v).unwrap_or("?")
        );
    }
    say!(
        "  {same} of the 10 are in u0's community (the generator puts 80% of follows there; chance is 1 in {})",
        shape.communities
    );
    demo_recall(&db, follows, &config)?;
    say!("== the same question in the query language: friends of friends, ranked by the model");
    let text = "MATCH (a:User {key: $k})-[:Follows]->()-[:Follows]->(c)\n\
                WHERE c <> a AND NOT (a)-[:Follows]->(c)\n\
                RETURN DISTINCT c.key AS who, quiver.score(a, 'Follows', c) AS score\n\
                ORDER BY score DESC LIMIT 5";
    for line in text.lines() {
        say!("  {line}");
    }
    let graph = quiver::Graph::new(db);
    let rows = graph.query(text, &quiver::Params::from([("k".into(), "u0".into())]))?;
    for line in rows.to_table().lines() {
        say!("  {line}");
    }
    demo_cold_start(&graph, (user, follows), shape.communities, &community)?;
    let db = graph.database();
    say!("== check");
    let report = db.check()?;
    say!(
        "  {}",
        if report.ok() {
            "check passed".to_string()
        } else {
            format!("{:?}", report.problems)
        }
    );
    drop(graph);
    if keep {
        say!("== the database is kept in {}", db_path.display());
    } else {
        std::fs::remove_dir_all(&dir).ok();
    }
    if !report.ok() {
        bail!("demo database failed its check");
    }
    Ok(())
}
