//! [`Provenance`]: what a result needs to be read later — when it ran, the command, the
//! targets, the quota and the commit — and the helpers that find them (also the machine,
//! for `loadtest stack`'s section).

use std::path::Path;

use serde::Serialize;

/// Where a run's figures come from, printed at the top of every report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Provenance {
    /// When the run started, `YYYY-MM-DD HH:MM:SS UTC`.
    pub date: String,
    /// The command line, with the program's path reduced to its name.
    pub command: String,
    /// The services loaded.
    pub targets: Vec<String>,
    /// The quota file or directory given (`--quota` or the scenario's), if any.
    pub quota: Option<String>,
    /// `git rev-parse --short HEAD` where it ran, or `unknown` outside a checkout.
    pub commit: String,
}

impl Provenance {
    /// The provenance of a run starting now against `targets` with `quota`.
    pub fn now(targets: &[String], quota: Option<&str>) -> Provenance {
        Provenance {
            date: now(),
            command: command_line(),
            targets: targets.to_vec(),
            quota: quota.map(str::to_owned),
            commit: commit(),
        }
    }

    /// The lines a person reads above the figures.
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!("measured on {}, commit {}", self.date, self.commit),
            format!("command: {}", self.command),
            format!(
                "targets: {}; quota: {}",
                self.targets.join(", "),
                self.quota.as_deref().unwrap_or("none given")
            ),
        ]
    }
}

/// The command line, with the program's path reduced to its name.
pub(crate) fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut()
        && let Some(name) = Path::new(first.as_str()).file_name()
    {
        *first = name.to_string_lossy().into_owned();
    }
    args.join(" ")
}

/// `git rev-parse --short HEAD`, or `unknown` outside a checkout.
pub(crate) fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// `2 vCPU AMD EPYC VM, 24 GiB, Linux 6.18`, from /proc (`VM` when the CPU flags say
/// `hypervisor`).
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(String::new(), |kb| {
            format!(", {:.0} GiB", kb / 1024.0 / 1024.0)
        });
    let vm = if cpuinfo.contains(" hypervisor") {
        " VM"
    } else {
        ""
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or(String::new(), |r| {
        let release = r.trim();
        // `6.18.44-fc-v657` -> `6.18`: the rest says little about speed.
        let short: Vec<&str> = release.split(['.', '-']).take(2).collect();
        format!(", Linux {}", short.join("."))
    });
    format!("{cpus} vCPU {model}{vm}{gib}{kernel}")
}

/// Today's UTC date, `YYYY-MM-DD`.
pub(crate) fn today() -> String {
    date_time(unix_now()).0
}

/// The UTC date and time now, `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn now() -> String {
    let (date, time) = date_time(unix_now());
    format!("{date} {time} UTC")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds since the epoch as UTC (`YYYY-MM-DD`, `HH:MM:SS`).
fn date_time(secs: u64) -> (String, String) {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_since_the_epoch_become_utc_dates_and_times() {
        assert_eq!(
            date_time(1_700_000_000),
            ("2023-11-14".to_owned(), "22:13:20".to_owned())
        );
    }

    #[test]
    fn days_since_the_epoch_become_calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_675), (2023, 11, 14));
        assert_eq!(civil_from_days(20_778), (2026, 11, 21));
    }
}
