//! `loadtest compare`: [`compare`] alternates two services in short rounds (A B A B ...) with
//! one workload and reports each figure's median per side and the A/B ratio, so that a noisy
//! moment of the machine lands in one round, not in one side.

use std::sync::Arc;

use serde::Serialize;

use crate::cli::CompareArgs;
use crate::cpu::{CpuPerDecision, Processes};
use crate::error::HarnessError;
use crate::fleet::{Fleet, FleetPlan, Store, WorkDir};
use crate::generator::{Plan, connect, drive};
use crate::processes::find_rls;
use crate::progress::{Live, ProgressDisplay};
use crate::provenance::Provenance;
use crate::report::{RunReport, format_us, text_table};
use crate::scrape::metric_sum;
use crate::spec::PhaseSpec;
use crate::stack::STACK_QUOTA;
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
    /// CPU time of the side's `rls` processes per decision, µs (0: not started here).
    pub rls_cpu_us: f64,
    /// CPU time of the side's Redis processes per decision, µs (0: none started here).
    pub redis_cpu_us: f64,
    /// CPU time of the harness per decision, µs.
    pub harness_cpu_us: f64,
    /// Redis script calls per decision of the side's replicas (0: not started here).
    pub calls_per_decision: f64,
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
            ..Figures::default()
        }
    }

    /// The figures of a run, with the CPU time its processes used.
    pub fn with_cpu(run: &RunReport, cpu: CpuPerDecision) -> Figures {
        Figures {
            rls_cpu_us: cpu.rls_us.unwrap_or(0.0),
            redis_cpu_us: cpu.redis_us.unwrap_or(0.0),
            harness_cpu_us: cpu.harness_us,
            ..Figures::of(run)
        }
    }

    const NAMES: [&'static str; 11] = [
        "decisions/s",
        "errors/s",
        "latency p50",
        "latency p90",
        "latency p99",
        "latency p99.9",
        "latency max",
        "CPU rls µs/decision",
        "CPU Redis µs/decision",
        "CPU harness µs/decision",
        "Redis calls/decision",
    ];

    fn values(&self) -> [f64; 11] {
        [
            self.decisions_per_s,
            self.errors_per_s,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.rls_cpu_us,
            self.redis_cpu_us,
            self.harness_cpu_us,
            self.calls_per_decision,
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

/// One side of a comparison: the services it loads and, for a side started here, the
/// processes whose CPU time counts.
pub struct Side {
    /// What the side is, for the report: an address, or the store started.
    pub label: String,
    /// Its gRPC addresses (replicas).
    pub targets: Vec<String>,
    /// Its processes, when started here.
    pub processes: Processes,
    /// Its replicas' HTTP addresses, when started here (for their metrics).
    pub http: Vec<String>,
}

impl Side {
    /// A running service at `addr`, host:port.
    pub fn external(addr: &str) -> Side {
        Side {
            label: addr.to_string(),
            targets: vec![addr.to_string()],
            processes: Processes::default(),
            http: Vec::new(),
        }
    }
}

/// Runs `rounds` pairs of rounds, A then B, each the phase `spec` (its warm-up included),
/// reading the CPU time of each side's processes and of the harness around each round.
pub async fn compare(
    a: &Side,
    b: &Side,
    spec: &PhaseSpec,
    rounds: usize,
    progress: bool,
) -> Result<Comparison, HarnessError> {
    let provenance = Provenance::now(&[a.label.clone(), b.label.clone()], None);
    spec.validate()?;
    if rounds == 0 {
        return Err(HarnessError::Workload("--rounds must be at least 1".into()));
    }
    let workload = Arc::new(Workload::build(spec)?);
    let sides = [
        ("A", a, connect(&a.targets, spec.connections).await?),
        ("B", b, connect(&b.targets, spec.connections).await?),
    ];
    let plan = Plan::of(spec);
    let mut done = Vec::new();
    for round in 1..=rounds {
        for (name, side, channels) in &sides {
            let live = Arc::new(Live::default());
            let label = format!("round {round}/{rounds} {name}");
            let display =
                ProgressDisplay::start(live.clone(), &label, spec.warmup + spec.duration, progress);
            let calls = metric_sum(&side.http, "rls_redis_calls_total").await;
            let mark = side.processes.mark();
            let (tally, timing) = drive(channels, workload.clone(), &plan, live).await;
            let decisions = tally.decisions() + tally.warmup_answers;
            let cpu = side.processes.per_decision(mark, decisions);
            let calls = metric_sum(&side.http, "rls_redis_calls_total").await - calls;
            display.finish();
            let run = RunReport::new(&label, &side.targets, spec, &tally, &timing, None);
            done.push(Round {
                round,
                side: name,
                figures: Figures {
                    calls_per_decision: calls / decisions.max(1) as f64,
                    ..Figures::with_cpu(&run, cpu)
                },
            });
        }
    }
    Ok(Comparison {
        provenance,
        a: a.label.clone(),
        b: b.label.clone(),
        phase: spec.clone(),
        medians: medians(&done),
        rounds: done,
    })
}

/// The table `loadtest compare` prints.
pub fn render(comparison: &Comparison) -> String {
    let format = |figure: &str, v: f64| {
        if figure.starts_with("Redis calls") {
            format!("{v:.3}")
        } else if figure.starts_with("CPU") {
            format!("{v:.1}")
        } else if figure.starts_with("latency") {
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
        "CPU µs/decision rls / Redis / harness".into(),
        "Redis calls/decision".into(),
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
            format!(
                "{:.1} / {:.1} / {:.1}",
                f.rls_cpu_us, f.redis_cpu_us, f.harness_cpu_us
            ),
            format!("{:.3}", f.calls_per_decision),
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

/// `loadtest compare`: starts the sides named by a store (with their Redis), on the CPU
/// lists given, then alternates them.
pub async fn execute(args: &CompareArgs) -> Result<(), HarnessError> {
    args.pinning.pin_harness()?;
    let dir = WorkDir::new("compare")?;
    let quota = match &args.quota {
        Some(path) => path.clone(),
        None => dir.write("bench.yaml", STACK_QUOTA)?,
    };
    let mut fleets = Vec::new();
    let mut sides = Vec::new();
    for (name, spec, flags) in [("a", &args.a, &args.a_flags), ("b", &args.b, &args.b_flags)] {
        let Ok(store) = spec.parse::<Store>() else {
            sides.push(Side::external(spec));
            continue;
        };
        let rls = find_rls(args.rls_bin.as_deref())?;
        let extra: Vec<String> = flags.split_whitespace().map(str::to_string).collect();
        let side_dir = dir.path().join(name);
        std::fs::create_dir_all(&side_dir)
            .map_err(|e| HarnessError::io(format!("creating {}", side_dir.display()), e))?;
        let fleet = Fleet::start(&FleetPlan {
            rls: &rls,
            quota: &quota,
            dir: &side_dir,
            store,
            replicas: args.replicas,
            extra: &extra,
            pinning: &args.pinning,
        })
        .await?;
        sides.push(Side {
            label: format!("{spec} ×{} {flags}", args.replicas)
                .trim_end()
                .to_string(),
            targets: fleet.targets.clone(),
            processes: fleet.pids.clone(),
            http: fleet.http_addrs(),
        });
        fleets.push(fleet);
    }
    let comparison = compare(&sides[0], &sides[1], &args.phase, args.rounds, !args.quiet).await?;
    drop(fleets);
    if args.json {
        let json = serde_json::to_string_pretty(&comparison)
            .map_err(|e| HarnessError::Process(format!("cannot encode the results: {e}")))?;
        println!("{json}");
    } else {
        print!("CPUs: {}\n{}", args.pinning.describe(), render(&comparison));
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
