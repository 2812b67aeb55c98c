//! `merge_columns`: its scenarios through every path (contract, rollback, runner, abort).

use super::*;

pub(super) const MERGE_COLUMNS: Scenario = Scenario {
    name: "merge_columns",
    setup: "CREATE TABLE t (id bigserial PRIMARY KEY, first_name text, last_name text);
INSERT INTO t (first_name, last_name) VALUES ('Ada', 'Lovelace'), ('Alan', 'Turing'), (NULL, NULL);",
    plan: r#"
table = "t"
[[operations]]
kind = "merge_columns"
columns = ["first_name", "last_name"]
into = { name = "full_name", type = "text", up = "concat_ws(' ', first_name, last_name)" }
down = { first_name = "split_part(full_name, ' ', 1)", last_name = "split_part(full_name, ' ', 2)" }
"#,
    old_writes: "INSERT INTO t (id, first_name, last_name) VALUES (10, 'Edsger', 'Dijkstra') ON CONFLICT (id) DO UPDATE SET last_name = 'W'; UPDATE t SET last_name = 'Byron' WHERE id = 1;",
    new_writes: "INSERT INTO t (id, full_name) VALUES (11, 'Barbara Liskov'); UPDATE t SET full_name = 'Alan Mathison' WHERE id = 2;",
    // Row 3's old columns are what `down` gives for a NULL full name: in sync as it is.
    transition: ("SELECT id || ':' || coalesce(first_name, 'NULL') || ':' || coalesce(last_name, 'NULL') || ':' || coalesce(full_name, 'NULL') FROM t ORDER BY id", &["1:Ada:Byron:Ada Byron", "2:Alan:Mathison:Alan Mathison", "3:NULL:NULL:NULL", "10:Edsger:W:Edsger W", "11:Barbara:Liskov:Barbara Liskov"]),
    result: ("SELECT id || ':' || coalesce(full_name, 'NULL') FROM t ORDER BY id", &["1:Ada Byron", "2:Alan Mathison", "3:NULL", "10:Edsger W", "11:Barbara Liskov"]),
};

scenario_tests! {
    merge_columns_contract, merge_columns_rollback, merge_columns_runner, merge_columns_abort => MERGE_COLUMNS;
}
