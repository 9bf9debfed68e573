//! The BENCHMARKS.md section `loadtest stack` prints ([`markdown`]): date, machine, commit,
//! command, and one table row per scenario.

use std::fmt::Write;
use std::path::Path;

use super::StackRun;
use super::bounds::Bounds;
use super::scenarios::{STACK_QUOTA, StackScenario};
use crate::cli::StackArgs;
use crate::cpu::CpuPerDecision;
use crate::report::{Measured, format_pct, format_us};

/// The Markdown section for BENCHMARKS.md.
pub fn markdown(run: &StackRun, args: &StackArgs) -> String {
    let mut out = format!(
        "## {} — standard scenarios over gRPC on loopback (`loadtest stack`)\n\n",
        run.date
    );
    let _ = writeln!(
        out,
        "- **Machine:** {}; the harness, the rls replicas and Redis share its cores.",
        run.machine
    );
    let _ = writeln!(out, "- **Commit:** `{}`.", run.commit);
    let _ = writeln!(out, "- **Command:** `{}`", run.command);
    let _ = writeln!(
        out,
        "- **Load:** closed loop, {} requests in flight over {} HTTP/2 connections (at least one per replica), {:.0} s measured after {:.0} s warm-up (none for the accuracy rows, so that buckets start full as the permitted figure assumes); one descriptor per request, domain `bench`, quota below.",
        args.concurrency,
        args.connections,
        args.duration.as_secs_f64(),
        args.warmup.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "- **Baseline:** the same load against the no-op RLS (`loadtest baseline`, always OK), run in-process just before each scenario; ratio = decisions/s ÷ baseline's.\n"
    );
    let _ = writeln!(
        out,
        "- **CPUs:** {}; CPU time per decision read from `/proc` around each measured run (its warm-up included).\n",
        args.pinning.describe()
    );
    out.push_str("| Scenario | decisions/s | baseline/s | ratio | p50 | p99 | p99.9 | OK / OVER_LIMIT / errors | CPU µs/decision rls / Redis / harness | accuracy |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for row in &run.rows {
        let title = row.scenario.title;
        let Some(measured) = &row.measured else {
            let reason = row.skipped.as_deref().unwrap_or("skipped");
            let _ = writeln!(out, "| {title} | {reason} | | | | | | | | |");
            continue;
        };
        let r = &measured.run;
        let baseline = measured
            .baseline
            .as_ref()
            .map_or(0.0, |b| b.decisions_per_s);
        let ratio = measured
            .ratio_to_baseline
            .map_or(0.0, |x| x.decisions_per_s);
        let errors = r.answers - r.count("OK") - r.count("OVER_LIMIT");
        let _ = writeln!(
            out,
            "| {title} | {:.0} | {baseline:.0} | {ratio:.2} | {} | {} | {} | {} / {} / {errors} | {} | {} |",
            r.decisions_per_s,
            format_us(r.latency.p50_us),
            format_us(r.latency.p99_us),
            format_us(r.latency.p999_us),
            r.count("OK"),
            r.count("OVER_LIMIT"),
            row.cpu.as_ref().map_or_else(String::new, cpu_cell),
            accuracy_cell(measured, row.bounds.as_ref()),
        );
    }
    let notes: Vec<&StackScenario> = run
        .rows
        .iter()
        .map(|r| &r.scenario)
        .filter(|s| !s.note.is_empty())
        .collect();
    if !notes.is_empty() {
        out.push('\n');
        for s in notes {
            let _ = writeln!(out, "- *{}*: {}.", s.title, s.note);
        }
    }
    out.push_str("\nThe quota (`STACK_QUOTA` in `loadtest/src/stack/scenarios.rs`):\n\n");
    for line in STACK_QUOTA.lines() {
        let _ = writeln!(out, "    {line}");
    }
    out
}

fn accuracy_cell(measured: &Measured, bounds: Option<&Bounds>) -> String {
    let Some(a) = &measured.run.accuracy else {
        return bounds.map_or_else(String::new, |b| b.describe(0, 0.0));
    };
    if a.bounded == 1 {
        let more = bounds
            .map(|b| b.describe(a.allowed, a.permitted))
            .filter(|m| !m.is_empty())
            .map_or_else(String::new, |m| format!("; {m}"));
        format!(
            "allowed {} of {:.0} permitted: overshoot {}{more}",
            a.allowed,
            a.permitted,
            format_pct(a.max_overshoot_pct)
        )
    } else {
        let more = bounds
            .and_then(|b| b.calls_per_decision)
            .map_or_else(String::new, |c| format!("; {c:.3} Redis calls/decision"));
        format!(
            "{} of {} keys over; max overshoot {}{more}",
            a.exceeded,
            a.bounded,
            format_pct(a.max_overshoot_pct)
        )
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
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
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
    fn days_since_the_epoch_become_calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_675), (2023, 11, 14));
        assert_eq!(civil_from_days(20_778), (2026, 11, 21));
    }
}

/// `12.3 / 4.5 / 10.1` (µs per decision; `–` for a kind not started).
pub fn cpu_cell(cpu: &CpuPerDecision) -> String {
    let us = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}"));
    format!(
        "{} / {} / {}",
        us(cpu.rls_us),
        us(cpu.redis_us),
        us(Some(cpu.harness_us))
    )
}
