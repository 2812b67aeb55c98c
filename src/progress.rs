//! Progress sinks: what the user sees of the engine's [`Event`]s.
//! - `Bars` (stderr is a terminal): one total bar (rows done of the estimate, rows/s, ETA, the
//!   throttle state) and one line per worker (segment, batch size, last chunk's latency);
//!   retries and failures are printed above the bars.
//! - `Plain` (stderr is not a terminal: CI logs): one line every few seconds, and retries and
//!   failures as they happen.
//! - `Json`: one JSON object per event on stdout, with a timestamp, for machines.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::engine::Event;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bars on a terminal, log lines otherwise.
    Auto,
    /// Live bars on stderr.
    Bars,
    /// A log line every few seconds on stderr.
    Plain,
    /// One JSON object per event on stdout.
    Json,
    /// Nothing but errors.
    Quiet,
}

impl Mode {
    /// `Auto` resolved against stderr.
    pub fn resolve(self) -> Mode {
        match self {
            Mode::Auto if std::io::stderr().is_terminal() => Mode::Bars,
            Mode::Auto => Mode::Plain,
            m => m,
        }
    }
}

/// How often `Plain` prints a line.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

/// Consumes events until the channel closes.
pub async fn render(mode: Mode, mut rx: UnboundedReceiver<Event>) {
    match mode.resolve() {
        Mode::Json => {
            while let Some(e) = rx.recv().await {
                let mut value = serde_json::to_value(&e).unwrap_or_default();
                value["ts"] = serde_json::json!(now_rfc3339());
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{value}");
                let _ = out.flush();
            }
        }
        Mode::Bars => bars(rx).await,
        Mode::Plain => plain(rx, PLAIN_INTERVAL).await,
        Mode::Auto | Mode::Quiet => while rx.recv().await.is_some() {},
    }
}

/// Totals kept by the text sinks.
#[derive(Debug, Default)]
struct Tally {
    plan: String,
    estimate: i64,
    done: i64,
    rate_limit: u64,
    workers: BTreeMap<u32, (i32, u32, u64)>,
    last_throttled_ms: u64,
    health: Option<String>,
}

impl Tally {
    fn throttle_note(&self) -> String {
        if let Some(h) = &self.health {
            format!("throttled: {h}")
        } else if self.rate_limit > 0 && self.last_throttled_ms > 0 {
            format!("throttled: max {} rows/s", self.rate_limit)
        } else {
            String::new()
        }
    }
}

fn line_for(event: &Event) -> Option<String> {
    match event {
        Event::Retry {
            worker,
            segment,
            attempt,
            wait_ms,
            batch,
            reason,
            ..
        } => Some(format!(
            "retry: worker {worker}, segment {segment}, attempt {attempt}: {reason}; again in {:.1}s with batch {batch}",
            *wait_ms as f64 / 1000.0
        )),
        Event::Failed { message } => Some(format!("failed: {message}")),
        Event::Paused { plan } => Some(format!(
            "paused from another terminal: workers hold at their next chunk (backfill resume {plan})"
        )),
        Event::Resumed { .. } => Some("resumed".to_string()),
        Event::Throttled { reason } => Some(format!("throttled: {reason}")),
        Event::Unthrottled {} => Some("no longer throttled".to_string()),
        Event::SettingsChanged { changes, .. } => Some(format!("settings changed: {changes}")),
        _ => None,
    }
}

async fn bars(mut rx: UnboundedReceiver<Event>) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
    let style = ProgressStyle::with_template(
        "{prefix:.bold} [{bar:32}] {human_pos}/{human_len} rows  {msg}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let worker_style = ProgressStyle::with_template("  {prefix}: {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let total = multi.add(ProgressBar::new(0).with_style(style));
    let mut workers: BTreeMap<u32, ProgressBar> = BTreeMap::new();
    let mut tally = Tally::default();
    let mut rate = Rate::default();
    while let Some(e) = rx.recv().await {
        if let Some(line) = line_for(&e) {
            let _ = multi.println(line);
        }
        match e {
            Event::Started {
                plan,
                rows_estimate,
                rows_done,
                max_rows_per_second,
                ..
            } => {
                tally.plan = plan.clone();
                tally.rate_limit = max_rows_per_second;
                total.set_prefix(format!("backfill {plan}"));
                total.set_length(rows_estimate.max(rows_done).max(0) as u64);
                total.set_position(rows_done.max(0) as u64);
                total.reset_eta();
            }
            Event::Chunk {
                worker,
                segment,
                batch,
                ms,
                throttled_ms,
                rows_done,
                ..
            } => {
                tally.last_throttled_ms = throttled_ms;
                let bar = workers.entry(worker).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new_spinner().with_style(worker_style.clone()));
                    b.set_prefix(format!("worker {worker}"));
                    b
                });
                bar.set_message(format!(
                    "segment {segment}, batch {batch}, last chunk {ms} ms"
                ));
                chunk_total(&total, &mut rate, &tally, rows_done);
            }
            Event::SegmentDone { worker, segment } => {
                if let Some(bar) = workers.get(&worker) {
                    bar.set_message(format!("segment {segment} done"));
                }
            }
            Event::Finished {
                rows_seen,
                rows_changed,
                seconds,
                ..
            } => {
                for b in workers.values() {
                    b.finish_and_clear();
                }
                total.finish_with_message(format!(
                    "done: {} walked, {rows_changed} changed in {seconds:.1}s",
                    counted(rows_seen, "row", "rows")
                ));
            }
            Event::Interrupted { rows_done, .. } => {
                for b in workers.values() {
                    b.finish_and_clear();
                }
                total.abandon_with_message(format!("interrupted at {rows_done} rows"));
            }
            Event::Failed { .. } => {
                for b in workers.values() {
                    b.finish_and_clear();
                }
                total.abandon();
            }
            Event::Throttled { reason } => {
                tally.health = Some(reason);
                total.set_message(format!(
                    "throttled: {}",
                    tally.health.as_deref().unwrap_or("")
                ));
            }
            Event::Unthrottled {} => tally.health = None,
            Event::SettingsChanged { changes, .. } => {
                if let Some(r) = changes
                    .split(", ")
                    .find_map(|c| c.strip_prefix("max_rows_per_second="))
                {
                    tally.rate_limit = r.parse().unwrap_or(tally.rate_limit);
                }
            }
            Event::Paused { plan } => {
                // No rate or ETA while nothing moves: they would only grow stale.
                total.set_message(format!("paused (backfill resume {plan})"));
                for b in workers.values() {
                    b.set_message("paused");
                }
            }
            Event::Resumed { .. } => total.set_message("resuming"),
            Event::Retry { .. } => {}
        }
    }
}

/// `1 row`, `3 rows`: a count with its noun in the right number.
pub fn counted(n: impl TryInto<u64>, one: &str, many: &str) -> String {
    let n: u64 = n.try_into().unwrap_or(0);
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The current time in RFC 3339 (UTC, milliseconds), as every JSON line carries it.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// The total bar after a chunk: rows done (the length grows when the estimate was short),
/// rate and ETA, the throttle's note.
fn chunk_total(total: &ProgressBar, rate: &mut Rate, tally: &Tally, rows_done: i64) {
    let done = rows_done.max(0) as u64;
    if total.length().is_some_and(|l| done > l) {
        total.set_length(done);
    }
    total.set_position(done);
    let per_sec = rate.update(rows_done);
    let left = total.length().unwrap_or(done).saturating_sub(done) as f64;
    total.set_message(format!(
        "{per_sec:.0} rows/s  ETA {}  {}",
        eta(left, per_sec),
        tally.throttle_note()
    ));
}

/// The time left at `rate` rows per second, or `?` while the rate is too low to tell.
fn eta(left: f64, rate: f64) -> String {
    if rate >= 1.0 {
        human(Duration::from_secs_f64(left / rate))
    } else {
        "?".to_string()
    }
}

/// Rows per second over the last few seconds.
#[derive(Debug, Default)]
struct Rate {
    samples: std::collections::VecDeque<(Instant, i64)>,
}

impl Rate {
    const WINDOW: Duration = Duration::from_secs(5);

    fn update(&mut self, done: i64) -> f64 {
        let now = Instant::now();
        self.samples.push_back((now, done));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Self::WINDOW)
        {
            self.samples.pop_front();
        }
        match self.samples.front() {
            Some((t, d)) if now.duration_since(*t) > Duration::from_millis(200) => {
                (done - d) as f64 / now.duration_since(*t).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// `1h02m`, `3m05s`, `12s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

async fn plain(mut rx: UnboundedReceiver<Event>, every: Duration) {
    let mut tally = Tally::default();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut last = (Instant::now(), 0i64);
    let started = Instant::now();
    let mut paused = false;
    loop {
        tokio::select! {
            e = rx.recv() => {
                let Some(e) = e else { break };
                if let Some(line) = line_for(&e) {
                    eprintln!("[backfill {}] {line}", tally.plan);
                }
                match e {
                    Event::Started { plan, rows_estimate, rows_done, workers, segments, segments_left, resumed, max_rows_per_second, .. } => {
                        tally.plan = plan;
                        tally.estimate = rows_estimate;
                        tally.done = rows_done;
                        tally.rate_limit = max_rows_per_second;
                        last = (Instant::now(), rows_done);
                        eprintln!(
                            "[backfill {}] {} with {workers} workers: {segments_left} of {segments} segments to go, ~{rows_estimate} rows{}",
                            tally.plan,
                            if resumed { "resuming" } else { "starting" },
                            if max_rows_per_second > 0 { format!(", at most {max_rows_per_second} rows/s") } else { String::new() }
                        );
                    }
                    Event::Chunk { worker, segment, batch, ms, throttled_ms, rows_done, .. } => {
                        tally.done = rows_done;
                        tally.last_throttled_ms = throttled_ms;
                        tally.workers.insert(worker, (segment, batch, ms));
                    }
                    Event::Finished { rows_seen, rows_changed, seconds, retries, .. } => {
                        eprintln!(
                            "[backfill {}] done: {} walked, {rows_changed} changed in {seconds:.1}s ({:.0} rows/s), {}",
                            tally.plan,
                            counted(rows_seen, "row", "rows"),
                            rows_seen as f64 / seconds.max(1e-3),
                            counted(retries, "retry", "retries")
                        );
                    }
                    Event::Interrupted { rows_done, .. } => {
                        eprintln!("[backfill {}] interrupted at {rows_done} rows", tally.plan);
                    }
                    Event::Paused { .. } => paused = true,
                    Event::Resumed { .. } => paused = false,
                    _ => {}
                }
            }
            _ = tick.tick() => {
                if tally.plan.is_empty() {
                    continue;
                }
                let now = Instant::now();
                let rate = (tally.done - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
                last = (now, tally.done);
                let left = (tally.estimate - tally.done).max(0) as f64;
                let pace = if paused {
                    "paused".to_string()
                } else {
                    format!("{rate:.0} rows/s, ETA {}", eta(left, rate))
                };
                let pct = if tally.estimate > 0 { 100.0 * tally.done as f64 / tally.estimate as f64 } else { 0.0 };
                let workers: Vec<String> = tally.workers.iter().map(|(w, (s, b, ms))| format!("w{w}: seg {s} batch {b} {ms}ms")).collect();
                eprintln!(
                    "[backfill {}] {}/{} rows ({pct:.1}%), {pace}, {:.0}s elapsed {}; {}",
                    tally.plan,
                    tally.done,
                    tally.estimate,
                    started.elapsed().as_secs_f64(),
                    tally.throttle_note(),
                    workers.join(", ")
                );
            }
        }
    }
}
