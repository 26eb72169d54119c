//! The service's continuous jobs (SPEC.md 20): each job with `continuous =
//! true` replicates its databases into every repository of the job
//! ([`crate::commands::replicate`]), beside the scheduled jobs, until the
//! service stops; a reload restarts them with the new config (the streams
//! go on from their records). The heartbeat of such a job is sent every
//! half minute while every stream of it is running and its lag is under
//! the job's `max_lag`. The streams' state lives beside the run history:
//! `<state dir>/replicate/`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::Config;
use super::runner::{Event, Service};
use super::streams::{StreamView, WAITING};
use super::units::WAIT_POLL;
use crate::commands::replicate::{self, ReplicateOptions, Replication, StreamStatus};
use crate::error::Result;

/// How often the heartbeat of a continuous job is considered.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Service {
    /// Starts every continuous job of the config (a job that cannot start
    /// is reported and the others go on; one whose database file does not
    /// exist yet waits for it, looking every [`WAIT_POLL`]).
    pub fn start_continuous(self: &Arc<Self>) {
        let config = self.config();
        self.continuous().waiting.lock().unwrap().clear();
        for (name, job) in &config.jobs {
            if job.continuous.is_none() {
                continue;
            }
            let missing = missing_files(&config, name);
            if missing.is_empty() {
                self.start_job(&config, name);
                continue;
            }
            self.wait_for_files(&config, name, &missing);
            let me = Arc::clone(self);
            let (config, name) = (Arc::clone(&config), name.clone());
            std::thread::spawn(move || loop {
                if me.cancel().sleep(WAIT_POLL, "waiting").is_err()
                    || !Arc::ptr_eq(&me.config(), &config)
                {
                    return; // stopping, or a reload started the jobs afresh
                }
                if missing_files(&config, &name).is_empty() {
                    me.event(Event {
                        event: "waiting",
                        job: Some(name.clone()),
                        message: "every database file of the job is there: capture starts".into(),
                        ..Event::default()
                    });
                    me.start_job(&config, &name);
                    return;
                }
            });
        }
    }

    /// Reports continuous job `name` as waiting for `missing` (the log,
    /// and the streams the API and metrics show).
    fn wait_for_files(&self, config: &Config, name: &str, missing: &[std::path::PathBuf]) {
        let job = &config.jobs[name];
        let mut waiting = self.continuous().waiting.lock().unwrap();
        for path in missing {
            let why = format!(
                "database file {} does not exist yet: capture starts once it appears (looked for every {} s)",
                path.display(),
                WAIT_POLL.as_secs()
            );
            self.event(Event {
                event: "waiting",
                level: "warning",
                job: Some(name.to_string()),
                database: Some(path.display().to_string()),
                message: why.clone(),
                ..Event::default()
            });
            for repo in &job.repositories {
                waiting.push(StreamView {
                    job: name.to_string(),
                    status: StreamStatus {
                        database: path.display().to_string(),
                        repository: repo.clone(),
                        phase: WAITING.into(),
                        last_error: Some(why.clone()),
                        ..StreamStatus::default()
                    },
                    lag_seconds: 0.0,
                });
            }
        }
    }

    /// Starts continuous job `name` of `config`, unless the config has
    /// changed since (a reload starts the jobs afresh).
    fn start_job(&self, config: &Arc<Config>, name: &str) {
        let job = &config.jobs[name];
        let Some(c) = &job.continuous else { return };
        let state_dir = config.state.parent().map_or_else(
            || std::path::PathBuf::from("replicate"),
            |d| d.join("replicate"),
        );
        let started = (|| -> Result<Replication> {
            let repos = job
                .repositories
                .iter()
                .map(|r| Ok((r.clone(), Arc::new(self.open_repository(r)?))))
                .collect::<Result<Vec<_>>>()?;
            let dbs: Vec<_> = job
                .databases
                .iter()
                .map(|d| config.databases[d].backup.path.clone())
                .collect();
            let mut opts = ReplicateOptions::new(&state_dir);
            opts.interval = c.interval;
            opts.fold_every = c.fold_every;
            opts.cancel = self.cancel().clone();
            replicate::start(&repos, &dbs, &opts)
        })();
        match started {
            Ok(r) => {
                let mut running = self.continuous().running.lock().unwrap();
                if !Arc::ptr_eq(&self.config(), config) {
                    drop(running);
                    r.stop();
                    return;
                }
                self.continuous()
                    .waiting
                    .lock()
                    .unwrap()
                    .retain(|v| v.job != name);
                self.event(Event {
                    event: "replicate",
                    job: Some(name.to_string()),
                    message: format!(
                        "capturing {} database(s) into {} repository(ies), every commit within {:?}",
                        job.databases.len(),
                        job.repositories.len(),
                        c.interval
                    ),
                    ..Event::default()
                });
                running.push((name.to_string(), r));
            }
            Err(e) => self.event(Event {
                event: "replicate",
                level: "error",
                job: Some(name.to_string()),
                message: format!("continuous capture could not start: {e}"),
                ..Event::default()
            }),
        }
    }

    /// Stops every continuous job: what is captured is stored first.
    pub fn stop_continuous(&self) {
        let running = std::mem::take(&mut *self.continuous().running.lock().unwrap());
        for (job, r) in running {
            let done = r.stop();
            self.event(Event {
                event: "replicate",
                job: Some(job),
                message: format!(
                    "capture stopped: {} commit(s) in {} change object(s) stored",
                    done.iter().map(|s| s.commits).sum::<u64>(),
                    done.iter().map(|s| s.objects).sum::<u64>()
                ),
                ..Event::default()
            });
        }
    }

    /// Where every continuous stream stands (those waiting for their
    /// database file too).
    pub fn replication_status(&self) -> Vec<StreamView> {
        let now = now_ns();
        let mut views: Vec<StreamView> = self
            .continuous()
            .running
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(job, r)| {
                r.status().into_iter().map(move |status| StreamView {
                    job: job.clone(),
                    lag_seconds: status.lag_seconds(now),
                    status,
                })
            })
            .collect();
        views.extend(self.continuous().waiting.lock().unwrap().iter().cloned());
        views
    }

    /// Sends the heartbeat of each continuous job whose streams are all
    /// running with a lag under its bound (at most every half minute).
    pub fn continuous_heartbeats(&self) {
        {
            let mut last = self.continuous().last_heartbeat.lock().unwrap();
            if last.is_some_and(|t| t.elapsed() < HEARTBEAT_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let config = self.config();
        let views = self.replication_status();
        for (name, job) in &config.jobs {
            let (Some(c), Some(url)) = (&job.continuous, &job.heartbeat_url) else {
                continue;
            };
            let mine: Vec<&StreamView> = views.iter().filter(|v| &v.job == name).collect();
            let healthy = !mine.is_empty()
                && mine.iter().all(|v| {
                    v.status.phase == "running" && v.lag_seconds < c.max_lag.as_secs_f64()
                });
            if healthy {
                self.heartbeat(name, url);
            } else {
                self.event(Event {
                    event: "heartbeat",
                    level: "warning",
                    job: Some(name.clone()),
                    message: format!(
                        "heartbeat withheld: a stream is not running, or lags more than {:?}",
                        c.max_lag
                    ),
                    ..Event::default()
                });
            }
        }
    }
}

/// Starts the continuous jobs again with the current config (after a
/// reload).
pub fn restart(service: &Arc<Service>) {
    service.stop_continuous();
    service.start_continuous();
}

/// The database files of job `name` that do not exist yet.
fn missing_files(config: &Config, name: &str) -> Vec<std::path::PathBuf> {
    config.jobs[name]
        .databases
        .iter()
        .map(|d| config.databases[d].backup.path.clone())
        .filter(|p| super::config::not_there(p))
        .collect()
}
