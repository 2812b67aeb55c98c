//! Shrinking a failing case: its script is replayed on fresh databases with seeded rows and
//! statements removed (first all but the failing row and what reached it, or everything after
//! the failure; then halves, quarters, ... down to one item at a time), keeping each removal
//! after which the same failure (same check, same step, same SQLSTATE) still shows, until
//! nothing more can go or the time is up. A replay that writes, during a backfill, what the
//! model cannot predict does not count.

use std::time::{Duration, Instant};

use super::exec::{
    group_labels, layout, run_case, seed_sql, Failure, Mode, Script, Signature, Slot,
};
use super::kinds::{Kind, CONTRACT};

/// The result of shrinking.
pub struct Shrunk {
    pub script: Script,
    pub replays: usize,
    pub elapsed: Duration,
    /// Whether the script was replayed to the same failure at least once.
    pub reproduced: bool,
}

/// The script with only the items (seeded rows, then statements in order) `keep` holds.
fn subset(script: &Script, keep: &[bool]) -> Script {
    let rows = script.rows.len();
    let mut i = rows;
    let groups = script
        .groups
        .iter()
        .map(|g| {
            g.iter()
                .filter(|_| {
                    i += 1;
                    keep[i - 1]
                })
                .cloned()
                .collect()
        })
        .collect();
    Script {
        rows: script
            .rows
            .iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(r, _)| r.clone())
            .collect(),
        last_id: script.last_id,
        groups,
    }
}

async fn still_fails(kind: &Kind, script: Script, sig: &Signature) -> bool {
    let out = run_case(kind, Mode::Replay(script, Some(sig.clone()))).await;
    out.valid && out.failures.iter().any(|f| &f.sig == sig)
}

/// The first removals tried, big ones: everything but the failure's row (when it names one)
/// and the statements that reached it, whose key is stable when it was seeded; everything
/// after the failure showed.
fn first_tries(script: &Script, failure: &Failure, total: usize) -> Vec<Vec<bool>> {
    let rows = script.rows.len();
    let mut tries = Vec::new();
    if let Some((id, stmts)) = &failure.row {
        let mut only = vec![false; total];
        for (i, (seeded, _)) in script.rows.iter().enumerate() {
            only[i] = seeded == id;
        }
        for s in stmts {
            only[rows + s] = true;
        }
        tries.push(only);
    }
    let mut cut = vec![true; total];
    for k in cut.iter_mut().skip(rows + failure.after) {
        *k = false;
    }
    tries.push(cut);
    tries
}

/// Shrinks `script`, which failed with `failure`, for at most `budget`.
pub async fn shrink(kind: &Kind, script: &Script, failure: &Failure, budget: Duration) -> Shrunk {
    let started = Instant::now();
    let sig = &failure.sig;
    let total = script.rows.len() + script.groups.iter().map(Vec::len).sum::<usize>();
    let mut keep = vec![true; total];
    let (mut replays, mut reproduced) = (0, false);
    for candidate in first_tries(script, failure, total) {
        if candidate == keep || started.elapsed() >= budget {
            continue;
        }
        replays += 1;
        if still_fails(kind, subset(script, &candidate), sig).await {
            keep = candidate;
            reproduced = true;
            break;
        }
    }
    // Then pieces of what is left, halves first, down to one item at a time.
    let mut chunk = (keep.iter().filter(|k| **k).count() / 2).max(1);
    while started.elapsed() < budget {
        let live: Vec<usize> = (0..total).filter(|i| keep[*i]).collect();
        let mut removed = false;
        for piece in live.chunks(chunk) {
            if started.elapsed() >= budget {
                break;
            }
            let mut candidate = keep.clone();
            for i in piece {
                candidate[*i] = false;
            }
            replays += 1;
            if still_fails(kind, subset(script, &candidate), sig).await {
                keep = candidate;
                removed = true;
                reproduced = true;
            }
        }
        if chunk == 1 && !removed {
            break;
        }
        chunk = (chunk / 2).max(1);
    }
    Shrunk {
        script: subset(script, &keep),
        replays,
        elapsed: started.elapsed(),
        reproduced,
    }
}

/// The script as SQL a person can replay by hand: the table, the seeded rows, then each step
/// (plan files, `backfill run`, the statements of each group with their connection and
/// release).
pub fn render(kind: &Kind, script: &Script) -> String {
    let mut out = format!("-- the table\n{}\n", kind.ddl());
    out.push_str(&format!("-- {} seeded rows\n", script.rows.len()));
    if let Some(sql) = seed_sql(&script.rows) {
        out.push_str(&sql);
        out.push('\n');
    }
    out.push_str(&format!(
        "SELECT setval(pg_get_serial_sequence('t', 'id'), {});\n",
        script.last_id
    ));
    let labels = group_labels(kind);
    let mut groups = script.groups.iter().zip(labels.iter());
    let mut group = |out: &mut String| {
        if let Some((stmts, label)) = groups.next() {
            out.push_str(&format!("-- {label}: {} statements\n", stmts.len()));
            for s in stmts {
                out.push_str(&format!(
                    "/* connection {}, release {} */ {};\n",
                    s.client + 1,
                    s.writer,
                    s.sql()
                ));
            }
        }
    };
    for slot in layout(kind) {
        match slot {
            Slot::Writes(..) => group(&mut out),
            Slot::Expand(p) => {
                let plan = &kind.plans[p];
                out.push_str(&format!("-- plan file {}:\n", plan.file));
                for line in plan.toml.lines() {
                    out.push_str(&format!("--   {line}\n"));
                }
                out.push_str(&format!(
                    "-- $ backfill run PLANS --release {} (expand, dual-write, backfill held at its start)\n",
                    plan.expand
                ));
                group(&mut out);
                out.push_str("-- the backfill goes on\n");
                group(&mut out);
                out.push_str("-- the backfill ended\n");
            }
            Slot::Contract => out.push_str(&format!(
                "-- $ backfill run PLANS --release {CONTRACT} (contract)\n"
            )),
        }
    }
    out
}
