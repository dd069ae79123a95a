//! Tokens of the query language, each with the place it starts.

use crate::error::{Pos, QueryError};

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A name: `alice`, `Follows`, or a back-quoted `` `/film/genre` ``.
    /// Keywords are names too; the parser compares them case-insensitively.
    Ident(String),
    /// A back-quoted name, never a keyword.
    Quoted(String),
    /// `$name`.
    Param(String),
    /// Integer literal.
    Int(i64),
    /// Float literal.
    Float(f64),
    /// String literal, quotes removed and escapes resolved.
    Str(String),
    /// Punctuation and operators: `( ) [ ] { } : , . ; * + / % = <> != < <= > >= - -> <- .. |`.
    Sym(&'static str),
    /// End of input.
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Quoted(s) => format!("`{s}`"),
            Tok::Param(s) => format!("'${s}'"),
            Tok::Int(i) => format!("'{i}'"),
            Tok::Float(f) => format!("'{f}'"),
            Tok::Str(_) => "a string".into(),
            Tok::Sym(s) => format!("'{s}'"),
            Tok::Eof => "the end of the input".into(),
        }
    }
}

const SYMS: [&str; 27] = [
    "->", "<-", "<>", "!=", "<=", ">=", "..", "(", ")", "[", "]", "{", "}", ":", ",", ".", ";", "*", "+",
    "/", "%", "=", "<", ">", "-", "|", "^",
];

/// Splits `src` into tokens; the last one is `Eof`.
pub fn lex(src: &str) -> Result<Vec<(Tok, Pos)>, QueryError> {
    let mut out = Vec::new();
    let b = src.as_bytes();
    let mut i = 0;
    // Places advance incrementally, so lexing stays linear on long lines.
    let mut at = (0usize, Pos { line: 1, column: 1 });
    let mut pos = |i: usize| {
        for c in src[at.0..i].chars() {
            if c == '\n' {
                at.1 = Pos {
                    line: at.1.line + 1,
                    column: 1,
                };
            } else {
                at.1.column += 1;
            }
        }
        at.0 = i;
        at.1
    };
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if src[i..].starts_with("//") {
            i = src[i..].find('\n').map_or(b.len(), |n| i + n);
            continue;
        }
        let start = i;
        let tok = if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80) {
                i += 1;
            }
            Tok::Ident(src[start..i].to_string())
        } else if c == b'$' {
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            if i == start + 1 {
                return Err(QueryError::syntax(
                    pos(start),
                    "expected a parameter name after '$'",
                ));
            }
            Tok::Param(src[start + 1..i].to_string())
        } else if c.is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            // `1..3` is a range, not the float `1.`.
            let mut float = false;
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                float = true;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                let mut j = i + 1;
                if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                    j += 1;
                }
                if j < b.len() && b[j].is_ascii_digit() {
                    float = true;
                    i = j;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text = &src[start..i];
            if float {
                match text.parse::<f64>() {
                    Ok(x) if x.is_finite() => Tok::Float(x),
                    _ => {
                        return Err(QueryError::syntax(
                            pos(start),
                            format!("number {text} is out of range"),
                        ))
                    }
                }
            } else {
                Tok::Int(text.parse().map_err(|_| {
                    QueryError::syntax(pos(start), format!("integer {text} does not fit in 64 bits"))
                })?)
            }
        } else if c == b'\'' || c == b'"' {
            let (s, end) = string(src, i)?;
            i = end;
            Tok::Str(s)
        } else if c == b'`' {
            let end = src[i + 1..]
                .find('`')
                .ok_or_else(|| QueryError::syntax(pos(start), "unterminated back-quoted name"))?;
            i = i + 1 + end + 1;
            Tok::Quoted(src[start + 1..i - 1].to_string())
        } else if let Some(s) = SYMS.iter().find(|s| src[i..].starts_with(**s)) {
            i += s.len();
            Tok::Sym(s)
        } else {
            let ch = src[i..].chars().next().unwrap_or('?');
            return Err(QueryError::syntax(
                pos(start),
                format!("unexpected character '{ch}'"),
            ));
        };
        out.push((tok, pos(start)));
    }
    out.push((Tok::Eof, pos(b.len())));
    Ok(out)
}

/// Reads the string literal opening at byte `i`; returns it and the byte after it.
fn string(src: &str, i: usize) -> Result<(String, usize), QueryError> {
    let quote = src.as_bytes()[i] as char;
    let mut s = String::new();
    let mut chars = src[i + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((s, i + 1 + k + 1)),
            '\\' => {
                let (k2, e) = chars
                    .next()
                    .ok_or_else(|| QueryError::syntax(Pos::at(src, i), "unterminated string"))?;
                s.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    '\\' | '\'' | '"' => e,
                    other => {
                        return Err(QueryError::syntax(
                            Pos::at(src, i + 1 + k2),
                            format!("unknown escape '\\{other}'"),
                        ))
                    }
                });
            }
            c => s.push(c),
        }
    }
    Err(QueryError::syntax(Pos::at(src, i), "unterminated string"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_places() {
        let t = lex("MATCH (a:`/m/x` {k: 'it\\'s'})-[*1..3]->(b) // c\nRETURN $p, 1.5e3").unwrap();
        let toks: Vec<_> = t.iter().map(|(t, _)| t.clone()).collect();
        assert_eq!(toks[0], Tok::Ident("MATCH".into()));
        assert_eq!(toks[4], Tok::Quoted("/m/x".into()));
        assert_eq!(toks[8], Tok::Str("it's".into()));
        assert!(toks.contains(&Tok::Sym("..")) && toks.contains(&Tok::Int(3)));
        assert!(toks.contains(&Tok::Param("p".into())) && toks.contains(&Tok::Float(1500.0)));
        let ret = t.iter().find(|(t, _)| *t == Tok::Ident("RETURN".into())).unwrap();
        assert_eq!((ret.1.line, ret.1.column), (2, 1));
        let e = lex("RETURN 'abc").unwrap_err().to_string();
        assert_eq!(e, "line 1, column 8: unterminated string");
        assert!(lex("RETURN 99999999999999999999").is_err());
        assert_eq!(
            lex("RETURN 1e999").unwrap_err().to_string(),
            "line 1, column 8: number 1e999 is out of range"
        );
        assert!(lex("RETURN #")
            .unwrap_err()
            .to_string()
            .contains("unexpected character '#'"));
    }
}
