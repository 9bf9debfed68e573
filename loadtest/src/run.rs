//! `loadtest run`: [`measure`] one phase against its targets (and first against the no-op
//! baseline when asked), phase after phase, then print, write JSON and the report.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use config::{LoadOptions, QuotaSet};
use serde::Serialize;

use crate::accuracy::{RunWindow, evaluate};
use crate::baseline::BaselineServer;
use crate::chart;
use crate::cli::RunArgs;
use crate::error::HarnessError;
use crate::generator::{Plan, connect, drive};
use crate::progress::{Live, ProgressDisplay};
use crate::provenance::Provenance;
use crate::report::{Measured, RunReport, error_summary, render_text};
use crate::spec::{PhaseSpec, Scenario};
use crate::workload::Workload;

/// Loads a quota file or directory as `rls` does by default.
pub fn load_quotas(path: &Path) -> Result<QuotaSet, HarnessError> {
    QuotaSet::load(path, &LoadOptions::default()).map_err(|source| HarnessError::Quota {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

/// Drives `targets` with one phase and reports it; with `quotas`, adds accuracy.
pub async fn run_phase(
    targets: &[String],
    spec: &PhaseSpec,
    workload: Arc<Workload>,
    quotas: Option<&QuotaSet>,
    progress: bool,
) -> Result<RunReport, HarnessError> {
    let channels = connect(targets, spec.connections).await?;
    let live = Arc::new(Live::default());
    let label = if spec.name.is_empty() {
        targets.join(",")
    } else {
        spec.name.clone()
    };
    let display =
        ProgressDisplay::start(live.clone(), &label, spec.warmup + spec.duration, progress);
    let (tally, timing) = drive(&channels, workload.clone(), &Plan::of(spec), live).await;
    display.finish();
    let accuracy = quotas.map(|quotas| {
        let window = RunWindow {
            start_unix: timing.start_unix,
            end_unix: timing.start_unix + timing.elapsed.as_secs_f64(),
        };
        evaluate(
            quotas,
            &workload.domain,
            &workload.keys,
            &tally.asked,
            &tally.allowed,
            &window,
        )
    });
    let report = RunReport::new(&spec.name, targets, spec, &tally, &timing, accuracy);
    if report.decisions == 0 {
        return Err(HarnessError::NoDecisions {
            answers: report.answers,
            summary: error_summary(&tally),
        });
    }
    Ok(report)
}

/// One phase against `targets`, after the same phase against an in-process no-op server
/// when `baseline` is set. The baseline gets its own runtime, as a server process would.
pub async fn measure(
    targets: &[String],
    spec: &PhaseSpec,
    quotas: Option<&QuotaSet>,
    baseline: bool,
    progress: bool,
) -> Result<Measured, HarnessError> {
    spec.validate()?;
    let workload = Arc::new(Workload::build(spec)?);
    let baseline = if baseline {
        Some(run_baseline(spec, workload.clone(), progress).await?)
    } else {
        None
    };
    let run = run_phase(targets, spec, workload, quotas, progress).await?;
    Ok(Measured::new(run, baseline))
}

/// The phase `spec` against a no-op server of its own runtime, as a server process has.
pub async fn run_baseline(
    spec: &PhaseSpec,
    workload: Arc<Workload>,
    progress: bool,
) -> Result<RunReport, HarnessError> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server = BaselineServer::start_dedicated(threads)?;
    let spec = PhaseSpec {
        name: format!("{} baseline", spec.name).trim_start().to_string(),
        ..spec.clone()
    };
    let targets = [server.addr.to_string()];
    run_phase(&targets, &spec, workload, None, progress).await
}

/// What `loadtest run --json` prints.
#[derive(Debug, Serialize)]
pub struct RunOutput {
    /// When, how, against what, with which quota and at which commit it ran.
    pub provenance: Provenance,
    /// Each phase, in order.
    pub phases: Vec<Measured>,
}

/// The `--report` file, opened for writing before the run so that a path that cannot be
/// written is refused before any load is spent; removed again if the run fails and the file
/// did not exist before.
pub struct ReportFile {
    path: PathBuf,
    file: Option<std::fs::File>,
    created: bool,
}

impl ReportFile {
    /// Opens `path` for writing, without truncating it yet.
    pub fn open(path: &Path) -> Result<ReportFile, HarnessError> {
        let created = !path.exists();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| {
                HarnessError::io(format!("cannot write the report {}", path.display()), e)
            })?;
        Ok(ReportFile {
            path: path.to_path_buf(),
            file: Some(file),
            created,
        })
    }

    /// Replaces the file's contents with `document`.
    pub fn write(mut self, document: &str) -> Result<(), HarnessError> {
        use std::io::Write;
        let what = || format!("writing {}", self.path.display());
        if let Some(mut file) = self.file.take() {
            file.set_len(0).map_err(|e| HarnessError::io(what(), e))?;
            file.write_all(document.as_bytes())
                .map_err(|e| HarnessError::io(what(), e))?;
        }
        Ok(())
    }
}

impl Drop for ReportFile {
    fn drop(&mut self) {
        // Still open: the run failed before writing it.
        if self.file.take().is_some() && self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `loadtest run`.
pub async fn execute(args: &RunArgs) -> Result<(), HarnessError> {
    let scenario = match &args.scenario {
        Some(path) => Scenario::load(path)?,
        None => Scenario {
            phases: vec![args.phase.clone()],
            ..Scenario::default()
        },
    };
    let targets = if args.targets.is_empty() {
        scenario.target.clone()
    } else {
        args.targets.clone()
    };
    if targets.is_empty() {
        return Err(HarnessError::Workload(
            "at least one --target is required (or `target:` in the scenario file)".into(),
        ));
    }
    let quota_path = args.quota.clone().or(scenario.quota.clone());
    let quotas = quota_path.as_deref().map(load_quotas).transpose()?;
    let quota_label = quota_path.as_ref().map(|p| p.display().to_string());
    let report = args.report.as_deref().map(ReportFile::open).transpose()?;

    let mut output = RunOutput {
        provenance: Provenance::now(&targets, quota_label.as_deref()),
        phases: Vec::new(),
    };
    if !args.json {
        println!("{}\n", output.provenance.lines().join("\n"));
    }
    for phase in &scenario.phases {
        let measured =
            measure(&targets, phase, quotas.as_ref(), args.baseline, !args.quiet).await?;
        if !args.json {
            println!("{}", render_text(&measured, quota_label.as_deref()));
        }
        output.phases.push(measured);
    }
    if args.json {
        let json = serde_json::to_string_pretty(&output)
            .map_err(|e| HarnessError::Process(format!("cannot encode the results: {e}")))?;
        println!("{json}");
    }
    if let (Some(path), Some(report)) = (&args.report, report) {
        let document = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
        {
            chart::svg_report(&output.provenance, &output.phases)
        } else {
            chart::html_report(&output.provenance, &output.phases)
        };
        report.write(&document)?;
        if !args.json {
            println!("report written to {}", path.display());
        }
    }
    Ok(())
}
