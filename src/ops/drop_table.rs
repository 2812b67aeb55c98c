//! `drop_table`: nothing at expand (the old release may still read and write the table), `DROP
//! TABLE` at contract, in the switch transaction under `lock_timeout` (`ACCESS EXCLUSIVE`,
//! metadata only: the files go at commit). Before contract there is nothing to undo.
//!
//! `DROP TABLE` without `CASCADE` refuses to drop a table that views, rules, policies or
//! functions of other objects depend on, or that foreign keys of other tables reference; such
//! a plan is refused at `validate`, each object named, rather than failing at contract a release
//! later (and a dependent object created after `validate` still makes the contract fail, never
//! disappear).

use serde::Deserialize;

use super::{Contract, Ctx, Effects, LockLevel, Operation, Problems, Statement, TableChange};
use crate::diagnostics::FieldPath;

/// `kind = "drop_table"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropTable {}

impl Operation for DropTable {
    fn kind(&self) -> &'static str {
        "drop_table"
    }

    fn summary(&self) -> String {
        "drop the table at contract".to_string()
    }

    fn effects(&self) -> Effects {
        Effects::default()
    }

    fn table_change(&self) -> Option<TableChange> {
        Some(TableChange::Drop)
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        let table = ctx.qualified();
        let field = FieldPath::of("kind");
        let mut named: Vec<String> = Vec::new();
        for d in ctx.table.outside_dependents() {
            let what = d.describe();
            if named.contains(&what) {
                continue;
            }
            problems.add(
                field.clone(),
                format!(
                    "{what} depends on {table}: DROP TABLE would refuse to drop it. Drop or change the {} first (in a plan or release before this one)",
                    d.kind
                ),
            );
            named.push(what);
        }
        for c in ctx.table.constraints.iter().filter(|c| c.foreign) {
            problems.add(
                field.clone(),
                format!(
                    "foreign key \"{}\" of {} references {table}: DROP TABLE would refuse to drop it. Drop the foreign key first",
                    c.name, c.table
                ),
            );
        }
    }

    fn contract(&self, ctx: &Ctx<'_>) -> Contract {
        Contract {
            switch: vec![Statement::new(
                LockLevel::AccessExclusive,
                format!("DROP TABLE IF EXISTS {}", ctx.qualified()),
            )],
            ..Contract::default()
        }
    }
}
