//! When jobs run: a cron expression in a time zone, or a fixed interval;
//! and the clock the service reads, which tests replace.
//!
//! Cron expressions are crontab(5)'s five fields (`30 3 * * *`) or six
//! with seconds first (`0 30 3 * * *`), parsed by the `cron` crate. Days of
//! the week are written as in crontab: `0`-`7` (0 and 7 are Sunday) or
//! `Sun`-`Sat`. Times are evaluated in the schedule's zone (an IANA name,
//! UTC by default), so `0 9 * * *` in `Europe/Berlin` stays at 09:00 local
//! time across daylight-saving changes.
//!
//! A missed fire time (the machine was asleep, the daemon stopped) makes a
//! unit due once, not once per missed time: a unit is due when the first
//! fire time after its last run has passed ([`Schedule::due`]).

use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::TimeZone;
use jiff::Timestamp;

/// A schedule: cron in a zone, or every fixed interval.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// A cron expression evaluated in a time zone.
    Cron {
        /// The expression as written.
        text: String,
        /// The parsed expression (seconds first).
        cron: Box<cron::Schedule>,
        /// Its zone.
        zone: chrono_tz::Tz,
    },
    /// A fixed interval after the last run.
    Every(Duration),
}

impl Schedule {
    /// Parses `text`: an interval (`12m`, `1h`, `30s`, `1d`) or a cron
    /// expression of five or six fields, evaluated in `zone` (an IANA name
    /// such as `Europe/Berlin`, or `UTC`). Returns the message for an error.
    pub fn parse(text: &str, zone: &str) -> Result<Self, String> {
        let t = text.trim();
        let fields: Vec<&str> = t.split_whitespace().collect();
        if fields.len() == 1 {
            let every = crate::sys::parse_duration(t).map_err(|_| {
                format!("invalid schedule {text:?}: write an interval (12m, 1h, 1d) or a cron expression (30 3 * * *)")
            })?;
            if every < Duration::from_secs(1) {
                return Err(format!(
                    "invalid schedule {text:?}: the shortest interval is 1s"
                ));
            }
            return Ok(Schedule::Every(every));
        }
        let zone: chrono_tz::Tz = zone.parse().map_err(|_| {
            format!(
                "unknown time zone {zone:?}: write an IANA zone name such as UTC or Europe/Berlin"
            )
        })?;
        let mut six: Vec<String> = match fields.len() {
            5 => std::iter::once("0")
                .chain(fields.iter().copied())
                .map(String::from)
                .collect(),
            6 => fields.iter().map(|s| (*s).to_string()).collect(),
            n => {
                return Err(format!(
                    "invalid cron expression {text:?}: it has {n} fields; write 5 (minute hour day month weekday) or 6 (seconds first)"
                ))
            }
        };
        six[5] = crontab_weekdays(&six[5]);
        let cron = cron::Schedule::from_str(&six.join(" "))
            .map_err(|e| format!("invalid cron expression {text:?}: {e}"))?;
        if cron
            .after(&zone.timestamp_opt(0, 0).unwrap())
            .next()
            .is_none()
        {
            return Err(format!("cron expression {text:?} never fires"));
        }
        Ok(Schedule::Cron {
            text: t.to_string(),
            cron: Box::new(cron),
            zone,
        })
    }

    /// The first fire time strictly after `t` (`None` if there is none).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Every(d) => t.checked_add(*d).ok(),
            Schedule::Cron { cron, zone, .. } => {
                let start = zone.timestamp_millis_opt(t.as_millisecond()).single()?;
                let next = cron.after(&start).next()?;
                Timestamp::from_millisecond(next.timestamp_millis()).ok()
            }
        }
    }

    /// When a unit whose last run started at `last` runs next: at once if
    /// it never ran, else the first fire time after `last` (which may be
    /// in the past: then it is due now, once, however many fire times
    /// were missed).
    pub fn next_run(&self, last: Option<Timestamp>, now: Timestamp) -> Option<Timestamp> {
        match last {
            None => Some(now),
            Some(l) => self.next_after(l),
        }
    }

    /// True if a unit last run at `last` is due at `now`.
    pub fn due(&self, last: Option<Timestamp>, now: Timestamp) -> bool {
        self.next_run(last, now).is_some_and(|n| n <= now)
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "every {}", crate::sys::format_duration(*d)),
            Schedule::Cron { text, zone, .. } => write!(f, "cron \"{text}\" ({zone})"),
        }
    }
}

/// crontab(5)'s weekday numbers (0-7, Sunday being 0 and 7) as names, for
/// the `cron` crate, which numbers Sunday 1. Step values (`*/2`) stay.
fn crontab_weekdays(field: &str) -> String {
    const NAMES: [&str; 8] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    field
        .split(',')
        .map(|item| {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            let range: Vec<String> = range
                .split('-')
                .map(|d| match d.parse::<usize>() {
                    Ok(n) if n < NAMES.len() => NAMES[n].to_string(),
                    _ => d.to_string(),
                })
                .collect();
            let mut out = range.join("-");
            if let Some(s) = step {
                out.push('/');
                out.push_str(s);
            }
            out
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The time the service reads and waits on: the system clock, or one that
/// tests start at a chosen instant and run faster.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
    /// How long to wait, in real time, for `d` of this clock's time.
    fn real(&self, d: Duration) -> Duration;
    /// True if this is not the system clock (snapshot times then follow it).
    fn simulated(&self) -> bool;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let t = Timestamp::now();
        t.round(jiff::Unit::Millisecond).unwrap_or(t)
    }
    fn real(&self, d: Duration) -> Duration {
        d
    }
    fn simulated(&self) -> bool {
        false
    }
}

/// A clock that starts at a given time and runs `speed` times faster than
/// real time, or one moved only by [`TestClock::advance`] (speed 0).
#[derive(Debug)]
pub struct TestClock {
    start: Timestamp,
    real_start: Instant,
    speed: f64,
    offset: Mutex<Duration>,
}

impl TestClock {
    /// A clock at `start`, running at `speed` times real time.
    pub fn new(start: Timestamp, speed: f64) -> Self {
        Self {
            start,
            real_start: Instant::now(),
            speed,
            offset: Mutex::new(Duration::ZERO),
        }
    }

    /// Parses `TIME` or `TIME*SPEED` (`2026-01-01T00:00:00Z*3600`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (time, speed) = match s.split_once('*') {
            Some((t, sp)) => (
                t,
                sp.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| format!("invalid clock speed {sp:?}"))?,
            ),
            None => (s, 1.0),
        };
        Ok(Self::new(crate::sys::parse_time(time)?, speed))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        *self.offset.lock().unwrap() += d;
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        let run = self.real_start.elapsed().mul_f64(self.speed);
        let off = *self.offset.lock().unwrap();
        self.start
            .checked_add(run + off)
            .unwrap_or(Timestamp::MAX)
            .round(jiff::Unit::Millisecond)
            .unwrap_or(self.start)
    }
    fn real(&self, d: Duration) -> Duration {
        if self.speed > 0.0 {
            d.div_f64(self.speed)
        } else {
            Duration::from_millis(50)
        }
    }
    fn simulated(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn fires(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut at = t(from);
        let mut out = Vec::new();
        for _ in 0..n {
            at = s.next_after(at).unwrap();
            out.push(at.to_string());
        }
        out
    }

    #[test]
    fn cron_in_utc_fires_at_its_times() {
        let s = Schedule::parse("30 3 * * *", "UTC").unwrap();
        assert_eq!(
            fires(&s, "2026-11-21T12:00:00Z", 3),
            [
                "2026-11-22T03:30:00Z",
                "2026-11-23T03:30:00Z",
                "2026-11-24T03:30:00Z"
            ]
        );
        // Six fields: seconds first; every 15 s.
        let s = Schedule::parse("*/15 * * * * *", "UTC").unwrap();
        assert_eq!(
            fires(&s, "2026-11-21T12:00:07Z", 2),
            ["2026-11-21T12:00:15Z", "2026-11-21T12:00:30Z"]
        );
    }

    #[test]
    fn crontab_weekday_numbers_mean_what_they_mean_in_crontab() {
        // 2026-11-21 is a Saturday. 1-5 is Monday to Friday.
        let s = Schedule::parse("0 6 * * 1-5", "UTC").unwrap();
        assert_eq!(
            fires(&s, "2026-11-21T00:00:00Z", 2),
            ["2026-11-23T06:00:00Z", "2026-11-24T06:00:00Z"]
        );
        for sunday in ["0", "7", "Sun"] {
            let s = Schedule::parse(&format!("0 4 * * {sunday}"), "UTC").unwrap();
            assert_eq!(
                fires(&s, "2026-11-21T00:00:00Z", 1),
                ["2026-11-22T04:00:00Z"],
                "{sunday}"
            );
        }
        assert_eq!(crontab_weekdays("0,6"), "Sun,Sat");
        assert_eq!(crontab_weekdays("*/2"), "*/2");
        assert_eq!(crontab_weekdays("1-5/2"), "Mon-Fri/2");
    }

    #[test]
    fn cron_in_a_zone_with_daylight_saving_keeps_local_time() {
        // Europe/Berlin: UTC+1 in winter, UTC+2 from 2026-03-29 01:00 UTC.
        let s = Schedule::parse("0 9 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            fires(&s, "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T08:00:00Z",
                "2026-03-29T07:00:00Z",
                "2026-03-30T07:00:00Z"
            ]
        );
        // Back in autumn (2026-10-25): 25 hours between two runs.
        assert_eq!(
            fires(&s, "2026-10-23T12:00:00Z", 3),
            [
                "2026-10-24T07:00:00Z",
                "2026-10-25T08:00:00Z",
                "2026-10-26T08:00:00Z"
            ]
        );
        // A time that does not exist locally on the change's day (02:30 on
        // 2026-03-29) is not a reason to fire twice or to stop firing.
        let s = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let f = fires(&s, "2026-03-28T00:00:00Z", 3);
        assert_eq!(f[0], "2026-03-28T01:30:00Z");
        assert!(f[1].as_str() > "2026-03-29T00:00:00Z" && f[1].as_str() < "2026-03-31T00:00:00Z");
        assert!(f[2] > f[1]);
    }

    #[test]
    fn intervals_and_missed_runs() {
        let s = Schedule::parse("12m", "UTC").unwrap();
        assert_eq!(
            fires(&s, "2026-11-21T12:00:00Z", 2),
            ["2026-11-21T12:12:00Z", "2026-11-21T12:24:00Z"]
        );
        // Never run: due at once.
        let now = t("2026-11-21T12:00:00Z");
        assert!(s.due(None, now));
        // Run 5 minutes ago: not due; next in 7 minutes.
        let last = t("2026-11-21T11:55:00Z");
        assert!(!s.due(Some(last), now));
        assert_eq!(
            s.next_run(Some(last), now).unwrap(),
            t("2026-11-21T12:07:00Z")
        );
        // Asleep for a day: due now, once; after running now, next in 12m.
        let daily = Schedule::parse("0 3 * * *", "UTC").unwrap();
        let last = t("2026-11-18T03:00:00Z");
        assert!(daily.due(Some(last), now));
        assert!(!daily.due(Some(now), now));
        assert_eq!(
            daily.next_run(Some(now), now).unwrap(),
            t("2026-11-22T03:00:00Z")
        );
    }

    #[test]
    fn bad_schedules_are_refused_with_the_reason() {
        for (text, zone, want) in [
            ("61 * * * *", "UTC", "invalid cron expression"),
            ("* * * *", "UTC", "has 4 fields"),
            ("every day", "UTC", "invalid cron"),
            ("12x", "UTC", "invalid schedule"),
            ("0s", "UTC", "shortest interval"),
            ("0 3 * * *", "Mars/Olympus", "unknown time zone"),
            ("0 0 30 2 *", "UTC", "never fires"),
        ] {
            let e = Schedule::parse(text, zone).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn a_test_clock_runs_at_its_speed_and_advances() {
        let c = TestClock::parse("2026-01-01T00:00:00Z*0").unwrap();
        assert_eq!(c.now(), t("2026-01-01T00:00:00Z"));
        c.advance(Duration::from_secs(3600));
        assert_eq!(c.now(), t("2026-01-01T01:00:00Z"));
        let c = TestClock::parse("2026-01-01T00:00:00Z*3600").unwrap();
        assert_eq!(c.real(Duration::from_secs(3600)), Duration::from_secs(1));
    }
}
