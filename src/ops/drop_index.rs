//! `drop_index`: `DROP INDEX CONCURRENTLY` at contract, after the switch (`SHARE UPDATE
//! EXCLUSIVE`: reads and writes go on while it waits for the transactions using the index). The
//! old release may still count on the index until then; before contract there is nothing to
//! undo. An index that implements a constraint is dropped with `drop_constraint` instead.

use serde::Deserialize;

use super::{Contract, Ctx, Effects, Operation, Problems};
use crate::db::catalog::KeySource;
use crate::diagnostics::FieldPath;

/// `kind = "drop_index"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropIndex {
    /// The index, in the table's schema.
    pub name: String,
}

impl Operation for DropIndex {
    fn kind(&self) -> &'static str {
        "drop_index"
    }

    fn summary(&self) -> String {
        format!("drop index \"{}\" concurrently", self.name)
    }

    fn check(&self, problems: &mut Problems) {
        problems.require_text(FieldPath::of("name"), &self.name);
    }

    fn effects(&self) -> Effects {
        Effects::default()
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        let field = FieldPath::of("name");
        let Some(index) = ctx.table.indexes.iter().find(|i| i.name == self.name) else {
            let known: Vec<String> = ctx
                .table
                .indexes
                .iter()
                .map(|i| format!("\"{}\"", i.name))
                .collect();
            problems.add(
                field,
                format!(
                    "{} has no index named \"{}\" (its indexes: {})",
                    ctx.qualified(),
                    self.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
            return;
        };
        if index.constraint {
            problems.add(
                field,
                format!(
                    "index \"{}\" implements a constraint of {}; drop the constraint with `kind = \"drop_constraint\"`",
                    self.name,
                    ctx.qualified()
                ),
            );
        } else if ctx.table.key_source == Some(KeySource::UniqueIndex(self.name.clone())) {
            problems.add(
                field,
                format!(
                    "index \"{}\" is the key of {} (it has no primary key): backfills walk the table by it; add a primary key first",
                    self.name,
                    ctx.qualified()
                ),
            );
        }
    }

    fn contract(&self, ctx: &Ctx<'_>) -> Contract {
        Contract {
            drop_indexes: vec![ctx.qualified().sibling(&self.name)],
            ..Contract::default()
        }
    }
}
