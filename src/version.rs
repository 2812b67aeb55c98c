//! Release versions and their order.
//!
//! The grammar, the same in plans (`[release]`) and on the command line (`--release`):
//!
//! ```text
//! release     = ["v"] number *("." number) ["-" pre-release]
//! number      = 1*DIGIT
//! pre-release = ident *("." ident)          ; ident = 1*(ALPHA / DIGIT / "-")
//! ```
//!
//! Numbers compare as numbers (`1.10.0` comes after `1.9.2`) and a missing number counts as 0
//! (`2` equals `2.0.0`); a pre-release comes before its release (`1.4.0-rc1` < `1.4.0`), and
//! pre-releases compare piece by piece, runs of digits as numbers (`rc2` < `rc10`). Anything
//! else (`main`, `two`, `latest`, `1.x`, build metadata) is refused: a word cannot be placed
//! among versions, and placing it anywhere would run or skip a contract by accident.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// An application release as written in a plan or on the command line.
#[derive(Debug, Clone, Eq)]
pub struct Release {
    text: String,
    numbers: Vec<u64>,
    /// Pre-release pieces split into runs of digits and of other characters; empty for a
    /// release.
    pre: Vec<Vec<Piece>>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Piece {
    // Numbers sort before words, as in semantic versioning.
    Num(u64),
    Text(String),
}

/// A release string outside the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a release: write numbers separated by dots, optionally with a pre-release after a dash, like \"1.4.0\" or \"2.0.0-rc1\"")]
pub struct ReleaseParseError(pub String);

impl FromStr for Release {
    type Err = ReleaseParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ReleaseParseError(s.to_string());
        let text = s.trim();
        let body = text.strip_prefix('v').unwrap_or(text);
        let (core, pre) = match body.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (body, None),
        };
        let numbers = core
            .split('.')
            .map(|n| {
                if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                    n.parse::<u64>().map_err(|_| bad())
                } else {
                    Err(bad())
                }
            })
            .collect::<Result<Vec<u64>, _>>()?;
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => pre
                .split('.')
                .map(|ident| {
                    if ident.is_empty()
                        || !ident.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    {
                        Err(bad())
                    } else {
                        Ok(pieces(ident))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(Release {
            text: text.to_string(),
            numbers,
            pre,
        })
    }
}

/// `rc10` → `[Text("rc"), Num(10)]`.
fn pieces(ident: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut run = String::new();
    let mut digits = false;
    for c in ident.chars() {
        if !run.is_empty() && c.is_ascii_digit() != digits {
            out.push(piece(&run, digits));
            run.clear();
        }
        digits = c.is_ascii_digit();
        run.push(c);
    }
    if !run.is_empty() {
        out.push(piece(&run, digits));
    }
    out
}

fn piece(run: &str, digits: bool) -> Piece {
    match run.parse::<u64>() {
        Ok(n) if digits => Piece::Num(n),
        _ => Piece::Text(run.to_string()),
    }
}

impl Ord for Release {
    fn cmp(&self, other: &Self) -> Ordering {
        for i in 0..self.numbers.len().max(other.numbers.len()) {
            let a = self.numbers.get(i).copied().unwrap_or(0);
            let b = other.numbers.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => {}
                ord => return ord,
            }
        }
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            // Piece by piece; a shorter pre-release that is a prefix comes first.
            (false, false) => self.pre.cmp(&other.pre),
        }
    }
}

impl PartialOrd for Release {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Release {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Release {
        s.parse().expect("valid release")
    }

    #[test]
    fn natural_order() {
        assert!(r("1.10.0") > r("1.9.2"));
        assert!(r("1.5.0") > r("1.4.0"));
        assert_eq!(r("1.4"), r("1.4.0"));
        assert_eq!(r("v2"), r("2.0.0"));
        assert!(r("1.4.0-rc1") < r("1.4.0"));
        assert!(r("1.4.0-rc2") > r("1.4.0-rc1"));
        assert!(r("1.4.0-rc10") > r("1.4.0-rc2"));
        assert!(r("1.4.0-alpha") < r("1.4.0-beta"));
        assert!(r("1.4.0-rc.1") < r("1.4.0-rc.1.1"));
        assert!(r("1.4.0-rc1") > r("1.3.9"));
        assert!(r("1.4.0.1") > r("1.4.0"));
        assert!(r("2.1.0") > r("2.0.99"));
    }

    #[test]
    fn refuses_what_is_not_a_version() {
        for bad in [
            "",
            "main",
            "two",
            "latest",
            "v",
            "1..2",
            "1. 2",
            "1.x",
            "1.4.0-",
            "1.4.0-rc..1",
            "1.4.0+build",
            "-1",
            ".1",
            "1.",
            "1.4.0-rc_1",
            "HEAD",
            "1.4 .0",
        ] {
            assert!(bad.parse::<Release>().is_err(), "{bad:?} was accepted");
        }
    }
}
