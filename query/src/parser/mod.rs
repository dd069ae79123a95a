//! Recursive-descent parser. It never panics: every input gives a statement
//! list or an error with the place and what was expected. Nesting deeper than
//! [`MAX_DEPTH`] is an error, so hostile input cannot overflow the stack.

use crate::ast::*;
use crate::error::{Pos, QueryError, Result};
use crate::lexer::{lex, Tok};

mod expr;
mod pattern;

/// Deepest nesting of expressions and patterns accepted. Each operator in a
/// chain (`a AND b AND c`) nests its left side one level deeper too, so the
/// syntax tree, which later stages walk recursively, is never deeper than this.
pub const MAX_DEPTH: usize = 64;

/// Most clauses in one statement (planning is not linear in them, and no
/// statement a person or a tool writes comes near).
pub const MAX_CLAUSES: usize = 256;

/// Parses `;`-separated statements.
pub fn parse(src: &str) -> Result<Vec<Statement>> {
    let mut p = Parser {
        toks: lex(src)?,
        i: 0,
        depth: 0,
    };
    let mut out = Vec::new();
    loop {
        while p.eat_sym(";") {}
        if p.peek() == &Tok::Eof {
            return Ok(out);
        }
        out.push(p.statement()?);
        if !p.eat_sym(";") && p.peek() != &Tok::Eof {
            return Err(p.expected("';' or the end of the statement"));
        }
    }
}

/// Parses exactly one statement (a trailing `;` is allowed).
pub fn parse_one(src: &str) -> Result<Statement> {
    let mut all = parse(src)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        0 => Err(QueryError::syntax(
            Pos::at(src, src.len()),
            "expected a statement",
        )),
        _ => Err(QueryError::syntax(
            Pos::default(),
            "expected one statement, found several",
        )),
    }
}

struct Parser {
    toks: Vec<(Tok, Pos)>,
    i: usize,
    depth: usize,
}

const CLAUSE_WORDS: [&str; 12] = [
    "MATCH", "OPTIONAL", "WHERE", "RETURN", "CREATE", "DELETE", "DETACH", "SET", "REMOVE", "CALL", "UNWIND",
    "FOREACH",
];

impl Parser {
    pub(super) fn peek(&self) -> &Tok {
        &self.toks[self.i].0
    }

    pub(super) fn peek_at(&self, k: usize) -> &Tok {
        &self.toks[(self.i + k).min(self.toks.len() - 1)].0
    }

    pub(super) fn pos(&self) -> Pos {
        self.toks[self.i].1
    }

    pub(super) fn bump(&mut self) -> Tok {
        let t = self.toks[self.i].0.clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }

    pub(super) fn expected(&self, what: &str) -> QueryError {
        QueryError::syntax(
            self.pos(),
            format!("expected {what}, found {}", self.peek().describe()),
        )
    }

    pub(super) fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    pub(super) fn is_kw_at(&self, k: usize, kw: &str) -> bool {
        matches!(self.peek_at(k), Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    pub(super) fn eat_kw(&mut self, kw: &str) -> bool {
        let yes = self.is_kw(kw);
        if yes {
            self.bump();
        }
        yes
    }

    pub(super) fn kw(&mut self, kw: &str) -> Result<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.expected(kw))
        }
    }

    pub(super) fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Tok::Sym(x) if *x == s)
    }

    pub(super) fn eat_sym(&mut self, s: &str) -> bool {
        let yes = self.is_sym(s);
        if yes {
            self.bump();
        }
        yes
    }

    pub(super) fn sym(&mut self, s: &str, what: &str) -> Result<()> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    pub(super) fn name(&mut self, what: &str) -> Result<Name> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Ident(text) | Tok::Quoted(text) => {
                self.bump();
                Ok(Name { text, pos })
            }
            _ => Err(self.expected(what)),
        }
    }

    pub(super) fn here(&self) -> Name {
        Name {
            text: String::new(),
            pos: self.pos(),
        }
    }

    pub(super) fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(QueryError::syntax(
                self.pos(),
                format!("nesting deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    pub(super) fn statement(&mut self) -> Result<Statement> {
        if self.is_kw("CREATE") && (self.is_kw_at(1, "NODE") || self.is_kw_at(1, "RELATION")) {
            self.bump();
            if self.eat_kw("NODE") {
                self.kw("TYPE")?;
                return Ok(Statement::CreateNodeType(self.name("a node type name")?));
            }
            self.kw("RELATION")?;
            self.kw("TYPE")?;
            let name = self.name("a relation type name")?;
            self.sym("(", "'(' before the source node type")?;
            let src = self.name("the source node type")?;
            self.sym("->", "'->' between the source and destination node types")?;
            let dst = self.name("the destination node type")?;
            self.sym(")", "')' after the destination node type")?;
            return Ok(Statement::CreateRelationType { name, src, dst });
        }
        if self.eat_kw("SHOW") {
            self.kw("TYPES")?;
            return Ok(Statement::ShowTypes);
        }
        if self.eat_kw("EXPLAIN") {
            return Ok(Statement::Explain(self.clauses()?));
        }
        Ok(Statement::Query(self.clauses()?))
    }

    pub(super) fn clauses(&mut self) -> Result<Vec<Clause>> {
        let mut out = Vec::new();
        loop {
            if out.len() == MAX_CLAUSES {
                return Err(QueryError::syntax(
                    self.pos(),
                    format!("a statement has at most {MAX_CLAUSES} clauses"),
                ));
            }
            let optional = self.is_kw("OPTIONAL") && self.is_kw_at(1, "MATCH");
            let c = if optional || self.is_kw("MATCH") {
                if optional {
                    self.bump();
                }
                self.kw("MATCH")?;
                let patterns = self.patterns()?;
                let filter = if self.eat_kw("WHERE") {
                    Some(self.expr()?)
                } else {
                    None
                };
                Clause::Match {
                    optional,
                    patterns,
                    filter,
                }
            } else if self.is_kw("CALL") && matches!(self.peek_at(1), Tok::Sym("{")) {
                self.bump();
                self.bump();
                self.enter()?;
                let body = self.clauses()?;
                self.sym("}", "'}' to close the subquery")?;
                self.depth -= 1;
                Clause::Subquery(body)
            } else if self.eat_kw("CALL") {
                self.call_clause()?
            } else if self.eat_kw("FOREACH") {
                self.sym("(", "'(' after FOREACH")?;
                self.enter()?;
                let var = self.name("a variable")?;
                self.kw("IN")?;
                let list = self.expr()?;
                self.sym("|", "'|' before the clauses FOREACH runs")?;
                let body = self.clauses()?;
                self.sym(")", "')' to close FOREACH")?;
                self.depth -= 1;
                Clause::Foreach { var, list, body }
            } else if self.eat_kw("UNWIND") {
                let expr = self.expr()?;
                self.kw("AS")?;
                Clause::Unwind {
                    expr,
                    alias: self.name("a variable")?,
                }
            } else if self.eat_kw("CREATE") {
                Clause::Create(self.patterns()?)
            } else if self.is_kw("DELETE") || self.is_kw("DETACH") {
                let detach = self.eat_kw("DETACH");
                self.kw("DELETE")?;
                let mut targets = vec![self.expr()?];
                while self.eat_sym(",") {
                    targets.push(self.expr()?);
                }
                Clause::Delete { detach, targets }
            } else if self.eat_kw("SET") {
                Clause::Set(self.set_items()?)
            } else if self.eat_kw("MERGE") {
                let pattern = self.path()?;
                let (mut on_create, mut on_match) = (Vec::new(), Vec::new());
                while self.eat_kw("ON") {
                    let items = if self.eat_kw("CREATE") {
                        &mut on_create
                    } else if self.eat_kw("MATCH") {
                        &mut on_match
                    } else {
                        return Err(self.expected("CREATE or MATCH after ON"));
                    };
                    self.kw("SET")?;
                    items.extend(self.set_items()?);
                }
                Clause::Merge {
                    pattern,
                    on_create,
                    on_match,
                }
            } else if self.eat_kw("WITH") {
                let proj = self.projection()?;
                let filter = if self.eat_kw("WHERE") {
                    Some(self.expr()?)
                } else {
                    None
                };
                Clause::With { proj, filter }
            } else if self.eat_kw("REMOVE") {
                let mut items = Vec::new();
                loop {
                    let var = self.name("a variable")?;
                    self.sym(".", "'.' and a property name")?;
                    items.push((var, self.name("a property name")?));
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                Clause::Remove(items)
            } else if self.eat_kw("RETURN") {
                Clause::Return(self.projection()?)
            } else if out.is_empty() {
                return Err(
                    self.expected("MATCH, UNWIND, WITH, CREATE, MERGE, CALL, RETURN, SHOW TYPES or EXPLAIN")
                );
            } else if matches!(self.peek(), Tok::Eof | Tok::Sym(";" | "}" | ")")) {
                return Ok(out);
            } else {
                return Err(
                    self.expected("a clause (MATCH, UNWIND, WITH, CREATE, MERGE, DELETE, SET, REMOVE, CALL or RETURN) or ';'")
                );
            };
            let last = matches!(c, Clause::Return(_));
            out.push(c);
            if last && self.eat_kw("UNION") {
                let all = self.eat_kw("ALL");
                out.push(Clause::Union { all });
                if matches!(self.peek(), Tok::Eof | Tok::Sym(";")) {
                    return Err(self.expected("a query after UNION"));
                }
            } else if last {
                return Ok(out);
            }
        }
    }

    /// `n.prop = value` or `n += map`, comma-separated.
    fn set_items(&mut self) -> Result<Vec<SetItem>> {
        let mut items = Vec::new();
        loop {
            let var = self.name("a variable")?;
            if self.eat_sym("+") {
                self.sym("=", "'=' after '+'")?;
                items.push(SetItem::Map(var, self.expr()?));
            } else {
                self.sym(".", "'.' and a property name, or '+='")?;
                let prop = self.name("a property name")?;
                self.sym("=", "'='")?;
                items.push(SetItem::Prop(var, prop, self.expr()?));
            }
            if !self.eat_sym(",") {
                return Ok(items);
            }
        }
    }

    pub(super) fn call_clause(&mut self) -> Result<Clause> {
        let name = self.dotted()?;
        self.sym("(", "'(' after the procedure name")?;
        let args = self.args(")")?;
        let mut yields = Vec::new();
        if self.eat_kw("YIELD") {
            loop {
                let y = self.name("a column to yield")?;
                let alias = if self.eat_kw("AS") {
                    Some(self.name("a variable")?)
                } else {
                    None
                };
                yields.push((y, alias));
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        // As in Neo4j, WHERE filters what a YIELD named.
        let filter = match !yields.is_empty() && self.eat_kw("WHERE") {
            true => Some(self.expr()?),
            false => None,
        };
        Ok(Clause::Call {
            name,
            args,
            yields,
            filter,
        })
    }

    pub(super) fn dotted(&mut self) -> Result<Name> {
        let mut n = self.name("a name")?;
        while self.is_sym(".") && matches!(self.peek_at(1), Tok::Ident(_)) {
            self.bump();
            let part = self.name("a name")?;
            n.text.push('.');
            n.text.push_str(&part.text);
        }
        Ok(n)
    }

    pub(super) fn args(&mut self, close: &str) -> Result<Vec<Expr>> {
        let mut args = Vec::new();
        if !self.eat_sym(close) {
            loop {
                args.push(self.expr()?);
                if self.eat_sym(close) {
                    break;
                }
                self.sym(",", &format!("',' or '{close}'"))?;
            }
        }
        Ok(args)
    }

    pub(super) fn projection(&mut self) -> Result<Projection> {
        let distinct = self.eat_kw("DISTINCT");
        let star = self.eat_sym("*");
        let mut items = Vec::new();
        if !star || self.eat_sym(",") {
            loop {
                let e = self.expr()?;
                let alias = if self.eat_kw("AS") {
                    Some(self.name("an alias")?)
                } else {
                    None
                };
                items.push((e, alias));
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        let mut order = Vec::new();
        if self.eat_kw("ORDER") {
            self.kw("BY")?;
            loop {
                let e = self.expr()?;
                let desc = if self.eat_kw("DESC") || self.eat_kw("DESCENDING") {
                    true
                } else {
                    let _ = self.eat_kw("ASC") || self.eat_kw("ASCENDING");
                    false
                };
                order.push((e, desc));
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        let skip = if self.eat_kw("SKIP") {
            Some(self.expr()?)
        } else {
            None
        };
        let limit = if self.eat_kw("LIMIT") {
            Some(self.expr()?)
        } else {
            None
        };
        Ok(Projection {
            distinct,
            star,
            items,
            order,
            skip,
            limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(q: &str) {
        let a = parse(q).unwrap();
        let text: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        let b = parse(&text.join(";\n")).unwrap();
        assert_eq!(a, b, "{q} printed as {text:?}");
    }

    #[test]
    fn statements_round_trip() {
        for q in [
            "CREATE NODE TYPE User; CREATE RELATION TYPE Follows (User -> User); SHOW TYPES",
            "MATCH (a:User {key: 'alice'})-[:Follows]->(f)-[:Follows]->(c) WHERE c <> a AND NOT (a)-[:Follows]->(c) \
             RETURN DISTINCT c.key AS who, quiver.score(a, 'Follows', c) AS s ORDER BY s DESC LIMIT 10",
            "MATCH (h)-[r]->(t) WHERE h.key = $k RETURN type(r), t.key SKIP 1 LIMIT 2",
            "MATCH (a)<-[r:A|B*1..3]-(b), (c)-[*]-(d) RETURN count(*), count(DISTINCT b), -1.5e-3, [1, 'x', null]",
            "MATCH (a) WHERE a.x IN [1, 2] OR a.y IS NOT NULL XOR a.k STARTS WITH 'p' RETURN a.k % 3 * 2 - 1",
            "CALL quiver.train({dim: 20, epochs: 1}) YIELD model AS m RETURN m",
            "MATCH (a {key: 'x'}), (b {key: 'y'}) CREATE (a)-[:F]->(b)",
            "MATCH (a)-[r:F]->(b) DELETE r",
            "MATCH (a:U) SET a.age = 3, a.name = 'it\\'s' ",
            "EXPLAIN MATCH (a)-[:F*2]->(b) RETURN b",
            "RETURN (a) - [1] - (b), (x) - [y], H (h)-[r]-y",
            "RETURN (NOT a) = b, NOT a AND b, a OR NOT b, a = b IS NULL, -(x IS NULL), (-x).y, - -1, a - (b - c), 1.5.x",
            "RETURN NOT (a)-->(b), (NOT a) IS NULL, a = (b IS NULL), a IN [1] = true",
            "MATCH (a)-[r]->(b) SET r.weight = 2.5, a.x = 1 REMOVE a.y, b.`z w`",
            "MATCH (a) OPTIONAL MATCH (a)-[r:F]->(b) WHERE b.x > 1 RETURN a, b",
            "UNWIND [1, 2] AS x MATCH (a {key: x}) UNWIND a.l AS `y z` RETURN x, `y z`",
            "RETURN CASE a.x WHEN 1 THEN 'one' WHEN 2 + 1 THEN [CASE WHEN b THEN 1 END] ELSE -a END.y, CASE WHEN x THEN 1 END",
            "MATCH (a)-->(b) WITH DISTINCT a, count(b) AS n ORDER BY n DESC SKIP 1 LIMIT 2 WHERE n > 1 RETURN a",
            "UNWIND $rows AS r MERGE (u:User {key: r.key}) ON CREATE SET u += r, u.n = 1 ON MATCH SET u.n = u.n + 1",
            "MATCH (a {key: 'x'}) MERGE (a)-[r:F]->(:U {key: 'y'}) ON MATCH SET r.weight = 2 SET a += {b: {c: 1}}",
            "MATCH (a) RETURN a.k AS k UNION ALL MATCH (b) RETURN b.k AS k UNION ALL RETURN 1 AS k",
            "MATCH (a)-->(b) WITH *, a.x AS x RETURN DISTINCT *, x ORDER BY x UNION RETURN *",
            "CREATE (u:U {key: $k}) WITH u MATCH (u)-->(v) SET v.x = 1 RETURN u, count(v)",
            "RETURN [x IN range(1, 3) WHERE x > 1 | x * 2], [x IN l], [(a)-[:F]->(b) WHERE b.x | b.key], [(1), (a)-->(b)]",
            "MATCH (u) WHERE EXISTS { MATCH (u)-->(v), (v)-->(w) WHERE w.k = 1 } RETURN COUNT { (u)-->() } AS n",
            "MATCH (u) CALL { WITH u MATCH (u)-->(v) RETURN count(v) AS n } CALL { RETURN 1 AS one } RETURN u, n, one",
            "MATCH (u) FOREACH (x IN [1, 2] | SET u.x = x FOREACH (y IN [x] | MERGE (:U {key: toString(y)})))",
            "MATCH p = (a)-[:F*1..3]->(b), q = shortestPath((a)-[*..5]-(c)), allShortestPaths((b)<-[r:F|G*]-(c)) RETURN p",
            "MATCH `the path` = (a) RETURN length(`the path`), nodes(`the path`), relationships(`the path`)",
        ] {
            round_trip(q);
        }
    }

    #[test]
    fn errors_point_at_the_place() {
        let e = |q: &str| parse(q).unwrap_err().to_string();
        assert_eq!(
            e("MATCH (a:User {key: 'x'}->(b) RETURN b"),
            "line 1, column 25: expected ')' to close the node pattern, found '->'"
        );
        assert_eq!(
            e("MATCH (a)\nRETURN"),
            "line 2, column 7: expected an expression, found the end of the input"
        );
        assert_eq!(
            e("MATCH (a)<-[:F]->(b) RETURN b"),
            "line 1, column 10: a relationship cannot point both ways"
        );
        assert_eq!(
            e("FOO"),
            "line 1, column 1: expected MATCH, UNWIND, WITH, CREATE, MERGE, CALL, RETURN, SHOW TYPES or EXPLAIN, found 'FOO'"
        );
        let deep = format!("RETURN {}1{}", "(".repeat(1000), ")".repeat(1000));
        assert!(e(&deep).contains("nesting deeper than 64 levels"));
        let deep_not = format!("RETURN {}1", "NOT ".repeat(100_000));
        assert!(e(&deep_not).contains("nesting deeper"));
        let deep_neg = format!("RETURN {}1", "- ".repeat(100_000));
        assert!(e(&deep_neg).contains("nesting deeper"));
        let long = format!("RETURN 1{}", " + 1".repeat(100_000));
        assert!(e(&long).contains("nesting deeper"));
        let list = format!("RETURN {}1{}", "[".repeat(1000), "]".repeat(1000));
        assert!(e(&list).contains("nesting deeper"));
        assert!(parse(&format!("RETURN 1{}", " AND true".repeat(40))).is_ok());
        // What parses prints back no deeper than it was written.
        let chain = format!("RETURN 1{}", " AND true".repeat(60));
        let printed = parse(&chain).unwrap()[0].to_string();
        assert!(parse(&printed).is_ok(), "{printed}");
        let negs = format!("RETURN {}x", "- ".repeat(60));
        let printed = parse(&negs).unwrap()[0].to_string();
        assert!(parse(&printed).is_ok(), "{printed}");
    }
}
