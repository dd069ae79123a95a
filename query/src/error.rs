//! Errors of the query layer.

use std::fmt;

/// A place in the query text: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1, counted in characters.
    pub column: u32,
}

impl Pos {
    /// The place of byte offset `at` in `src`.
    pub fn at(src: &str, at: usize) -> Pos {
        let before = &src[..at.min(src.len())];
        let line = before.matches('\n').count() as u32 + 1;
        let start = before.rfind('\n').map_or(0, |n| n + 1);
        Pos {
            line,
            column: before[start..].chars().count() as u32 + 1,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Everything a query can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The text is not a valid statement.
    #[error("{}{message}", at(pos))]
    Syntax {
        /// Where.
        pos: Pos,
        /// What was expected and found.
        message: String,
    },
    /// The statement is well-formed but names something that does not exist
    /// or combines things that cannot go together.
    #[error("{}{message}", at(pos))]
    Semantic {
        /// Where.
        pos: Pos,
        /// What is wrong.
        message: String,
    },
    /// A value of the wrong type, a missing parameter, a failed procedure.
    #[error("{0}")]
    Runtime(String),
    /// The query produced more rows than its cap allows.
    #[error("row cap of {0} rows exceeded (raise it with the query options or add LIMIT)")]
    RowCap(u64),
    /// The query ran longer than its timeout.
    #[error("query timed out after {0} ms")]
    Timeout(u64),
    /// The caller's interrupt check said stop ([`crate::Graph::query_interruptible`]).
    #[error("query interrupted")]
    Interrupted,
    /// From the storage layer.
    #[error(transparent)]
    Storage(#[from] quiver_storage::StorageError),
    /// From the embedding engine.
    #[error(transparent)]
    Engine(#[from] quiver_engine::EngineError),
}

/// `line L, column C: ` before a message, or nothing for an unknown place.
fn at(pos: &Pos) -> String {
    if pos.line == 0 {
        String::new()
    } else {
        format!("{pos}: ")
    }
}

impl QueryError {
    pub(crate) fn syntax(pos: Pos, message: impl Into<String>) -> Self {
        QueryError::Syntax {
            pos,
            message: message.into(),
        }
    }

    pub(crate) fn semantic(pos: Pos, message: impl Into<String>) -> Self {
        QueryError::Semantic {
            pos,
            message: message.into(),
        }
    }

    /// Where in the query text the error is, when it has a place.
    pub fn pos(&self) -> Option<Pos> {
        match self {
            QueryError::Syntax { pos, .. } | QueryError::Semantic { pos, .. } if pos.line > 0 => Some(*pos),
            _ => None,
        }
    }

    /// The error with the offending line of `src` and a caret under the column.
    pub fn render(&self, src: &str) -> String {
        match self.pos() {
            Some(p) => {
                let line = src.lines().nth(p.line as usize - 1).unwrap_or("");
                let pad = " ".repeat(p.column as usize - 1);
                format!("error: {self}\n  {line}\n  {pad}^")
            }
            None => format!("error: {self}"),
        }
    }
}

/// Short for `Result<T, QueryError>`.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;

pub(crate) fn runtime(message: impl Into<String>) -> QueryError {
    QueryError::Runtime(message.into())
}
