//! Progress sinks: what the user sees of the engine's [`Event`]s.
//! - `Bars` (stderr is a terminal): one total bar (rows done of the estimate, rows/s, ETA, the
//!   throttle state) and one line per worker (segment, batch size, last chunk's latency);
//!   retries and failures are printed above the bars.
//! - `Plain` (stderr is not a terminal: CI logs): one line every few seconds, and retries and
//!   failures as they happen.
//! - `Json`: one JSON object per event on stdout, with a timestamp, for machines.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
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

/// What the text sinks show, kept from the events: the plan, the rows walked of the rows
/// expected, the rate, what holds the walk (a pause, a health probe), how it ended, and one line
/// per worker running now. It draws nothing itself, and its clock is passed in: the bars and
/// the log lines are drawn from it, and tests drive it with events and instants.
#[derive(Debug, Default)]
pub struct Board {
    plan: String,
    estimate: i64,
    done: i64,
    rate_limit: u64,
    last_throttled_ms: u64,
    health: Option<String>,
    paused: bool,
    end: Option<End>,
    workers: BTreeMap<u32, Walker>,
    rate: Rate,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
enum End {
    /// Every segment done: the summary.
    Finished(String),
    /// Stopped; the checkpoints hold.
    Interrupted,
    /// Stopped on an error (printed above the bars).
    Failed,
}

/// What a worker is doing, as its last events said.
#[derive(Debug, Clone, Default)]
struct Walker {
    /// Its segment (`None`: it has not walked any yet).
    segment: Option<i32>,
    /// Whether that segment is done (it looks for another).
    segment_done: bool,
    batch: u32,
    ms: u64,
}

impl Board {
    /// Takes in one event at `now`.
    pub fn apply(&mut self, event: &Event, now: Instant) {
        match event {
            Event::Started {
                plan,
                rows_estimate,
                rows_done,
                max_rows_per_second,
                ..
            } => {
                self.plan = plan.clone();
                self.estimate = (*rows_estimate).max(0);
                self.done = (*rows_done).max(0);
                self.rate_limit = *max_rows_per_second;
                self.rate.restart(now, self.done);
            }
            Event::WorkerStarted { worker } => {
                self.workers.insert(*worker, Walker::default());
            }
            Event::WorkerStopped { worker } => {
                self.workers.remove(worker);
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
                self.done = (*rows_done).max(self.done);
                self.last_throttled_ms = *throttled_ms;
                let w = self.workers.entry(*worker).or_default();
                w.segment = Some(*segment);
                w.segment_done = false;
                w.batch = *batch;
                w.ms = *ms;
                if !self.held() {
                    self.rate.sample(now, self.done);
                }
            }
            Event::SegmentDone { worker, segment } => {
                let w = self.workers.entry(*worker).or_default();
                w.segment = Some(*segment);
                w.segment_done = true;
            }
            Event::Estimate { rows_estimate } => self.estimate = (*rows_estimate).max(0),
            Event::Throttled { reason } => {
                self.health = Some(reason.clone());
                self.rate.stop();
            }
            Event::Unthrottled {} => {
                self.health = None;
                self.rate.restart(now, self.done);
            }
            Event::SettingsChanged { changes, .. } => {
                if let Some(r) = changes
                    .split(", ")
                    .find_map(|c| c.strip_prefix("max_rows_per_second="))
                {
                    self.rate_limit = r.parse().unwrap_or(self.rate_limit);
                }
            }
            Event::Paused { .. } => {
                self.paused = true;
                self.rate.stop();
            }
            Event::Resumed { .. } => {
                // Measured afresh from now: an average over the pause says nothing.
                self.paused = false;
                self.rate.restart(now, self.done);
            }
            Event::Finished {
                rows_done,
                rows_seen: _,
                rows_changed,
                seconds,
                retries,
            } => {
                self.done = (*rows_done).max(0);
                self.estimate = self.done;
                self.workers.clear();
                // Short: the bar's line is cut at the terminal's width.
                self.end = Some(End::Finished(format!(
                    "done in {seconds:.1}s, {} changed{}",
                    counted(*rows_changed, "row", "rows"),
                    if *retries > 0 {
                        format!(", {}", counted(*retries, "retry", "retries"))
                    } else {
                        String::new()
                    }
                )));
            }
            Event::Interrupted { rows_done, .. } => {
                self.done = (*rows_done).max(self.done);
                self.workers.clear();
                self.end = Some(End::Interrupted);
            }
            Event::Failed { .. } => {
                self.workers.clear();
                self.end = Some(End::Failed);
            }
            Event::Retry { .. } | Event::SegmentSplit { .. } => {}
        }
    }

    /// Whether nothing moves on purpose: paused, or held by a health probe.
    fn held(&self) -> bool {
        self.paused || self.health.is_some()
    }

    /// The plan.
    pub fn plan(&self) -> &str {
        &self.plan
    }

    /// Rows walked, every run together.
    pub fn done(&self) -> u64 {
        self.done.max(0) as u64
    }

    /// Rows expected in all (never fewer than the rows walked).
    pub fn total(&self) -> u64 {
        self.estimate.max(self.done).max(0) as u64
    }

    /// The rows walked of the rows expected, in percent: 100 only once the run finished.
    pub fn percent(&self) -> f64 {
        if matches!(self.end, Some(End::Finished(_))) {
            return 100.0;
        }
        match self.total() {
            0 => 0.0,
            total => (100.0 * self.done() as f64 / total as f64).min(99.9),
        }
    }

    /// Whether the run ended.
    pub fn ended(&self) -> bool {
        self.end.is_some()
    }

    /// What the walk is doing as a whole: its rate and the time left, or what holds it, or how
    /// it ended.
    pub fn pace(&self) -> String {
        match &self.end {
            Some(End::Finished(summary)) => return summary.clone(),
            Some(End::Interrupted) => return "interrupted".to_string(),
            Some(End::Failed) => return "failed".to_string(),
            None => {}
        }
        if self.paused {
            return format!("paused (backfill resume {})", self.plan);
        }
        if let Some(h) = &self.health {
            return format!("throttled: {h}");
        }
        let Some(per_sec) = self.rate.per_sec() else {
            return "measuring the rate".to_string();
        };
        let left = self.total().saturating_sub(self.done());
        // No time left claimed while the walk has passed the estimate: a new one follows.
        let eta = if left == 0 {
            "?".to_string()
        } else {
            eta(left as f64, per_sec)
        };
        let limit = if self.rate_limit > 0 && self.last_throttled_ms > 0 {
            format!(" (limit {} rows/s)", self.rate_limit)
        } else {
            String::new()
        };
        format!("{per_sec:.0} rows/s{limit}, ETA {eta}")
    }

    /// One line per worker running now, in worker order.
    pub fn workers(&self) -> Vec<(u32, String)> {
        self.workers
            .iter()
            .map(|(id, w)| {
                let line = if self.paused {
                    "paused".to_string()
                } else if self.health.is_some() {
                    "holding (throttled)".to_string()
                } else {
                    match w.segment {
                        None => "looking for a segment".to_string(),
                        Some(s) if w.segment_done => format!("segment {s} done"),
                        Some(s) => {
                            format!("segment {s}, batch {}, last chunk {} ms", w.batch, w.ms)
                        }
                    }
                };
                (*id, line)
            })
            .collect()
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

/// Columns the bars leave free at the right of the terminal (see [`Margin`]).
const ECHO_MARGIN: usize = 2;

/// stderr for the bars, keeping the cursor [`ECHO_MARGIN`] columns from the right edge.
///
/// indicatif draws its lines without newlines: it pads each one with spaces to the terminal's
/// width and lets the terminal wrap to the next. That leaves the cursor at the right edge after
/// the last line, where the next character written wraps to a new line: the `^C` the terminal
/// echoes on Ctrl-C (or a key typed meanwhile) would move the screen a line below where
/// indicatif thinks it is, and its next redraw would leave a stale copy of the first bar
/// behind. So indicatif is told the terminal is narrower by the margin (the bars are cut
/// there), the padding of every line is recomputed for the real width, and the last line of a
/// draw stops short of the edge: an echo lands on it, and the next redraw clears it.
#[derive(Debug)]
struct Margin<T> {
    term: T,
    line: Mutex<Written>,
    /// Set once anything was drawn: the cursor is then left inside the last line, and the
    /// output after the bars must start on a new line.
    drawn: Arc<AtomicBool>,
}

/// The line being written.
#[derive(Debug, Default)]
struct Written {
    /// Columns written since the line began.
    columns: usize,
    /// Its padding is due, held back until it is known whether another line follows.
    padding: bool,
}

impl<T: TermLike> Margin<T> {
    /// Writes the padding due: to the real edge when another line follows, short of it after
    /// the last one.
    fn pad(&self, last: bool) -> std::io::Result<()> {
        let Ok(mut line) = self.line.lock() else {
            return Ok(());
        };
        if !std::mem::take(&mut line.padding) {
            return Ok(());
        }
        let width = usize::from(self.term.width()).max(1);
        let mut pad = match line.columns % width {
            // An empty line takes a row of its own; a full one is at the edge already.
            0 if line.columns == 0 => width,
            0 => 0,
            used => width - used,
        };
        if last {
            pad = pad.saturating_sub(ECHO_MARGIN);
        }
        line.columns = 0;
        self.term.write_str(&" ".repeat(pad))
    }
}

impl<T: TermLike> TermLike for Margin<T> {
    fn width(&self) -> u16 {
        let margin = u16::try_from(ECHO_MARGIN).unwrap_or(0);
        self.term.width().saturating_sub(margin).max(1)
    }

    fn height(&self) -> u16 {
        self.term.height()
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.pad(false)?;
        self.term.move_cursor_up(n)
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.pad(false)?;
        self.term.move_cursor_down(n)
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.pad(false)?;
        self.term.move_cursor_right(n)
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.pad(false)?;
        self.term.move_cursor_left(n)
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.pad(false)?;
        if let Ok(mut line) = self.line.lock() {
            line.columns = 0;
        }
        self.term.write_line(s)
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        if s.bytes().all(|b| b == b' ') {
            // indicatif's padding, computed for the narrower width: ours replaces it.
            if let Ok(mut line) = self.line.lock() {
                line.padding = true;
            }
            return Ok(());
        }
        self.pad(false)?;
        if let Ok(mut line) = self.line.lock() {
            line.columns = match s.rfind('\r') {
                Some(i) => console::measure_text_width(&s[i + 1..]),
                None => line.columns + console::measure_text_width(s),
            };
        }
        self.term.write_str(s)
    }

    fn clear_line(&self) -> std::io::Result<()> {
        self.pad(false)?;
        if let Ok(mut line) = self.line.lock() {
            line.columns = 0;
        }
        self.term.clear_line()
    }

    fn flush(&self) -> std::io::Result<()> {
        self.pad(true)?;
        self.drawn.store(true, Ordering::SeqCst);
        self.term.flush()
    }
}

/// How often the bars are redrawn when nothing happens.
const REDRAW: Duration = Duration::from_millis(250);

/// The bars being drawn, if any: a line printed while they are up must go above them.
static DRAWN: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Prints `line` above the progress bars when they are drawn (from any thread), so that their
/// next redraw neither erases it nor leaves a stale copy of them behind. Returns `false`, having
/// printed nothing, when no bars are drawn.
pub fn eprint_above_bars(line: &str) -> bool {
    let Ok(drawn) = DRAWN.lock() else {
        return false;
    };
    match drawn.as_ref() {
        Some(multi) if !multi.is_hidden() => multi.println(line).is_ok(),
        _ => false,
    }
}

/// Stops drawing the bars where they are and moves below them, for a process that exits at
/// once (a second Ctrl-C): what it prints next starts on a line of its own.
pub fn leave_bars() {
    let Ok(mut drawn) = DRAWN.lock() else {
        return;
    };
    if let Some(multi) = drawn.take() {
        if !multi.is_hidden() {
            multi.set_draw_target(ProgressDrawTarget::hidden());
            // Out of the last bar's line (see `Margin`).
            eprintln!();
        }
    }
}

/// The bars: the total and one line per running worker, redrawn from the [`Board`] after each
/// event.
async fn bars(mut rx: UnboundedReceiver<Event>) {
    let drawn = Arc::new(AtomicBool::new(false));
    let target = if std::io::stderr().is_terminal() {
        let term = Margin {
            term: console::Term::buffered_stderr(),
            line: Mutex::new(Written::default()),
            drawn: drawn.clone(),
        };
        ProgressDrawTarget::term_like_with_hz(Box::new(term), 8)
    } else {
        ProgressDrawTarget::hidden()
    };
    let multi = MultiProgress::with_draw_target(target);
    if let Ok(mut drawn) = DRAWN.lock() {
        *drawn = Some(multi.clone());
    }
    // `wide_msg`: cut to the terminal's width (less the margin), so a bar never wraps.
    let style = ProgressStyle::with_template(
        "{prefix:.bold} [{bar:24}] {human_pos}/{human_len} rows  {wide_msg}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let worker_style = ProgressStyle::with_template("  {prefix}: {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let total = multi.add(ProgressBar::new(0).with_style(style));
    let mut lines: BTreeMap<u32, ProgressBar> = BTreeMap::new();
    let mut board = Board::default();
    // Draws are rate-limited, so the last change before a quiet spell (a pause) may not have
    // been drawn: a redraw now and then shows it.
    let mut redraw = tokio::time::interval(REDRAW);
    loop {
        let e = tokio::select! {
            e = rx.recv() => match e {
                Some(e) => e,
                None => break,
            },
            _ = redraw.tick() => {
                if !total.is_finished() {
                    total.tick();
                }
                continue;
            }
        };
        if let Some(line) = line_for(&e) {
            let _ = multi.println(line);
        }
        board.apply(&e, Instant::now());
        if matches!(e, Event::Started { .. }) {
            total.set_prefix(format!("backfill {}", board.plan()));
            total.reset_eta();
        }
        total.set_length(board.total());
        total.set_position(board.done());
        total.set_message(board.pace());
        let shown = board.workers();
        // Workers that stopped lose their line; new ones get one, in worker order.
        lines.retain(|id, bar| {
            let keep = shown.iter().any(|(w, _)| w == id);
            if !keep {
                bar.finish_and_clear();
                multi.remove(bar);
            }
            keep
        });
        for (id, text) in shown {
            if let Some(bar) = lines.get(&id) {
                bar.set_message(text);
                continue;
            }
            // Drawn nowhere until it joins the others: a bar that drew on its own first
            // leaves that line behind.
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
                .with_style(worker_style.clone());
            let bar = match lines.range(..id).next_back() {
                Some((_, before)) => multi.insert_after(before, bar),
                None => multi.insert_after(&total, bar),
            };
            bar.set_prefix(format!("worker {id}"));
            bar.set_message(text);
            lines.insert(id, bar);
        }
        match e {
            Event::Finished { .. } => total.finish(),
            Event::Interrupted { .. } | Event::Failed { .. } => total.abandon(),
            _ => {}
        }
    }
    if let Ok(mut drawn) = DRAWN.lock() {
        *drawn = None;
    }
    // Nothing draws after this (a bar dropped unfinished draws once more).
    drop(lines);
    drop(total);
    drop(multi);
    if drawn.load(Ordering::SeqCst) {
        // Out of the last bar's line (see `Margin`).
        eprintln!();
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

/// The time left at `rate` rows per second, or `?` while the rate is too low to tell.
fn eta(left: f64, rate: f64) -> String {
    if rate >= 1.0 {
        human(Duration::from_secs_f64(left / rate))
    } else {
        "?".to_string()
    }
}

/// Rows per second over the last few seconds of walking: restarted when the walk goes on after
/// a pause or a throttle, so what it says is never an average over a time nothing moved.
#[derive(Debug, Default)]
struct Rate {
    samples: std::collections::VecDeque<(Instant, i64)>,
}

impl Rate {
    const WINDOW: Duration = Duration::from_secs(5);
    /// The shortest span that tells a rate.
    const SHORTEST: Duration = Duration::from_millis(200);

    /// Rows walked were `done` at `now`.
    fn sample(&mut self, now: Instant, done: i64) {
        self.samples.push_back((now, done));
        // The oldest sample kept is the last one at least a window old.
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= Self::WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Measures from `now` on, at `done` rows.
    fn restart(&mut self, now: Instant, done: i64) {
        self.samples.clear();
        self.samples.push_back((now, done));
    }

    /// Nothing moves: no rate until [`Rate::restart`].
    fn stop(&mut self) {
        self.samples.clear();
    }

    /// Rows per second between the oldest and the newest sample; `None` until they are far
    /// enough apart.
    fn per_sec(&self) -> Option<f64> {
        let ((t0, d0), (t1, d1)) = (self.samples.front()?, self.samples.back()?);
        let span = t1.duration_since(*t0);
        (span >= Self::SHORTEST).then(|| (d1 - d0).max(0) as f64 / span.as_secs_f64())
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

/// Log lines: the start, then every `every` a line of progress (while the walk moves or holds),
/// and what happens as it happens.
async fn plain(mut rx: UnboundedReceiver<Event>, every: Duration) {
    let mut board = Board::default();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let started = Instant::now();
    loop {
        tokio::select! {
            e = rx.recv() => {
                let Some(e) = e else { break };
                board.apply(&e, Instant::now());
                if let Some(line) = line_for(&e).or_else(|| plain_line(&e, &board)) {
                    eprintln!("[backfill {}] {line}", board.plan());
                }
            }
            _ = tick.tick() => {
                if board.plan().is_empty() || board.ended() {
                    continue;
                }
                let workers: Vec<String> = board
                    .workers()
                    .iter()
                    .map(|(w, line)| format!("worker {w}: {line}"))
                    .collect();
                eprintln!(
                    "[backfill {}] {}/~{} rows ({:.1}%), {}, {:.0}s elapsed{}",
                    board.plan(),
                    board.done(),
                    board.total(),
                    board.percent(),
                    board.pace(),
                    started.elapsed().as_secs_f64(),
                    if workers.is_empty() { String::new() } else { format!("; {}", workers.join("; ")) }
                );
            }
        }
    }
}

/// The log line of an event that the bars show in place instead: the start and the end.
fn plain_line(event: &Event, board: &Board) -> Option<String> {
    match event {
        Event::Started {
            workers,
            segments,
            segments_left,
            rows_estimate,
            resumed,
            max_rows_per_second,
            ..
        } => Some(format!(
            "{} with {}: {segments_left} of {} to go, ~{}{}",
            if *resumed { "resuming" } else { "starting" },
            counted(*workers, "worker", "workers"),
            counted(*segments, "segment", "segments"),
            counted(*rows_estimate, "row", "rows"),
            if *max_rows_per_second > 0 {
                format!(", at most {max_rows_per_second} rows/s")
            } else {
                String::new()
            }
        )),
        Event::Finished {
            rows_seen, seconds, ..
        } => Some(format!(
            "{}, {} walked ({:.0} rows/s)",
            board.pace(),
            counted(*rows_seen, "row", "rows"),
            *rows_seen as f64 / seconds.max(1e-3)
        )),
        Event::Interrupted { .. } => Some(format!(
            "interrupted at {} of ~{}",
            counted(board.done(), "row", "rows"),
            board.total()
        )),
        Event::Estimate { rows_estimate } => Some(format!(
            "the table holds more rows than estimated: now ~{}, from the segments walked",
            counted(*rows_estimate, "row", "rows")
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A terminal screen as a VT100 keeps it: lines wrap at the width, and a character written
    /// at the right edge leaves the cursor there until the next one wraps it to a new row.
    #[derive(Debug, Default)]
    struct Screen {
        width: usize,
        rows: Vec<Vec<char>>,
        row: usize,
        col: usize,
        at_edge: bool,
    }

    impl Screen {
        fn put(&mut self, s: &str) {
            let mut chars = s.chars();
            while let Some(ch) = chars.next() {
                match ch {
                    // Escape sequences (colors) take no room.
                    '\x1b' => {
                        for c in chars.by_ref() {
                            if c.is_ascii_alphabetic() {
                                break;
                            }
                        }
                    }
                    '\r' => (self.col, self.at_edge) = (0, false),
                    '\n' => (self.row, self.col, self.at_edge) = (self.row + 1, 0, false),
                    ch => {
                        if self.at_edge {
                            (self.row, self.col, self.at_edge) = (self.row + 1, 0, false);
                        }
                        while self.rows.len() <= self.row {
                            self.rows.push(vec![' '; self.width]);
                        }
                        self.rows[self.row][self.col] = ch;
                        if self.col + 1 == self.width {
                            self.at_edge = true;
                        } else {
                            self.col += 1;
                        }
                    }
                }
            }
        }

        fn text(&self) -> Vec<String> {
            self.rows
                .iter()
                .map(|r| r.iter().collect::<String>().trim_end().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        }
    }

    #[derive(Debug, Clone)]
    struct Fake(Arc<Mutex<Screen>>);

    impl Fake {
        fn with<R>(&self, f: impl FnOnce(&mut Screen) -> R) -> std::io::Result<R> {
            let mut s = self
                .0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?;
            Ok(f(&mut s))
        }
    }

    impl TermLike for Fake {
        fn width(&self) -> u16 {
            self.with(|s| s.width as u16).unwrap_or(80)
        }
        fn height(&self) -> u16 {
            30
        }
        fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
            self.with(|s| (s.row, s.at_edge) = (s.row.saturating_sub(n), false))
        }
        fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
            self.with(|s| (s.row, s.at_edge) = (s.row + n, false))
        }
        fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
            self.with(|s| s.col = (s.col + n).min(s.width - 1))
        }
        fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
            self.with(|s| (s.col, s.at_edge) = (s.col.saturating_sub(n), false))
        }
        fn write_line(&self, line: &str) -> std::io::Result<()> {
            self.with(|s| s.put(&format!("{line}\n")))
        }
        fn write_str(&self, text: &str) -> std::io::Result<()> {
            self.with(|s| s.put(text))
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.with(|s| {
                if let Some(r) = s.rows.get_mut(s.row) {
                    r.iter_mut().for_each(|c| *c = ' ');
                }
                (s.col, s.at_edge) = (0, false);
            })
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Bars drawn on a fake 60-column screen, through [`Margin`] or not; then the terminal
    /// echoes `^C`, a line is printed above the bars, and the bars change: what the screen
    /// shows.
    fn after_an_echo(margin: bool) -> Vec<String> {
        let screen = Arc::new(Mutex::new(Screen {
            width: 60,
            ..Screen::default()
        }));
        let fake = Fake(screen.clone());
        let target = if margin {
            ProgressDrawTarget::term_like(Box::new(Margin {
                term: fake.clone(),
                line: Mutex::new(Written::default()),
                drawn: Arc::new(AtomicBool::new(false)),
            }))
        } else {
            ProgressDrawTarget::term_like(Box::new(fake.clone()))
        };
        let multi = MultiProgress::with_draw_target(target);
        let style = ProgressStyle::with_template("{wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        let total = multi.add(ProgressBar::new(10).with_style(style.clone()));
        total.set_message("total 1");
        let worker = multi.insert_after(
            &total,
            ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()).with_style(style),
        );
        worker.set_message("worker 1");
        // Above the bars, a line that the terminal wraps, then the echo of Ctrl-C.
        let _ = multi.println("x".repeat(59));
        let _ = fake.write_str("^C");
        let _ = multi.println("interrupt");
        worker.finish_and_clear();
        multi.remove(&worker);
        total.set_message("total 2");
        let shown = screen.lock().map(|s| s.text()).unwrap_or_default();
        shown
    }

    #[test]
    fn an_echoed_ctrl_c_leaves_no_stale_bar() {
        assert_eq!(
            after_an_echo(true),
            ["x".repeat(59).as_str(), "interrupt", "total 2"]
        );
        // What indicatif alone leaves: the first bar, stale, above the line printed.
        assert_eq!(after_an_echo(false)[1], "total 1");
    }

    fn started(estimate: i64, workers: u32) -> Event {
        Event::Started {
            plan: "p".into(),
            table: "t".into(),
            workers,
            segments: 16,
            segments_left: 16,
            rows_estimate: estimate,
            rows_done: 0,
            resumed: false,
            max_rows_per_second: 0,
        }
    }

    fn chunk(worker: u32, segment: i32, rows_done: i64) -> Event {
        Event::Chunk {
            worker,
            segment,
            rows: 100,
            changed: 100,
            batch: 100,
            ms: 5,
            throttled_ms: 0,
            rows_done,
        }
    }

    /// A board after the start with `workers` workers that each walked one chunk, at `t0`.
    fn running(workers: u32, t0: Instant) -> Board {
        let mut b = Board::default();
        b.apply(&started(10_000, workers), t0);
        for w in 1..=workers {
            b.apply(&Event::WorkerStarted { worker: w }, t0);
            b.apply(&chunk(w, w as i32, i64::from(w) * 100), t0);
        }
        b
    }

    fn ids(b: &Board) -> Vec<u32> {
        b.workers().into_iter().map(|(w, _)| w).collect()
    }

    #[test]
    fn workers_that_stop_lose_their_line_and_new_ones_get_one() {
        let t0 = Instant::now();
        let mut b = running(4, t0);
        assert_eq!(ids(&b), [1, 2, 3, 4]);
        // `backfill set workers=1`: the others end after their chunk in flight.
        b.apply(&chunk(3, 3, 500), t0);
        for w in [2, 3, 4] {
            b.apply(&Event::WorkerStopped { worker: w }, t0);
        }
        assert_eq!(ids(&b), [1]);
        // workers=3: two come back, in worker order, before their first chunk.
        b.apply(&Event::WorkerStarted { worker: 3 }, t0);
        b.apply(&Event::WorkerStarted { worker: 2 }, t0);
        assert_eq!(
            b.workers(),
            [
                (1, "segment 1, batch 100, last chunk 5 ms".to_string()),
                (2, "looking for a segment".to_string()),
                (3, "looking for a segment".to_string()),
            ]
        );
    }

    #[test]
    fn a_pause_shows_paused_and_the_rate_after_it_is_fresh() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut b = running(2, t0);
        b.apply(&chunk(1, 1, 1_200), at(1_000));
        assert_eq!(b.pace(), "1200 rows/s, ETA 7s");
        b.apply(&Event::Paused { plan: "p".into() }, at(1_100));
        // A chunk in flight commits after the pause: it is counted, the pause still shows.
        b.apply(&chunk(2, 2, 1_300), at(1_200));
        assert_eq!(b.done(), 1_300);
        assert_eq!(b.pace(), "paused (backfill resume p)");
        assert!(b.workers().iter().all(|(_, l)| l == "paused"));
        // Resumed after 3 s: no rate until one is measured after the pause, and then it is
        // the rate since (2000 rows/s), not one averaged over the pause.
        b.apply(&Event::Resumed { plan: "p".into() }, at(4_200));
        assert_eq!(b.pace(), "measuring the rate");
        b.apply(&chunk(1, 1, 1_500), at(4_300));
        assert_eq!(b.pace(), "measuring the rate");
        b.apply(&chunk(1, 1, 2_300), at(4_700));
        assert_eq!(b.pace(), "2000 rows/s, ETA 3s");
        assert_eq!(b.workers()[0].1, "segment 1, batch 100, last chunk 5 ms");
    }

    #[test]
    fn a_throttle_holds_the_rate_like_a_pause() {
        let t0 = Instant::now();
        let mut b = running(1, t0);
        b.apply(
            &Event::Throttled {
                reason: "replica 1 lag 7.2s > 5.0s".into(),
            },
            t0,
        );
        assert_eq!(b.pace(), "throttled: replica 1 lag 7.2s > 5.0s");
        assert_eq!(b.workers()[0].1, "holding (throttled)");
        b.apply(&Event::Unthrottled {}, t0 + Duration::from_secs(10));
        assert_eq!(b.pace(), "measuring the rate");
    }

    #[test]
    fn past_the_estimate_it_is_never_100_percent_nor_0s_left() {
        let t0 = Instant::now();
        let mut b = Board::default();
        b.apply(&started(1_000, 1), t0);
        b.apply(&chunk(1, 0, 600), t0 + Duration::from_secs(1));
        b.apply(&chunk(1, 0, 1_200), t0 + Duration::from_secs(2));
        assert_eq!(b.total(), 1_200);
        assert!(b.percent() < 100.0, "{}", b.percent());
        assert_eq!(b.pace(), "600 rows/s, ETA ?");
        // The engine extrapolates from the segments.
        b.apply(
            &Event::Estimate {
                rows_estimate: 2_400,
            },
            t0,
        );
        assert_eq!((b.total(), b.percent()), (2_400, 50.0));
        assert_eq!(b.pace(), "600 rows/s, ETA 2s");
        b.apply(
            &Event::Finished {
                rows_done: 2_350,
                rows_seen: 2_350,
                rows_changed: 1,
                seconds: 4.0,
                retries: 1,
            },
            t0,
        );
        assert_eq!((b.total(), b.percent()), (2_350, 100.0));
        assert_eq!(b.pace(), "done in 4.0s, 1 row changed, 1 retry");
        assert!(b.workers().is_empty());
    }

    #[test]
    fn an_interrupt_clears_the_workers() {
        let t0 = Instant::now();
        let mut b = running(3, t0);
        b.apply(
            &Event::Interrupted {
                rows_done: 700,
                rows_seen: 700,
            },
            t0,
        );
        assert!(b.workers().is_empty());
        assert_eq!(b.pace(), "interrupted");
        assert!(b.percent() < 100.0);
    }

    #[test]
    fn log_lines_say_one_and_many_right() {
        let b = Board::default();
        let start = Event::Started {
            plan: "p".into(),
            table: "t".into(),
            workers: 1,
            segments: 1,
            segments_left: 1,
            rows_estimate: 1,
            rows_done: 0,
            resumed: false,
            max_rows_per_second: 0,
        };
        assert_eq!(
            plain_line(&start, &b).as_deref(),
            Some("starting with 1 worker: 1 of 1 segment to go, ~1 row")
        );
        let mut b = running(2, Instant::now());
        b.apply(&started(30_000, 4), Instant::now());
        let start = Event::Started {
            plan: "p".into(),
            table: "t".into(),
            workers: 4,
            segments: 16,
            segments_left: 3,
            rows_estimate: 30_000,
            rows_done: 0,
            resumed: true,
            max_rows_per_second: 500,
        };
        assert_eq!(
            plain_line(&start, &b).as_deref(),
            Some(
                "resuming with 4 workers: 3 of 16 segments to go, ~30000 rows, at most 500 rows/s"
            )
        );
    }
}
