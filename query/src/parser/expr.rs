//! Expressions: precedence climbing over the operators, unary minus and
//! property access, and the primaries (literals, lists, maps, calls,
//! parameters, pattern predicates, parentheses).

use super::*;

/// An optional sub-expression (a comprehension's `WHERE` or `| e`).
type MaybeExpr = Option<Box<Expr>>;

impl Parser {
    pub(super) fn expr(&mut self) -> Result<Expr> {
        self.enter()?;
        let e = self.pratt(0);
        self.depth -= 1;
        e
    }

    /// The binary operator at the current token and its precedence
    /// ([`BinOp::prec`]); `IS` stands for the postfix `IS [NOT] NULL`.
    pub(super) fn infix(&self) -> Option<(BinOp, u8)> {
        let kw = |k: &str| self.is_kw(k);
        let op = match self.peek() {
            Tok::Sym("=") => BinOp::Eq,
            Tok::Sym("<>") | Tok::Sym("!=") => BinOp::Ne,
            Tok::Sym("<") => BinOp::Lt,
            Tok::Sym("<=") => BinOp::Le,
            Tok::Sym(">") => BinOp::Gt,
            Tok::Sym(">=") => BinOp::Ge,
            Tok::Sym("+") => BinOp::Add,
            Tok::Sym("-") => BinOp::Sub,
            Tok::Sym("*") => BinOp::Mul,
            Tok::Sym("/") => BinOp::Div,
            Tok::Sym("%") => BinOp::Mod,
            _ if kw("OR") => BinOp::Or,
            _ if kw("XOR") => BinOp::Xor,
            _ if kw("AND") => BinOp::And,
            _ if kw("IN") => BinOp::In,
            _ if kw("CONTAINS") => BinOp::Contains,
            _ if kw("STARTS") => BinOp::StartsWith,
            _ if kw("ENDS") => BinOp::EndsWith,
            _ if kw("IS") => BinOp::Eq,
            _ => return None,
        };
        Some((op, op.prec()))
    }

    /// Precedence climbing: one frame per nesting level, so that deep input
    /// stays far from the stack's end.
    pub(super) fn pratt(&mut self, min: u8) -> Result<Expr> {
        let mut chained = 0;
        let mut lhs = if self.eat_kw("NOT") {
            self.enter()?;
            let e = self.pratt(4)?;
            self.depth -= 1;
            Expr::Not(Box::new(e))
        } else {
            self.unary()?
        };
        while let Some((op, prec)) = self.infix() {
            if prec < min {
                break;
            }
            if self.eat_kw("IS") {
                let not = self.eat_kw("NOT");
                self.kw("NULL")?;
                lhs = Expr::IsNull(Box::new(lhs), not);
                continue;
            }
            self.bump();
            if matches!(op, BinOp::StartsWith | BinOp::EndsWith) {
                self.kw("WITH")?;
            }
            // The chain so far becomes a left operand one level deeper.
            self.enter()?;
            chained += 1;
            let rhs = self.pratt(prec + 1)?;
            lhs = Expr::Bin(op, Box::new(lhs), Box::new(rhs));
        }
        self.depth -= chained;
        Ok(lhs)
    }

    pub(super) fn unary(&mut self) -> Result<Expr> {
        if self.eat_sym("-") {
            self.enter()?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Neg(Box::new(e)));
        }
        while self.eat_sym("+") {}
        let mut e = self.primary()?;
        // Each property access nests the tree one level deeper.
        let mut chained = 0;
        while self.is_sym(".") {
            self.enter()?;
            chained += 1;
            self.bump();
            let n = self.name("a property name after '.'")?;
            e = Expr::Prop(Box::new(e), n);
        }
        self.depth -= chained;
        Ok(e)
    }

    /// After `(` at the current token: does a node pattern (`(a:L {..})`)
    /// followed by a relationship start here, rather than a parenthesised
    /// expression? `(a) - [1]` still reads as arithmetic once parsing it as
    /// a pattern fails, see `primary`.
    pub(super) fn looks_like_pattern(&self) -> bool {
        let name = |t: &Tok| matches!(t, Tok::Ident(_) | Tok::Quoted(_));
        let mut k = 1;
        if name(self.peek_at(k)) {
            k += 1;
        }
        if matches!(self.peek_at(k), Tok::Sym(":")) {
            if !name(self.peek_at(k + 1)) {
                return false;
            }
            k += 2;
        }
        if matches!(self.peek_at(k), Tok::Sym("{")) {
            let mut depth = 0;
            loop {
                match self.peek_at(k) {
                    Tok::Eof => return false,
                    Tok::Sym("{") => depth += 1,
                    Tok::Sym("}") => depth -= 1,
                    _ => {}
                }
                k += 1;
                if depth == 0 {
                    break;
                }
            }
        }
        if !matches!(self.peek_at(k), Tok::Sym(")")) {
            return false;
        }
        matches!(
            (self.peek_at(k + 1), self.peek_at(k + 2)),
            (Tok::Sym("<-"), _)
                | (Tok::Sym("-"), Tok::Sym("["))
                | (Tok::Sym("-"), Tok::Sym("-"))
                | (Tok::Sym("-"), Tok::Sym("->"))
        )
    }

    pub(super) fn primary(&mut self) -> Result<Expr> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Int(i) => {
                self.bump();
                Ok(Expr::Lit(Lit::Int(i)))
            }
            Tok::Float(x) => {
                self.bump();
                Ok(Expr::Lit(Lit::Float(x)))
            }
            Tok::Str(s) => {
                self.bump();
                Ok(Expr::Lit(Lit::Str(s)))
            }
            Tok::Param(p) => {
                self.bump();
                Ok(Expr::Param(Name { text: p, pos }))
            }
            Tok::Sym("[") => {
                self.enter()?;
                let e = self.list_or_comprehension()?;
                self.depth -= 1;
                Ok(e)
            }
            Tok::Sym("{") => Ok(Expr::Map(self.map()?)),
            Tok::Sym("(") => {
                if self.looks_like_pattern() {
                    let (at, depth) = (self.i, self.depth);
                    self.enter()?;
                    match self.path() {
                        Ok(p) => {
                            self.depth -= 1;
                            return Ok(Expr::Pattern(p));
                        }
                        // Not a pattern after all: read it as an expression.
                        Err(_) => (self.i, self.depth) = (at, depth),
                    }
                }
                self.bump();
                let e = self.expr()?;
                self.sym(")", "')' to close the parenthesis")?;
                Ok(e)
            }
            Tok::Quoted(text) => {
                self.bump();
                Ok(Expr::Var(Name { text, pos }))
            }
            Tok::Ident(word)
                if (word.eq_ignore_ascii_case("EXISTS") || word.eq_ignore_ascii_case("COUNT"))
                    && matches!(self.peek_at(1), Tok::Sym("{")) =>
            {
                self.bump();
                self.bump();
                self.enter()?;
                let _ = self.eat_kw("MATCH");
                let patterns = self.patterns()?;
                let filter = match self.eat_kw("WHERE") {
                    true => Some(Box::new(self.expr()?)),
                    false => None,
                };
                self.sym("}", "'}' to close the subquery")?;
                self.depth -= 1;
                Ok(Expr::Subquery {
                    count: word.eq_ignore_ascii_case("COUNT"),
                    patterns,
                    filter,
                })
            }
            Tok::Ident(word) if word.eq_ignore_ascii_case("CASE") => {
                self.bump();
                self.enter()?;
                let subject = match self.is_kw("WHEN") {
                    true => None,
                    false => Some(Box::new(self.expr()?)),
                };
                let mut whens = Vec::new();
                while self.eat_kw("WHEN") {
                    let w = self.expr()?;
                    self.kw("THEN")?;
                    whens.push((w, self.expr()?));
                }
                if whens.is_empty() {
                    return Err(self.expected("WHEN"));
                }
                let otherwise = match self.eat_kw("ELSE") {
                    true => Some(Box::new(self.expr()?)),
                    false => None,
                };
                self.kw("END")?;
                self.depth -= 1;
                Ok(Expr::Case {
                    subject,
                    whens,
                    otherwise,
                })
            }
            Tok::Ident(word) => {
                let lit = match word.to_ascii_lowercase().as_str() {
                    "null" => Some(Lit::Null),
                    "true" => Some(Lit::Bool(true)),
                    "false" => Some(Lit::Bool(false)),
                    _ => None,
                };
                if let Some(l) = lit {
                    self.bump();
                    return Ok(Expr::Lit(l));
                }
                if CLAUSE_WORDS.iter().any(|k| k.eq_ignore_ascii_case(&word)) {
                    return Err(self.expected("an expression"));
                }
                // A function call: `name(` or `a.b.c(`.
                let mut k = 1;
                while matches!(self.peek_at(k), Tok::Sym(".")) && matches!(self.peek_at(k + 1), Tok::Ident(_))
                {
                    k += 2;
                }
                if matches!(self.peek_at(k), Tok::Sym("(")) {
                    let name = self.dotted()?;
                    self.bump();
                    self.enter()?;
                    let distinct = self.eat_kw("DISTINCT");
                    let star = self.is_sym("*") && matches!(self.peek_at(1), Tok::Sym(")"));
                    let args = if star {
                        self.bump();
                        self.bump();
                        Vec::new()
                    } else {
                        self.args(")")?
                    };
                    self.depth -= 1;
                    return Ok(Expr::Call {
                        name,
                        distinct,
                        star,
                        args,
                    });
                }
                self.bump();
                Ok(Expr::Var(Name { text: word, pos }))
            }
            _ => Err(self.expected("an expression")),
        }
    }

    /// At `[`: a list, a list comprehension `[x IN l WHERE p | e]` or a
    /// pattern comprehension `[(a)-->(b) WHERE p | e]`.
    fn list_or_comprehension(&mut self) -> Result<Expr> {
        self.bump();
        let is_name = matches!(self.peek(), Tok::Ident(_) | Tok::Quoted(_));
        if is_name && self.is_kw_at(1, "IN") {
            let var = self.name("a variable")?;
            self.kw("IN")?;
            let list = Box::new(self.expr()?);
            let (filter, map) = self.comprehension_tail()?;
            self.sym("]", "']' to close the list comprehension")?;
            return Ok(Expr::ListComp {
                var,
                list,
                filter,
                map,
            });
        }
        if self.is_sym("(") && self.looks_like_pattern() {
            let (at, depth) = (self.i, self.depth);
            if let Ok(pattern) = self.path() {
                if self.is_kw("WHERE") || self.is_sym("|") {
                    let (filter, map) = self.comprehension_tail()?;
                    let map = map.ok_or_else(|| self.expected("'|' and what to collect for each match"))?;
                    self.sym("]", "']' to close the pattern comprehension")?;
                    return Ok(Expr::PatternComp { pattern, filter, map });
                }
            }
            // A list whose first item is a pattern predicate or a parenthesis.
            (self.i, self.depth) = (at, depth);
        }
        Ok(Expr::List(self.args("]")?))
    }

    /// `[WHERE p] [| e]` of a comprehension.
    fn comprehension_tail(&mut self) -> Result<(MaybeExpr, MaybeExpr)> {
        let filter = match self.eat_kw("WHERE") {
            true => Some(Box::new(self.expr()?)),
            false => None,
        };
        let map = match self.eat_sym("|") {
            true => Some(Box::new(self.expr()?)),
            false => None,
        };
        Ok((filter, map))
    }
}
