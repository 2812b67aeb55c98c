//! Release versions in natural order: `1.10.0` comes after `1.9.2`, `2` equals `2.0.0`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// An application release as written in a plan or on the command line.
#[derive(Debug, Clone, Eq)]
pub struct Release {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Num(u64),
    Text(String),
}

/// A release string that is empty or has an empty component (`1..2`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a release: write numbers separated by dots, like \"1.4.0\"")]
pub struct ReleaseParseError(pub String);

impl FromStr for Release {
    type Err = ReleaseParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let body = text.strip_prefix('v').unwrap_or(text);
        if body.is_empty() {
            return Err(ReleaseParseError(s.to_string()));
        }
        let mut parts = Vec::new();
        for piece in body.split(['.', '-', '+']) {
            if piece.is_empty() || piece.chars().any(char::is_whitespace) {
                return Err(ReleaseParseError(s.to_string()));
            }
            parts.push(match piece.parse::<u64>() {
                Ok(n) => Part::Num(n),
                Err(_) => Part::Text(piece.to_string()),
            });
        }
        Ok(Release {
            text: text.to_string(),
            parts,
        })
    }
}

impl Ord for Release {
    fn cmp(&self, other: &Self) -> Ordering {
        // A missing number counts as 0 (1.4 == 1.4.0); a word after the numbers marks a
        // pre-release, which comes before the release itself (1.4.0-rc1 < 1.4.0).
        const ZERO: Part = Part::Num(0);
        for i in 0..self.parts.len().max(other.parts.len()) {
            let ord = match (self.parts.get(i), other.parts.get(i)) {
                (Some(a), Some(b)) => a.cmp(b),
                (Some(Part::Text(_)), None) => Ordering::Less,
                (None, Some(Part::Text(_))) => Ordering::Greater,
                (Some(a), None) => a.cmp(&ZERO),
                (None, Some(b)) => ZERO.cmp(b),
                (None, None) => Ordering::Equal,
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
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
        assert!(r("1.4.0.1") > r("1.4.0"));
    }

    #[test]
    fn rejects_garbage() {
        assert!("".parse::<Release>().is_err());
        assert!("1..2".parse::<Release>().is_err());
        assert!("1. 2".parse::<Release>().is_err());
    }
}
