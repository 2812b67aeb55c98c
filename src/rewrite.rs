//! Renaming column references in expressions written in plans (`up`, `down`, `fill`), for
//! operations on one column that the plan composes into one ([`crate::ops::compose`]): the
//! expression was written with the names the column has at its place in the plan, and runs
//! over the columns as they physically are during the transition.
//!
//! The text is split into tokens by [`crate::lexer`]. A word (folded to lower case, as
//! PostgreSQL folds unquoted names) or a quoted identifier equal to a name in the map is
//! replaced, unless it is not a column reference there: a function name (followed by `(`), a
//! qualifier (followed by `.`), a type (after `::` or the `AS` of a `CAST`, or followed by a
//! string as in `date '2024-01-01'`), or a field of something other than the table (after `x.`
//! where `x` is not the table's name).

use crate::lexer::{is, is_word, next_solid, prev_solid, tokens, written, Token};
use crate::sql::Ident;

/// The name a token stands for as an identifier, if it is one.
fn name_of(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if !w.starts_with(|c: char| c.is_ascii_digit()) => Some(w.to_lowercase()),
        Token::Quoted(q) => Some(q.clone()),
        _ => None,
    }
}

/// What to put where a column is referenced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replacement {
    /// Another column.
    Column(String),
    /// An expression (put in parentheses).
    Expr(String),
}

/// `expr` with references to the columns of `map` replaced (all at once: `a → b, b → a`
/// swaps). `table` is the table's name, as a qualifier (`users.email`). `None` when the text
/// cannot be read (an unterminated quote or comment).
pub fn rename_columns(expr: &str, table: &str, map: &[(String, Replacement)]) -> Option<String> {
    let toks = tokens(expr)?;
    let mut out = String::new();
    for (i, t) in toks.iter().enumerate() {
        let found = name_of(t).and_then(|name| map.iter().find(|(from, _)| *from == name));
        let Some((_, to)) = found else {
            out.push_str(&written(t));
            continue;
        };
        let (dot, before) = prev_solid(&toks, i).unzip();
        let after = next_solid(&toks, i + 1);
        // `x.col`: a column only when `x` is the table.
        let qualifier = match dot {
            Some(at) if is(before, ".") => {
                Some(prev_solid(&toks, at).and_then(|(_, q)| name_of(q)))
            }
            _ => None,
        };
        let not_a_column = matches!(&qualifier, Some(q) if q.as_deref() != Some(table))
            || is(before, ":")
            || is_word(before, "AS")
            || is(after, "(")
            || is(after, ".")
            || matches!(after, Some(Token::Literal(s)) if s.starts_with('\'') || s.starts_with('$'));
        if not_a_column {
            out.push_str(&written(t));
            continue;
        }
        match to {
            Replacement::Column(c) => out.push_str(&Ident::new(c).to_string()),
            Replacement::Expr(e) if qualifier.is_none() => out.push_str(&format!("({e})")),
            // `users.col` replaced by an expression: the qualifier stays before it; refused.
            Replacement::Expr(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(from: &str, to: &str) -> (String, Replacement) {
        (from.to_string(), Replacement::Column(to.to_string()))
    }

    fn run(expr: &str, map: &[(String, Replacement)]) -> String {
        rename_columns(expr, "users", map).expect("readable")
    }

    #[test]
    fn renames_references_and_nothing_else() {
        let m = [col("b", "a")];
        assert_eq!(run("b * 2", &m), "\"a\" * 2");
        assert_eq!(run("B + \"b\"", &m), "\"a\" + \"a\"");
        assert_eq!(run("users.b", &m), "users.\"a\"");
        assert_eq!(run("other.b", &m), "other.b");
        assert_eq!(run("b(1)", &m), "b(1)");
        assert_eq!(run("x::b", &m), "x::b");
        assert_eq!(run("CAST(x AS b)", &m), "CAST(x AS b)");
        assert_eq!(run("b '1'", &m), "b '1'");
        assert_eq!(run("'b' || b", &m), "'b' || \"a\"");
        assert_eq!(run("E'\\'b' || b", &m), "E'\\'b' || \"a\"");
        assert_eq!(run("$$b$$ || b -- b\n", &m), "$$b$$ || \"a\" -- b\n");
        assert_eq!(run("/* b /* b */ */ b", &m), "/* b /* b */ */ \"a\"");
        assert_eq!(run("bb + b_c + $1", &m), "bb + b_c + $1");
        assert_eq!(run("\"B\"", &m), "\"B\"");
    }

    #[test]
    fn swaps_and_expressions() {
        let m = [col("b", "a"), col("b_bf_new", "b")];
        assert_eq!(run("b_bf_new::text || b", &m), "\"b\"::text || \"a\"");
        let e = [(
            "b".to_string(),
            Replacement::Expr("COALESCE(\"b\", 0)".into()),
        )];
        assert_eq!(run("b + 1", &e), "(COALESCE(\"b\", 0)) + 1");
        assert_eq!(rename_columns("users.b", "users", &e), None);
    }

    #[test]
    fn unreadable_text_is_refused() {
        let m = [col("b", "a")];
        assert_eq!(rename_columns("'b", "users", &m), None);
        assert_eq!(rename_columns("/* b", "users", &m), None);
        assert_eq!(rename_columns("$x$ b", "users", &m), None);
    }
}
