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

use super::runner::{Event, Service};
use super::streams::StreamView;
use crate::commands::replicate::{self, ReplicateOptions, Replication};
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
    /// is reported and the others go on).
    pub fn start_continuous(self: &Arc<Self>) {
        let config = self.config();
        let state_dir = config.state.parent().map_or_else(
            || std::path::PathBuf::from("replicate"),
            |d| d.join("replicate"),
        );
        for (name, job) in &config.jobs {
            let Some(c) = &job.continuous else { continue };
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
                    self.event(Event {
                        event: "replicate",
                        job: Some(name.clone()),
                        message: format!(
                            "capturing {} database(s) into {} repository(ies), every commit within {:?}",
                            job.databases.len(),
                            job.repositories.len(),
                            c.interval
                        ),
                        ..Event::default()
                    });
                    self.continuous()
                        .running
                        .lock()
                        .unwrap()
                        .push((name.clone(), r));
                }
                Err(e) => self.event(Event {
                    event: "replicate",
                    level: "error",
                    job: Some(name.clone()),
                    message: format!("continuous capture could not start: {e}"),
                    ..Event::default()
                }),
            }
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

    /// Where every continuous stream stands.
    pub fn replication_status(&self) -> Vec<StreamView> {
        let now = now_ns();
        self.continuous()
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
            .collect()
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
