//! `drop_column`: its scenarios through every path (contract, rollback, runner, abort).

use super::*;

pub(super) const DROP_COLUMN: Scenario = Scenario {
    name: "drop_column",
    setup: "CREATE TABLE t (id bigserial PRIMARY KEY, name text, legacy_code text NOT NULL);
INSERT INTO t (name, legacy_code) VALUES ('a', 'A1'), ('b', 'B2');",
    plan: r#"
table = "t"
[[operations]]
kind = "drop_column"
column = "legacy_code"
down = "'none'"
"#,
    old_writes: "INSERT INTO t (id, name, legacy_code) VALUES (10, 'c', 'C3') ON CONFLICT (id) DO NOTHING;",
    new_writes: "INSERT INTO t (id, name) VALUES (11, 'd');",
    transition: ("SELECT id || ':' || name || ':' || legacy_code FROM t ORDER BY id", &["1:a:A1", "2:b:B2", "10:c:C3", "11:d:none"]),
    result: ("SELECT id || ':' || name || ':' || (SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'legacy_code' AND NOT attisdropped) FROM t ORDER BY id", &["1:a:0", "2:b:0", "10:c:0", "11:d:0"]),
};

scenario_tests! {
    drop_column_contract, drop_column_rollback, drop_column_runner, drop_column_abort => DROP_COLUMN;
}
