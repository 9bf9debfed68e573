//! `loadtest stack`: starts what each standard [`StackScenario`] needs on loopback (`rls`
//! replicas, `redis-server` single or clustered), measures it and the no-op baseline with the
//! same load, stops everything it started, and prints the results as a BENCHMARKS.md section.
//!
//! Modules: [`scenarios`] (the table of scenarios and the quota), [`section`] (the Markdown).

pub mod bounds;
pub mod scenarios;
pub mod section;

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

pub use scenarios::{SCENARIOS, STACK_QUOTA, StackScenario, Store, skip_reason};
pub use section::markdown;

use crate::cli::StackArgs;
use crate::cpu::CpuPerDecision;
use crate::error::HarnessError;
use crate::fleet::{Fleet, FleetPlan, WorkDir};
use crate::processes::{RlsFeatures, find_on_path, find_rls};
use crate::provenance;
use crate::report::Measured;
use crate::run::{load_quotas, run_baseline, run_phase};
use crate::spec::PhaseSpec;
use crate::workload::Workload;
use bounds::{Bounds, calls_before};

/// One row of the table.
#[derive(Clone, Debug, Serialize)]
pub struct StackRow {
    /// The scenario.
    pub scenario: StackScenario,
    /// Its measurement, when it ran.
    pub measured: Option<Measured>,
    /// CPU time per decision of each kind of process, when it ran.
    pub cpu: Option<CpuPerDecision>,
    /// Calls per decision and the bounds of leasing, when it ran.
    pub bounds: Option<Bounds>,
    /// Why it did not run, or how it failed.
    pub skipped: Option<String>,
}

/// What the stack ran with, for the section's header.
#[derive(Clone, Debug, Serialize)]
pub struct StackRun {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// CPU model, count and memory.
    pub machine: String,
    /// `git rev-parse --short HEAD`, if in a checkout.
    pub commit: String,
    /// The command line.
    pub command: String,
    /// The rows.
    pub rows: Vec<StackRow>,
}

/// Runs the selected scenarios one after the other.
pub async fn run_stack(args: &StackArgs) -> Result<StackRun, HarnessError> {
    let selected: Vec<StackScenario> = if args.only.is_empty() {
        SCENARIOS.to_vec()
    } else {
        let mut chosen = Vec::new();
        for id in &args.only {
            let scenario = SCENARIOS.iter().find(|s| s.id == id).ok_or_else(|| {
                HarnessError::Workload(format!("no stack scenario `{id}` (see --list)"))
            })?;
            chosen.push(*scenario);
        }
        chosen
    };
    let rls = find_rls(args.rls_bin.as_deref())?;
    let features = RlsFeatures::of(&rls)?;
    let redis_server = find_on_path("redis-server");
    let redis_cli = find_on_path("redis-cli");

    let dir = WorkDir::new("stack")?;
    let quota = dir.write("bench.yaml", STACK_QUOTA)?;
    let quotas = load_quotas(&quota)?;

    let mut rows = Vec::new();
    for scenario in selected {
        if let Some(reason) = skip_reason(
            &scenario,
            features,
            redis_server.is_some(),
            redis_cli.is_some(),
        ) {
            rows.push(StackRow {
                scenario,
                measured: None,
                cpu: None,
                bounds: None,
                skipped: Some(reason),
            });
            continue;
        }
        let outcome = run_scenario(&scenario, &rls, &quota, dir.path(), args, &quotas).await;
        rows.push(match outcome {
            Ok((measured, cpu, bounds)) => StackRow {
                scenario,
                measured: Some(measured),
                cpu: Some(cpu),
                bounds: Some(bounds),
                skipped: None,
            },
            Err(error) => StackRow {
                scenario,
                measured: None,
                cpu: None,
                bounds: None,
                skipped: Some(format!("failed: {error}")),
            },
        });
    }
    Ok(StackRun {
        date: provenance::today(),
        machine: provenance::machine(),
        commit: provenance::commit(),
        command: provenance::command_line(),
        rows,
    })
}

/// Starts the scenario's processes, measures the baseline and then them (with their CPU
/// time), and stops them (by dropping them) on return.
async fn run_scenario(
    scenario: &StackScenario,
    rls: &Path,
    quota: &Path,
    dir: &Path,
    args: &StackArgs,
    quotas: &config::QuotaSet,
) -> Result<(Measured, CpuPerDecision, Bounds), HarnessError> {
    let fleet = Fleet::start(&FleetPlan {
        rls,
        quota,
        dir,
        store: scenario.store,
        replicas: scenario.replicas,
        extra: &scenario
            .flags
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>(),
        pinning: &args.pinning,
    })
    .await?;
    let spec = PhaseSpec {
        name: scenario.title.to_string(),
        domain: "bench".into(),
        descriptors: vec![scenario.descriptor.to_string()],
        keys: scenario.keys,
        distribution: scenario.distribution,
        concurrency: args.concurrency,
        connections: args.connections.max(scenario.replicas),
        duration: args.duration,
        warmup: if scenario.accuracy {
            Duration::ZERO
        } else {
            args.warmup
        },
        ..PhaseSpec::default()
    };
    spec.validate()?;
    let workload = std::sync::Arc::new(Workload::build(&spec)?);
    let baseline = run_baseline(&spec, workload.clone(), !args.quiet).await?;
    let http = fleet.http_addrs();
    let calls = calls_before(&http).await;
    let mark = fleet.pids.mark();
    let run = run_phase(&fleet.targets, &spec, workload, Some(quotas), !args.quiet).await?;
    let cpu = fleet
        .pids
        .per_decision(mark, run.decisions + run.warmup_answers);
    let redis = scenario.store != Store::Memory;
    let bounds = Bounds::of(&run, &http, calls, redis, quotas).await;
    Ok((Measured::new(run, Some(baseline)), cpu, bounds))
}

/// `loadtest stack`.
pub async fn execute(args: &StackArgs) -> Result<(), HarnessError> {
    args.pinning.pin_harness()?;
    if args.list {
        for s in SCENARIOS {
            println!("{:16} {}", s.id, s.title);
        }
        return Ok(());
    }
    let run = tokio::select! {
        run = run_stack(args) => run?,
        _ = tokio::signal::ctrl_c() => {
            return Err(HarnessError::Process("interrupted; every process the stack started was stopped".into()));
        }
    };
    let section = markdown(&run, args);
    if args.json {
        let json = serde_json::to_string_pretty(&run)
            .map_err(|e| HarnessError::Process(format!("cannot encode the results: {e}")))?;
        println!("{json}");
    } else {
        print!("{section}");
    }
    if let Some(path) = &args.append {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| HarnessError::io(format!("opening {}", path.display()), e))?;
        file.write_all(format!("\n{section}").as_bytes())
            .map_err(|e| HarnessError::io(format!("appending to {}", path.display()), e))?;
    }
    let failed = run
        .rows
        .iter()
        .filter(|r| {
            r.skipped
                .as_deref()
                .is_some_and(|s| s.starts_with("failed"))
        })
        .count();
    if failed > 0 {
        return Err(HarnessError::Process(format!(
            "{failed} scenario(s) failed"
        )));
    }
    Ok(())
}
