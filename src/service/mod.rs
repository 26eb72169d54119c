//! litevault as a service: a config file naming repositories, databases
//! and jobs; a scheduler that backs each database up on its schedule,
//! applies retention, prunes and checks on their cadences; run history in
//! a local SQLite database; and an HTTP admin API with Prometheus metrics.
//! Everything runs through the library's commands and option types
//! ([`crate::commands`]); nothing here backs up or restores by itself.
//!
//! * [`config`]: the TOML file, `$VAR` expansion, validation;
//! * [`schedule`]: cron (any zone) and intervals; the clock;
//! * [`history`]: the run history;
//! * [`runner`]: the [`Service`]: scheduled runs and API tasks, one
//!   operation per database and repository at a time; [`units`]: what is
//!   scheduled and when each runs next;
//! * [`continuous`]: the jobs that capture every commit (`replicate`);
//!   [`streams`]: what is known of them (status, metrics);
//! * [`daemon`]: the loop; [`status`]: the status view and metrics;
//! * [`api`]: the HTTP API's routes; [`access`]: its settings and tokens,
//!   each with a role; [`http`]: its connections, bounded;
//!   [`unlocked`]: repositories unlocked once per process;
//!   [`heartbeat`]: the monitoring ping; [`notify`]: healthchecks.io
//!   calls and webhooks on each backup's start and end; [`hooks`]: the
//!   commands run before and after each backup; [`overdue`]: the alert
//!   when a database has had no successful backup for too long.

pub mod access;
pub mod api;
pub mod config;
pub mod continuous;
pub mod daemon;
pub mod heartbeat;
pub mod history;
mod hooks;
pub mod http;
mod notify;
pub mod overdue;
pub mod runner;
pub mod schedule;
pub mod status;
pub mod streams;
pub mod units;
pub mod unlocked;

pub use config::Config;
pub use runner::{Event, EventSink, Service};
pub use schedule::{Clock, Schedule, SystemClock, TestClock};
