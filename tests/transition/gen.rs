//! Randomness and the generated application: a seeded RNG (splitmix64, as the hostile names
//! fuzz test), value pools full of NULLs, empty strings, spaces and quotes, and statements that
//! one release of the application would send, written against that release's schema.

use super::model::{Filter, Model, Op, SetVal, Val};

/// splitmix64: small, deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn pick_str(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len())]
    }
}

/// Texts that trip up expressions: empty, spaces around and inside, quotes, backslashes,
/// SQL-looking text, non-ASCII.
const TEXTS: &[&str] = &[
    "",
    " ",
    "  ",
    "x",
    "abc",
    "O'Brien",
    "it''s",
    "a b",
    "a b c",
    " lead",
    "trail ",
    " both ",
    "a  b",
    "'",
    "\"q\"",
    "back\\slash",
    "é ü",
    "tab\there",
    "NULL",
    "--",
    "x'); DROP TABLE t; --",
];

/// Pieces of names (split and merge): mostly words, some empty or with spaces.
const WORDS: &[&str] = &[
    "Ada", "Alan", "Grace", "Edsger", "Liskov", "O'Neil", "", " ", "van der", "é", "x", "Zoë",
];

/// How a column's values are drawn.
#[derive(Clone, Copy, Debug)]
pub enum Vals {
    /// From [`TEXTS`].
    Text,
    /// From [`TEXTS`], trimmed.
    Trimmed,
    /// One of [`WORDS`].
    Word,
    /// Zero to three words joined by spaces, or one of [`TEXTS`].
    Name,
    /// An integer in the range.
    Int(i64, i64),
    /// A value no other row has (a unique index): a fresh number.
    Unique,
}

/// A column one release writes.
#[derive(Clone, Debug)]
pub struct WCol {
    pub name: &'static str,
    pub vals: Vals,
    /// The release's schema accepts NULL.
    pub nullable: bool,
    /// The release's schema has no default for it: every INSERT gives it.
    pub required: bool,
}

/// One release of the application: what it writes, and through which name of the table.
#[derive(Clone, Debug)]
pub struct Writer {
    pub label: &'static str,
    pub table: &'static str,
    pub cols: Vec<WCol>,
}

/// A column a release may leave out and set to NULL.
pub fn col(name: &'static str, vals: Vals) -> WCol {
    WCol {
        name,
        vals,
        nullable: true,
        required: false,
    }
}

/// A NOT NULL column with a default (may be left out, never NULL).
pub fn col_not_null(name: &'static str, vals: Vals) -> WCol {
    WCol {
        nullable: false,
        ..col(name, vals)
    }
}

/// A NOT NULL column without a default (always given, never NULL).
pub fn col_required(name: &'static str, vals: Vals) -> WCol {
    WCol {
        nullable: false,
        required: true,
        ..col(name, vals)
    }
}

/// A statement, the connection that sends it, the release it belongs to and the name of the
/// table that release writes through.
#[derive(Clone, Debug)]
pub struct Stmt {
    pub client: usize,
    pub writer: &'static str,
    pub table: &'static str,
    pub op: Op,
}

impl Stmt {
    /// The statement's SQL.
    pub fn sql(&self) -> String {
        self.op.sql(self.table)
    }
}

/// The generator of one case.
pub struct Gen {
    pub rng: Rng,
    /// The next fresh value of [`Vals::Unique`].
    unique: i64,
}

/// Connections the application writes through.
pub const CLIENTS: usize = 3;

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen {
            rng: Rng::new(seed),
            unique: 1_000,
        }
    }

    /// A value, never NULL.
    pub fn value(&mut self, vals: Vals) -> Val {
        match vals {
            Vals::Text => Val::text(self.rng.pick_str(TEXTS)),
            Vals::Trimmed => Val::text(self.rng.pick(TEXTS).trim_matches(' ')),
            Vals::Word => Val::text(self.rng.pick_str(WORDS)),
            Vals::Name if self.rng.chance(1, 4) => Val::text(self.rng.pick_str(TEXTS)),
            Vals::Name => {
                let n = self.rng.below(4);
                let words: Vec<&str> = (0..n).map(|_| self.rng.pick_str(WORDS)).collect();
                Val::Text(words.join(" "))
            }
            Vals::Int(lo, hi) => Val::Int(self.rng.range(lo, hi)),
            Vals::Unique => {
                self.unique += 1;
                Val::Int(self.unique)
            }
        }
    }

    /// A value of a column for one row: NULL sometimes where the release allows it.
    fn cell(&mut self, c: &WCol) -> Val {
        if c.nullable && self.rng.chance(1, 6) {
            Val::Null
        } else {
            self.value(c.vals)
        }
    }

    /// A statement of one of `writers`, against the rows of `model`.
    pub fn stmt(&mut self, writers: &[&Writer], model: &Model) -> Stmt {
        let w = *self.rng.pick(writers);
        let client = self.rng.below(CLIENTS);
        let roll = self.rng.below(100);
        let op = if roll < 30 || model.rows.is_empty() {
            self.insert(w)
        } else if roll < 75 {
            let id = self.some_id(model);
            self.update(w, Filter::Id(id))
        } else if roll < 90 {
            let k = self.rng.range(2, 6);
            let r = self.rng.range(0, k - 1);
            self.update(w, Filter::Mod(k, r))
        } else if roll < 97 {
            Op::Delete(Filter::Id(self.some_id(model)))
        } else {
            let k = self.rng.range(11, 19);
            Op::Delete(Filter::Mod(k, self.rng.range(0, k - 1)))
        };
        Stmt {
            client,
            writer: w.label,
            table: w.table,
            op,
        }
    }

    /// A key of the model, or now and then one that does not exist.
    fn some_id(&mut self, model: &Model) -> i64 {
        if model.rows.is_empty() || self.rng.chance(1, 25) {
            return 1_000_000 + self.rng.range(0, 99);
        }
        let i = self.rng.below(model.rows.len());
        model.rows.keys().nth(i).copied().unwrap_or(1)
    }

    fn insert(&mut self, w: &Writer) -> Op {
        let mut cols = Vec::new();
        for c in &w.cols {
            if c.required || self.rng.chance(1, 2) {
                let v = self.cell(c);
                cols.push((c.name, v));
            }
        }
        Op::Insert(cols)
    }

    /// An UPDATE of a non-empty subset of the release's columns: values, NULLs where the
    /// release allows them, and `col = col`. A multi-row UPDATE sets a unique column only to
    /// NULL or to itself.
    fn update(&mut self, w: &Writer, filter: Filter) -> Op {
        let many = matches!(filter, Filter::Mod(..));
        let mut sets = Vec::new();
        while sets.is_empty() {
            for c in &w.cols {
                if !self.rng.chance(2, 5) {
                    continue;
                }
                let s = if self.rng.chance(1, 5) {
                    SetVal::Same
                } else if many && matches!(c.vals, Vals::Unique) {
                    SetVal::Val(Val::Null)
                } else {
                    SetVal::Val(self.cell(c))
                };
                sets.push((c.name, s));
            }
        }
        Op::Update(filter, sets)
    }
}
