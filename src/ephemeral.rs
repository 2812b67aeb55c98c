//! A throwaway PostgreSQL cluster: `initdb` into a temporary folder, a free port on 127.0.0.1,
//! the Unix socket in that folder, trust authentication. Run as the `postgres` user when the
//! process is root (PostgreSQL refuses to run as root). Used by `backfill demo` and the tests.
//!
//! A watchdog process stops the server and removes the folder as soon as the owning process
//! exits, however it exits; dropping the [`Cluster`] does the same at once.
//!
//! Why the watchdog survives what kills its owner: it runs in a process group of its own, so
//! the SIGINT of a Ctrl-C (sent to the terminal's whole foreground group) and the SIGHUP of a
//! closed terminal do not reach it, and it ignores SIGINT, SIGHUP, SIGTERM and SIGQUIT anyway.
//! It learns of its owner's end from a pipe rather than a pid: the owner holds the only write
//! end, which the kernel closes however the owner ends (SIGKILL included), so the watchdog's
//! read sees end-of-file. The server needs no such care: `pg_ctl start` puts the postmaster in
//! a session of its own (`setsid`), away from the terminal's signals.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::error::{Error, Result};

/// The Debian/Ubuntu package that provides the server binaries.
pub const SERVER_PACKAGE: &str = "postgresql";

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `fsync=off` and friends: fast, and fine for data that is thrown away.
    pub unsafe_fast: bool,
    /// Stop and remove the cluster when this process exits (false for `demo --keep`).
    pub watchdog: bool,
}

/// A running throwaway cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// The cleanup watchdog, when the cluster is removed at the end (none for `demo --keep`).
    watchdog: Option<Child>,
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The folder holding `initdb` and `postgres`: on `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn find_bin() -> Option<PathBuf> {
    // A folder with every server program the clusters use (a PATH entry with only some of them,
    // such as a symlink to initdb, does not do).
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres", "pg_basebackup"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if complete(&dir) {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            complete(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

/// A command running a PostgreSQL binary, as the `postgres` user when we are root.
pub fn pg_command(bin: &Path, program: &str) -> Command {
    let exe = bin.join(program);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(exe);
        c
    } else {
        Command::new(exe)
    }
}

fn env_error(message: impl Into<String>) -> Error {
    Error::Environment(message.into())
}

impl Cluster {
    /// Creates and starts a cluster.
    pub fn start(options: &ClusterOptions) -> Result<Cluster> {
        let bin = find_bin().ok_or_else(|| {
            env_error(format!(
                "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin: install them with `apt-get install -y {SERVER_PACKAGE}` (Debian/Ubuntu)"
            ))
        })?;
        let port = free_port()?;
        let (dir, watchdog) = new_dir(options.watchdog, &bin)?;
        let data = dir.join("data");
        let cluster = Cluster {
            dir,
            bin,
            port,
            watchdog,
        };
        let out = pg_command(&cluster.bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "--auth=trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| env_error(format!("initdb: {e}")))?;
        if !out.status.success() {
            return Err(env_error(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        cluster.pg_start(options.unsafe_fast)?;
        Ok(cluster)
    }

    /// A streaming replica of this cluster (`pg_basebackup -R`), started on a port of its own,
    /// removed like this one.
    pub fn replica(&self) -> Result<Cluster> {
        let port = free_port()?;
        let (dir, watchdog) = new_dir(self.watchdog.is_some(), &self.bin)?;
        let replica = Cluster {
            dir,
            bin: self.bin.clone(),
            port,
            watchdog,
        };
        let out = pg_command(&self.bin, "pg_basebackup")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg("-D")
            .arg(replica.dir.join("data"))
            .args(["-R", "-X", "stream", "--no-sync", "--checkpoint=fast"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| env_error(format!("pg_basebackup: {e}")))?;
        if !out.status.success() {
            return Err(env_error(format!(
                "pg_basebackup failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        replica.pg_start(true)?;
        Ok(replica)
    }

    fn pg_start(&self, unsafe_fast: bool) -> Result<()> {
        // `wal_init_zero=off`: a new cluster has no WAL files to recycle, so the first large
        // write needs a new 16 MB segment every 16 MB of WAL, and by default each is filled with
        // zeros and flushed while every commit waits (WALWriteLock): stalls of about 70 ms for
        // all the demo's application connections at once, its p99 at 70 ms against 17 ms with
        // the setting off. A server that has been running recycles its old segments instead.
        let mut settings = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 -c shared_buffers=128MB -c wal_init_zero=off",
            self.port,
            self.dir.display()
        );
        if unsafe_fast {
            settings.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let status = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &settings, "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| env_error(format!("pg_ctl: {e}")))?;
        if !status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            return Err(env_error(format!("the server did not start:\n{log}")));
        }
        Ok(())
    }

    /// Restarts the server the hard way (`-m immediate`: every backend is killed, and the
    /// server recovers from its WAL on start), as a crash and a restart would: for fault tests.
    pub fn restart(&self) -> Result<()> {
        let status = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-m", "immediate", "-w", "-t", "60", "restart"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| env_error(format!("pg_ctl: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(env_error("pg_ctl restart failed".to_string()))
        }
    }

    /// A libpq connection string for database `db` (no password: trust authentication).
    pub fn url(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        )
    }

    /// The same as a `postgres://` URL.
    pub fn uri(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The cluster's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of the server binaries.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Stops the server (fast shutdown).
    pub fn stop(&self) {
        let _ = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            self.stop();
            let _ = std::fs::remove_dir_all(&self.dir);
            // Closing the pipe ends the watchdog (it finds nothing left to remove); waiting for
            // it leaves no zombie behind in a process that goes on.
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}

/// The watchdog, as a `sh -c` script; its arguments are the cluster's folder, then the
/// `pg_ctl` command (with `runuser` in front when root). Arguments rather than text pasted into
/// the script, so no path needs quoting.
const WATCHDOG: &str = r#"trap '' INT HUP TERM QUIT
dir=$1
shift
while read -r line; do :; done
"$@" -D "$dir/data" -m immediate stop </dev/null >/dev/null 2>&1
rm -rf "$dir"
"#;

/// Starts the watchdog of cluster folder `dir`: it stops the server and removes the folder when
/// the returned child's stdin closes, that is when this process ends or drops the [`Cluster`].
fn start_watchdog(dir: &Path, bin: &Path, root: bool) -> Result<Child> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(WATCHDOG)
        .arg("backfill-cluster-watchdog")
        .arg(dir);
    if root {
        cmd.args(["runuser", "-u", "postgres", "--"]);
    }
    cmd.arg(bin.join("pg_ctl"))
        // A process group of its own: out of reach of the terminal's SIGINT and SIGHUP.
        .process_group(0)
        // std opens the write end close-on-exec, so no other child (the server, `pg_ctl`, a
        // second watchdog) inherits it and keeps the pipe open after this process is gone.
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| env_error(format!("cannot start the cleanup watchdog: {e}")))
}

/// A new folder for a cluster, owned by `postgres` when running as root, with a watchdog that
/// stops the server and removes the folder when this process ends (`watchdog`).
fn new_dir(watchdog: bool, bin: &Path) -> Result<(PathBuf, Option<Child>)> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("backfill-pg-{}-{nanos}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| env_error(format!("cannot create {}: {e}", dir.display())))?;
    let root = is_root();
    if root {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(env_error(
                "running as root, but the folder cannot be given to the `postgres` user (is there one?)",
            ));
        }
    }
    if !watchdog {
        return Ok((dir, None));
    }
    // Started before initdb, so the folder goes away even if initdb or the start fails.
    match start_watchdog(&dir, bin, root) {
        Ok(child) => Ok((dir, Some(child))),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| env_error(format!("no free port on 127.0.0.1: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| env_error(format!("no free port on 127.0.0.1: {e}")))
}
