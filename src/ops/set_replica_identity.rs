//! `set_replica_identity`: what logical replication sends for updated and deleted rows
//! (`REPLICA IDENTITY DEFAULT | FULL | NOTHING | USING INDEX`), at expand, metadata only.
//! Rollback puts back the identity the table had.

use serde::Deserialize;

use super::{Ctx, Effects, LockLevel, Operation, Problems, Rollback, Statement};
use crate::db::catalog::ReplicaIdentity;
use crate::diagnostics::FieldPath;
use crate::sql::Ident;

/// `kind = "set_replica_identity"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetReplicaIdentity {
    /// `default` (the primary key), `full`, `nothing` or `index`.
    pub identity: String,
    /// With `identity = "index"`: a unique, non-partial index on NOT NULL columns.
    pub index: Option<String>,
}

/// The clause that sets `identity`.
fn clause(identity: &ReplicaIdentity) -> String {
    match identity {
        ReplicaIdentity::Default => "REPLICA IDENTITY DEFAULT".to_string(),
        ReplicaIdentity::Full => "REPLICA IDENTITY FULL".to_string(),
        ReplicaIdentity::Nothing => "REPLICA IDENTITY NOTHING".to_string(),
        ReplicaIdentity::Index(i) => format!("REPLICA IDENTITY USING INDEX {}", Ident::new(i)),
    }
}

impl SetReplicaIdentity {
    fn wanted(&self) -> Option<ReplicaIdentity> {
        match (self.identity.as_str(), &self.index) {
            ("default", None) => Some(ReplicaIdentity::Default),
            ("full", None) => Some(ReplicaIdentity::Full),
            ("nothing", None) => Some(ReplicaIdentity::Nothing),
            ("index", Some(i)) => Some(ReplicaIdentity::Index(i.clone())),
            _ => None,
        }
    }
}

impl Operation for SetReplicaIdentity {
    fn kind(&self) -> &'static str {
        "set_replica_identity"
    }

    fn summary(&self) -> String {
        match &self.index {
            Some(i) => format!("set replica identity to index {}", Ident::new(i)),
            None => format!("set replica identity {}", self.identity),
        }
    }

    fn check(&self, problems: &mut Problems) {
        match (self.identity.as_str(), &self.index) {
            ("default" | "full" | "nothing", None) => {}
            ("default" | "full" | "nothing", Some(_)) => {
                problems.add(FieldPath::of("index"), "only with identity = \"index\"")
            }
            ("index", None) => problems.add(
                FieldPath::of("index"),
                "identity = \"index\" needs the index's name",
            ),
            ("index", Some(i)) => problems.require_text(FieldPath::of("index"), i),
            (other, _) => problems.add(
                FieldPath::of("identity"),
                format!("`{other}` is not one of: default, full, nothing, index"),
            ),
        }
    }

    fn effects(&self) -> Effects {
        Effects::default()
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        let Some(name) = &self.index else { return };
        let field = FieldPath::of("index");
        match ctx.table.indexes.iter().find(|i| &i.name == name) {
            None => problems.add(
                field,
                format!("{} has no index named \"{name}\"", ctx.qualified()),
            ),
            Some(i) if !i.unique || i.partial || !i.valid => problems.add(
                field,
                format!("index \"{name}\" cannot identify rows for replication: it must be unique, valid and not partial"),
            ),
            Some(i) => {
                for c in i.columns.iter() {
                    match ctx.column(c) {
                        Some(col) if col.not_null => {}
                        Some(_) => problems.add(
                            field.clone(),
                            format!("index \"{name}\" covers column \"{c}\", which allows NULL: a replica identity index needs NOT NULL columns (set_not_null first)"),
                        ),
                        None => problems.add(
                            field.clone(),
                            format!("index \"{name}\" is on an expression: a replica identity index must be on columns"),
                        ),
                    }
                }
            }
        }
    }

    fn expand(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        match self.wanted() {
            Some(identity) => vec![Statement::new(
                LockLevel::AccessExclusive,
                ctx.alter(clause(&identity)),
            )],
            None => Vec::new(),
        }
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        Rollback {
            statements: vec![Statement::new(
                LockLevel::AccessExclusive,
                ctx.alter(clause(&ctx.table.replica_identity)),
            )],
            ..Rollback::default()
        }
    }
}
