//! Patterns: paths of node and relationship patterns, hop counts, maps.

use super::*;

impl Parser {
    pub(super) fn patterns(&mut self) -> Result<Vec<PathPattern>> {
        let mut out = vec![self.named_path()?];
        while self.eat_sym(",") {
            out.push(self.named_path()?);
        }
        Ok(out)
    }

    /// `[p =] path`, `[p =] shortestPath(path)`, `[p =] allShortestPaths(path)`.
    fn named_path(&mut self) -> Result<PathPattern> {
        let var = match (self.peek(), self.peek_at(1)) {
            (Tok::Ident(_) | Tok::Quoted(_), Tok::Sym("=")) => {
                let v = self.name("a path variable")?;
                self.bump();
                Some(v)
            }
            _ => None,
        };
        let shortest = match self.peek() {
            Tok::Ident(w) if w.eq_ignore_ascii_case("shortestPath") => Some(false),
            Tok::Ident(w) if w.eq_ignore_ascii_case("allShortestPaths") => Some(true),
            _ => None,
        };
        if shortest.is_some() {
            self.bump();
            self.sym("(", "'(' after shortestPath")?;
        }
        let mut p = self.path()?;
        if shortest.is_some() {
            self.sym(")", "')' to close shortestPath")?;
        }
        (p.var, p.shortest) = (var, shortest);
        Ok(p)
    }

    pub(super) fn path(&mut self) -> Result<PathPattern> {
        let start = self.node()?;
        let mut steps = Vec::new();
        while self.is_sym("-") || self.is_sym("<-") {
            let rel = self.rel()?;
            steps.push((rel, self.node()?));
        }
        Ok(PathPattern {
            var: None,
            shortest: None,
            start,
            steps,
        })
    }

    pub(super) fn node(&mut self) -> Result<NodePattern> {
        let pos = self.here();
        self.sym("(", "'(' to open a node pattern")?;
        let var = match self.peek() {
            Tok::Ident(_) | Tok::Quoted(_) => Some(self.name("a variable")?),
            _ => None,
        };
        let label = if self.eat_sym(":") {
            Some(self.name("a node type after ':'")?)
        } else {
            None
        };
        let props = if self.is_sym("{") { self.map()? } else { Vec::new() };
        if !self.eat_sym(")") {
            return Err(self.expected("')' to close the node pattern"));
        }
        Ok(NodePattern {
            var,
            label,
            props,
            pos,
        })
    }

    pub(super) fn rel(&mut self) -> Result<RelPattern> {
        let pos = self.here();
        let left = self.eat_sym("<-");
        if !left {
            self.sym("-", "'-'")?;
        }
        let (mut var, mut types, mut hops) = (None, Vec::new(), None);
        if self.eat_sym("[") {
            if matches!(self.peek(), Tok::Ident(_) | Tok::Quoted(_)) {
                var = Some(self.name("a variable")?);
            }
            if self.eat_sym(":") {
                types.push(self.name("a relation type after ':'")?);
                while self.eat_sym("|") {
                    let _ = self.eat_sym(":");
                    types.push(self.name("a relation type after '|'")?);
                }
            }
            if self.eat_sym("*") {
                let lo = self.hop_count()?;
                hops = Some(if self.eat_sym("..") {
                    (lo, self.hop_count()?)
                } else {
                    (lo, lo)
                });
            }
            if !self.eat_sym("]") {
                return Err(self.expected("']' to close the relationship pattern"));
            }
        }
        let right = if self.eat_sym("->") {
            true
        } else if self.eat_sym("-") {
            false
        } else {
            return Err(self.expected("'-' or '->' to end the relationship pattern"));
        };
        let dir = match (left, right) {
            (true, true) => {
                return Err(QueryError::syntax(
                    pos.pos,
                    "a relationship cannot point both ways",
                ));
            }
            (true, false) => Dir::In,
            (false, true) => Dir::Out,
            (false, false) => Dir::Both,
        };
        Ok(RelPattern {
            var,
            types,
            dir,
            hops,
            pos,
        })
    }

    pub(super) fn hop_count(&mut self) -> Result<Option<u32>> {
        match self.peek().clone() {
            Tok::Int(n) => {
                let pos = self.pos();
                self.bump();
                u32::try_from(n)
                    .map(Some)
                    .map_err(|_| QueryError::syntax(pos, "hop count out of range"))
            }
            _ => Ok(None),
        }
    }

    pub(super) fn map(&mut self) -> Result<Vec<(Name, Expr)>> {
        self.enter()?;
        self.sym("{", "'{'")?;
        let mut out = Vec::new();
        if !self.eat_sym("}") {
            loop {
                let k = self.name("a property name")?;
                self.sym(":", "':' after the property name")?;
                out.push((k, self.expr()?));
                if self.eat_sym("}") {
                    break;
                }
                self.sym(",", "',' or '}'")?;
            }
        }
        self.depth -= 1;
        Ok(out)
    }
}
