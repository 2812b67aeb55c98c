//! Diagnostics: where in a plan something is ([`FieldPath`]) and what is wrong with it
//! ([`Problem`], [`Problems`]). Below both the plan format and the operation catalog, so
//! neither needs the other to report a problem.

use std::fmt;

/// One segment of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// The path of a field in a plan file: `operations[0].into[1].up`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    /// The whole file.
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// A top-level key.
    pub fn of(key: &str) -> Self {
        FieldPath::root().key(key)
    }

    /// This path followed by `key`.
    pub fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_string()));
        p
    }

    /// This path followed by `[index]`.
    pub fn index(&self, index: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(index));
        p
    }

    /// This path followed by every segment of `other`.
    pub fn join(&self, other: &FieldPath) -> Self {
        let mut p = self.clone();
        p.0.extend(other.0.iter().cloned());
        p
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A problem an operation found, relative to the operation's own path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field, under the operation.
    pub field: FieldPath,
    /// What is wrong.
    pub message: String,
}

/// Collects problems found by checks.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Records a problem in `field`.
    pub fn add(&mut self, field: FieldPath, message: impl Into<String>) {
        self.0.push(Problem {
            field,
            message: message.into(),
        });
    }

    /// Records a problem when `value` is empty or blank.
    pub fn require_text(&mut self, field: FieldPath, value: &str) {
        if value.trim().is_empty() {
            self.add(field, "must not be empty");
        }
    }
}
