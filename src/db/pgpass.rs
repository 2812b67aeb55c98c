//! The password file, as libpq reads it: `PGPASSFILE` or `~/.pgpass`, lines of
//! `hostname:port:database:username:password`, `*` matching anything, `\:` and `\\` escaped,
//! ignored (with a warning) when others than its owner can read it.

use std::path::PathBuf;

fn fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    if let Some(last) = out.last_mut() {
                        last.push(n);
                    }
                }
            }
            ':' => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

/// The password for a connection in `text` (the file's content), if a line matches.
pub fn find(text: &str, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(fields)
        .filter(|f| f.len() >= 5)
        .find(|f| {
            let ok = |pattern: &str, value: &str| pattern == "*" || pattern == value;
            ok(&f[0], host) && ok(&f[1], &port) && ok(&f[2], db) && ok(&f[3], user)
        })
        .map(|f| f[4..].join(":"))
}

/// Looks the password up in the user's password file.
pub fn lookup(host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let path = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    let meta = std::fs::metadata(&path).ok()?;
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "warning: password file {} has group or world access; it is ignored (chmod 600 it)",
                path.display()
            );
            return None;
        }
    }
    let text = std::fs::read_to_string(&path).ok()?;
    find(&text, host, port, db, user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_like_libpq() {
        let text = "# comment\ndb.example:5432:app:alice:s3cr\\:et\n*:*:*:bob:b0b\nlocalhost:5433:*:*:local\n";
        assert_eq!(
            find(text, "db.example", 5432, "app", "alice").as_deref(),
            Some("s3cr:et")
        );
        assert_eq!(find(text, "db.example", 5432, "other", "alice"), None);
        assert_eq!(find(text, "x", 1, "y", "bob").as_deref(), Some("b0b"));
        assert_eq!(
            find(text, "localhost", 5433, "z", "carol").as_deref(),
            Some("local")
        );
    }
}
