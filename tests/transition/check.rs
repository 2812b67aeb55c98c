//! The invariants, checked against the database: the rows equal the model's, the per-row
//! predicates of the plans in flight hold, and the catalog after contract is the expected one.

use tokio_postgres::Client;

use super::model::Model;

/// A cell as the messages show it.
fn show(v: &Option<String>) -> String {
    match v {
        Some(s) => format!("{s:?}"),
        None => "NULL".to_string(),
    }
}

fn show_row(cols: &[&str], cells: &[Option<String>]) -> String {
    cols.iter()
        .zip(cells)
        .map(|(c, v)| format!("{c}={}", show(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

type Table = Vec<(i64, Vec<Option<String>>)>;

/// The table as the model has it, every value as `::text` prints it.
fn expected(model: &Model) -> Table {
    model
        .rows
        .iter()
        .map(|(id, row)| {
            let cells = model
                .columns
                .iter()
                .map(|c| super::model::get(row, c).as_text())
                .collect();
            (*id, cells)
        })
        .collect()
}

/// A failed check: what is wrong, and the key of the first row concerned.
pub type Mismatch = (Option<i64>, String);

/// Every row of the table, read through `name` (its name, or an old name that is a view over
/// it), equals the model's; otherwise how many differ and the first.
pub async fn rows(client: &Client, model: &Model, name: &str) -> Result<(), Mismatch> {
    let cols: Vec<String> = model.columns.iter().map(|c| format!("{c}::text")).collect();
    let sql = format!("SELECT id, {} FROM {name} ORDER BY id", cols.join(", "));
    let got: Table = client
        .query(&sql, &[])
        .await
        .map_err(|e| (None, format!("{sql}: {e}")))?
        .iter()
        .map(|r| {
            let cells = (1..=model.columns.len()).map(|i| r.get(i)).collect();
            (r.get(0), cells)
        })
        .collect();
    let want = expected(model);
    let cols = &model.columns;
    let (mut g, mut w) = (got.iter().peekable(), want.iter().peekable());
    let mut diffs: Vec<(i64, String)> = Vec::new();
    loop {
        let (gid, wid) = (g.peek().map(|r| r.0), w.peek().map(|r| r.0));
        match (gid, wid) {
            (None, None) => break,
            (Some(gi), wi) if wi.map_or(true, |wi| gi < wi) => {
                let cells = &g.next().expect("peeked").1;
                let text = format!(
                    "id {gi}: in the table, not in the model: {}",
                    show_row(cols, cells)
                );
                diffs.push((gi, text));
            }
            (gi, Some(wi)) if gi.map_or(true, |gi| wi < gi) => {
                let cells = &w.next().expect("peeked").1;
                let text = format!(
                    "id {wi}: in the model, not in the table: {}",
                    show_row(cols, cells)
                );
                diffs.push((wi, text));
            }
            _ => {
                let ((id, a), (_, b)) = (g.next().expect("peeked"), w.next().expect("peeked"));
                if a != b {
                    let (a, b) = (show_row(cols, a), show_row(cols, b));
                    diffs.push((*id, format!("id {id}:\n      table: {a}\n      model: {b}")));
                }
            }
        }
    }
    let Some((id, first)) = diffs.first() else {
        return Ok(());
    };
    let total = want.len().max(got.len());
    let text = format!(
        "{} of {total} rows read through {name} differ from the model; first: {first}",
        diffs.len()
    );
    Err((Some(*id), text))
}

/// Every row of `table` satisfies `predicate` (an SQL boolean over the transition schema).
pub async fn agree(client: &Client, table: &str, predicate: &str) -> Result<(), Mismatch> {
    let sql = format!(
        "SELECT id, t::text FROM {table} AS t WHERE NOT coalesce(({predicate}), false) ORDER BY id"
    );
    let bad = client
        .query(&sql, &[])
        .await
        .map_err(|e| (None, format!("{sql}: {e}")))?;
    let Some(r) = bad.first() else {
        return Ok(());
    };
    let id: i64 = r.get(0);
    let row: String = r.get(1);
    let text = format!(
        "{} rows break `{predicate}`; first: id {id} {row}",
        bad.len()
    );
    Err((Some(id), text))
}

/// The columns of `table`: type, NOT NULL, and the value of the default (evaluated, so that
/// `7`, `'7'::bigint` and `(7)::bigint` are the same default).
async fn columns(client: &Client, table: &str) -> Result<Vec<String>, String> {
    let sql = format!("SELECT attname::text, format_type(atttypid, atttypmod), attnotnull, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped");
    let mut out = Vec::new();
    for r in client
        .query(&sql, &[])
        .await
        .map_err(|e| format!("{sql}: {e}"))?
    {
        let (name, ty, not_null): (String, String, bool) = (r.get(0), r.get(1), r.get(2));
        let default = match r.get::<_, Option<String>>(3) {
            None => "-".to_string(),
            Some(expr) => {
                let eval = format!("SELECT quote_nullable(({expr})::text)");
                let v = client
                    .query_one(&eval, &[])
                    .await
                    .map_err(|e| format!("{eval}: {e}"))?;
                v.get(0)
            }
        };
        out.push(format!(
            "column {name} {ty} notnull={not_null} default={default}"
        ));
    }
    Ok(out)
}

/// The catalog of `table` after contract, one line per fact, sorted: columns (type, NOT NULL,
/// default), constraints, indexes, comments, a replica identity other than the default,
/// extended statistics, the tables and views of the schema `public`, and what backfill may
/// have left (triggers, `bf_` functions, tables and constraints).
pub async fn catalog(client: &Client, table: &str) -> Result<Vec<String>, String> {
    let t = format!("'{table}'::regclass");
    let queries = [
        format!("SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) || ' validated=' || convalidated FROM pg_constraint WHERE conrelid = {t} AND contype IN ('c', 'p', 'u', 'f', 'x')"),
        format!("SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = '{table}'"),
        format!("SELECT 'comment table: ' || obj_description({t}, 'pg_class')"),
        format!("SELECT 'comment column ' || attname || ': ' || col_description(attrelid, attnum) FROM pg_attribute WHERE attrelid = {t} AND attnum > 0 AND NOT attisdropped AND col_description(attrelid, attnum) IS NOT NULL"),
        format!("SELECT 'replica identity ' || relreplident::text FROM pg_class WHERE oid = {t} AND relreplident <> 'd'"),
        format!("SELECT 'statistics ' || pg_get_statisticsobjdef(oid) FROM pg_statistic_ext WHERE stxrelid = {t}"),
        "SELECT 'relation ' || relname || ' ' || relkind::text FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'v', 'm', 'p', 'f')".to_string(),
        format!("SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgrelid = {t} AND NOT tgisinternal"),
        "SELECT 'left behind: function ' || n.nspname || '.' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.proname LIKE 'bf\\_%'".to_string(),
        "SELECT 'left behind: relation ' || n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname LIKE 'bf\\_%'".to_string(),
    ];
    let mut out = columns(client, table).await?;
    for q in &queries {
        for r in client
            .query(q, &[])
            .await
            .map_err(|e| format!("{q}: {e}"))?
        {
            if let Some(s) = r.get::<_, Option<String>>(0) {
                out.push(s);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What `got` has that `want` lacks and the other way round.
pub fn catalog_diff(got: &[String], want: &[String]) -> Option<String> {
    let missing: Vec<&String> = want.iter().filter(|l| !got.contains(l)).collect();
    let extra: Vec<&String> = got.iter().filter(|l| !want.contains(l)).collect();
    if missing.is_empty() && extra.is_empty() {
        return None;
    }
    let mut s = String::new();
    for l in missing {
        s.push_str(&format!("\n      missing:    {l}"));
    }
    for l in extra {
        s.push_str(&format!("\n      unexpected: {l}"));
    }
    Some(s)
}
