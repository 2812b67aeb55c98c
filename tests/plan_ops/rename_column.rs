//! `rename_column`: its scenarios through every path (contract, rollback, runner, abort).

use super::*;

pub(super) const RENAME_COLUMN: Scenario = Scenario {
    name: "rename_column",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "rename_column"
from = "email"
to = "email_address"
"#,
    old_writes: "INSERT INTO t (id, email) VALUES (10, 'old@example.com') ON CONFLICT (id) DO UPDATE SET email = 'old2@example.com'; UPDATE t SET email = 'alan@turing.org' WHERE id = 2;",
    new_writes: "INSERT INTO t (id, email_address) VALUES (11, 'new@example.com'); UPDATE t SET email_address = 'ada@lovelace.org' WHERE id = 1;",
    transition: ("SELECT id || ':' || coalesce(email, 'NULL') || ':' || coalesce(email_address, 'NULL') FROM t ORDER BY id", &["1:ada@lovelace.org:ada@lovelace.org", "2:alan@turing.org:alan@turing.org", "3:NULL:NULL", "4:GRACE@example.com :GRACE@example.com ", "10:old2@example.com:old2@example.com", "11:new@example.com:new@example.com"]),
    result: ("SELECT id || ':' || coalesce(email_address, 'NULL') FROM t ORDER BY id", &["1:ada@lovelace.org", "2:alan@turing.org", "3:NULL", "4:GRACE@example.com ", "10:old2@example.com", "11:new@example.com"]),
};

scenario_tests! {
    rename_column_contract, rename_column_rollback, rename_column_runner, rename_column_abort => RENAME_COLUMN;
}
