//! The scheduler loop: run what is due, sleep until the next unit is due,
//! reload the config when asked, stop when cancelled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::config::Config;
use super::runner::{Event, Service};
use crate::error::Result;

/// The longest real-time nap between looks at the clock and the flags.
const NAP: Duration = Duration::from_millis(200);
/// When nothing is scheduled, look again after this long (a reload may add jobs).
const IDLE: Duration = Duration::from_secs(60);
/// How often (on the service's clock) overdue backups are looked for.
const OVERDUE_EVERY: Duration = Duration::from_secs(60);

/// Runs `service`'s schedule until its cancellation is set. When `reload`
/// is set, `load` is called for a new config (a failed load keeps the old
/// one and is reported). Returns once the current unit has finished or
/// stopped.
pub fn run(
    service: &Arc<Service>,
    reload: &AtomicBool,
    load: &dyn Fn() -> Result<Config>,
) -> Result<()> {
    let stop = service.cancel().child();
    let clock = Arc::clone(service.clock());
    // Overdue backups are watched beside the scheduler, which a long or
    // stuck run holds up.
    let watch = {
        let service = Arc::clone(service);
        let (cancel, clock) = (stop.clone(), Arc::clone(&clock));
        std::thread::spawn(move || {
            while !cancel.is_cancelled() {
                if let Err(e) = service.check_overdue() {
                    service.event(Event {
                        event: "overdue",
                        level: "error",
                        message: format!("overdue backups could not be looked for: {e}"),
                        ..Event::default()
                    });
                }
                let _ = cancel.sleep(clock.real(OVERDUE_EVERY).max(NAP), "stopping");
            }
        })
    };
    let result = schedule(service, reload, load);
    stop.cancel();
    let _ = watch.join();
    result
}

/// The scheduler proper (see [`run`]).
fn schedule(
    service: &Arc<Service>,
    reload: &AtomicBool,
    load: &dyn Fn() -> Result<Config>,
) -> Result<()> {
    let cancel = service.cancel().clone();
    let clock = Arc::clone(service.clock());
    while !cancel.is_cancelled() {
        if reload.swap(false, Ordering::SeqCst) {
            match load() {
                Ok(c) => {
                    service.reload(c);
                    super::continuous::restart(service);
                }
                Err(e) => service.event(Event {
                    event: "reload",
                    level: "error",
                    message: format!("config not reloaded, the old one stays: {e}"),
                    ..Event::default()
                }),
            }
        }
        service.run_due()?;
        // Sleep until the next unit is due, a reload, or a stop.
        let next = service.next_wake()?;
        loop {
            if cancel.is_cancelled() || reload.load(Ordering::SeqCst) {
                break;
            }
            service.continuous_heartbeats();
            let now = clock.now();
            let wait = match next {
                Some(n) if n <= now => break,
                Some(n) => clock.real(Duration::try_from(n.duration_since(now)).unwrap_or(IDLE)),
                None => IDLE,
            };
            std::thread::sleep(wait.min(NAP));
            if next.is_none() && wait <= NAP {
                break;
            }
        }
    }
    Ok(())
}
