//! SQL text split into tokens as PostgreSQL's lexer would: strings (`'...'`, `E'...'`), dollar
//! quotes, quoted identifiers, comments, words, punctuation and runs of spaces. Shared by
//! [`crate::deparse`] (PostgreSQL's own printed definitions) and [`crate::rewrite`] (plan
//! expressions), which rename columns in them.

use crate::sql::Ident;

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A bare word: keyword, identifier, number.
    Word(String),
    /// A double-quoted identifier, unescaped.
    Quoted(String),
    /// A string, dollar quote or comment, as written.
    Literal(String),
    /// Anything else, as written (operators, punctuation, spaces).
    Other(String),
}

/// The tokens of `text`; `None` when a quote or comment is not closed.
pub fn tokens(text: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let word_char = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c == '"' {
            let mut name = String::new();
            i += 1;
            loop {
                match chars.get(i)? {
                    '"' if chars.get(i + 1) == Some(&'"') => {
                        name.push('"');
                        i += 2;
                    }
                    '"' => {
                        i += 1;
                        break;
                    }
                    &ch => {
                        name.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Token::Quoted(name));
        } else if c == '\'' {
            let escapes = matches!(out.last(), Some(Token::Word(w)) if w.eq_ignore_ascii_case("e"));
            i += 1;
            loop {
                match chars.get(i)? {
                    '\\' if escapes => i += 2,
                    '\'' if chars.get(i + 1) == Some(&'\'') => i += 2,
                    '\'' => {
                        i += 1;
                        break;
                    }
                    _ => i += 1,
                }
            }
            // `E'...'`: the `E` and the string are one literal.
            let mut text: String = chars[start..i].iter().collect();
            if escapes {
                if let Some(Token::Word(e)) = out.pop() {
                    text = format!("{e}{text}");
                }
            }
            out.push(Token::Literal(text));
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            out.push(Token::Literal(chars[start..i].iter().collect()));
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let mut depth = 1;
            i += 2;
            while depth > 0 {
                match (chars.get(i)?, chars.get(i + 1)) {
                    ('/', Some('*')) => {
                        depth += 1;
                        i += 2;
                    }
                    ('*', Some('/')) => {
                        depth -= 1;
                        i += 2;
                    }
                    _ => i += 1,
                }
            }
            out.push(Token::Literal(chars[start..i].iter().collect()));
        } else if c == '$' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
            // `$1`: a parameter.
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Token::Other(chars[start..i].iter().collect()));
        } else if c == '$' {
            // `$tag$ ... $tag$` or `$$ ... $$`.
            let mut end = i + 1;
            while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
                end += 1;
            }
            if chars.get(end) != Some(&'$') {
                return None;
            }
            let tag: String = chars[i..=end].iter().collect();
            let rest: String = chars[end + 1..].iter().collect();
            let close = rest.find(&tag)?;
            i = end + 1 + rest[..close].chars().count() + tag.chars().count();
            out.push(Token::Literal(chars[start..i].iter().collect()));
        } else if word_char(c) {
            while i < chars.len() && word_char(chars[i]) {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect()));
        } else if c.is_whitespace() {
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            out.push(Token::Other(chars[start..i].iter().collect()));
        } else {
            out.push(Token::Other(c.to_string()));
            i += 1;
        }
    }
    Some(out)
}

/// Whether a token counts (not a space or a comment).
pub fn solid(t: &Token) -> bool {
    match t {
        Token::Other(s) => !s.trim().is_empty(),
        // A comment is as good as a space; a string is not.
        Token::Literal(s) => !(s.starts_with("--") || s.starts_with("/*")),
        _ => true,
    }
}

/// The first token from `from` on that counts ([`solid`]).
pub fn next_solid(tokens: &[Token], from: usize) -> Option<&Token> {
    tokens.get(from..)?.iter().find(|t| solid(t))
}

/// The last token before `before` that counts, and where it is.
pub fn prev_solid(tokens: &[Token], before: usize) -> Option<(usize, &Token)> {
    tokens[..before]
        .iter()
        .enumerate()
        .rev()
        .find(|(_, t)| solid(t))
}

/// Whether `t` is the punctuation `text`.
pub fn is(t: Option<&Token>, text: &str) -> bool {
    matches!(t, Some(Token::Other(s)) if s == text)
}

/// Whether `t` is the word `word`, in any case (a keyword).
pub fn is_word(t: Option<&Token>, word: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

/// The token as it is written (a quoted identifier quoted again).
pub fn written(t: &Token) -> String {
    match t {
        Token::Word(w) => w.clone(),
        Token::Quoted(q) => Ident::new(q.clone()).to_string(),
        Token::Literal(s) | Token::Other(s) => s.clone(),
    }
}
