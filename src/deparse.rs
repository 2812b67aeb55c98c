//! Moving a definition PostgreSQL printed (`pg_get_indexdef`, `pg_get_constraintdef`) from one
//! column to another, so that what the old column carries can be built on its replacement.
//!
//! The text is PostgreSQL's own deparse, which is regular: keywords in upper case, identifiers
//! that need no quotes in lower case, every other identifier double-quoted, strings in single
//! quotes. It is split into tokens by [`crate::lexer`], and a
//! word or quoted identifier equal to the column's name is replaced, unless it is a function
//! name (followed by `(`), a type or a field (after `::` or `.`), or a qualifier (followed by
//! `.`). Only the part of the text that names the table's columns is rewritten: see
//! [`Scope`].

use crate::lexer::{is, is_word, next_solid, prev_solid, tokens, written, Token};
use crate::sql::Ident;

/// Which part of a definition names columns of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// An index: after `USING <method>` (the index's and table's names come before).
    Index,
    /// A check constraint: all of it.
    Check,
    /// A foreign key of the table: its own column list, before `REFERENCES`.
    ForeignKeyLocal,
    /// A foreign key of another table referencing this one: the referenced column list.
    ForeignKeyReferenced,
}

/// Whether `name` is written without quotes by PostgreSQL (lower case letters, digits and
/// underscores, not starting with a digit). Keywords that need quotes are quoted in the
/// deparse, so a bare word equal to such a name is that name or an upper-case keyword.
fn bare(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The range of tokens to rewrite for `scope`.
fn range(tokens: &[Token], scope: Scope) -> Option<(usize, usize)> {
    let position = |word: &str| tokens.iter().position(|t| is_word(Some(t), word));
    match scope {
        Scope::Check => Some((0, tokens.len())),
        Scope::Index => Some((position("USING")? + 1, tokens.len())),
        Scope::ForeignKeyLocal => Some((0, position("REFERENCES")?)),
        Scope::ForeignKeyReferenced => {
            let start = position("REFERENCES")?;
            let open = start + tokens[start..].iter().position(|t| is(Some(t), "("))?;
            let close = open + tokens[open..].iter().position(|t| is(Some(t), ")"))?;
            Some((open, close))
        }
    }
}

/// `definition` with references to column `from` replaced by `to` (quoted) within `scope`;
/// `None` when the text cannot be read (an unterminated quote, a dollar quote) or names no such
/// column there.
pub fn move_column(definition: &str, scope: Scope, from: &str, to: &str) -> Option<String> {
    let mut toks = tokens(definition)?;
    let (start, end) = range(&toks, scope)?;
    let mut replaced = false;
    for i in start..end {
        let matches = match &toks[i] {
            Token::Word(w) => bare(from) && w == from,
            Token::Quoted(q) => q == from,
            Token::Literal(_) | Token::Other(_) => false,
        };
        if !matches {
            continue;
        }
        let before = prev_solid(&toks, i).map(|(_, t)| t);
        let after = next_solid(&toks, i + 1);
        let qualified_or_cast = is(before, ".") || is(before, ":");
        if qualified_or_cast || is(after, "(") || is(after, ".") {
            continue;
        }
        toks[i] = Token::Other(Ident::new(to).to_string());
        replaced = true;
    }
    if !replaced {
        return None;
    }
    Some(toks.iter().map(written).collect())
}

/// The part of an index definition after `USING`: `btree (score DESC) WHERE (...)`.
pub fn index_tail(definition: &str) -> Option<String> {
    let toks = tokens(definition)?;
    let at = toks.iter().position(|t| is_word(Some(t), "USING"))?;
    Some(
        toks[at + 1..]
            .iter()
            .map(written)
            .collect::<String>()
            .trim()
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_move_to_the_new_column() {
        let def = "CREATE UNIQUE INDEX score ON public.score USING btree (score DESC NULLS LAST, lower((score)::text)) INCLUDE (age) WHERE (score > 0)";
        let moved = move_column(def, Scope::Index, "score", "score_bf_new").expect("moved");
        assert_eq!(
            moved,
            "CREATE UNIQUE INDEX score ON public.score USING btree (\"score_bf_new\" DESC NULLS LAST, lower((\"score_bf_new\")::text)) INCLUDE (age) WHERE (\"score_bf_new\" > 0)"
        );
        assert_eq!(
            index_tail(&moved).expect("moved"),
            "btree (\"score_bf_new\" DESC NULLS LAST, lower((\"score_bf_new\")::text)) INCLUDE (age) WHERE (\"score_bf_new\" > 0)"
        );
    }

    #[test]
    fn functions_types_fields_strings_and_keywords_stay() {
        let def = "CHECK (((score(score) > 0) AND ((t.score)::score <> 'score''s') AND (x.score IS NOT NULL)))";
        assert_eq!(
            move_column(def, Scope::Check, "score", "n").expect("moved"),
            "CHECK (((score(\"n\") > 0) AND ((t.score)::score <> 'score''s') AND (x.score IS NOT NULL)))"
        );
        // An unreserved keyword as a column name: the upper-case keyword stays.
        let def = "CREATE INDEX i ON t USING btree (nulls DESC NULLS LAST)";
        assert_eq!(
            move_column(def, Scope::Index, "nulls", "n").expect("moved"),
            "CREATE INDEX i ON t USING btree (\"n\" DESC NULLS LAST)"
        );
    }

    #[test]
    fn quoted_names_and_foreign_keys() {
        let def = "FOREIGN KEY (\"User Id\") REFERENCES \"User Id\"(\"User Id\") ON DELETE CASCADE";
        assert_eq!(
            move_column(def, Scope::ForeignKeyLocal, "User Id", "new").expect("moved"),
            "FOREIGN KEY (\"new\") REFERENCES \"User Id\"(\"User Id\") ON DELETE CASCADE"
        );
        assert_eq!(
            move_column(def, Scope::ForeignKeyReferenced, "User Id", "new").expect("moved"),
            "FOREIGN KEY (\"User Id\") REFERENCES \"User Id\"(\"new\") ON DELETE CASCADE"
        );
        assert_eq!(move_column(def, Scope::Check, "absent", "new"), None);
        assert_eq!(move_column("CHECK ('open", Scope::Check, "a", "b"), None);
    }
}
