//! A job's command hooks, as resticprofile and Backrest run them: a shell
//! command before each scheduled backup (a failure stops the backup), one
//! after a successful backup, one after a failed one. Each runs through
//! `/bin/sh -c` in its own process group, with standard input closed, its
//! standard error joined to its output, and the job's time limit: past it
//! the whole group is killed. Each run is a row of the history (operation
//! `hook`: which hook, its outcome, and the last 4 KiB of its output);
//! the log says only how it ended (the output stays in the history, which
//! only the service's user can read).
//!
//! Environment, beside the service's own: `LITEVAULT_HOOK` (`run_before`,
//! `run_after`, `run_after_failure`), `LITEVAULT_JOB`, `LITEVAULT_DATABASE`
//! (its name), `LITEVAULT_DATABASE_PATH`, `LITEVAULT_REPOSITORIES` (names,
//! comma-separated), and after a failure `LITEVAULT_ERROR` and
//! `LITEVAULT_EXIT_CODE` (the command line's code for it).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::history::{Finish, Outcome, UnitKey};
use super::runner::{Event, Service};
use crate::progress::Cancel;

/// Output kept in the history: the last this many bytes.
const OUTPUT_KEPT: usize = 4096;

/// One hook to run: which, the command, and what it is told.
pub(crate) struct Hook<'a> {
    /// `run_before`, `run_after` or `run_after_failure`.
    pub name: &'static str,
    /// The shell command.
    pub command: &'a str,
    /// The job and its database (name and path) and repositories.
    pub job: &'a str,
    pub database: &'a str,
    pub path: &'a Path,
    pub repositories: &'a [String],
    /// After a failure: the error and its exit code.
    pub failure: Option<(&'a str, u8)>,
    /// The time limit.
    pub timeout: Duration,
}

/// How a hook's process ended.
enum Ended {
    Exit(i32),
    Signal(i32),
    TimedOut,
    Stopped,
    NotStarted(String),
}

impl Service {
    /// Runs `hook`, recorded in the history and logged; `Err` with why if
    /// it failed (a non-zero exit, a signal, the time limit).
    pub(crate) fn run_hook(&self, hook: &Hook<'_>) -> Result<(), String> {
        let key = UnitKey {
            job: hook.job.to_string(),
            operation: "hook".into(),
            database: Some(hook.database.to_string()),
            repository: None,
        };
        let start = self.clock().now();
        let row = self.history().start(&key, start).ok();
        let (ended, output) = execute(hook, self.cancel());
        let result = match ended {
            Ended::Exit(0) => Ok(()),
            Ended::Exit(c) => Err(format!("{} exited with {c}", hook.name)),
            Ended::Signal(s) => Err(format!("{} was killed by signal {s}", hook.name)),
            Ended::TimedOut => Err(format!(
                "{} ran past its time limit of {}s and was killed",
                hook.name,
                hook.timeout.as_secs()
            )),
            Ended::Stopped => Err(format!(
                "{} was stopped: the service is stopping",
                hook.name
            )),
            Ended::NotStarted(e) => Err(format!("{} could not start: {e}", hook.name)),
        };
        let end = self.clock().now();
        let outcome = if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failed
        };
        if let Some(row) = row {
            let _ = self.history().finish(
                row,
                end,
                outcome,
                &Finish {
                    detail: Some(format!("{}: {output}", hook.name)),
                    error: result.as_ref().err().cloned(),
                    ..Finish::default()
                },
            );
        }
        self.event(Event {
            event: "hook",
            job: Some(hook.job.to_string()),
            database: Some(hook.database.to_string()),
            outcome: Some(outcome),
            duration_ms: Some(end.duration_since(start).as_millis().max(0) as u64),
            message: result
                .as_ref()
                .err()
                .cloned()
                .unwrap_or_else(|| format!("{} exited with 0", hook.name)),
            ..Event::default()
        });
        result
    }
}

/// Runs the hook's command to its end, its time limit or the service's
/// stop; returns how it ended and the tail of its output.
fn execute(hook: &Hook<'_>, cancel: &Cancel) -> (Ended, String) {
    let mut cmd = Command::new("/bin/sh");
    // Standard error joins the output, in order.
    cmd.arg("-c")
        .arg(format!("exec 2>&1\n{}", hook.command))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("LITEVAULT_HOOK", hook.name)
        .env("LITEVAULT_JOB", hook.job)
        .env("LITEVAULT_DATABASE", hook.database)
        .env("LITEVAULT_DATABASE_PATH", hook.path)
        .env("LITEVAULT_REPOSITORIES", hook.repositories.join(","));
    if let Some((error, code)) = hook.failure {
        cmd.env("LITEVAULT_ERROR", error)
            .env("LITEVAULT_EXIT_CODE", code.to_string());
    }
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (Ended::NotStarted(e.to_string()), String::new()),
    };
    let mut out = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 2 * OUTPUT_KEPT {
                tail.drain(..tail.len() - OUTPUT_KEPT);
            }
        }
        let from = tail.len().saturating_sub(OUTPUT_KEPT);
        String::from_utf8_lossy(&tail[from..]).into_owned()
    });
    let deadline = Instant::now() + hook.timeout;
    let ended = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                break match (status.code(), status.signal()) {
                    (Some(c), _) => Ended::Exit(c),
                    (None, Some(s)) => Ended::Signal(s),
                    (None, None) => Ended::Exit(-1),
                };
            }
            Ok(None) => {}
            Err(e) => break Ended::NotStarted(e.to_string()),
        }
        let stop = if cancel.is_cancelled() {
            Some(Ended::Stopped)
        } else if Instant::now() >= deadline {
            Some(Ended::TimedOut)
        } else {
            None
        };
        if let Some(why) = stop {
            // The whole group: the shell and whatever it started.
            if let Some(pid) = i32::try_from(child.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.wait();
            break why;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A process the command left running in another group may hold the
    // output open: the tail is what came until then.
    let output = if reader.is_finished() || wait_a_little(&reader) {
        reader.join().unwrap_or_default()
    } else {
        String::from("(output still open: a process the hook started keeps it)")
    };
    (ended, output.trim_end().to_string())
}

/// Waits up to a second for `reader` to finish; true if it did.
fn wait_a_little<T>(reader: &std::thread::JoinHandle<T>) -> bool {
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        if reader.is_finished() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
