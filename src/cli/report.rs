//! What a long command shows while it runs: a progress bar on a terminal
//! that names each phase (a spinner with the elapsed time for a phase
//! without byte counts, such as SQLite's integrity_check), and with
//! `--verbose` a table of the phases on stderr at the end, each with its
//! time, the bytes it processed and the requests and bytes it cost the
//! storage.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use litevault::backend::{Backend, IoStats};
use litevault::Progress;

use super::{human, Ctx};

const BAR: &str = "{spinner} {msg:<18} {bytes}/{total_bytes} {wide_bar} {bytes_per_sec} eta {eta}";
const SPINNER: &str = "{spinner} {msg:<18} {elapsed}";

/// Feeds a terminal bar and, with `--verbose`, the phase table.
pub struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    /// Several operations share the bar: each adds its bytes to the total.
    accumulate: bool,
    log: Option<Mutex<PhaseLog>>,
    /// The storage of every repository involved (two for `copy`).
    backends: Vec<Arc<dyn Backend>>,
}

#[derive(Default)]
struct PhaseLog {
    current: Option<Current>,
    /// Phases in the order they first began; a phase that runs again (one
    /// per database) adds to its row.
    done: Vec<Row>,
}

struct Current {
    name: String,
    started: Instant,
    io: IoStats,
    bytes: u64,
}

struct Row {
    name: String,
    runs: u32,
    time: Duration,
    bytes: u64,
    io: IoStats,
}

impl PhaseLog {
    fn close(&mut self, io_now: IoStats) {
        let Some(c) = self.current.take() else {
            return;
        };
        let time = c.started.elapsed();
        let io = io_now.since(&c.io);
        if let Some(r) = self.done.iter_mut().find(|r| r.name == c.name) {
            r.runs += 1;
            r.time += time;
            r.bytes += c.bytes;
            r.io = r.io.plus(&io);
        } else {
            self.done.push(Row {
                name: c.name,
                runs: 1,
                time,
                bytes: c.bytes,
                io,
            });
        }
    }
}

/// "12 requests (1 list, 9 gets, 2 puts), 1.2 MiB sent, 3.4 MiB received,
/// 5 cache hits": only what is not zero.
pub fn io_line(io: &IoStats) -> String {
    let kinds: Vec<String> = [
        (io.lists, "list", "lists"),
        (io.gets, "get", "gets"),
        (io.puts, "put", "puts"),
        (io.deletes, "delete", "deletes"),
    ]
    .iter()
    .filter(|(n, _, _)| *n > 0)
    .map(|(n, one, many)| format!("{n} {}", if *n == 1 { one } else { many }))
    .collect();
    let n = io.requests();
    let mut s = format!("{n} {}", if n == 1 { "request" } else { "requests" });
    if !kinds.is_empty() {
        let _ = write!(s, " ({})", kinds.join(", "));
    }
    let _ = write!(
        s,
        ", {} sent, {} received",
        human(io.bytes_sent),
        human(io.bytes_received)
    );
    if io.cache_hits > 0 {
        let _ = write!(s, ", {} cache hits", io.cache_hits);
    }
    s
}

impl Reporter {
    /// A reporter when there is something to show: a bar when stderr is a
    /// terminal and output is for people (not `--quiet`, not `--json`),
    /// the phase table with `--verbose`; `None` otherwise.
    pub fn new(ctx: &Ctx, json: bool, repos: &[&litevault::Repository]) -> Option<Arc<Reporter>> {
        use std::io::IsTerminal;
        let bar = (!ctx.quiet && !json && std::io::stderr().is_terminal()).then(|| {
            let pb = indicatif::ProgressBar::new(0);
            pb.set_style(style(SPINNER));
            pb.enable_steady_tick(Duration::from_millis(120));
            pb
        });
        let log = ctx.verbose.then(|| Mutex::new(PhaseLog::default()));
        (bar.is_some() || log.is_some()).then(|| {
            Arc::new(Reporter {
                bar,
                accumulate: false,
                log,
                backends: repos.iter().map(|r| Arc::clone(r.backend())).collect(),
            })
        })
    }

    /// The same, for several operations sharing one bar.
    pub fn accumulating(
        ctx: &Ctx,
        json: bool,
        repos: &[&litevault::Repository],
    ) -> Option<Arc<Reporter>> {
        Self::new(ctx, json, repos).map(|r| {
            let mut r = Arc::into_inner(r).expect("a new reporter has one owner");
            r.accumulate = true;
            Arc::new(r)
        })
    }

    fn io_now(&self) -> IoStats {
        self.backends.iter().fold(IoStats::default(), |sum, b| {
            sum.plus(&b.io_stats().unwrap_or_default())
        })
    }

    /// Removes the bar and, with `--verbose`, prints the phase table.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let Some(log) = &self.log else {
            return;
        };
        let mut log = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        log.close(self.io_now());
        for r in &log.done {
            let mut line = format!(
                "litevault: phase {:<28} {:>9.3} s",
                if r.runs > 1 {
                    format!("{} (x{})", r.name, r.runs)
                } else {
                    r.name.clone()
                },
                r.time.as_secs_f64()
            );
            if r.bytes > 0 {
                let _ = write!(
                    line,
                    "  {} at {}/s",
                    human(r.bytes),
                    human((r.bytes as f64 / r.time.as_secs_f64().max(1e-9)) as u64)
                );
            }
            if r.io.requests() > 0 || r.io.cache_hits > 0 {
                let _ = write!(line, "  {}", io_line(&r.io));
            }
            eprintln!("{line}");
        }
        log.done.clear();
    }
}

fn style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template).expect("valid template")
}

impl Progress for Reporter {
    fn start(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.set_style(style(BAR));
            if self.accumulate {
                b.inc_length(bytes);
            } else {
                b.set_length(bytes);
                b.set_position(0);
            }
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
        if let Some(log) = &self.log {
            let mut log = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(c) = &mut log.current {
                c.bytes += bytes;
            }
        }
    }

    fn phase(&self, name: &str) {
        if let Some(b) = &self.bar {
            if !self.accumulate {
                b.set_style(style(SPINNER));
                b.reset_elapsed();
            }
            b.set_message(name.to_string());
        }
        if let Some(log) = &self.log {
            let io = self.io_now();
            let mut log = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            log.close(io);
            log.current = Some(Current {
                name: name.to_string(),
                started: Instant::now(),
                io,
                bytes: 0,
            });
        }
    }
}
