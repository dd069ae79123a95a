//! The planner: turns clauses into a list of operators over rows of slots
//! (one slot per variable), resolving names against the catalog.
//!
//! For each path pattern it first binds every node given by key (one row
//! each), then starts from a bound node (or the smallest label scan) and
//! expands outwards. A node between two bound nodes is found by intersecting
//! the two sorted neighbour lists instead of expanding and checking.

use std::collections::HashMap;

use quiver_storage::{Catalog, Direction, Snapshot};

use crate::ast::*;
use crate::error::{Pos, QueryError, Result};
use crate::value::Value;

mod clauses;
mod explain;
mod expr;
mod pattern;
mod query;
mod two_hop;
mod types;
mod writes;

use clauses::*;
pub(crate) use explain::explain;
pub(crate) use pattern::flip;
pub(crate) use types::*;

struct Planner<'a> {
    catalog: &'a Catalog,
    snap: &'a Snapshot,
    vars: HashMap<String, usize>,
    /// Variables bound to nodes and edges CREATE makes in the current part:
    /// written by key, readable only in a later part.
    created: HashMap<String, Target>,
    /// Variables bound to nodes and edges MERGE finds or creates: readable
    /// (null when created), written by key.
    merged: HashMap<String, Target>,
    /// Variables bound before the MATCH being planned.
    outer: std::collections::HashSet<String>,
    /// Every variable's name by slot, for EXPLAIN.
    names: HashMap<usize, String>,
    width: usize,
}

fn sem(pos: Pos, m: impl Into<String>) -> QueryError {
    QueryError::semantic(pos, m)
}

/// Plans a query: one plan, or one per query joined by UNION, with whether
/// duplicate rows are kept (`UNION ALL`).
pub(crate) fn plan_union(
    clauses: &[Clause],
    catalog: &Catalog,
    snap: &Snapshot,
) -> Result<(Vec<Plan>, bool)> {
    let mut all = None;
    for c in clauses {
        if let Clause::Union { all: a } = c {
            if all.replace(*a).is_some_and(|b| b != *a) {
                return Err(sem(
                    Pos::default(),
                    "UNION and UNION ALL cannot be mixed in one query",
                ));
            }
        }
    }
    let branches = clauses
        .split(|c| matches!(c, Clause::Union { .. }))
        .map(|b| plan(b, catalog, snap))
        .collect::<Result<Vec<_>>>()?;
    if branches.len() > 1 {
        for b in &branches {
            if !b.before.is_empty() || !b.writes.is_empty() {
                return Err(sem(
                    Pos::default(),
                    "the queries a UNION joins only read: run the writes as statements of their own",
                ));
            }
            let (first, these) = (&branches[0].columns(), &b.columns());
            if first != these {
                return Err(sem(
                    Pos::default(),
                    format!(
                        "the queries a UNION joins return the same columns: ({}) and ({})",
                        first.join(", "),
                        these.join(", ")
                    ),
                ));
            }
        }
    }
    Ok((branches, all.unwrap_or(false)))
}

pub(crate) fn plan(clauses: &[Clause], catalog: &Catalog, snap: &Snapshot) -> Result<Plan> {
    let mut p = Planner {
        catalog,
        snap,
        vars: HashMap::new(),
        created: HashMap::new(),
        merged: HashMap::new(),
        outer: Default::default(),
        names: HashMap::new(),
        width: 0,
    };
    let mut plan = Plan::default();
    p.clauses(clauses, &mut plan)?;
    plan.width = p.width;
    plan.names = p.names;
    two_hop::rewrite(&mut plan, p.width);
    Ok(plan)
}

/// Splits an AND tree into its conjuncts.
fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Bin(BinOp::And, a, b) => {
            let mut v = conjuncts(a);
            v.extend(conjuncts(b));
            v
        }
        _ => vec![e],
    }
}

impl Planner<'_> {
    /// Closes the current part (its operators and writes) before a clause
    /// that reads its writes: the variables it created or merged become
    /// ordinary ones, filled from the new view.
    fn end_part(&mut self, plan: &mut Plan) {
        let mut written: Vec<(String, Target)> = self.created.drain().chain(self.merged.drain()).collect();
        written.sort_by(|a, b| a.0.cmp(&b.0));
        let mut fills = Vec::new();
        for (name, target) in written {
            let slot = match self.vars.get(&name) {
                Some(&s) => s,
                None => {
                    let s = self.slot();
                    self.bind(name, s);
                    s
                }
            };
            fills.push((slot, target));
        }
        plan.before.push(Part {
            ops: std::mem::take(&mut plan.ops),
            writes: std::mem::take(&mut plan.writes),
            fills,
        });
    }

    /// True when `e` reads only variables bound before the current MATCH
    /// (so it can be evaluated first, as a node key to look up).
    fn outer_only(&self, e: &Expr) -> bool {
        match e {
            Expr::Lit(_) | Expr::Param(_) => true,
            Expr::Var(n) => self.outer.contains(&n.text),
            Expr::Prop(x, _) | Expr::Neg(x) | Expr::Not(x) | Expr::IsNull(x, _) => self.outer_only(x),
            Expr::List(l) => l.iter().all(|x| self.outer_only(x)),
            Expr::Map(m) => m.iter().all(|(_, x)| self.outer_only(x)),
            Expr::Bin(_, a, b) => self.outer_only(a) && self.outer_only(b),
            Expr::Call { args, .. } => agg_of(e).is_none() && args.iter().all(|x| self.outer_only(x)),
            _ => false,
        }
    }

    fn bind(&mut self, name: String, slot: usize) {
        self.names.insert(slot, name.clone());
        self.vars.insert(name, slot);
    }

    fn slot(&mut self) -> usize {
        self.width += 1;
        self.width - 1
    }

    fn var(&self, n: &Name) -> Result<usize> {
        self.vars
            .get(&n.text)
            .copied()
            .ok_or_else(|| sem(n.pos, format!("unknown variable `{}`", n.text)))
    }

    fn node_type(&self, n: &Name) -> Result<u32> {
        self.catalog
            .node_types
            .iter()
            .position(|t| t.name == n.text)
            .map(|t| t as u32)
            .ok_or_else(|| sem(n.pos, format!("unknown node type `{}`", n.text)))
    }

    fn relation(&self, n: &Name) -> Result<u32> {
        self.catalog
            .relations
            .iter()
            .position(|r| r.name == n.text)
            .map(|r| r as u32)
            .ok_or_else(|| sem(n.pos, format!("unknown relation type `{}`", n.text)))
    }

    fn rel_name_expr(&mut self, e: &Expr) -> Result<CExpr> {
        // A relation named by a literal is checked now; other expressions at run time.
        if let Expr::Lit(Lit::Str(s)) = e {
            if !self.catalog.relations.iter().any(|r| &r.name == s) {
                return Err(sem(Pos::default(), format!("unknown relation type `{s}`")));
            }
        }
        self.expr(e)
    }
}
