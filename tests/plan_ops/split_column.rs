//! `split_column`: its scenarios through every path (contract, rollback, runner, abort).

use super::*;

pub(super) const SPLIT_COLUMN: Scenario = Scenario {
    name: "split_column",
    setup: PEOPLE,
    plan: r#"
name = "split_full_name"
table = "t"
[[operations]]
kind = "split_column"
column = "full_name"
into = [
  { name = "first_name", type = "text", up = "split_part(full_name, ' ', 1)" },
  { name = "last_name",  type = "text", up = "split_part(full_name, ' ', 2)" },
]
down = "concat_ws(' ', first_name, last_name)"
"#,
    old_writes: "INSERT INTO t (id, full_name) VALUES (10, 'Edsger Dijkstra') ON CONFLICT (id) DO UPDATE SET full_name = 'Edsger W'; UPDATE t SET full_name = 'Alan Mathison' WHERE id = 2;",
    new_writes: "INSERT INTO t (id, first_name, last_name) VALUES (11, 'Barbara', 'Liskov'); UPDATE t SET last_name = 'Byron' WHERE id = 1;",
    transition: ("SELECT id || ':' || coalesce(full_name, 'NULL') || ':' || coalesce(first_name, 'NULL') || ':' || coalesce(last_name, 'NULL') FROM t ORDER BY id", &["1:Ada Byron:Ada:Byron", "2:Alan Mathison:Alan:Mathison", "3:NULL:NULL:NULL", "4:Grace Hopper:Grace:Hopper", "10:Edsger W:Edsger:W", "11:Barbara Liskov:Barbara:Liskov"]),
    result: ("SELECT id || ':' || coalesce(first_name, 'NULL') || ':' || coalesce(last_name, 'NULL') || ':' || (SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'full_name' AND NOT attisdropped) FROM t ORDER BY id", &["1:Ada:Byron:0", "2:Alan:Mathison:0", "3:NULL:NULL:0", "4:Grace:Hopper:0", "10:Edsger:W:0", "11:Barbara:Liskov:0"]),
};

scenario_tests! {
    split_column_contract, split_column_rollback, split_column_runner, split_column_abort => SPLIT_COLUMN;
}

/// A split over many rows: every row is checked against the mapping computed here, in Rust.
#[tokio::test]
async fn split_backfills_every_row_of_a_larger_table() {
    let db = TestDb::new("split_larger").await;
    let mut client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (id bigserial PRIMARY KEY, full_name text);
             INSERT INTO t (full_name) SELECT 'First' || g || ' Last' || (g * 7) FROM generate_series(1, 20000) g;
             DELETE FROM t WHERE id % 97 = 0;",
        )
        .await
        .expect("setup");
    let schedule = plan_for(&mut client, SPLIT_COLUMN.plan).await;
    apply(&mut client, &schedule, Phase::Expand).await;
    apply(&mut client, &schedule, Phase::DualWrite).await;
    let spec = schedule.backfill.as_ref().expect("a backfill");
    let changed = backfill_in_one_statement(&mut client, spec)
        .await
        .expect("backfill");
    let total: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(changed as i64, total);
    let all = client
        .query("SELECT id, first_name, last_name FROM t ORDER BY id", &[])
        .await
        .expect("rows");
    assert_eq!(all.len() as i64, total);
    for row in all {
        let id: i64 = row.get(0);
        assert_ne!(id % 97, 0);
        assert_eq!(
            row.get::<_, Option<String>>(1),
            Some(format!("First{id}")),
            "row {id}"
        );
        assert_eq!(
            row.get::<_, Option<String>>(2),
            Some(format!("Last{}", id * 7)),
            "row {id}"
        );
    }
}

/// Two plans on the same table: the backfill of one must not bypass the other's trigger.
#[tokio::test]
async fn a_backfill_still_fires_the_triggers_of_other_plans() {
    let db = TestDb::new("two_plans").await;
    let mut client = db.connect().await;
    client.batch_execute(PEOPLE).await.expect("setup");
    let rename = plan_for(
        &mut client,
        super::rename_column::RENAME_COLUMN
            .plan
            .replace("table = \"t\"", "name = \"rename\"\ntable = \"t\"")
            .as_str(),
    )
    .await;
    apply(&mut client, &rename, Phase::Expand).await;
    apply(&mut client, &rename, Phase::DualWrite).await;
    backfill_in_one_statement(&mut client, rename.backfill.as_ref().expect("backfill"))
        .await
        .expect("backfill rename");
    let normalize = plan_for(&mut client, super::update_rows::UPDATE_ROWS.plan).await;
    apply(&mut client, &normalize, Phase::Expand).await;
    apply(&mut client, &normalize, Phase::DualWrite).await;
    backfill_in_one_statement(&mut client, normalize.backfill.as_ref().expect("backfill"))
        .await
        .expect("backfill normalize");
    assert_eq!(
        rows(&client, "SELECT id || ':' || coalesce(email, 'NULL') || ':' || coalesce(email_address, 'NULL') FROM t ORDER BY id").await,
        ["1:ada@example.com:ada@example.com", "2:alan@example.com:alan@example.com", "3:NULL:NULL", "4:grace@example.com:grace@example.com"]
    );
}
