//! `loadtest compare`: [`compare`] alternates two services in short rounds (A B A B ...) with
//! one workload and reports each figure's median per side and the A/B ratio, so that a noisy
//! moment of the machine lands in one round, not in one side.

use std::sync::Arc;

use serde::Serialize;

use crate::cli::CompareArgs;
use crate::error::HarnessError;
use crate::generator::{Plan, connect, drive};
use crate::progress::{Live, ProgressDisplay};
use crate::provenance::Provenance;
use crate::report::{RunReport, format_us, text_table};
use crate::spec::PhaseSpec;
use crate::workload::Workload;

/// The figures of one round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Decisions per second.
    pub decisions_per_s: f64,
    /// gRPC errors per second.
    pub errors_per_s: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Largest, µs.
    pub max_us: f64,
}

impl Figures {
    /// The figures of a run.
    pub fn of(run: &RunReport) -> Figures {
        Figures {
            decisions_per_s: run.decisions_per_s,
            errors_per_s: run.errors_per_s,
            p50_us: run.latency.p50_us as f64,
            p90_us: run.latency.p90_us as f64,
            p99_us: run.latency.p99_us as f64,
            p999_us: run.latency.p999_us as f64,
            max_us: run.latency.max_us as f64,
        }
    }

    const NAMES: [&'static str; 7] = [
        "decisions/s",
        "errors/s",
        "latency p50",
        "latency p90",
        "latency p99",
        "latency p99.9",
        "latency max",
    ];

    fn values(&self) -> [f64; 7] {
        [
            self.decisions_per_s,
            self.errors_per_s,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
        ]
    }
}

/// One round.
#[derive(Clone, Debug, Serialize)]
pub struct Round {
    /// From 1.
    pub round: usize,
    /// `A` or `B`.
    pub side: &'static str,
    /// What it measured.
    pub figures: Figures,
}

/// One figure's medians.
#[derive(Clone, Debug, Serialize)]
pub struct FigureMedians {
    /// `decisions/s`, `latency p99`, ...
    pub figure: &'static str,
    /// Median over A's rounds.
    pub a: f64,
    /// Median over B's rounds.
    pub b: f64,
    /// `a / b` (0 when `b` is 0).
    pub a_over_b: f64,
}

/// What `loadtest compare` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// When, how and at which commit it ran; the targets are A and B.
    pub provenance: Provenance,
    /// Service A.
    pub a: String,
    /// Service B.
    pub b: String,
    /// The workload of every round.
    pub phase: PhaseSpec,
    /// Every round, in the order run.
    pub rounds: Vec<Round>,
    /// Medians per figure.
    pub medians: Vec<FigureMedians>,
}

/// The median (mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Medians of each figure over each side's rounds.
pub fn medians(rounds: &[Round]) -> Vec<FigureMedians> {
    Figures::NAMES
        .iter()
        .enumerate()
        .map(|(i, &figure)| {
            let side = |name| -> Vec<f64> {
                rounds
                    .iter()
                    .filter(|r| r.side == name)
                    .map(|r| r.figures.values()[i])
                    .collect()
            };
            let (a, b) = (median(&side("A")), median(&side("B")));
            FigureMedians {
                figure,
                a,
                b,
                a_over_b: if b > 0.0 { a / b } else { 0.0 },
            }
        })
        .collect()
}

/// Runs `rounds` pairs of rounds, A then B, each the phase `spec` (its warm-up included).
pub async fn compare(
    a: &str,
    b: &str,
    spec: &PhaseSpec,
    rounds: usize,
    progress: bool,
) -> Result<Comparison, HarnessError> {
    let provenance = Provenance::now(&[a.to_string(), b.to_string()], None);
    spec.validate()?;
    if rounds == 0 {
        return Err(HarnessError::Workload("--rounds must be at least 1".into()));
    }
    let workload = Arc::new(Workload::build(spec)?);
    let sides = [
        (
            "A",
            a.to_string(),
            connect(&[a.to_string()], spec.connections).await?,
        ),
        (
            "B",
            b.to_string(),
            connect(&[b.to_string()], spec.connections).await?,
        ),
    ];
    let plan = Plan::of(spec);
    let mut done = Vec::new();
    for round in 1..=rounds {
        for (side, target, channels) in &sides {
            let live = Arc::new(Live::default());
            let label = format!("round {round}/{rounds} {side}");
            let display =
                ProgressDisplay::start(live.clone(), &label, spec.warmup + spec.duration, progress);
            let (tally, timing) = drive(channels, workload.clone(), &plan, live).await;
            display.finish();
            let run = RunReport::new(
                &label,
                std::slice::from_ref(target),
                spec,
                &tally,
                &timing,
                None,
            );
            done.push(Round {
                round,
                side,
                figures: Figures::of(&run),
            });
        }
    }
    Ok(Comparison {
        provenance,
        a: a.to_string(),
        b: b.to_string(),
        phase: spec.clone(),
        medians: medians(&done),
        rounds: done,
    })
}

/// The table `loadtest compare` prints.
pub fn render(comparison: &Comparison) -> String {
    let format = |figure: &str, v: f64| {
        if figure.starts_with("latency") {
            format_us(v.round() as u64)
        } else {
            format!("{v:.0}")
        }
    };
    let mut out = format!(
        "{}\n\nA = {}, B = {}; {}; {} round(s) each of {:.1} s after {:.1} s warm-up\n\n",
        comparison.provenance.lines().join("\n"),
        comparison.a,
        comparison.b,
        comparison.phase.pace(),
        comparison.rounds.len() / 2,
        comparison.phase.duration.as_secs_f64(),
        comparison.phase.warmup.as_secs_f64()
    );
    let mut rows = vec![vec![
        "round".to_string(),
        "side".into(),
        "decisions/s".into(),
        "p50".into(),
        "p99".into(),
        "p99.9".into(),
        "errors/s".into(),
    ]];
    for r in &comparison.rounds {
        let f = &r.figures;
        rows.push(vec![
            r.round.to_string(),
            r.side.to_string(),
            format!("{:.0}", f.decisions_per_s),
            format_us(f.p50_us as u64),
            format_us(f.p99_us as u64),
            format_us(f.p999_us as u64),
            format!("{:.0}", f.errors_per_s),
        ]);
    }
    out.push_str(&text_table(&rows));
    out.push('\n');
    let mut rows = vec![vec![
        "median".to_string(),
        "A".into(),
        "B".into(),
        "A/B".into(),
    ]];
    for m in &comparison.medians {
        rows.push(vec![
            m.figure.to_string(),
            format(m.figure, m.a),
            format(m.figure, m.b),
            format!("{:.2}", m.a_over_b),
        ]);
    }
    out.push_str(&text_table(&rows));
    out
}

/// `loadtest compare`.
pub async fn execute(args: &CompareArgs) -> Result<(), HarnessError> {
    let comparison = compare(&args.a, &args.b, &args.phase, args.rounds, !args.quiet).await?;
    if args.json {
        let json = serde_json::to_string_pretty(&comparison)
            .map_err(|e| HarnessError::Process(format!("cannot encode the results: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", render(&comparison));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn medians_take_each_side_s_rounds_and_divide_a_by_b() {
        let round = |side, decisions_per_s| Round {
            round: 1,
            side,
            figures: Figures {
                decisions_per_s,
                ..Figures::default()
            },
        };
        // One noisy A round (10) does not decide the comparison.
        let rounds = [
            round("A", 100.0),
            round("B", 50.0),
            round("A", 10.0),
            round("B", 40.0),
            round("A", 120.0),
            round("B", 60.0),
        ];
        let decisions = &medians(&rounds)[0];
        assert_eq!(
            (decisions.a, decisions.b, decisions.a_over_b),
            (100.0, 50.0, 2.0)
        );
    }
}
