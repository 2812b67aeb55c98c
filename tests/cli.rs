//! The command line as a user meets it: exit codes, what `plan` prints, and that `plan` and
//! `validate` leave the database unchanged.

use std::path::Path;

use crate::support::{backfill_cmd, backfill_ok, rows, TestDb};

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plans")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[tokio::test]
async fn plan_shows_phases_locks_and_release_gates() {
    let db = TestDb::new("cli_plan").await;
    let client = db.connect().await;
    client
        .batch_execute(crate::plan_examples::EXAMPLE_SCHEMA)
        .await
        .expect("schema");
    let plan = example("0001_split_full_name.toml");
    let stdout = backfill_ok(&["plan", &plan, "--release", "1.4.0"], Some(&db.url));
    assert!(
        stdout.contains("expand (due at 1.4.0 (from 1.4.0))"),
        "{stdout}"
    );
    assert!(
        stdout.contains("contract (waits for release 1.5.0 (now 1.4.0))"),
        "{stdout}"
    );
    assert!(stdout.contains("[ACCESS EXCLUSIVE] ALTER TABLE \"public\".\"users\" ADD COLUMN IF NOT EXISTS \"first_name\" text"), "{stdout}");
    assert!(
        stdout.contains("[SHARE ROW EXCLUSIVE] CREATE TRIGGER"),
        "{stdout}"
    );

    let sql = backfill_ok(&["plan", &plan, "--sql"], Some(&db.url));
    assert!(sql.contains("-- lock: ACCESS EXCLUSIVE\nALTER TABLE \"public\".\"users\" DROP COLUMN IF EXISTS \"full_name\";"), "{sql}");

    let out = backfill_cmd(
        &["plan", &plan, "--json", "--release", "1.4.0"],
        Some(&db.url),
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let phases = &json[0]["phases"];
    assert_eq!(phases[0]["phase"], "expand");
    assert_eq!(phases[0]["due_now"], true);
    assert_eq!(phases[3]["phase"], "contract");
    assert_eq!(phases[3]["due_now"], false);
    assert_eq!(
        phases[0]["steps"][0]["statements"][0]["lock"],
        "ACCESS_EXCLUSIVE"
    );

    // Nothing was created by planning.
    assert_eq!(
        rows(&client, "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attnum > 0").await,
        ["id,full_name,email,age,nickname,score,legacy_code,street,city"]
    );
}

#[test]
fn plan_needs_a_database_and_says_so() {
    let out = backfill_cmd(&["plan", &example("0001_split_full_name.toml")], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--database-url"));
}

#[test]
fn bad_command_lines_exit_2() {
    assert_eq!(backfill_cmd(&["validate"], None).status.code(), Some(2));
    assert_eq!(backfill_cmd(&["frobnicate"], None).status.code(), Some(2));
    let out = backfill_cmd(&["validate", "/no/such/plan.toml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/plan.toml"));
}

#[test]
fn a_connection_failure_never_prints_the_password() {
    let out = backfill_cmd(
        &["validate", &example("0001_split_full_name.toml")],
        Some("postgres://app:s3cret-pw@127.0.0.1:1/app?connect_timeout=2"),
    );
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("s3cret-pw"), "{all}");
    assert!(all.contains("cannot connect"), "{all}");
}

#[test]
fn the_demo_runs_every_phase_and_leaves_nothing_behind() {
    let stdout = backfill_ok(&["demo", "--rows", "5000"], None);
    for expected in [
        "release 1.4.0",
        "split_full_name: backfill done",
        ", 0 out of sync",
        "release 1.5.0",
        "split_full_name: contract done",
        "rows backfilled ",
        "app p99 latency ",
        "app errors        0",
        "rows wrong        0",
        "the throwaway cluster is stopped and removed",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in:\n{stdout}"
        );
    }
    let dir = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("cluster in "))
        .expect("the demo names its cluster folder");
    assert!(!Path::new(dir).exists(), "{dir} is left behind");
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    // (The cleanup watchdog, a shell loop naming the folder, may linger for a second.)
    let servers: Vec<String> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains(dir) && !l.starts_with("sh "))
        .map(String::from)
        .collect();
    assert!(servers.is_empty(), "still running: {servers:?}");
}

#[test]
fn every_command_has_an_example_in_its_help() {
    for cmd in [
        "validate",
        "plan",
        "run",
        "status",
        "verify",
        "pause",
        "resume",
        "set",
        "export",
        "abort",
        "completions",
        "man",
        "new",
        "schema",
        "demo",
    ] {
        let out = backfill_cmd(&[cmd, "--help"], None);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{cmd} --help");
        assert!(
            text.contains("Examples:") && text.contains(&format!("backfill {cmd}")),
            "{cmd} --help has no example:\n{text}"
        );
    }
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "_backfill()"),
        ("zsh", "#compdef backfill"),
        ("fish", "complete -c backfill"),
    ] {
        let out = backfill_cmd(&["completions", shell], None);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(
            text.contains("verify") && text.contains("--release"),
            "{shell}"
        );
    }
}

/// `--version` names the state schema version the binary keeps; `man` writes a page per
/// command, generated from the same definitions as `--help`, and a folder it cannot write is
/// a clear error (exit 2).
#[test]
fn version_names_the_state_schema_and_man_pages_are_written() {
    let out = backfill_cmd(&["--version"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text.trim(),
        format!(
            "backfill {} (state schema version {})",
            env!("CARGO_PKG_VERSION"),
            backfill::state::latest_version()
        )
    );
    let dir = std::env::temp_dir().join(format!("backfill-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.display().to_string();
    backfill_ok(&["man", "--out", &dir_arg], None);
    let page = std::fs::read_to_string(dir.join("backfill-run.1")).unwrap_or_default();
    assert!(
        page.contains(".TH backfill-run 1") && page.contains("release"),
        "{page}"
    );
    for cmd in ["backfill.1", "backfill-status.1", "backfill-export.1"] {
        assert!(dir.join(cmd).is_file(), "{cmd} missing");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let out = backfill_cmd(&["man", "--out", "/proc/no-such-place"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot write /proc/no-such-place"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn logs_follow_rust_log_as_text_or_json() {
    let db = crate::support::TestDb::new("cli_logs").await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE users (id bigserial PRIMARY KEY, full_name text, email text, age int, nickname text, score int NOT NULL DEFAULT 0, legacy_code text, street text, city text);
             INSERT INTO users (full_name) VALUES ('Ada Lovelace');",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let plan = example("0003_add_status.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_backfill"))
        .args([
            "run",
            &plan,
            "--release",
            "2.0.0",
            "--progress",
            "quiet",
            "--log-format",
            "json",
        ])
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "backfill=info")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "phase started" && l["fields"]["phase"] == "expand"),
        "{stderr}"
    );
    assert!(lines.iter().all(|l| l["level"].is_string()), "{stderr}");
    // Without RUST_LOG, nothing below a warning.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_backfill"))
        .args(["run", &plan, "--release", "2.1.0", "--progress", "quiet"])
        .env("DATABASE_URL", &db.url)
        .env_remove("RUST_LOG")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("INFO"));
}

/// `backfill new` writes the next numbered plan with every field of the kind: given fields set,
/// the others commented; `validate` accepts it once the required ones are filled in, and a
/// wrong kind or field is a clear error (exit 2) that writes nothing.
#[tokio::test]
async fn new_writes_the_next_numbered_plan_that_validates_once_filled() {
    let db = TestDb::new("cli_new").await;
    let client = db.connect().await;
    client
        .batch_execute("CREATE TABLE users (id bigserial PRIMARY KEY, email text, score int)")
        .await
        .expect("table");
    let dir = std::env::temp_dir().join(format!("backfill-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("folder");
    std::fs::write(
        dir.join("0007_earlier.toml"),
        "table = \"users\"\n[[operations]]\nkind = \"drop_column\"\ncolumn = \"score\"\n",
    )
    .expect("earlier plan");
    let d = dir.display().to_string();
    let out = backfill_ok(
        &[
            "new",
            "rename_column",
            "--table",
            "users",
            "--dir",
            &d,
            "from=email",
            "to=email_address",
        ],
        None,
    );
    let first = dir.join("0008_rename_column_users.toml");
    assert!(out.contains(&first.display().to_string()), "{out}");
    let text = std::fs::read_to_string(&first).unwrap_or_default();
    assert!(
        text.contains("from = \"email\"")
            && text.contains("to = \"email_address\"")
            && text.contains("(required) The current name."),
        "{text}"
    );
    let f = first.display().to_string();
    backfill_ok(&["validate", &f], Some(&db.url));

    // Required fields left out: the file says so, validate refuses it until they are filled.
    backfill_ok(
        &[
            "new",
            "change_type",
            "--table",
            "users",
            "--dir",
            &d,
            "--name",
            "Widen score!",
        ],
        None,
    );
    let second = dir.join("0009_widen_score.toml");
    let text = std::fs::read_to_string(&second).unwrap_or_default();
    assert!(
        text.contains("# column =\n")
            && text.contains("# type =\n")
            && text.contains("# rename_to =\n"),
        "{text}"
    );
    let s = second.display().to_string();
    let out = backfill_cmd(&["validate", &s], None);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let filled = text
        .replace("# column =\n", "column = \"score\"\n")
        .replace("# type =\n", "type = \"bigint\"\n");
    std::fs::write(&second, filled).expect("fill in");
    backfill_ok(&["validate", &s], Some(&db.url));

    for (args, says) in [
        (
            vec!["new", "chnage_type", "--table", "users"],
            "no operation kind `chnage_type`",
        ),
        (
            vec!["new", "rename_column", "--table", "users", "form=email"],
            "rename_column has no field `form`",
        ),
        (
            vec!["new", "rename_column", "--table", "users", "from"],
            "write fields as field=value",
        ),
    ] {
        let mut args = args;
        args.extend(["--dir", &d]);
        let out = backfill_cmd(&args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let files = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(files, 3, "a refused `new` wrote a file");
    let _ = std::fs::remove_dir_all(&dir);
}
