//! How text becomes SQL: identifier quoting (the one quoting type, [`Ident`] and
//! [`QualifiedName`]), the rare literal that DDL cannot take as a bind parameter, comments that
//! cannot end early, dollar quotes that cannot be closed by their body, and the names of every
//! object `backfill` creates. Statements themselves are built by their owners, always through
//! these: each operation kind its DDL (`ops/`), the planner the trigger and the backfill
//! (`planner/`), the state store its tables (`state/`), the engine its chunk
//! (`engine::keyset`). None of them rewrites generated SQL as text.
//!
//! Values the user or the database supplies at run time are always bind parameters; what goes
//! through [`literal`] is limited to DDL (a trigger's `WHEN` clause, a default), where PostgreSQL
//! accepts no parameters.

use std::fmt;

/// PostgreSQL truncates identifiers longer than this many bytes (`NAMEDATALEN - 1`).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Prefix of every object `backfill` creates in the user's schema, so they are easy to find.
pub const OBJECT_PREFIX: &str = "bf";

/// An SQL identifier, always rendered double-quoted with embedded quotes doubled.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Ident(pub String);

impl Ident {
    /// Wraps a name as it is stored in the catalog (case preserved, no folding).
    pub fn new(name: impl Into<String>) -> Self {
        Ident(name.into())
    }

    /// The raw name, unquoted.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        f.write_str(&self.0.replace('"', "\"\""))?;
        f.write_str("\"")
    }
}

/// A schema-qualified relation name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct QualifiedName {
    /// The schema (`public` when the plan names none).
    pub schema: Ident,
    /// The relation's own name.
    pub name: Ident,
}

impl QualifiedName {
    /// Builds a qualified name from its two parts.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        QualifiedName {
            schema: Ident::new(schema),
            name: Ident::new(name),
        }
    }

    /// Parses `schema.table` or `table` as written in a plan (no quoting inside the plan: the
    /// first dot separates schema and table, and names are taken as written, case preserved).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (schema, name) = match text.split_once('.') {
            Some((s, n)) => (s, n),
            None => ("public", text),
        };
        if schema.is_empty() || name.is_empty() || name.contains('.') {
            return None;
        }
        Some(QualifiedName::new(schema, name))
    }

    /// The same name in another schema.
    pub fn in_schema(&self, schema: impl Into<String>) -> QualifiedName {
        QualifiedName {
            schema: Ident::new(schema),
            name: self.name.clone(),
        }
    }

    /// Another object in the same schema.
    pub fn sibling(&self, name: impl Into<String>) -> QualifiedName {
        QualifiedName {
            schema: self.schema.clone(),
            name: Ident::new(name),
        }
    }
}

impl QualifiedName {
    /// `schema.name` without quotes, for people and JSON (not for SQL).
    pub fn plain(&self) -> String {
        format!("{}.{}", self.schema.as_str(), self.name.as_str())
    }

    /// Reads back the quoted form [`fmt::Display`] writes (`"public"."users"`).
    pub fn from_quoted(text: &str) -> Option<QualifiedName> {
        let mut parts = Vec::new();
        let mut chars = text.chars().peekable();
        while chars.peek().is_some() {
            if chars.next()? != '"' {
                return None;
            }
            let mut name = String::new();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        name.push('"');
                    }
                    '"' => break,
                    c => name.push(c),
                }
            }
            parts.push(name);
            match chars.next() {
                Some('.') => {}
                None => break,
                Some(_) => return None,
            }
        }
        match parts.as_slice() {
            [schema, name] => Some(QualifiedName::new(schema.clone(), name.clone())),
            _ => None,
        }
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// A string literal for DDL, where bind parameters are not accepted. Single quotes are doubled;
/// a value with a backslash is written in the `E''` form with the backslash doubled, which
/// reads the same whatever `standard_conforming_strings` says (a plain `'...'` literal ending
/// in a backslash would end early with it off).
pub fn literal(value: &str) -> String {
    if value.contains('\\') {
        format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

/// A one-line SQL comment (`-- text`) that cannot end early: see [`one_line`].
pub fn comment(text: &str) -> String {
    format!("-- {}", one_line(text))
}

/// `text` on one line, for comments (SQL `--`, psql scripts, Python `#`): newlines, carriage
/// returns and every other control character are written as escapes (`\n`, `\u{1b}`), so plan
/// text in a comment can never start a new line of code.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push(' '),
            // U+2028/U+2029 end a line for some editors and languages too.
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&c.escape_unicode().to_string())
            }
            c => out.push(c),
        }
    }
    out
}

/// `body` in dollar quotes whose tag provably does not occur in it: `$<base>$`, else
/// `$<base>_1$`, `$<base>_2$`, ... The first occurrence of the closing tag in `body + tag` is
/// the closing tag itself, so no text of `body` (plan text included) can end the quote early.
pub fn dollar_quote(base: &str, body: &str) -> String {
    let mut n = 0u32;
    loop {
        let tag = if n == 0 {
            format!("${base}$")
        } else {
            format!("${base}_{n}$")
        };
        let closed = format!("{body}{tag}");
        if closed.find(&tag) == Some(body.len()) {
            return format!("{tag}{body}{tag}");
        }
        n += 1;
    }
}

/// The name of an object `backfill` creates: `bf_<parts joined by _>`, cut to PostgreSQL's
/// 63-byte limit. A cut name ends in a hash of the full name, so two long names that share a
/// prefix still differ, and the same input always gives the same name (plans are re-planned on
/// every run and must find the objects an earlier run created).
pub fn object_name(parts: &[&str]) -> String {
    let mut full = String::from(OBJECT_PREFIX);
    for part in parts {
        full.push('_');
        full.push_str(part);
    }
    fit_identifier(&full)
}

/// Cuts `name` to 63 bytes on a character boundary, ending with a stable hash when cut.
pub fn fit_identifier(name: &str) -> String {
    if name.len() <= MAX_IDENTIFIER_BYTES {
        return name.to_string();
    }
    let hash = format!("{:08x}", fnv1a(name.as_bytes()) as u32);
    let keep = MAX_IDENTIFIER_BYTES - hash.len() - 1;
    let mut cut = keep;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{}", &name[..cut], hash)
}

/// 64-bit FNV-1a: small, stable across Rust versions (unlike `DefaultHasher`), good enough to
/// tell names apart.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Joins quoted identifiers with `, `.
pub fn ident_list<'a>(idents: impl IntoIterator<Item = &'a Ident>) -> String {
    idents
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `prefix."a", prefix."b"` for qualified column lists.
pub fn qualified_list<'a>(prefix: &str, idents: impl IntoIterator<Item = &'a Ident>) -> String {
    idents
        .into_iter()
        .map(|i| format!("{prefix}.{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many statements `text` holds: `;` outside string literals (`'...'`, `E'...'`), quoted
/// identifiers, dollar quotes and comments (`--`, nested `/* */`) separates them; empty ones
/// do not count. `None` when a quote or comment is not closed.
pub fn statement_count(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let (mut i, mut count, mut content) = (0usize, 0usize, false);
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' => {
                let escapes = i > 0 && matches!(b[i - 1], b'e' | b'E') && {
                    // `E'` only when the E starts a word.
                    i < 2 || !(b[i - 2].is_ascii_alphanumeric() || b[i - 2] == b'_')
                };
                i += 1;
                loop {
                    match b.get(i)? {
                        b'\\' if escapes => i += 2,
                        b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
                        b'\'' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
                content = true;
            }
            b'"' => {
                i += 1;
                loop {
                    match b.get(i)? {
                        b'"' if b.get(i + 1) == Some(&b'"') => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
                content = true;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 1;
                i += 2;
                while depth > 0 {
                    match (b.get(i)?, b.get(i + 1)) {
                        (b'/', Some(b'*')) => {
                            depth += 1;
                            i += 2
                        }
                        (b'*', Some(b'/')) => {
                            depth -= 1;
                            i += 2
                        }
                        _ => i += 1,
                    }
                }
            }
            b'$' if i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') => {
                // `$tag$` (tag: letters, digits, `_`, not starting with a digit) or `$$`; `$1`
                // is a parameter.
                let tag_end = b[i + 1..]
                    .iter()
                    .position(|&x| !(x.is_ascii_alphanumeric() || x == b'_'))
                    .map(|p| i + 1 + p);
                match tag_end {
                    Some(end)
                        if b[end] == b'$' && !b.get(i + 1).is_some_and(u8::is_ascii_digit) =>
                    {
                        let tag = &text[i..=end];
                        let rest = &text[end + 1..];
                        let close = rest.find(tag)?;
                        i = end + 1 + close + tag.len();
                    }
                    _ => i += 1,
                }
                content = true;
            }
            b';' => {
                if content {
                    count += 1;
                }
                content = false;
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                content = true;
                i += 1;
            }
        }
    }
    if content {
        count += 1;
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    #[test]
    fn statements_are_counted_outside_quotes_and_comments() {
        use super::statement_count as n;
        assert_eq!(n("CREATE STATISTICS s ON a, b FROM t"), Some(1));
        assert_eq!(n("SELECT 1;"), Some(1));
        assert_eq!(n("SELECT 1; SELECT 2"), Some(2));
        assert_eq!(n("SELECT ';' -- ; not this\n"), Some(1));
        assert_eq!(n("SELECT 'it''s;'"), Some(1));
        assert_eq!(n("SELECT E'\\';'; SELECT 2"), Some(2));
        assert_eq!(n("SELECT \"a;b\" FROM t"), Some(1));
        assert_eq!(n("DO $x$ BEGIN PERFORM 1; END $x$"), Some(1));
        assert_eq!(n("DO $$ BEGIN; END $$; DROP TABLE t"), Some(2));
        assert_eq!(n("/* ; /* ; */ ; */ SELECT 1"), Some(1));
        assert_eq!(n("SELECT $1; SELECT 2"), Some(2));
        assert_eq!(n(" ; ;"), Some(0));
        assert_eq!(n("SELECT 'open"), None);
        assert_eq!(n("DO $$ open"), None);
        assert_eq!(n("/* open"), None);
    }

    use super::*;

    #[test]
    fn quotes_identifiers_and_doubles_embedded_quotes() {
        assert_eq!(Ident::new("users").to_string(), "\"users\"");
        assert_eq!(Ident::new("we\"ird").to_string(), "\"we\"\"ird\"");
        assert_eq!(
            QualifiedName::parse("app.Users").map(|q| q.to_string()),
            Some("\"app\".\"Users\"".to_string())
        );
        assert_eq!(
            QualifiedName::parse("users").map(|q| q.to_string()),
            Some("\"public\".\"users\"".to_string())
        );
        assert_eq!(QualifiedName::parse("a.b.c"), None);
        assert_eq!(QualifiedName::parse(".b"), None);
    }

    #[test]
    fn quoted_names_read_back() {
        let q = QualifiedName::new("app", "we\"ird.name");
        assert_eq!(QualifiedName::from_quoted(&q.to_string()), Some(q.clone()));
        assert_eq!(q.plain(), "app.we\"ird.name");
        assert_eq!(QualifiedName::from_quoted("public.users"), None);
    }

    #[test]
    fn literals_double_single_quotes() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b"), "E'a\\\\b'");
    }

    #[test]
    fn comments_stay_on_one_line() {
        let c = comment("c\nDROP TABLE victim;\r\n--\u{1b}x");
        assert_eq!(c.lines().count(), 1, "{c}");
        assert_eq!(c, "-- c\\nDROP TABLE victim;\\r\\n--\\u{1b}x");
    }

    #[test]
    fn dollar_quote_tags_do_not_occur_in_the_body() {
        assert_eq!(dollar_quote("bf", "x"), "$bf$x$bf$");
        let body = "a $bf$ b $bf_1$ c";
        let q = dollar_quote("bf", body);
        assert_eq!(q, "$bf_2$a $bf$ b $bf_1$ c$bf_2$");
        // A body that ends with a prefix of the tag must not close early either.
        let q = dollar_quote("bf", "x $bf");
        assert!(q.starts_with("$bf_1$"), "{q}");
    }

    #[test]
    fn object_names_respect_the_identifier_limit() {
        assert_eq!(object_name(&["plan", "sync"]), "bf_plan_sync");
        let long = "x".repeat(100);
        let a = object_name(&[&long, "sync"]);
        let b = object_name(&[&long, "sink"]);
        assert_eq!(a.len(), MAX_IDENTIFIER_BYTES);
        assert_ne!(a, b);
        assert_eq!(a, object_name(&[&long, "sync"]));
        let multibyte = "é".repeat(40);
        assert!(object_name(&[&multibyte]).len() <= MAX_IDENTIFIER_BYTES);
    }
}
