//! EXPLAIN: a plan as lines of text.

use super::*;

/// The plan as text, one operator per line (EXPLAIN).
pub(crate) fn explain(plan: &Plan, catalog: &Catalog) -> Vec<String> {
    let names = &plan.names;
    let var = |s: &usize| names.get(s).cloned().unwrap_or_else(|| format!("_{s}"));
    let types = |t: &Option<Vec<u32>>| match t {
        None => String::new(),
        Some(t) => t.iter().map(|t| format!(":{}", catalog.type_name(*t))).collect(),
    };
    let rels = |r: &Option<Vec<u32>>| match r {
        None => String::new(),
        Some(r) => {
            let n: Vec<&str> = r
                .iter()
                .map(|r| catalog.relations[*r as usize].name.as_str())
                .collect();
            format!(":{}", n.join("|"))
        }
    };
    let step = |s: &Step, hops: &str| {
        let (l, r) = match s.dir {
            Dir::Out => ("-", "->"),
            Dir::In => ("<-", "-"),
            Dir::Both => ("-", "-"),
        };
        format!(
            "({}){l}[{}{}{hops}]{r}({}{})",
            var(&s.from),
            var(&s.edge),
            rels(&s.rels),
            var(&s.to),
            types(&s.to_types)
        )
    };
    let mut out = Vec::new();
    let parts = plan.before.iter().map(|p| (&p.ops, &p.writes, Some(&p.fills)));
    for (ops, writes, fills) in parts.chain([(&plan.ops, &plan.writes, None)]) {
        for op in ops {
            out.push(match op {
                Op::Scan { slot, types: t } => format!("NodeScan ({}{})", var(slot), types(t)),
                Op::ByKey { slot, types: t, .. } => format!("NodeByKey ({}{} {{key}})", var(slot), types(t)),
                Op::CheckType { slot, types: t } => {
                    format!("CheckType ({}{})", var(slot), types(&Some(t.clone())))
                }
                Op::Expand(s) if s.into => format!("ExpandInto {}", step(s, "")),
                Op::Expand(s) => format!("Expand {}", step(s, "")),
                Op::VarExpand { step: s, min, max } => {
                    let hi = max.map_or(String::new(), |m| m.to_string());
                    format!("VarExpand {}", step(s, &format!("*{min}..{hi}")))
                }
                Op::Intersect { a, b } => format!("Intersect {} and {}", step(a, ""), step(b, "")),
                Op::TwoHop { a, b, count, paths } => format!(
                    "TwoHop{} {} then {} ({})",
                    match (count, paths) {
                        (_, true) => "PathCount",
                        (Some(_), false) => "Count",
                        (None, false) => "",
                    },
                    step(a, ""),
                    step(b, ""),
                    if *paths {
                        "degrees, not paths"
                    } else {
                        "neighbour bitmaps"
                    }
                ),
                Op::Filter(_) => "Filter".to_string(),
                Op::Path { slot, .. } => format!("Path ({})", var(slot)),
                Op::Shortest {
                    step: s,
                    min,
                    max,
                    all,
                    ..
                } => {
                    let hi = max.map_or(String::new(), |m| m.to_string());
                    format!(
                        "{} {} (breadth first)",
                        if *all { "AllShortestPaths" } else { "ShortestPath" },
                        step(s, &format!("*{min}..{hi}"))
                    )
                }
                Op::Call {
                    proc,
                    exclude: Some((rel, dir)),
                    out,
                    ..
                } => {
                    let node = out
                        .iter()
                        .find(|(c, _)| *c == 0)
                        .map_or("node".into(), |(_, s)| var(s));
                    let (l, r) = match dir {
                        Direction::Out => ("-", "->"),
                        Direction::In => ("<-", "-"),
                    };
                    format!(
                    "Call {proc:?} searched without (arg){l}[:{}]{r}({node}) (filter pushed into the search)",
                    catalog.relations[*rel as usize].name
                )
                }
                Op::Call { proc, .. } => format!("Call {proc:?}"),
                Op::Unwind { slot, .. } => format!("Unwind ({})", var(slot)),
                Op::Optional(ops) => format!("Optional ({} operators)", ops.len()),
                Op::Subquery { ops, ret, slots } => {
                    let names: Vec<String> = slots.iter().map(var).collect();
                    format!(
                        "Subquery ({} operators, {}) ({})",
                        ops.len(),
                        projection(ret),
                        names.join(", ")
                    )
                }
                Op::With { ret, slots } => {
                    let names: Vec<String> = slots.iter().map(var).collect();
                    format!("{} ({})", projection(ret), names.join(", "))
                }
            });
        }
        if !writes.is_empty() {
            out.push(format!("Write ({} operations per row, one batch)", writes.len()));
        }
        if let Some(fills) = fills {
            let names: Vec<String> = fills.iter().map(|(s, _)| var(s)).collect();
            out.push(format!(
                "Stage (the writes seen from here on; binds {})",
                names.join(", ")
            ));
        }
    }
    if let Some(r) = &plan.ret {
        out.push(projection(r));
    }
    out
}

/// `Aggregate DISTINCT Sort Limit`, as far as each applies.
fn projection(r: &Ret) -> String {
    let aggregating = r.items.iter().any(|i| i.is_err());
    format!(
        "{}{}{}{}",
        if aggregating { "Aggregate" } else { "Project" },
        if r.distinct { " DISTINCT" } else { "" },
        if r.order.is_empty() { "" } else { " Sort" },
        if r.limit.is_some() { " Limit" } else { "" }
    )
}
