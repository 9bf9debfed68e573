//! The BENCHMARKS.md section `loadtest stack` prints ([`markdown`]): date, machine, commit,
//! command, and one table row per scenario.

use std::fmt::Write;

use super::StackRun;
use super::scenarios::{STACK_QUOTA, StackScenario};
use crate::cli::StackArgs;
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
    out.push_str("| Scenario | decisions/s | baseline/s | ratio | p50 | p99 | p99.9 | OK / OVER_LIMIT / errors | accuracy |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for row in &run.rows {
        let title = row.scenario.title;
        let Some(measured) = &row.measured else {
            let reason = row.skipped.as_deref().unwrap_or("skipped");
            let _ = writeln!(out, "| {title} | {reason} | | | | | | | |");
            continue;
        };
        let r = &measured.run;
        let baseline = measured
            .baseline
            .as_ref()
            .map_or(0.0, |b| b.decisions_per_s);
        let ratio = measured
            .ratio_to_baseline
            .and_then(|x| x.decisions_per_s)
            .unwrap_or(0.0);
        let errors = r.answers - r.count("OK") - r.count("OVER_LIMIT");
        let _ = writeln!(
            out,
            "| {title} | {:.0} | {baseline:.0} | {ratio:.2} | {} | {} | {} | {} / {} / {errors} | {} |",
            r.decisions_per_s,
            format_us(r.latency.p50_us),
            format_us(r.latency.p99_us),
            format_us(r.latency.p999_us),
            r.count("OK"),
            r.count("OVER_LIMIT"),
            accuracy_cell(measured),
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

fn accuracy_cell(measured: &Measured) -> String {
    let Some(a) = &measured.run.accuracy else {
        return String::new();
    };
    if a.bounded == 1 {
        format!(
            "allowed {} of {:.0} permitted: overshoot {}",
            a.allowed,
            a.permitted,
            format_pct(a.max_overshoot_pct)
        )
    } else {
        format!(
            "{} of {} keys over; max overshoot {}",
            a.exceeded,
            a.bounded,
            format_pct(a.max_overshoot_pct)
        )
    }
}
