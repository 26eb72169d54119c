//! Facts about the running process and small file helpers every layer
//! shares: the time, host and user names, process liveness, random names,
//! `-wal`/`-shm` side-file names, fsync, and the one parser of durations
//! ("5s", "500ms", "12h", "2w3d") and times.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The current time as RFC 3339 UTC with second precision.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

/// This machine's host name ("unknown" if it cannot be read).
pub fn hostname() -> String {
    gethostname::gethostname()
        .into_string()
        .unwrap_or_else(|_| "unknown".to_string())
}

/// The user running this process: `USER` or `LOGNAME`, else its name in
/// /etc/passwd (daemons and containers often have neither variable), else
/// "uid N".
pub fn username() -> String {
    let uid = rustix::process::getuid().as_raw();
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            user_name_of(
                uid,
                &std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
            )
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// The name of `uid` in passwd(5) text.
fn user_name_of(uid: u32, passwd: &str) -> Option<String> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// True if a process with this pid exists on this host.
pub fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e != rustix::io::Errno::SRCH,
    }
}

/// A path's bytes as text that names them exactly: valid UTF-8 stays as it
/// is except `\` (written `\\`); each byte that is not part of valid UTF-8
/// is written `\xNN`. [`unescape_path`] reads it back, so two different
/// paths never show the same (`caf\xe9.db` and `caf\xff.db`).
pub fn escape_path(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            use std::fmt::Write as _;
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The bytes [`escape_path`] wrote; `None` if `s` has a `\` that is not
/// `\\` or `\xNN`.
pub fn unescape_path(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hex = s.get(i + 2..i + 4)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// This boot of this machine's kernel: `/proc/sys/kernel/random/boot_id`
/// (a random UUID made at boot, the same in every container of the
/// machine). `None` where it cannot be read.
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty() && id.len() <= 64).then(|| id.to_string())
}

/// The pid namespace this process lives in (the inode of
/// `/proc/self/ns/pid`): pids mean the same process only within one.
/// `None` unless the `/proc` mounted here shows this namespace's processes
/// (`/proc/self` names our own pid: not so after `unshare --pid` without
/// a new `/proc`), since only then does `/proc/PID` speak of our pids.
pub fn pid_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::read_link("/proc/self").ok()?;
    if me.to_str()? != std::process::id().to_string() {
        return None;
    }
    std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
}

/// What `/proc` says of a process of this pid namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcState {
    /// There is no such process: `/proc/PID` is missing and the kernel
    /// confirms it (`kill(PID, 0)` fails with `ESRCH`).
    Gone,
    /// It exists and started this many clock ticks after boot.
    Started(u64),
    /// It may exist, but `/proc` will not say when it started (mounted
    /// with `hidepid`, or another namespace's): treated as alive.
    Unknown,
}

/// [`ProcState`] of process `pid`.
pub fn process_state(pid: u32) -> ProcState {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => parse_start(&stat).map_or(ProcState::Unknown, ProcState::Started),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !process_alive(pid) => {
            ProcState::Gone
        }
        Err(_) => ProcState::Unknown,
    }
}

/// When process `pid` started, in clock ticks after boot (field 22 of
/// `/proc/PID/stat`): with the pid, it names one process of this boot,
/// even after the pid is reused. `None` if there is no such process or
/// `/proc` cannot tell.
pub fn process_start(pid: u32) -> Option<u64> {
    match process_state(pid) {
        ProcState::Started(t) => Some(t),
        _ => None,
    }
}

/// Field 22 of a `/proc/PID/stat` line.
fn parse_start(stat: &str) -> Option<u64> {
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Where this user's programs keep state: `$XDG_STATE_HOME`, else
/// `~/.local/state`.
pub fn state_home() -> Option<PathBuf> {
    std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })
}

/// `n` random bytes as hex, for names that must not collide (temporary
/// files); not for secrets.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    if getrandom::fill(&mut buf).is_err() {
        // Unreachable on Linux; a clock-based name still avoids collisions
        // between processes, which is all a temporary name needs.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        return format!(
            "{:0width$x}",
            t ^ u128::from(std::process::id()),
            width = n * 2
        );
    }
    hex::encode(buf)
}

/// `path` with `suffix` appended to its file name (`app.db` + `-wal`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Flushes a file or directory to stable storage.
pub fn fsync(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}

/// Reads at most `max` bytes from `r`; more is an error of kind
/// `InvalidData` ("more than N bytes") after reading only `max + 1`, so a
/// file like `/dev/zero` or a runaway command cannot fill the memory.
pub fn read_limited(r: impl std::io::Read, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut out = Vec::new();
    r.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("more than {max} bytes"),
        ));
    }
    Ok(out)
}

/// [`read_limited`] for a secret: the buffer is reserved whole up front
/// (so it is never reallocated, leaving copies behind) and wiped on drop.
pub fn read_secret_limited(
    mut r: impl std::io::Read,
    max: u64,
) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
    let cap = usize::try_from(max + 1).expect("a small limit");
    let mut out = zeroize::Zeroizing::new(vec![0u8; cap]);
    let mut n = 0;
    while n < cap {
        match r.read(&mut out[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if n as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("more than {max} bytes"),
        ));
    }
    out.truncate(n);
    Ok(out)
}

/// [`read_limited`] of the file at `path`.
pub fn read_file_limited(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    read_limited(File::open(path)?, max)
}

/// Parses a duration: a sequence of numbers with units `ms`, `s`, `m`
/// (minutes), `h`, `d`, `w`, `y` (365 days), as in `500ms`, `5s`, `12h`,
/// `2w3d`, `1.5h`; a bare number is seconds. Returns the message for an
/// error (the caller names the option).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: write e.g. 500ms, 5s, 2m, 12h, 7d or 2w3d");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return seconds(secs).ok_or_else(bad);
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 7.0 * 86_400.0,
            "y" => 365.0 * 86_400.0,
            _ => return Err(bad()),
        };
        rest = rest[unit_len..].trim_start();
        total += num * unit;
    }
    seconds(total).ok_or_else(bad)
}

/// A duration as [`parse_duration`] reads it: `12m`, `1h30m`, `2d`, `500ms`.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out = format!("{out}{}{unit}", secs / len);
            secs %= len;
        }
    }
    out
}

fn seconds(secs: f64) -> Option<Duration> {
    // Up to 1000 years: anything longer is a typo.
    (secs.is_finite() && (0.0..=1000.0 * 365.0 * 86_400.0).contains(&secs))
        .then(|| Duration::from_secs_f64(secs))
}

/// The zone a time without one is read in, and listings show times in:
/// the system's (`TZ`, `/etc/localtime`), else UTC.
pub fn local_zone() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC)
}

/// Parses a time as [`parse_time_in`] does, in the system's zone.
pub fn parse_time(s: &str) -> std::result::Result<jiff::Timestamp, String> {
    parse_time_in(s, &local_zone())
}

/// Parses a time: RFC 3339 with its offset (`2026-11-21T09:30:00Z`,
/// `2026-11-21T10:30:00+01:00`, fractions of a second too), a time with
/// its zone (`2026-11-21T10:30[Europe/Berlin]`), or a date and time
/// without a zone, read in `zone` as listings show times there
/// (`2026-11-21 10:30:00`, `2026-11-21 10:30`, `2026-11-21` for
/// midnight). Returns the message for an error.
pub fn parse_time_in(
    s: &str,
    zone: &jiff::tz::TimeZone,
) -> std::result::Result<jiff::Timestamp, String> {
    let s = s.trim();
    let zone_name = zone.iana_name().unwrap_or("UTC");
    let bad = || {
        format!("invalid time {s:?}: write RFC 3339 (2026-11-21T09:30:00Z) or \"2026-11-21 10:30:00\" (read in {zone_name}, as times are listed)")
    };
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    if let Ok(z) = s.parse::<jiff::Zoned>() {
        return Ok(z.timestamp());
    }
    let local = |dt: jiff::civil::DateTime| {
        dt.to_zoned(zone.clone())
            .map(|z| z.timestamp())
            .map_err(|_| bad())
    };
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return local(dt);
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return local(d.to_datetime(jiff::civil::Time::midnight()));
    }
    Err(bad())
}

/// True if `s` names its own offset or zone (so the zone it is read in
/// does not matter).
pub fn time_has_zone(s: &str) -> bool {
    let s = s.trim();
    s.parse::<jiff::Timestamp>().is_ok() || s.parse::<jiff::Zoned>().is_ok()
}

/// Parses a time as [`parse_time_in`] does, or a duration meaning that
/// long before `now` (`2h`, `3d`). Returns the message for an error.
pub fn parse_time_or_ago(
    s: &str,
    now: jiff::Timestamp,
    zone: &jiff::tz::TimeZone,
) -> std::result::Result<jiff::Timestamp, String> {
    if let Ok(d) = parse_duration(s) {
        if !s.trim().chars().all(|c| c.is_ascii_digit()) {
            return now
                .checked_sub(d)
                .map_err(|_| format!("{s:?} ago is before any time litevault can write"));
        }
    }
    parse_time_in(s, zone).map_err(|m| format!("{m}, or a duration ago (2h, 3d)"))
}

/// The time a backup file's name carries, in UTC: `20260113T143000Z`
/// (Stanza: `database.sqlite.20260113T143000Z.bak`),
/// `2025-07-01T10-30-00Z` (restinpieces: `app-2025-07-01T10-30-00Z-vacuum.bck.gz`),
/// `2025-07-01T10:30:00Z`, `2025-07-01_10-30-00`, `2025-07-01 10.30.00`,
/// or a date alone (`2025-07-01`, `20250701`: midnight). The first match
/// from the left wins; a name with none gives `None`.
pub fn time_from_name(name: &str) -> Option<jiff::Timestamp> {
    let b = name.as_bytes();
    let digits = |at: usize, n: usize| -> Option<i64> {
        let s = b.get(at..at + n)?;
        s.iter()
            .all(u8::is_ascii_digit)
            .then(|| s.iter().fold(0i64, |v, d| v * 10 + i64::from(d - b'0')))
    };
    let at_boundary = |i: usize| i == 0 || !b[i - 1].is_ascii_digit();
    let make = |y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64| -> Option<jiff::Timestamp> {
        let dt = jiff::civil::DateTime::new(
            i16::try_from(y).ok()?,
            i8::try_from(mo).ok()?,
            i8::try_from(d).ok()?,
            i8::try_from(h).ok()?,
            i8::try_from(mi).ok()?,
            i8::try_from(s).ok()?,
            0,
        )
        .ok()?;
        dt.to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp())
    };
    for i in 0..b.len() {
        if !at_boundary(i) {
            continue;
        }
        // YYYYMMDDTHHMMSS
        if let (Some(date), Some(b'T' | b't' | b'_' | b'-'), Some(time)) =
            (digits(i, 8), b.get(i + 8).copied(), digits(i + 9, 6))
        {
            if !b.get(i + 15).is_some_and(u8::is_ascii_digit) {
                if let Some(t) = make(
                    date / 10000,
                    date / 100 % 100,
                    date % 100,
                    time / 10000,
                    time / 100 % 100,
                    time % 100,
                ) {
                    return Some(t);
                }
            }
        }
        // YYYY-MM-DD[T _]HH[-:.]MM[-:.]SS, or YYYY-MM-DD
        if let (Some(y), Some(b'-'), Some(mo), Some(b'-'), Some(d)) = (
            digits(i, 4),
            b.get(i + 4).copied(),
            digits(i + 5, 2),
            b.get(i + 7).copied(),
            digits(i + 8, 2),
        ) {
            let sep = |c: Option<u8>| matches!(c, Some(b'-' | b':' | b'.'));
            if matches!(b.get(i + 10), Some(b'T' | b't' | b'_' | b' '))
                && sep(b.get(i + 13).copied())
                && sep(b.get(i + 16).copied())
            {
                if let (Some(h), Some(mi), Some(s)) =
                    (digits(i + 11, 2), digits(i + 14, 2), digits(i + 17, 2))
                {
                    if let Some(t) = make(y, mo, d, h, mi, s) {
                        return Some(t);
                    }
                }
            }
            if !b.get(i + 10).is_some_and(u8::is_ascii_digit) {
                if let Some(t) = make(y, mo, d, 0, 0, 0) {
                    return Some(t);
                }
            }
        }
        // YYYYMMDD
        if let Some(date) = digits(i, 8) {
            if !b.get(i + 8).is_some_and(u8::is_ascii_digit) {
                if let Some(t) = make(date / 10000, date / 100 % 100, date % 100, 0, 0, 0) {
                    return Some(t);
                }
            }
        }
    }
    None
}

/// Serde for a [`Duration`] written as a duration string (`"5s"`,
/// `"12h"`), as config files and JSON bodies give it.
pub mod serde_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes `d` as seconds with an `s` (`"5s"`, `"0.5s"`).
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", d.as_secs_f64()))
    }

    /// Reads what [`super::parse_duration`] accepts.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// Serde for an optional time written as RFC 3339 (or what
/// [`parse_time`] accepts).
pub mod serde_time {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the time as RFC 3339, or null.
    #[allow(clippy::ref_option)] // serde's `with` passes `&Option<T>`
    pub fn serialize<S: Serializer>(t: &Option<jiff::Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&t.to_string()),
            None => s.serialize_none(),
        }
    }

    /// Reads what [`super::parse_time`] accepts, or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<jiff::Timestamp>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| super::parse_time(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_backup_file_names() {
        let t = |n: &str| time_from_name(n).map(|t| t.to_string());
        for (name, want) in [
            (
                "database.sqlite.20260113T143000Z.bak",
                Some("2026-01-13T14:30:00Z"),
            ),
            (
                "app-2025-07-01T10-30-00Z-vacuum.bck.gz",
                Some("2025-07-01T10:30:00Z"),
            ),
            ("app-2025-07-01T10:30:00Z.db", Some("2025-07-01T10:30:00Z")),
            (
                "db_2025-07-01_10-30-00.sqlite.zst",
                Some("2025-07-01T10:30:00Z"),
            ),
            ("backup-2025-07-01.db.gz", Some("2025-07-01T00:00:00Z")),
            ("backup-20250701.db", Some("2025-07-01T00:00:00Z")),
            ("v2-app-2025-07-01.db", Some("2025-07-01T00:00:00Z")),
            ("app.db", None),
            ("app-123456789.db", None),
            ("app-2025-13-45.db", None),
            ("app-20251345T999999Z.db", None),
        ] {
            assert_eq!(t(name).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn user_names_come_from_passwd() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\n# comment\nlitestream:x:1001:1001::/home/l:/bin/sh\n";
        assert_eq!(user_name_of(0, passwd).as_deref(), Some("root"));
        assert_eq!(user_name_of(1001, passwd).as_deref(), Some("litestream"));
        assert_eq!(user_name_of(7, passwd), None);
    }

    #[test]
    fn durations() {
        for (s, secs) in [
            ("5", 5.0),
            ("1.5", 1.5),
            ("500ms", 0.5),
            ("5s", 5.0),
            ("2m", 120.0),
            ("12h", 43_200.0),
            ("7d", 604_800.0),
            ("2w3d", 1_468_800.0),
            ("1y", 31_536_000.0),
            ("1h 30m", 5400.0),
        ] {
            let got = parse_duration(s).unwrap().as_secs_f64();
            assert!((got - secs).abs() < 1e-9, "{s}: {got}");
        }
        for s in ["", "soon", "-5s", "5x", "NaN", "1e400", "s", "5 s s"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn times() {
        let utc = jiff::tz::TimeZone::UTC;
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let ny = jiff::tz::TimeZone::get("America/New_York").unwrap();
        for (text, zone, want) in [
            ("2026-01-02 03:04:05", &utc, "2026-01-02T03:04:05Z"),
            ("2026-01-02", &utc, "2026-01-02T00:00:00Z"),
            // Without a zone: read in the zone listings use.
            ("2026-12-05 12:00", &berlin, "2026-12-05T11:00:00Z"),
            ("2026-07-05 12:00:00", &berlin, "2026-07-05T10:00:00Z"),
            ("2026-12-05", &ny, "2026-12-05T05:00:00Z"),
            (
                "2026-12-05T12:00:00.250",
                &berlin,
                "2026-12-05T11:00:00.25Z",
            ),
            // With one: the zone given wins.
            ("2026-12-05T12:00:00Z", &berlin, "2026-12-05T12:00:00Z"),
            ("2026-12-05T12:00:00+01:00", &ny, "2026-12-05T11:00:00Z"),
            (
                "2026-12-05T12:00[Europe/Berlin]",
                &ny,
                "2026-12-05T11:00:00Z",
            ),
        ] {
            assert_eq!(
                parse_time_in(text, zone).unwrap().to_string(),
                want,
                "{text} in {zone:?}"
            );
            assert_eq!(
                time_has_zone(text),
                text.ends_with('Z') || text.contains('+') || text.contains('['),
                "{text}"
            );
        }
        assert!(parse_time_in("yesterday", &utc).is_err());
        let now: jiff::Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        assert_eq!(
            parse_time_or_ago("2h", now, &berlin).unwrap().to_string(),
            "2026-12-05T10:00:00Z"
        );
    }

    #[test]
    fn paths_escape_injectively_and_back() {
        for (raw, shown) in [
            (&b"/srv/app.db"[..], "/srv/app.db"),
            (b"caf\xe9.db", "caf\\xe9.db"),
            (b"caf\xff.db", "caf\\xff.db"),
            (b"caf\\xe9.db", "caf\\\\xe9.db"),
            ("café.db".as_bytes(), "café.db"),
        ] {
            assert_eq!(escape_path(raw), shown);
            assert_eq!(unescape_path(shown).as_deref(), Some(raw));
        }
        assert_eq!(unescape_path("a\\q"), None);
        assert_eq!(unescape_path("a\\x4"), None);
    }

    #[test]
    fn liveness_of_real_processes() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid));
        assert!(process_start(pid).is_none());
        assert_eq!(process_state(pid), ProcState::Gone);
        // pid 1 exists in every namespace: never gone.
        assert_ne!(process_state(1), ProcState::Gone);
        // A process's start time is stable, and differs from another's
        // started later.
        let me = process_start(std::process::id()).unwrap();
        assert_eq!(process_start(std::process::id()), Some(me));
        let mut sleeper = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let it = process_start(sleeper.id()).unwrap();
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert!(it >= me);
        assert_eq!(boot_id().unwrap().len(), 36);
        assert!(pid_namespace().is_some());
    }
}
