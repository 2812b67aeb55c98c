//! Every way of connecting, against a private cluster with TLS on (a self-signed certificate
//! made with openssl) and a password-protected role: a key=value string, a URL, the `PG*`
//! variables, `PGPASSWORD`, a password file, `sslmode` require / verify-ca / verify-full. The
//! password never appears in any output.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use backfill::db::ConnectionSpec;
use backfill::ephemeral::{Cluster, ClusterOptions};

const SECRET: &str = "s3cret-Pa55";

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_backfill"));
    cmd.args(args).stdin(Stdio::null());
    for v in [
        "DATABASE_URL",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSSLMODE",
        "PGSSLROOTCERT",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("HOME", "/nonexistent");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run backfill")
}

fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(args: &[&str], envs: &[(&str, &str)]) {
    let out = run(args, envs);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(0), "{args:?} {envs:?}: {text}");
    assert!(!text.contains(SECRET), "the password was printed: {text}");
}

fn fails(args: &[&str], envs: &[(&str, &str)], expect: &str) {
    let out = run(args, envs);
    let text = all_output(&out);
    assert_ne!(
        out.status.code(),
        Some(0),
        "{args:?} {envs:?} should fail: {text}"
    );
    assert!(
        text.contains(expect),
        "{args:?}: expected `{expect}` in: {text}"
    );
    assert!(!text.contains(SECRET), "the password was printed: {text}");
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a certificate authority and a server certificate for `localhost` only, installs them
/// and turns TLS on.
async fn tls_cluster() -> (Cluster, String) {
    let cluster = Cluster::start(&ClusterOptions {
        unsafe_fast: true,
        watchdog: true,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let data = cluster.dir().join("data");
    // A certificate authority, and a server certificate it signs for `localhost` only.
    let dir = cluster.dir().to_path_buf();
    openssl(
        &dir,
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "2",
            "-nodes",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-new",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\n").expect("ext");
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.crt",
            "-extfile",
            "ext.cnf",
        ],
    );
    for f in ["server.crt", "server.key"] {
        std::fs::copy(dir.join(f), data.join(f)).expect("install the certificate");
    }
    let cert = dir.join("ca.crt");
    if backfill::ephemeral::is_root() {
        let _ = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(data.join("server.key"))
            .arg(data.join("server.crt"))
            .status();
    }
    let _ = Command::new("chmod")
        .arg("600")
        .arg(data.join("server.key"))
        .status();
    // Passwords for `secure`, over TCP; everything else stays trusted.
    let hba = data.join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).unwrap_or_default();
    std::fs::write(
        &hba,
        format!("hostssl all secure 127.0.0.1/32 scram-sha-256\nhost all secure 127.0.0.1/32 reject\n{text}"),
    )
    .expect("write pg_hba.conf");
    let admin = crate::support::connect_url(&cluster.url("postgres")).await;
    for sql in [
        "ALTER SYSTEM SET ssl = on".to_string(),
        "SET password_encryption = 'scram-sha-256'".to_string(),
        format!("CREATE ROLE secure LOGIN PASSWORD '{SECRET}'"),
        "CREATE DATABASE app OWNER secure".to_string(),
        "SELECT pg_reload_conf()".to_string(),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    (cluster, cert.display().to_string())
}

fn port_of(cluster: &Cluster) -> String {
    let cfg: tokio_postgres::Config = cluster
        .url("postgres")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    cfg.get_ports().first().copied().unwrap_or(5432).to_string()
}

#[tokio::test]
async fn every_way_of_connecting() {
    let (cluster, cert) = tls_cluster().await;
    let port = port_of(&cluster);
    let status = ["status"];

    // key=value with the password, TLS required.
    let kv = format!(
        "host=127.0.0.1 port={port} user=secure dbname=app password={SECRET} sslmode=require"
    );
    ok(&["status", "--database-url", &kv], &[]);
    // A URL in DATABASE_URL.
    let url = format!("postgres://secure:{SECRET}@127.0.0.1:{port}/app?sslmode=require");
    ok(&status, &[("DATABASE_URL", &url)]);
    // The PG* variables alone.
    let pg = [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", port.as_str()),
        ("PGUSER", "secure"),
        ("PGDATABASE", "app"),
        ("PGPASSWORD", SECRET),
        ("PGSSLMODE", "require"),
    ];
    ok(&status, &pg);
    // A wrong password: refused, and neither password shows.
    let wrong = format!(
        "host=127.0.0.1 port={port} user=secure dbname=app password=nope{SECRET} sslmode=require"
    );
    fails(
        &["status", "--database-url", &wrong],
        &[],
        "password authentication failed",
    );
    // No TLS: pg_hba refuses `secure` without it.
    let plain = format!(
        "host=127.0.0.1 port={port} user=secure dbname=app password={SECRET} sslmode=disable"
    );
    fails(&["status", "--database-url", &plain], &[], "cannot connect");

    // A password file, 0600, found through PGPASSFILE.
    let passfile = cluster.dir().join("pgpass");
    std::fs::write(&passfile, format!("127.0.0.1:{port}:app:secure:{SECRET}\n")).expect("pgpass");
    let _ = Command::new("chmod").arg("600").arg(&passfile).status();
    let passfile_arg = passfile.display().to_string();
    let no_password = format!("host=127.0.0.1 port={port} user=secure dbname=app sslmode=require");
    ok(
        &["status", "--database-url", &no_password],
        &[("PGPASSFILE", &passfile_arg)],
    );
    // A password file others can read is ignored, as libpq does.
    let _ = Command::new("chmod").arg("644").arg(&passfile).status();
    fails(
        &["status", "--database-url", &no_password],
        &[("PGPASSFILE", &passfile_arg)],
        "group or world access",
    );

    // verify-full: the certificate names localhost, not 127.0.0.1.
    let full_localhost = format!(
        "postgres://secure:{SECRET}@localhost:{port}/app?sslmode=verify-full&sslrootcert={cert}"
    );
    ok(&status, &[("DATABASE_URL", &full_localhost)]);
    let full_ip = format!("host=127.0.0.1 port={port} user=secure dbname=app password={SECRET} sslmode=verify-full sslrootcert={cert}");
    fails(
        &["status", "--database-url", &full_ip],
        &[],
        "cannot connect",
    );
    // verify-ca checks the chain only.
    let ca_ip = format!("host=127.0.0.1 port={port} user=secure dbname=app password={SECRET} sslmode=verify-ca sslrootcert={cert}");
    ok(&["status", "--database-url", &ca_ip], &[]);
    // verify-full against another root refuses the server.
    let other = cluster.dir().join("other.crt");
    openssl(
        cluster.dir(),
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "2",
            "-nodes",
            "-subj",
            "/CN=other-ca",
            "-keyout",
            "other.key",
            "-out",
            "other.crt",
        ],
    );
    let wrong_root = format!(
        "postgres://secure:{SECRET}@localhost:{port}/app?sslmode=verify-full&sslrootcert={}",
        other.display()
    );
    fails(&status, &[("DATABASE_URL", &wrong_root)], "cannot connect");
    // verify-full with no root certificate anywhere says what is missing.
    let no_root = format!("postgres://secure:{SECRET}@localhost:{port}/app?sslmode=verify-full");
    fails(&status, &[("DATABASE_URL", &no_root)], "sslrootcert");

    // The library's connection really is encrypted.
    let spec = ConnectionSpec::parse(&full_localhost).unwrap_or_else(|e| panic!("{e}"));
    let client = spec.connect().await.unwrap_or_else(|e| panic!("{e}"));
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    assert!(ssl);
    assert!(!format!("{spec:?}").contains(SECRET));
    cluster.stop();
}
