//! `update_rows`: its scenarios through every path (contract, rollback, runner, abort).

use super::*;

pub(super) const UPDATE_ROWS: Scenario = Scenario {
    name: "update_rows",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "update_rows"
set = { email = "lower(trim(email))" }
where = "email <> lower(trim(email))"
"#,
    old_writes: "INSERT INTO t (id, email) VALUES (10, 'MiXeD@Example.com') ON CONFLICT (id) DO UPDATE SET email = ' Again@Example.com';",
    new_writes: "UPDATE t SET email = 'Alan@Example.com' WHERE id = 2;",
    transition: ("SELECT id || ':' || coalesce(email, 'NULL') FROM t ORDER BY id", &["1:ada@example.com", "2:alan@example.com", "3:NULL", "4:grace@example.com", "10:again@example.com"]),
    result: ("SELECT id || ':' || coalesce(email, 'NULL') FROM t ORDER BY id", &["1:ada@example.com", "2:alan@example.com", "3:NULL", "4:grace@example.com", "10:again@example.com"]),
};

/// The README's second example: three operations on one column, composed in order.
pub(super) const NORMALIZE_EMAILS: Scenario = Scenario {
    name: "normalize_emails",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "update_rows"
set = { email = "lower(trim(email))" }
where = "email <> lower(trim(email))"
[[operations]]
kind = "set_not_null"
column = "email"
fill = "'unknown+' || id || '@invalid'"
[[operations]]
kind = "create_index"
columns = ["email"]
unique = true
"#,
    old_writes: "INSERT INTO t (id, email) VALUES (10, NULL) ON CONFLICT (id) DO UPDATE SET email = ' X@Example.com';",
    new_writes: "INSERT INTO t (id, email) VALUES (11, 'Y@EXAMPLE.COM');",
    transition: ("SELECT id || ':' || email FROM t ORDER BY id", &["1:ada@example.com", "2:alan@example.com", "3:unknown+3@invalid", "4:grace@example.com", "10:x@example.com", "11:y@example.com"]),
    result: ("SELECT id || ':' || email || ':' || (SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'email') || ':' || (SELECT indisunique::text FROM pg_index WHERE indexrelid = 't_email_key'::regclass) FROM t ORDER BY id", &["1:ada@example.com:true:true", "2:alan@example.com:true:true", "3:unknown+3@invalid:true:true", "4:grace@example.com:true:true", "10:x@example.com:true:true", "11:y@example.com:true:true"]),
};

scenario_tests! {
    update_rows_contract, update_rows_rollback, update_rows_runner, update_rows_abort => UPDATE_ROWS;
    normalize_emails_contract, normalize_emails_rollback, normalize_emails_runner, normalize_emails_abort => NORMALIZE_EMAILS;
}
