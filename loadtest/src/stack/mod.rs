//! `loadtest stack`: starts what each standard [`StackScenario`] needs on loopback (`rls`
//! replicas, `redis-server` single or clustered), measures it and the no-op baseline with the
//! same load, stops everything it started, and prints the results as a BENCHMARKS.md section.
//!
//! Modules: [`scenarios`] (the table of scenarios and the quota), [`section`] (the Markdown).

pub mod scenarios;
pub mod section;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use scenarios::{SCENARIOS, STACK_QUOTA, StackScenario, Store, skip_reason};
pub use section::markdown;

use crate::cli::StackArgs;
use crate::error::HarnessError;
use crate::processes::{
    Backend, RlsFeatures, Spawned, create_cluster, find_on_path, find_rls, start_redis, start_rls,
};
use crate::provenance;
use crate::report::Measured;
use crate::run::{load_quotas, measure};
use crate::spec::PhaseSpec;

/// One row of the table.
#[derive(Clone, Debug, Serialize)]
pub struct StackRow {
    /// The scenario.
    pub scenario: StackScenario,
    /// Its measurement, when it ran.
    pub measured: Option<Measured>,
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

/// A folder for the stack's quota file and logs, removed when dropped.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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

    let dir = WorkDir(std::env::temp_dir().join(format!("loadtest-stack-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)
        .map_err(|e| HarnessError::io(format!("creating {}", dir.0.display()), e))?;
    let quota = dir.0.join("bench.yaml");
    std::fs::write(&quota, STACK_QUOTA)
        .map_err(|e| HarnessError::io(format!("writing {}", quota.display()), e))?;
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
                skipped: Some(reason),
            });
            continue;
        }
        let tools = Tools {
            rls: &rls,
            redis_server: redis_server.as_deref(),
            redis_cli: redis_cli.as_deref(),
        };
        let outcome = run_scenario(&scenario, &tools, &quota, &dir.0, args, &quotas).await;
        rows.push(match outcome {
            Ok(measured) => StackRow {
                scenario,
                measured: Some(measured),
                skipped: None,
            },
            Err(error) => StackRow {
                scenario,
                measured: None,
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

struct Tools<'a> {
    rls: &'a Path,
    redis_server: Option<&'a Path>,
    redis_cli: Option<&'a Path>,
}

/// Starts the scenario's processes, measures, and stops them (by dropping them) on return.
async fn run_scenario(
    scenario: &StackScenario,
    tools: &Tools<'_>,
    quota: &Path,
    dir: &Path,
    args: &StackArgs,
    quotas: &config::QuotaSet,
) -> Result<Measured, HarnessError> {
    let mut processes: Vec<Spawned> = Vec::new();
    let missing = || HarnessError::Process("redis-server or redis-cli not found".into());
    let backend = match scenario.store {
        Store::Memory => Backend::Memory,
        Store::Redis => {
            let (redis, port) =
                start_redis(tools.redis_server.ok_or_else(missing)?, dir, false).await?;
            processes.push(redis);
            Backend::Redis {
                url: format!("redis://127.0.0.1:{port}"),
            }
        }
        Store::RedisCluster => {
            let mut ports = Vec::new();
            for _ in 0..3 {
                let (node, port) =
                    start_redis(tools.redis_server.ok_or_else(missing)?, dir, true).await?;
                processes.push(node);
                ports.push(port);
            }
            create_cluster(tools.redis_cli.ok_or_else(missing)?, &ports).await?;
            Backend::RedisCluster {
                nodes: ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
            }
        }
    };
    let mut targets = Vec::new();
    for index in 1..=scenario.replicas {
        let (replica, addr) = start_rls(tools.rls, quota, &backend, dir, index).await?;
        processes.push(replica);
        targets.push(addr);
    }
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
    let measured = measure(&targets, &spec, Some(quotas), true, !args.quiet).await;
    drop(processes);
    measured
}

/// `loadtest stack`.
pub async fn execute(args: &StackArgs) -> Result<(), HarnessError> {
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
