//! Catalog introspection: what a plan needs to know about its table, read in one round trip
//! per question, with every name passed as a bind parameter.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::sql::{Ident, QualifiedName};

/// A column of the table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ColumnInfo {
    /// The column's name.
    pub name: String,
    /// Its type as `format_type` prints it (`character varying(20)`).
    pub type_name: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// The default expression, if any.
    pub default: Option<String>,
    /// `a` (ALWAYS) or `d` (BY DEFAULT) for identity columns.
    pub identity: Option<char>,
    /// A generated (stored) column.
    pub generated: bool,
    /// `COMMENT ON COLUMN`.
    #[serde(default)]
    pub comment: Option<String>,
    /// Column privileges (`GRANT SELECT (c) ON t TO r`): one `aclitem` text each.
    #[serde(default)]
    pub grants: Vec<String>,
    /// `SET STATISTICS`, when set.
    #[serde(default)]
    pub statistics: Option<i32>,
    /// The sequence the column owns (`OWNED BY`), schema-qualified and quoted.
    #[serde(default)]
    pub owned_sequence: Option<String>,
}

/// An index on the table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexInfo {
    /// The index name.
    pub name: String,
    /// Its key columns (empty entries for expressions).
    pub columns: Vec<String>,
    /// `indisunique`.
    pub unique: bool,
    /// `indisprimary`.
    pub primary: bool,
    /// `indisvalid`: false for an index left by a failed `CREATE INDEX CONCURRENTLY`.
    pub valid: bool,
    /// Partial index.
    pub partial: bool,
    /// `pg_get_indexdef`: the statement that builds it.
    #[serde(default)]
    pub definition: String,
    /// Every column it involves, in keys, `INCLUDE`, expressions and predicate.
    #[serde(default)]
    pub involves: Vec<String>,
    /// Whether it implements a constraint (primary key, unique, exclusion).
    #[serde(default)]
    pub constraint: bool,
}

/// A constraint on the table, or a foreign key elsewhere that references it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConstraintInfo {
    /// The constraint name.
    pub name: String,
    /// `p`, `u`, `c`, `f`, `x`.
    pub kind: char,
    /// The table it is defined on, schema-qualified, quoted where needed.
    pub table: String,
    /// Columns of the plan's table that it involves.
    pub columns: Vec<String>,
    /// `pg_get_constraintdef`.
    #[serde(default)]
    pub definition: String,
    /// A foreign key of another table that references this one.
    #[serde(default)]
    pub foreign: bool,
    /// The index of this table the constraint rests on (`conindid`): its own for a primary
    /// key, unique or exclusion constraint; the referenced unique index for a foreign key that
    /// references this table (from another table or from itself). `None` otherwise.
    #[serde(default)]
    pub index: Option<String>,
    /// `COMMENT ON CONSTRAINT`.
    #[serde(default)]
    pub comment: Option<String>,
}

/// An object that depends on columns of the table and that PostgreSQL would refuse to keep (or
/// drop silently with `CASCADE`) when one of them is dropped: a view, a rule, a policy, a
/// trigger, a function with an SQL body, a generated column, a publication's column list,
/// extended statistics. With an empty `column`: an object outside the table that depends on the
/// table as a whole or on any of its columns (a view, even one that selects no column, a rule
/// or policy of another table, a function with an SQL body or taking the table's row type, a
/// column of that type, an inheritance child, a default using a sequence the table owns):
/// `DROP TABLE` refuses to drop the table while it exists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dependent {
    /// The column of the table it depends on; empty for an object outside the table that
    /// depends on the table itself (see above).
    pub column: String,
    /// What it is (`view`, `policy`, ...).
    pub kind: String,
    /// Its name, as `pg_describe_object` prints it.
    pub name: String,
}

impl Dependent {
    /// `view public.v`, `function f(t)`: the kind, unless the name already says it.
    pub fn describe(&self) -> String {
        if self.name.starts_with(&format!("{} ", self.kind)) {
            self.name.clone()
        } else {
            format!("{} {}", self.kind, self.name)
        }
    }
}

/// A privilege granted on the table as a whole (one row of `aclexplode(relacl)`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableGrant {
    /// The role it is granted to; empty for `PUBLIC`.
    pub grantee: String,
    /// `SELECT`, `INSERT`, `UPDATE`, `DELETE`, `TRUNCATE`, `REFERENCES`, `TRIGGER`, ...
    pub privilege: String,
    /// `WITH GRANT OPTION`.
    pub grantable: bool,
}

/// Which columns identify a row for keyset pagination.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KeySource {
    /// The primary key, by constraint name.
    PrimaryKey(String),
    /// A unique index on NOT NULL columns, by index name.
    UniqueIndex(String),
}

/// What logical replication sends of an updated or deleted row (`REPLICA IDENTITY`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaIdentity {
    /// The primary key.
    #[default]
    Default,
    /// The whole row.
    Full,
    /// Nothing.
    Nothing,
    /// The columns of this unique index.
    Index(String),
}

/// What `backfill` knows of a table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableInfo {
    /// The table, schema-qualified.
    pub name: QualifiedName,
    /// Columns in `attnum` order.
    pub columns: Vec<ColumnInfo>,
    /// The key columns, in key order; empty when the table has no usable key.
    pub key: Vec<String>,
    /// Where the key comes from.
    pub key_source: Option<KeySource>,
    /// Indexes of the table.
    pub indexes: Vec<IndexInfo>,
    /// Constraints on the table and foreign keys that reference it.
    pub constraints: Vec<ConstraintInfo>,
    /// Objects that depend on its columns (beyond its own indexes and constraints), and
    /// (with an empty column) objects outside it that depend on the table.
    #[serde(default)]
    pub dependents: Vec<Dependent>,
    /// Privileges on the table as a whole, the owner's included (spelled out from the default
    /// when none was ever granted).
    #[serde(default)]
    pub grants: Vec<TableGrant>,
    /// Row security is enabled on the table (`relrowsecurity`).
    #[serde(default)]
    pub row_security: bool,
    /// `reltuples`: the planner's row estimate (never a `count(*)`).
    pub row_estimate: i64,
    /// `COMMENT ON TABLE`.
    #[serde(default)]
    pub comment: Option<String>,
    /// `REPLICA IDENTITY`.
    #[serde(default)]
    pub replica_identity: ReplicaIdentity,
}

impl TableInfo {
    /// The catalog of a table that does not exist yet, as a plan that creates it starts from:
    /// no columns, no key, nothing depending on it.
    pub fn absent(name: QualifiedName) -> TableInfo {
        TableInfo {
            name,
            columns: Vec::new(),
            key: Vec::new(),
            key_source: None,
            indexes: Vec::new(),
            constraints: Vec::new(),
            dependents: Vec::new(),
            grants: Vec::new(),
            row_security: false,
            row_estimate: 0,
            comment: None,
            replica_identity: ReplicaIdentity::Default,
        }
    }

    /// Objects outside the table that depend on it, each once: `DROP TABLE` (without
    /// `CASCADE`) refuses to drop it while they exist. Foreign keys of other tables are in
    /// [`TableInfo::constraints`].
    pub fn outside_dependents(&self) -> impl Iterator<Item = &Dependent> + '_ {
        self.dependents.iter().filter(|d| d.column.is_empty())
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The key columns as identifiers.
    pub fn key_idents(&self) -> Vec<Ident> {
        self.key.iter().map(Ident::new).collect()
    }

    /// The table's own name, used as the alias under which plan expressions see the row.
    pub fn alias(&self) -> &Ident {
        &self.name.name
    }

    /// Indexes that have `column` among their key columns.
    pub fn indexes_on<'a>(&'a self, column: &'a str) -> impl Iterator<Item = &'a IndexInfo> + 'a {
        self.indexes
            .iter()
            .filter(move |i| i.columns.iter().any(|c| c == column))
    }

    /// Indexes that involve `column` anywhere: key, `INCLUDE`, expression or predicate (all
    /// go when it is dropped).
    pub fn indexes_involving<'a>(
        &'a self,
        column: &'a str,
    ) -> impl Iterator<Item = &'a IndexInfo> + 'a {
        self.indexes
            .iter()
            .filter(move |i| i.involves.iter().any(|c| c == column))
    }

    /// Constraints of the table, and foreign keys of other tables, that involve `column`.
    pub fn constraints_on<'a>(
        &'a self,
        column: &'a str,
    ) -> impl Iterator<Item = &'a ConstraintInfo> + 'a {
        self.constraints
            .iter()
            .filter(move |c| c.columns.iter().any(|x| x == column))
    }

    /// A constraint of the table itself (not a foreign key of another table), by name.
    pub fn constraint(&self, name: &str) -> Option<&ConstraintInfo> {
        self.constraints
            .iter()
            .find(|c| !c.foreign && c.name == name)
    }

    /// An index of the table, by name.
    pub fn index(&self, name: &str) -> Option<&IndexInfo> {
        self.indexes.iter().find(|i| i.name == name)
    }

    /// Whether index `name` implements an exclusion constraint.
    pub fn is_exclusion(&self, name: &str) -> bool {
        self.constraints
            .iter()
            .any(|c| c.kind == 'x' && c.name == name)
    }
}

/// Reads the catalog of `table`; `Ok(None)` when there is no such table.
pub async fn table_info(client: &Client, table: &QualifiedName) -> Result<Option<TableInfo>> {
    let ctx = || format!("reading the catalog of {table}");
    let row = client
        .query_opt(
            "SELECT c.oid, greatest(c.reltuples, 0)::int8, obj_description(c.oid, 'pg_class'),
                    c.relreplident::text,
                    (SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                      WHERE i.indrelid = c.oid AND i.indisreplident LIMIT 1),
                    c.relrowsecurity
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&table.schema.as_str(), &table.name.as_str()],
        )
        .await
        .map_err(|e| Error::db(ctx(), &e))?;
    let Some(row) = row else { return Ok(None) };
    let oid: u32 = row.get(0);
    let row_estimate: i64 = row.get(1);
    let comment: Option<String> = row.get(2);
    let replica_identity = match (
        row.get::<_, String>(3).as_str(),
        row.get::<_, Option<String>>(4),
    ) {
        ("f", _) => ReplicaIdentity::Full,
        ("n", _) => ReplicaIdentity::Nothing,
        ("i", Some(index)) => ReplicaIdentity::Index(index),
        _ => ReplicaIdentity::Default,
    };
    let row_security: bool = row.get(5);

    let columns = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                    pg_get_expr(d.adbin, d.adrelid), nullif(a.attidentity, '')::text,
                    a.attgenerated <> '',
                    col_description(a.attrelid, a.attnum),
                    coalesce(a.attacl::text[], '{}'),
                    nullif(a.attstattarget::int4, -1),
                    (SELECT s.oid::regclass::text FROM pg_depend dep JOIN pg_class s ON s.oid = dep.objid
                      WHERE dep.classid = 'pg_class'::regclass AND dep.refobjid = a.attrelid
                        AND dep.refobjsubid = a.attnum AND dep.deptype = 'a' AND s.relkind = 'S'
                      LIMIT 1)
               FROM pg_attribute a
               LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(|e| Error::db(ctx(), &e))?
        .into_iter()
        .map(|r| ColumnInfo {
            name: r.get(0),
            type_name: r.get(1),
            not_null: r.get(2),
            default: r.get(3),
            identity: r.get::<_, Option<String>>(4).and_then(|s| s.chars().next()),
            generated: r.get(5),
            comment: r.get(6),
            grants: r.get(7),
            statistics: r.get(8),
            owned_sequence: r.get(9),
        })
        .collect::<Vec<_>>();

    let indexes = client
        .query(
            "SELECT ic.relname::text,
                    array(SELECT coalesce(a.attname::text, '')
                            FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY k(attnum, n)
                            LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                           ORDER BY k.n),
                    i.indisunique, i.indisprimary, i.indisvalid, i.indpred IS NOT NULL,
                    pg_get_indexdef(i.indexrelid),
                    array(SELECT a.attname::text FROM pg_attribute a
                           WHERE a.attrelid = i.indrelid AND a.attnum > 0 AND (
                                 a.attnum = ANY (i.indkey::int2[])
                              OR EXISTS (SELECT FROM pg_depend dep
                                          WHERE dep.classid = 'pg_class'::regclass AND dep.objid = i.indexrelid
                                            AND dep.refobjid = i.indrelid AND dep.refobjsubid = a.attnum))
                           ORDER BY a.attnum),
                    EXISTS (SELECT FROM pg_constraint con WHERE con.conindid = i.indexrelid AND con.conrelid = i.indrelid)
               FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
              WHERE i.indrelid = $1
              ORDER BY ic.relname",
            &[&oid],
        )
        .await
        .map_err(|e| Error::db(ctx(), &e))?
        .into_iter()
        .map(|r| IndexInfo {
            name: r.get(0),
            columns: r.get(1),
            unique: r.get(2),
            primary: r.get(3),
            valid: r.get(4),
            partial: r.get(5),
            definition: r.get(6),
            involves: r.get(7),
            constraint: r.get(8),
        })
        .collect::<Vec<_>>();

    let constraints = client
        .query(
            "SELECT con.conname::text, con.contype::text,
                    (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = con.conrelid),
                    array(SELECT a.attname::text
                            FROM unnest(CASE WHEN con.conrelid = $1 THEN con.conkey ELSE con.confkey END) k(attnum)
                            JOIN pg_attribute a ON a.attrelid = $1 AND a.attnum = k.attnum),
                    pg_get_constraintdef(con.oid), con.conrelid <> $1,
                    (SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                      WHERE i.indexrelid = con.conindid AND i.indrelid = $1),
                    obj_description(con.oid, 'pg_constraint')
               FROM pg_constraint con
              WHERE con.conrelid = $1 OR (con.confrelid = $1 AND con.contype = 'f')
              ORDER BY con.conname",
            &[&oid],
        )
        .await
        .map_err(|e| Error::db(ctx(), &e))?
        .into_iter()
        .map(|r| ConstraintInfo {
            name: r.get(0),
            kind: r.get::<_, String>(1).chars().next().unwrap_or('?'),
            table: r.get(2),
            columns: r.get(3),
            definition: r.get(4),
            foreign: r.get(5),
            index: r.get(6),
            comment: r.get(7),
        })
        .collect::<Vec<_>>();
    let mut dependents = dependents(client, oid)
        .await
        .map_err(|e| Error::db(ctx(), &e))?;
    dependents.extend(
        outside_dependents(client, oid)
            .await
            .map_err(|e| Error::db(ctx(), &e))?,
    );
    let grants = client
        .query(
            "SELECT coalesce(r.rolname::text, ''), a.privilege_type, a.is_grantable
               FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
               LEFT JOIN pg_roles r ON r.oid = a.grantee
              WHERE c.oid = $1
              ORDER BY 1, 2",
            &[&oid],
        )
        .await
        .map_err(|e| Error::db(ctx(), &e))?
        .into_iter()
        .map(|r| TableGrant {
            grantee: r.get(0),
            privilege: r.get(1),
            grantable: r.get(2),
        })
        .collect();

    let not_null = |name: &String| columns.iter().any(|c| &c.name == name && c.not_null);
    let (key, key_source) = if let Some(pk) = indexes.iter().find(|i| i.primary) {
        let name = constraints
            .iter()
            .find(|c| c.kind == 'p')
            .map(|c| c.name.clone())
            .unwrap_or_else(|| pk.name.clone());
        (pk.columns.clone(), Some(KeySource::PrimaryKey(name)))
    } else if let Some(ux) = indexes.iter().find(|i| {
        i.unique
            && i.valid
            && !i.partial
            && !i.columns.is_empty()
            && i.columns.iter().all(|c| !c.is_empty() && not_null(c))
    }) {
        (
            ux.columns.clone(),
            Some(KeySource::UniqueIndex(ux.name.clone())),
        )
    } else {
        (Vec::new(), None)
    };

    Ok(Some(TableInfo {
        name: table.clone(),
        columns,
        key,
        key_source,
        indexes,
        constraints,
        dependents,
        grants,
        row_security,
        row_estimate,
        comment,
        replica_identity,
    }))
}

/// Objects depending on columns of table `oid` that dropping the column would break: found
/// through `pg_depend` (views and rules through their rewrite rule, policies, triggers,
/// functions with an SQL body, extended statistics, publications' column lists) and generated
/// columns through their default expression. The table's own indexes and constraints are
/// described by [`TableInfo::indexes`] and [`TableInfo::constraints`].
async fn dependents(
    client: &Client,
    oid: u32,
) -> std::result::Result<Vec<Dependent>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT DISTINCT a.attname::text,
                    CASE d.classid
                      WHEN 'pg_rewrite'::regclass THEN
                        (SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE 'rule' END
                           FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class WHERE r.oid = d.objid)
                      WHEN 'pg_policy'::regclass THEN 'policy'
                      WHEN 'pg_trigger'::regclass THEN 'trigger'
                      WHEN 'pg_proc'::regclass THEN 'function'
                      WHEN 'pg_statistic_ext'::regclass THEN 'statistics'
                      WHEN 'pg_publication_rel'::regclass THEN 'publication'
                      WHEN 'pg_attrdef'::regclass THEN 'generated column'
                    END,
                    CASE d.classid
                      WHEN 'pg_rewrite'::regclass THEN
                        (SELECT CASE WHEN c.relkind IN ('v', 'm') THEN c.oid::regclass::text ELSE pg_describe_object(d.classid, d.objid, 0) END
                           FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class WHERE r.oid = d.objid)
                      WHEN 'pg_attrdef'::regclass THEN
                        (SELECT quote_ident(g.attname) FROM pg_attrdef ad JOIN pg_attribute g ON g.attrelid = ad.adrelid AND g.attnum = ad.adnum WHERE ad.oid = d.objid)
                      ELSE pg_describe_object(d.classid, d.objid, 0)
                    END
               FROM pg_depend d
               JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
              WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = $1 AND d.refobjsubid > 0
                AND d.deptype IN ('n', 'a')
                AND d.classid IN ('pg_rewrite'::regclass, 'pg_policy'::regclass, 'pg_trigger'::regclass,
                                  'pg_proc'::regclass, 'pg_statistic_ext'::regclass,
                                  'pg_publication_rel'::regclass, 'pg_attrdef'::regclass)
                AND NOT (d.classid = 'pg_attrdef'::regclass
                         AND EXISTS (SELECT FROM pg_attrdef ad WHERE ad.oid = d.objid AND ad.adnum = d.refobjsubid))
                AND NOT (d.classid = 'pg_trigger'::regclass
                         AND EXISTS (SELECT FROM pg_trigger t WHERE t.oid = d.objid AND t.tgisinternal))
              ORDER BY 1, 2, 3",
            &[&oid],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Dependent {
            column: r.get(0),
            kind: r
                .get::<_, Option<String>>(1)
                .unwrap_or_else(|| "object".to_string()),
            name: r.get::<_, Option<String>>(2).unwrap_or_default(),
        })
        .collect())
}

/// Objects outside table `oid` that depend on it (with `deptype` normal, so that `DROP TABLE`
/// without `CASCADE` refuses to drop it): anything depending on the table or one of its columns,
/// on its row type or the array of it, or on a sequence the table owns; less what belongs to the
/// table itself (its constraints, triggers, policies, rules, defaults, statistics), which goes
/// with it, and foreign keys of other tables, read with the constraints. One row per object,
/// with an empty column.
async fn outside_dependents(
    client: &Client,
    oid: u32,
) -> std::result::Result<Vec<Dependent>, tokio_postgres::Error> {
    let rows = client
        .query(
            "WITH targets AS (
               SELECT 'pg_class'::regclass::oid AS classid, $1::oid AS objid
               UNION ALL
               SELECT 'pg_type'::regclass, c.reltype FROM pg_class c WHERE c.oid = $1 AND c.reltype <> 0
               UNION ALL
               SELECT 'pg_type'::regclass, ty.typarray FROM pg_class c JOIN pg_type ty ON ty.oid = c.reltype
                WHERE c.oid = $1 AND ty.typarray <> 0
               UNION ALL
               SELECT 'pg_class'::regclass, s.oid FROM pg_depend dep JOIN pg_class s ON s.oid = dep.objid
                WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
                  AND dep.refobjid = $1 AND dep.deptype = 'a' AND s.relkind = 'S'
             )
             SELECT DISTINCT
                    CASE d.classid
                      WHEN 'pg_rewrite'::regclass THEN
                        (SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE 'rule' END
                           FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class WHERE r.oid = d.objid)
                      WHEN 'pg_class'::regclass THEN CASE WHEN d.objsubid > 0 THEN 'column' ELSE 'table' END
                      WHEN 'pg_policy'::regclass THEN 'policy'
                      WHEN 'pg_trigger'::regclass THEN 'trigger'
                      WHEN 'pg_proc'::regclass THEN 'function'
                      WHEN 'pg_attrdef'::regclass THEN 'default'
                      WHEN 'pg_constraint'::regclass THEN 'constraint'
                      ELSE 'object'
                    END,
                    CASE d.classid
                      WHEN 'pg_rewrite'::regclass THEN
                        (SELECT CASE WHEN c.relkind IN ('v', 'm') THEN c.oid::regclass::text ELSE pg_describe_object(d.classid, d.objid, 0) END
                           FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class WHERE r.oid = d.objid)
                      ELSE pg_describe_object(d.classid, d.objid, d.objsubid)
                    END
               FROM pg_depend d
               JOIN targets x ON d.refclassid = x.classid AND d.refobjid = x.objid
              WHERE d.deptype = 'n'
                AND NOT (d.classid = 'pg_class'::regclass AND d.objid = $1)
                AND NOT (d.classid = 'pg_constraint'::regclass
                         AND EXISTS (SELECT FROM pg_constraint c WHERE c.oid = d.objid AND (c.conrelid = $1 OR c.contype = 'f')))
                AND NOT (d.classid = 'pg_trigger'::regclass
                         AND EXISTS (SELECT FROM pg_trigger g WHERE g.oid = d.objid AND g.tgrelid = $1))
                AND NOT (d.classid = 'pg_policy'::regclass
                         AND EXISTS (SELECT FROM pg_policy p WHERE p.oid = d.objid AND p.polrelid = $1))
                AND NOT (d.classid = 'pg_rewrite'::regclass
                         AND EXISTS (SELECT FROM pg_rewrite w WHERE w.oid = d.objid AND w.ev_class = $1))
                AND NOT (d.classid = 'pg_attrdef'::regclass
                         AND EXISTS (SELECT FROM pg_attrdef a WHERE a.oid = d.objid AND a.adrelid = $1))
                AND NOT (d.classid = 'pg_statistic_ext'::regclass
                         AND EXISTS (SELECT FROM pg_statistic_ext s WHERE s.oid = d.objid AND s.stxrelid = $1))
              ORDER BY 1, 2",
            &[&oid],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Dependent {
            column: String::new(),
            kind: r
                .get::<_, Option<String>>(0)
                .unwrap_or_else(|| "object".to_string()),
            name: r.get::<_, Option<String>>(1).unwrap_or_default(),
        })
        .collect())
}

/// Whether `type_name` names a type the server knows (`to_regtype`).
pub async fn type_exists(client: &Client, type_name: &str) -> Result<bool> {
    // `to_regtype` parses the text with PostgreSQL's own type-name grammar and accepts nothing
    // else: text that is not exactly a type name (a syntax error, a second clause) is refused
    // here, so a type written in a plan can go into DDL as it is. The lexer skips comments,
    // which have no place in a type name: refused before asking.
    if ["--", "/*", ";"].iter().any(|t| type_name.contains(t)) {
        return Ok(false);
    }
    match client
        .query_one("SELECT to_regtype($1) IS NOT NULL", &[&type_name])
        .await
    {
        Ok(row) => Ok(row.get(0)),
        Err(e) if e.as_db_error().is_some() => Ok(false),
        Err(e) => Err(Error::db(format!("checking type {type_name}"), &e)),
    }
}
