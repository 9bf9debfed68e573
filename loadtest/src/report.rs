//! [`RunReport`]: what one phase measured, as the JSON it is written as and the text table it
//! is printed as; [`Measured`] pairs it with the baseline run and gives the ratios.

use std::fmt::Write;

use serde::Serialize;

use crate::accuracy::AccuracyReport;
use crate::generator::Timing;
use crate::spec::PhaseSpec;
use crate::stats::{LatencySummary, Outcome, Tally, nonzero};

/// Answers of one code.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CodeCount {
    /// `OK`, `OVER_LIMIT`, `UNKNOWN`, or `grpc <CODE>`.
    pub code: String,
    /// How many.
    pub count: u64,
}

/// One second of the measured run (by the time answers came).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SecondPoint {
    /// Seconds since the measurement began.
    pub second: u64,
    /// Decisions (OK, OVER_LIMIT, UNKNOWN) answered in that second.
    pub decisions: u64,
    /// Of which OK.
    pub ok: u64,
    /// Of which OVER_LIMIT.
    pub over_limit: u64,
    /// gRPC errors in that second.
    pub errors: u64,
    /// Median latency of that second's answers.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest.
    pub max_us: u64,
}

/// Everything one phase against one set of targets measured.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// Phase name (empty for a run from flags).
    pub name: String,
    /// The services loaded.
    pub targets: Vec<String>,
    /// Workload and pacing, as given.
    pub phase: PhaseSpec,
    /// Measured seconds: from the end of the warm-up to the last answer.
    pub elapsed_s: f64,
    /// Measured answers, errors included.
    pub answers: u64,
    /// Of which decisions (OK, OVER_LIMIT, UNKNOWN).
    pub decisions: u64,
    /// Answers to warm-up requests, not counted elsewhere.
    pub warmup_answers: u64,
    /// Answers by code.
    pub codes: Vec<CodeCount>,
    /// Decisions per second.
    pub decisions_per_s: f64,
    /// gRPC errors per second.
    pub errors_per_s: f64,
    /// Latency of every measured answer.
    pub latency: LatencySummary,
    /// Per full second of the measured run.
    pub series: Vec<SecondPoint>,
    /// Allowed versus permitted per key, when a quota file was given.
    pub accuracy: Option<AccuracyReport>,
}

impl RunReport {
    /// The report of a tally.
    pub fn new(
        name: &str,
        targets: &[String],
        phase: &PhaseSpec,
        tally: &Tally,
        timing: &Timing,
        accuracy: Option<AccuracyReport>,
    ) -> RunReport {
        let elapsed = timing.elapsed.as_secs_f64();
        let answers = tally.answers();
        let decisions = tally.decisions();
        // The last second is partial (answers to requests sent just before the end).
        let full_seconds = elapsed.floor() as usize;
        let series = tally
            .seconds
            .iter()
            .take(full_seconds)
            .enumerate()
            .map(|(i, s)| {
                let latency = LatencySummary::of(&s.latency);
                SecondPoint {
                    second: i as u64,
                    decisions: s.counts[..3].iter().sum(),
                    ok: s.counts[Outcome::Ok.index()],
                    over_limit: s.counts[Outcome::OverLimit.index()],
                    errors: s.counts[3..].iter().sum(),
                    p50_us: latency.p50_us,
                    p99_us: latency.p99_us,
                    max_us: latency.max_us,
                }
            })
            .collect();
        RunReport {
            name: name.to_string(),
            targets: targets.to_vec(),
            phase: phase.clone(),
            elapsed_s: elapsed,
            answers,
            decisions,
            warmup_answers: tally.warmup_answers,
            codes: tally
                .by_outcome()
                .into_iter()
                .map(|(outcome, count)| CodeCount {
                    code: outcome.name(),
                    count,
                })
                .collect(),
            decisions_per_s: decisions as f64 / elapsed,
            errors_per_s: (answers - decisions) as f64 / elapsed,
            latency: LatencySummary::of(&tally.latency),
            series,
            accuracy,
        }
    }

    /// Answers of `code` (`OK`, `OVER_LIMIT`, ...), 0 if none.
    pub fn count(&self, code: &str) -> u64 {
        self.codes
            .iter()
            .find(|c| c.code == code)
            .map_or(0, |c| c.count)
    }
}

/// Figures of a run divided by the same figures of the baseline run; `None` where the
/// baseline's figure is 0 (no ratio).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Ratios {
    /// Decisions per second (below 1: slower than the no-op server).
    pub decisions_per_s: Option<f64>,
    /// Median latency (above 1: slower).
    pub p50: Option<f64>,
    /// 90th percentile latency.
    pub p90: Option<f64>,
    /// 99th percentile latency.
    pub p99: Option<f64>,
    /// 99.9th percentile latency.
    pub p999: Option<f64>,
    /// Largest latency.
    pub max: Option<f64>,
}

/// A phase's run, and the same phase against the baseline when one was asked for.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    /// Against the targets.
    pub run: RunReport,
    /// Against the no-op baseline server.
    pub baseline: Option<RunReport>,
    /// `run / baseline`.
    pub ratio_to_baseline: Option<Ratios>,
}

impl Measured {
    /// Pairs a run with its baseline and computes the ratios.
    pub fn new(run: RunReport, baseline: Option<RunReport>) -> Measured {
        let ratio_to_baseline = baseline.as_ref().map(|b| ratios(&run, b));
        Measured {
            run,
            baseline,
            ratio_to_baseline,
        }
    }
}

/// `a / b`, `None` when `b` is 0.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// `a / b` for each figure.
pub fn ratios(a: &RunReport, b: &RunReport) -> Ratios {
    let latency =
        |pick: fn(&LatencySummary) -> u64| ratio(pick(&a.latency) as f64, pick(&b.latency) as f64);
    Ratios {
        decisions_per_s: ratio(a.decisions_per_s, b.decisions_per_s),
        p50: latency(|l| l.p50_us),
        p90: latency(|l| l.p90_us),
        p99: latency(|l| l.p99_us),
        p999: latency(|l| l.p999_us),
        max: latency(|l| l.max_us),
    }
}

/// A latency in the unit that reads best: `850 µs`, `2.10 ms`, `1.25 s`.
pub fn format_us(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.2} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// Columns padded to their widest cell; the first column left-aligned, the others right.
pub fn text_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c == 0 {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str("   ");
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The text a person reads after `loadtest run`: what was run, the figures (with the
/// baseline's and the ratio of each when there is one), then the accuracy.
pub fn render_text(measured: &Measured, quota: Option<&str>) -> String {
    let mut out = describe_run(&measured.run);
    out.push_str(&text_table(&figure_rows(measured)));
    if let Some(accuracy) = &measured.run.accuracy {
        out.push_str(&render_accuracy(
            accuracy,
            quota.unwrap_or("the quota file"),
        ));
    }
    out
}

/// The phase's name, targets, pacing and workload.
fn describe_run(run: &RunReport) -> String {
    let phase = &run.phase;
    let mut out = String::new();
    if !run.name.is_empty() {
        let _ = writeln!(out, "== {} ==", run.name);
    }
    let _ = writeln!(
        out,
        "{}: {}, {} connection(s); {:.1} s measured after {:.1} s warm-up",
        run.targets.join(", "),
        phase.pace(),
        phase.connections.max(run.targets.len()),
        run.elapsed_s,
        phase.warmup.as_secs_f64()
    );
    let distribution = if phase.keys > 1 {
        format!(" ({:?})", phase.distribution).to_lowercase()
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "workload: domain {}; descriptors {}; {} key(s){distribution}; hits_addend {}\n",
        phase.domain,
        phase.descriptors.join(" + "),
        phase.keys,
        phase.hits
    );
    out
}

/// One figure of the table: its label, how to read it off a run, how to print it.
struct Figure {
    label: String,
    value: Box<dyn Fn(&RunReport) -> f64>,
    show: fn(f64) -> String,
}

impl Figure {
    fn new(
        label: &str,
        value: impl Fn(&RunReport) -> f64 + 'static,
        show: fn(f64) -> String,
    ) -> Self {
        Figure {
            label: label.to_owned(),
            value: Box::new(value),
            show,
        }
    }
}

/// Every figure of the table, in order: throughput, latencies, answers by `codes`.
fn figures(codes: Vec<String>) -> Vec<Figure> {
    let rate = |v: f64| format!("{v:.0}");
    let latency = |v: f64| format_us(v as u64);
    let count = |v: f64| format!("{v:.0}");
    type Pick = fn(&LatencySummary) -> u64;
    let latencies: [(&str, Pick); 5] = [
        ("latency p50", |l| l.p50_us),
        ("latency p90", |l| l.p90_us),
        ("latency p99", |l| l.p99_us),
        ("latency p99.9", |l| l.p999_us),
        ("latency max", |l| l.max_us),
    ];
    let mut figures = vec![Figure::new("decisions/s", |r| r.decisions_per_s, rate)];
    for (label, pick) in latencies {
        figures.push(Figure::new(
            label,
            move |r| pick(&r.latency) as f64,
            latency,
        ));
    }
    figures.push(Figure::new("answers", |r| r.answers as f64, count));
    for name in codes {
        let label = format!("  {name}");
        figures.push(Figure::new(&label, move |r| r.count(&name) as f64, count));
    }
    figures.push(Figure::new(
        "warm-up answers (not counted)",
        |r| r.warmup_answers as f64,
        count,
    ));
    figures
}

/// The table's rows: label and target, then with a baseline its figure and the ratio
/// (`-` where the baseline's figure is 0).
fn figure_rows(measured: &Measured) -> Vec<Vec<String>> {
    let run = &measured.run;
    let baseline = measured.baseline.as_ref();
    let mut rows = vec![vec!["".into(), "target".into()]];
    if baseline.is_some() {
        rows[0].extend(["baseline".into(), "ratio".into()]);
    }
    // The run's codes, then any only the baseline answered with.
    let mut codes: Vec<String> = run.codes.iter().map(|c| c.code.clone()).collect();
    for code in baseline.iter().flat_map(|b| &b.codes) {
        if !codes.contains(&code.code) {
            codes.push(code.code.clone());
        }
    }
    for figure in figures(codes) {
        let value = (figure.value)(run);
        let mut row = vec![figure.label, (figure.show)(value)];
        if let Some(base) = baseline.map(|b| (figure.value)(b)) {
            row.push((figure.show)(base));
            row.push(ratio(value, base).map_or("-".into(), |r| format!("{r:.2}")));
        }
        rows.push(row);
    }
    rows
}

/// The accuracy section: totals, then the worst keys.
pub fn render_accuracy(accuracy: &AccuracyReport, quota: &str) -> String {
    let mut out = format!(
        "\naccuracy against {quota} over {:.1} s: {} key(s), {} bounded, {} allowed more than permitted; max overshoot {}\n",
        accuracy.elapsed_s,
        accuracy.keys,
        accuracy.bounded,
        accuracy.exceeded,
        format_pct(accuracy.max_overshoot_pct)
    );
    let mut rows = vec![vec![
        "  key".to_string(),
        "asked".into(),
        "allowed".into(),
        "permitted".into(),
        "overshoot".into(),
    ]];
    for key in &accuracy.worst {
        rows.push(vec![
            format!("  {}", key.key),
            key.asked.to_string(),
            key.allowed.to_string(),
            key.permitted
                .map_or("no limit".into(), |p| format!("{p:.1}")),
            key.overshoot_pct.map_or("-".into(), format_pct),
        ]);
    }
    out.push_str(&text_table(&rows));
    out
}

/// `12.5 %`, or `∞` for a blocked key that let something through.
pub fn format_pct(pct: f64) -> String {
    if pct.is_finite() {
        format!("{pct:.1} %")
    } else {
        "∞".into()
    }
}

/// The errors of a tally by code: `grpc UNAVAILABLE 3, ...`, or `no errors`.
pub fn error_summary(tally: &Tally) -> String {
    let errors: Vec<String> = nonzero(&tally.counts)
        .into_iter()
        .filter(|(o, _)| !o.is_decision())
        .map(|(o, n)| format!("{} {n}", o.name()))
        .collect();
    if errors.is_empty() {
        "no errors".into()
    } else {
        errors.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_print_in_the_unit_that_reads_best() {
        assert_eq!(format_us(850), "850 µs");
        assert_eq!(format_us(2_100), "2.10 ms");
        assert_eq!(format_us(1_250_000), "1.25 s");
    }

    #[test]
    fn a_text_table_aligns_numbers_to_the_right() {
        let rows = vec![
            vec!["a".to_string(), "1".into()],
            vec!["long label".to_string(), "1000".into()],
        ];
        assert_eq!(text_table(&rows), "a               1\nlong label   1000\n");
    }
}
