//! quiver's query language: a subset of openCypher with embedding
//! procedures, parsed, planned and run against `storage` (and `engine` for
//! the embedding procedures). The grammar is in `docs/query.md`.
//!
//! A [`Graph`] is a database handle that answers queries:
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use quiver_query::{Graph, Params};
//! let g = Graph::open(dir.path())?;
//! g.query("CREATE NODE TYPE User; CREATE RELATION TYPE Follows (User -> User)", &Params::new())?;
//! g.query("CREATE (:User {key: 'alice'})-[:Follows]->(:User {key: 'bob'})", &Params::new())?;
//! let params = Params::from([("k".to_string(), "alice".into())]);
//! let rows = g.query("MATCH (a:User {key: $k})-[:Follows]->(b) RETURN b.key", &params)?;
//! assert_eq!(rows.rows[0][0].as_str(), Some("bob"));
//! # Ok::<_, quiver_query::QueryError>(())
//! ```

mod ast;
mod error;
mod exec;
mod lexer;
mod parser;
mod plan;
mod run;
mod value;

use std::path::Path;
use std::time::Duration;

use quiver_storage::Database;

pub use ast::Statement;
pub use error::{Pos, QueryError, Result};
pub use parser::{parse, parse_one, MAX_DEPTH};
pub use value::{Params, Rows, Value};

use exec::ModelCache;

/// Limits on one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most rows a query may return or hold at once (in a sort, a
    /// `DISTINCT`, a group table or a variable-length expansion).
    pub max_rows: u64,
    /// Longest a query may run (`None`: no limit). Training run by
    /// `quiver.train` stops at the first checkpoint past it (resumable), an
    /// index build by `quiver.index` within a few thousand rows (storing nothing).
    pub timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rows: 1_000_000,
            timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// Whether any of the `;`-separated statements in `text` may write: a
/// schema change, a write clause, or a procedure that stores a model or an
/// index. A server in read-only mode refuses these before running them.
pub fn writes(text: &str) -> Result<bool> {
    use ast::Clause as C;
    let clause = |c: &C| match c {
        c if c.writes() => true,
        C::Call { name, .. } => matches!(
            plan::Proc::named(&name.text),
            Some(plan::Proc::Train | plan::Proc::Refresh | plan::Proc::Index)
        ),
        _ => false,
    };
    Ok(parse(text)?.iter().any(|s| match s {
        Statement::CreateNodeType(_) | Statement::CreateRelationType { .. } => true,
        Statement::Query(clauses) => clauses.iter().any(clause),
        Statement::ShowTypes | Statement::Explain(_) => false,
    }))
}

/// A statement parsed once and run many times with different parameters.
#[derive(Debug, Clone)]
pub struct Prepared {
    text: String,
    statement: Statement,
}

impl Prepared {
    /// The statement's text.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A database handle that answers queries. Reads see one snapshot per
/// statement; each statement's writes commit as one batch.
///
/// Durability: a statement that writes (schema, data or a model) is on disk
/// before `query`, `query_each` or `execute` hands back its result, so a
/// crash or a power cut never loses a statement whose result was seen (like
/// SQLite's `synchronous = FULL`). [`Graph::set_sync`]`(false)` trades that
/// for speed: a crash may then lose the statements since the last flush
/// (sled flushes every 500 ms, and [`Database::flush`] on demand), never
/// part of one.
pub struct Graph {
    db: Database,
    limits: Limits,
    models: ModelCache,
    sync: bool,
}

impl Graph {
    /// Opens (or creates) the database in directory `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::new(Database::open_or_create(path)?))
    }

    /// Wraps an open database.
    pub fn new(db: Database) -> Self {
        Graph {
            db,
            limits: Limits::default(),
            models: Default::default(),
            sync: true,
        }
    }

    /// The database underneath.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Stored model `name`, from the handle's cache while its parts are
    /// unchanged (the one the embedding procedures use), with rows inferred
    /// for nodes created since training.
    pub fn model(&self, name: &str) -> Result<std::sync::Arc<quiver_engine::Model>> {
        exec::cached_model(&self.db, &self.db.snapshot(), &self.models, name, true)
    }

    /// The `k` best nodes of type `node_type` for each query vector in
    /// `queries` (row-major, the model's dimension), best first with the
    /// model's own scores: through the model's index of that type when it
    /// has a current one (searched with breadth `ef`, its default when
    /// `None`) unless `exact`, else by scanning every row. Deleted nodes
    /// never come back. The model and its index are cached by the handle.
    pub fn search(
        &self,
        model: &str,
        node_type: u32,
        queries: &[f32],
        k: usize,
        exact: bool,
        ef: Option<usize>,
    ) -> Result<Vec<Vec<(u32, f32)>>> {
        let snap = self.db.snapshot();
        let m = exec::cached_model(&self.db, &snap, &self.models, model, true)?;
        m.seen(snap.catalog(), Some(node_type), None).map_err(|message| {
            quiver_engine::EngineError::Model {
                name: model.to_string(),
                message,
            }
        })?;
        let d = m.dim();
        if !queries.len().is_multiple_of(d) {
            return Err(quiver_engine::EngineError::Input(format!(
                "queries of {} values are not whole rows of the model's {d} columns",
                queries.len()
            ))
            .into());
        }
        let skip = |id: u32| snap.is_deleted(node_type, id);
        let index = match exact {
            true => None,
            false => exec::cached_index(&self.db, &self.models, model, node_type)?,
        };
        match index {
            Some(index) => queries
                .chunks_exact(d)
                .map(|q| Ok(index.search(&m.nodes[node_type as usize], q, k, ef, &skip)?))
                .collect(),
            None => Ok(quiver_engine::Index::new(
                quiver_engine::Metric::of_score(m.config.score),
                &m.nodes[node_type as usize],
                d,
            )
            .search(queries, k, &|_, id| skip(id))),
        }
    }

    /// Model `name`'s current index of node type `ty`, if any, from the
    /// handle's cache (opened and checked once while the model is unchanged).
    pub fn index(&self, name: &str, ty: u32) -> Result<Option<std::sync::Arc<quiver_engine::AnnIndex>>> {
        exec::cached_model(&self.db, &self.db.snapshot(), &self.models, name, false)?;
        exec::cached_index(&self.db, &self.models, name, ty)
    }

    /// The limits queries run under unless given their own.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Sets the default limits for this handle.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Whether a writing statement is flushed to disk before its result is
    /// returned (the default; see [`Graph`]).
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    /// Makes the statement's writes durable, unless `set_sync(false)`.
    pub(crate) fn wrote(&self) -> Result<()> {
        if self.sync {
            self.db.flush()?;
        }
        Ok(())
    }

    /// Parses one statement for [`Graph::execute`].
    pub fn prepare(&self, text: &str) -> Result<Prepared> {
        Ok(Prepared {
            text: text.to_string(),
            statement: parse_one(text)?,
        })
    }

    /// Runs `;`-separated statements and returns the last one's rows.
    pub fn query(&self, text: &str, params: &Params) -> Result<Rows> {
        self.query_interruptible(text, params, None)
    }

    /// [`Graph::query`] that calls `interrupt` every few milliseconds while
    /// a statement runs and ends it with [`QueryError::Interrupted`] when it
    /// returns true (nothing of an interrupted statement is written).
    pub fn query_interruptible(
        &self,
        text: &str,
        params: &Params,
        interrupt: Option<&dyn Fn() -> bool>,
    ) -> Result<Rows> {
        let statements = parse(text)?;
        let mut last = None;
        for s in &statements {
            last = Some(self.run(s, params, self.limits, interrupt)?);
        }
        last.ok_or_else(|| QueryError::syntax(Pos::at(text, text.len()), "expected a statement"))
    }

    /// Runs `;`-separated statements in order, handing each one's rows to
    /// `each`; stops at the first error (places in it refer to `text`).
    pub fn query_each(&self, text: &str, params: &Params, each: &mut dyn FnMut(&Rows)) -> Result<()> {
        for s in &parse(text)? {
            each(&self.run(s, params, self.limits, None)?);
        }
        Ok(())
    }

    /// Runs a prepared statement with its own limits.
    pub fn execute(&self, p: &Prepared, params: &Params, limits: Limits) -> Result<Rows> {
        self.run(&p.statement, params, limits, None)
    }

    /// [`Graph::execute`] with an interrupt check, as [`Graph::query_interruptible`].
    pub fn execute_interruptible(
        &self,
        p: &Prepared,
        params: &Params,
        limits: Limits,
        interrupt: Option<&dyn Fn() -> bool>,
    ) -> Result<Rows> {
        self.run(&p.statement, params, limits, interrupt)
    }

    pub(crate) fn rows(&self, columns: &[&str], rows: Vec<Vec<Value>>) -> Rows {
        Rows {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
            snapshot: self.db.snapshot(),
        }
    }

    fn run(
        &self,
        s: &Statement,
        params: &Params,
        limits: Limits,
        interrupt: Option<&dyn Fn() -> bool>,
    ) -> Result<Rows> {
        use ast::Statement as S;
        let name = |n: &ast::Name| n.text.clone();
        match s {
            S::CreateNodeType(n) => {
                self.db.create_node_type(&n.text)?;
                self.wrote()?;
                Ok(self.rows(&["created"], vec![vec![Value::Str(name(n))]]))
            }
            S::CreateRelationType { name: n, src, dst } => {
                let c = self.db.catalog();
                for t in [src, dst] {
                    if !c.node_types.iter().any(|x| x.name == t.text) {
                        return Err(QueryError::semantic(
                            t.pos,
                            format!("unknown node type `{}`", t.text),
                        ));
                    }
                }
                self.db.create_relation_type(&n.text, &src.text, &dst.text)?;
                self.wrote()?;
                Ok(self.rows(&["created"], vec![vec![Value::Str(name(n))]]))
            }
            S::ShowTypes => {
                let snap = self.db.snapshot();
                let c = snap.catalog();
                let mut rows = Vec::new();
                for (t, nt) in c.node_types.iter().enumerate() {
                    rows.push(vec![
                        "node".into(),
                        nt.name.clone().into(),
                        Value::Null,
                        Value::Null,
                        Value::Int(snap.live_node_count(t as u32) as i64),
                    ]);
                }
                for r in &c.relations {
                    rows.push(vec![
                        "relation".into(),
                        r.name.clone().into(),
                        c.type_name(r.src).into(),
                        c.type_name(r.dst).into(),
                        Value::Null,
                    ]);
                }
                Ok(self.rows(&["kind", "name", "from", "to", "nodes"], rows))
            }
            S::Explain(clauses) => {
                let snap = self.db.snapshot();
                let (branches, all) = plan::plan_union(clauses, snap.catalog(), &snap)?;
                let mut lines = Vec::new();
                for (i, p) in branches.iter().enumerate() {
                    if i > 0 {
                        lines.push(if all { "Union All" } else { "Union (distinct rows)" }.to_string());
                    }
                    lines.extend(plan::explain(p, snap.catalog()));
                }
                Ok(self.rows(
                    &["plan"],
                    lines.into_iter().map(|l| vec![Value::Str(l)]).collect(),
                ))
            }
            S::Query(clauses) => self.run_query(clauses, params, limits, interrupt),
        }
    }
}
