//! Running a query: a read on one snapshot; a statement that writes as its
//! parts staged in one transaction; queries joined by UNION one after another.

use std::time::Instant;

use rustc_hash::FxHashSet;

use crate::ast::Clause;
use crate::error::Result;
use crate::exec::{self, Ctx, RowIter};
use crate::plan::{self, Plan};
use crate::value::{Rows, Value};
use crate::{Graph, Limits, Params};

impl Graph {
    pub(crate) fn run_query(
        &self,
        clauses: &[Clause],
        params: &Params,
        limits: Limits,
        interrupt: Option<&dyn Fn() -> bool>,
    ) -> Result<Rows> {
        let snap = self.db.snapshot();
        let (branches, all) = plan::plan_union(clauses, snap.catalog(), &snap)?;
        // One clock for the statement: a UNION's queries share its timeout.
        let start = Instant::now();
        let run = |p: &Plan| exec::Run {
            db: &self.db,
            models: &self.models,
            params,
            limits,
            interrupt,
            start,
            width: p.width,
        };
        if let [p] = branches.as_slice() {
            if !p.before.is_empty() || !p.writes.is_empty() {
                drop(snap);
                return self.run_writes(p, &run(p));
            }
            let run = run(p);
            let ctx = run.ctx(&snap, None);
            let rows = read_out(&ctx, p, ctx.pipeline(&p.ops, vec![Value::Null; p.width]))?;
            return Ok(Rows {
                columns: p.columns(),
                rows,
                snapshot: self.db.snapshot(),
            });
        }
        // A UNION: each query on the same snapshot, their rows one after another.
        let mut rows = Vec::new();
        let mut seen = FxHashSet::default();
        for p in &branches {
            let run = run(p);
            let ctx = run.ctx(&snap, None);
            let it = ctx.pipeline(&p.ops, vec![Value::Null; p.width]);
            for row in read_out(&ctx, p, it)? {
                if all || seen.insert(row.clone()) {
                    rows.push(row);
                    ctx.cap(rows.len())?;
                }
            }
        }
        Ok(Rows {
            columns: branches[0].columns(),
            rows,
            snapshot: self.db.snapshot(),
        })
    }

    /// A statement that writes: it holds the writer lock throughout; each
    /// part's writes are staged for the parts after it to read, and all of
    /// them commit as one batch at the end, before the rows come back.
    fn run_writes(&self, p: &Plan, run: &exec::Run<'_>) -> Result<Rows> {
        let mut txn = self.db.begin();
        let mut rows = vec![vec![Value::Null; p.width]];
        let mut props = 0;
        for part in &p.before {
            let written = {
                let c = run.ctx(txn.snapshot(), Some(&txn));
                let it = c.pipeline_from(&part.ops, Box::new(rows.into_iter().map(Ok)));
                c.write(&part.writes, it, true)?
            };
            txn.stage(written.batch)?;
            props += written.props;
            rows = written.rows;
            run.ctx(txn.snapshot(), Some(&txn)).fill(&part.fills, &mut rows)?;
        }
        let c = run.ctx(txn.snapshot(), Some(&txn));
        let last = c.pipeline_from(&p.ops, Box::new(rows.into_iter().map(Ok)));
        if !p.writes.is_empty() {
            let written = c.write(&p.writes, last, false)?;
            drop(c);
            let info = txn.commit(written.batch)?;
            self.wrote()?;
            return Ok(self.rows(
                &[
                    "nodes_created",
                    "nodes_deleted",
                    "edges_changed",
                    "properties_set",
                ],
                vec![vec![
                    Value::Int(info.nodes_created as i64),
                    Value::Int(info.nodes_deleted as i64),
                    Value::Int(info.edges_changed as i64),
                    Value::Int(props + written.props),
                ]],
            ));
        }
        let out = read_out(&c, p, last)?;
        drop(c);
        txn.commit(quiver_storage::WriteBatch::default())?;
        self.wrote()?;
        Ok(Rows {
            columns: p.columns(),
            rows: out,
            snapshot: self.db.snapshot(),
        })
    }
}

/// The rows of a reading part: the RETURN's, or the yielded columns of a
/// closing CALL.
fn read_out(ctx: &Ctx<'_>, p: &Plan, rows: RowIter<'_>) -> Result<Vec<Vec<Value>>> {
    match &p.ret {
        Some(ret) => ctx.project(ret, rows),
        None => {
            let mut out = Vec::new();
            for r in rows {
                let r = r?;
                out.push(p.call_columns.iter().map(|(_, s)| r[*s].clone()).collect());
            }
            Ok(out)
        }
    }
}
