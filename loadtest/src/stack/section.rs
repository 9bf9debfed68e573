//! The BENCHMARKS.md section `loadtest stack` prints ([`markdown`]): date, machine, commit,
//! command, and one table row per scenario.

use std::fmt::Write;

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
            .and_then(|x| x.decisions_per_s)
            .unwrap_or(0.0);
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
        return bounds.map_or_else(String::new, |b| b.describe(0, 0, 0.0));
    };
    if a.bounded == 1 {
        let more = bounds
            .map(|b| {
                b.describe(
                    a.allowed,
                    a.worst.first().map_or(0, |k| k.asked),
                    a.permitted,
                )
            })
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
