//! Throwaway clusters go away whatever ends their owner: `backfill demo` is stopped by SIGINT
//! to its whole process group (a Ctrl-C: the terminal signals the foreground group, which is
//! where the cleanup watchdog used to die too), SIGTERM and SIGHUP to the group (a `kill`, a
//! closed terminal), and SIGKILL of the demo alone. Each time its server must stop and its
//! folder go within seconds. The demo runs in a process group of its own so that the test
//! binary is never signalled.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the watchdog may take to stop the server and remove the folder.
const CLEANUP: Duration = Duration::from_secs(15);
/// How long the demo may take to start its cluster and its simulated application (initdb on a
/// busy two-core machine is slow).
const STARTUP: Duration = Duration::from_secs(120);

/// A running `backfill demo`. Dropping it kills whatever is left of it (the demo's group, its
/// server, its watchdog, its folder), so a failed test leaves nothing behind.
struct Demo {
    child: Child,
    lines: Receiver<String>,
    /// Everything it printed, for failure messages.
    output: Arc<Mutex<String>>,
    dir: Option<PathBuf>,
    postmaster: Option<u32>,
}

impl Demo {
    /// Starts the demo in a new process group (its pid is the group's id).
    fn start() -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_backfill"))
            .args(["demo", "--rows", "2000"])
            .env_remove("DATABASE_URL")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start backfill demo");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("demo stdout");
        let log = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                log.lock().expect("log").push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let mut stderr = child.stderr.take().expect("demo stderr");
        let log = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            log.lock().expect("log").push_str(&text);
        });
        Demo {
            child,
            lines,
            output,
            dir: None,
            postmaster: None,
        }
    }

    fn output(&self) -> String {
        self.output.lock().expect("log").clone()
    }

    /// Waits for the line the predicate picks; panics if the demo ends or takes too long.
    fn wait_line(&self, what: &str, pick: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STARTUP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pick(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no {what} after {STARTUP:?}:\n{}", self.output())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the demo ended before {what}:\n{}", self.output())
                }
            }
        }
    }

    /// Waits until the cluster runs and the simulated application writes to it; returns the
    /// cluster's folder.
    fn wait_running(&mut self) -> PathBuf {
        let line = self.wait_line("cluster folder", |l| l.contains("cluster in "));
        let dir = PathBuf::from(line.split("cluster in ").nth(1).expect("folder").trim());
        self.dir = Some(dir.clone());
        self.wait_line("simulated application", |l| l.contains("runs alone"));
        let pid = std::fs::read_to_string(dir.join("data/postmaster.pid"))
            .expect("postmaster.pid")
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
            .expect("the postmaster's pid");
        self.postmaster = Some(pid);
        assert!(alive(pid), "the postmaster {pid} does not run");
        assert!(
            !leftovers(&dir).is_empty(),
            "no process of {} found",
            dir.display()
        );
        dir
    }

    /// Sends `signal` to the demo's whole process group, as a terminal would.
    fn signal_group(&self, signal: &str) {
        let group = format!("-{}", self.child.id());
        assert!(kill(signal, &group), "kill -s {signal} -- {group} failed");
    }

    /// Sends `signal` to the demo process alone.
    fn signal_demo(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(kill(signal, &pid), "kill -s {signal} -- {pid} failed");
    }

    /// Asserts that within [`CLEANUP`] the demo has exited, no process of its cluster remains
    /// and the folder is gone.
    fn assert_cleaned_up(&mut self, dir: &Path) {
        let deadline = Instant::now() + CLEANUP;
        let postmaster = self.postmaster.expect("postmaster pid");
        loop {
            let exited = self.child.try_wait().expect("wait for the demo").is_some();
            let left = leftovers(dir);
            let running = alive(postmaster);
            let exists = dir.exists();
            if exited && left.is_empty() && !running && !exists {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {CLEANUP:?}: demo exited {exited}, postmaster {postmaster} running {running}, folder {} exists {exists}, processes left {left:?}\n{}",
                dir.display(),
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // Whatever is left of the demo's group (the group is gone when all went well).
        kill("KILL", &format!("-{}", self.child.id()));
        let _ = self.child.wait();
        let Some(dir) = &self.dir else { return };
        if dir.exists() {
            if let Some(bin) = backfill::ephemeral::find_bin() {
                let _ = backfill::ephemeral::pg_command(&bin, "pg_ctl")
                    .arg("-D")
                    .arg(dir.join("data"))
                    .args(["-m", "immediate", "stop"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if let Some(pid) = self.postmaster.filter(|&p| alive(p)) {
            kill("KILL", &pid.to_string());
        }
        // The watchdog and anything else still naming or standing in the folder, by pid.
        for pid in leftovers(dir) {
            kill("KILL", &pid.to_string());
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// `kill -s <signal> -- <target>`; whether it was delivered.
fn kill(signal: &str, target: &str) -> bool {
    Command::new("kill")
        .args(["-s", signal, "--", target])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether process `pid` runs (a zombie waiting to be reaped has ended).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which is in parentheses.
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// Processes that belong to the cluster in `dir`: those whose command line names it (the
/// postmaster, the watchdog) and those whose working directory is in it (every server process
/// works in the data folder, even after the folder is deleted).
fn leftovers(dir: &Path) -> Vec<u32> {
    let dir_text = dir.to_string_lossy().into_owned();
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && alive(pid))
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let names = String::from_utf8_lossy(&cmdline)
                .split('\0')
                .any(|arg| arg.contains(&dir_text));
            let inside = std::fs::read_link(format!("/proc/{pid}/cwd"))
                .map(|cwd| cwd.to_string_lossy().starts_with(&dir_text))
                .unwrap_or(false);
            names || inside
        })
        .collect()
}

/// Whether the server binaries are here (the suite may run against an existing server only).
fn have_server() -> bool {
    let found = backfill::ephemeral::find_bin().is_some();
    if !found {
        eprintln!("skipped: no PostgreSQL server binaries");
    }
    found
}

fn group_signal_cleans_up(signal: &str) {
    if !have_server() {
        return;
    }
    let mut demo = Demo::start();
    let dir = demo.wait_running();
    demo.signal_group(signal);
    demo.assert_cleaned_up(&dir);
}

#[test]
fn ctrl_c_to_the_process_group_removes_the_cluster() {
    group_signal_cleans_up("INT");
}

#[test]
fn sigterm_to_the_process_group_removes_the_cluster() {
    group_signal_cleans_up("TERM");
}

#[test]
fn sighup_to_the_process_group_removes_the_cluster() {
    group_signal_cleans_up("HUP");
}

#[test]
fn sigkill_of_the_demo_alone_removes_the_cluster() {
    if !have_server() {
        return;
    }
    let mut demo = Demo::start();
    let dir = demo.wait_running();
    demo.signal_demo("KILL");
    demo.assert_cleaned_up(&dir);
}
