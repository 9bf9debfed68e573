//! `RuleSource`: where the quota rules come from — quota files, loaded at start and
//! reloaded when they change or on SIGHUP, or an xDS management server — and
//! [`SourceState`], what readiness and `/config` say of it.

use std::sync::Arc;

use config::QuotaSet;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::decide::Decider;
use crate::error::{RlsError, SettingsError};
use crate::reload::Reloader;
use crate::settings::Settings;
use crate::store::BucketStore;
use crate::xds::{self, XdsOptions, XdsStatus};

/// What the rule source says of itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceState {
    /// Rules are there to serve (or need not be waited for).
    pub ready: bool,
    /// One line on the source, for `/readyz` and `/config` (quota files have none).
    pub report: Option<String>,
}

impl Default for SourceState {
    fn default() -> Self {
        SourceState {
            ready: true,
            report: None,
        }
    }
}

impl SourceState {
    fn of_xds(status: &XdsStatus, options: &XdsOptions) -> SourceState {
        SourceState {
            ready: status.version.is_some() || options.force_start,
            report: Some(format!("rules from xDS server {}: {status}", options.uri)),
        }
    }
}

/// The rules' source, running; dropping it stops it.
pub struct RuleSource {
    state: watch::Receiver<SourceState>,
    tasks: Vec<JoinHandle<()>>,
    _reloader: Option<Arc<Reloader>>,
}

impl RuleSource {
    /// The rules to start with: the quota files, or none until the xDS server sends some.
    /// Refuses quota files together with the xDS source.
    pub fn initial_quotas(settings: &Settings) -> Result<QuotaSet, RlsError> {
        let options = settings.quota_options()?;
        if settings.xds.options()?.is_none() {
            let quotas = settings.quotas.load_as(&options)?;
            tracing::info!(
                domains = quotas.domains().count(),
                rules = quotas.rule_count(),
                "quota files loaded"
            );
            if let Some(path) = &settings.quotas.config {
                crate::reload::log_ignored(path);
            }
            return Ok(quotas);
        }
        if settings.quotas.config.is_some() {
            return Err(SettingsError::Conflict {
                setting: "--config",
                reason: "--config-source xds takes the rules from the xDS server",
            }
            .into());
        }
        Ok(QuotaSet::default())
    }

    /// Starts feeding `decider` new rules: the quota files' watcher (unless
    /// `--watch-config=false`) and SIGHUP, or the xDS client.
    pub fn start<S: BucketStore>(
        decider: Arc<Decider<S>>,
        settings: &Settings,
    ) -> Result<RuleSource, RlsError> {
        let load = settings.quota_options()?;
        if let Some(options) = settings.xds.options()? {
            let (client, status) = xds::start(decider, options.clone(), load);
            let (report, state) = watch::channel(SourceState::of_xds(&status.borrow(), &options));
            let follow = tokio::spawn(follow_xds(status, options, report));
            return Ok(RuleSource {
                state,
                tasks: vec![client, follow],
                _reloader: None,
            });
        }
        let reloader = match (&settings.quotas.config, settings.watch_config) {
            (Some(path), true) => Some(Arc::new(Reloader::start(decider, path.clone(), load)?)),
            _ => None,
        };
        let tasks = reloader
            .clone()
            .map(|reloader| tokio::spawn(reload_on_hangup(reloader)))
            .into_iter()
            .collect();
        Ok(RuleSource {
            state: watch::channel(SourceState::default()).1,
            tasks,
            _reloader: reloader,
        })
    }

    /// What the source says of itself, now and as it changes.
    pub fn state(&self) -> watch::Receiver<SourceState> {
        self.state.clone()
    }
}

impl Drop for RuleSource {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Keeps `report` to what the xDS client's `status` says.
async fn follow_xds(
    mut status: watch::Receiver<XdsStatus>,
    options: XdsOptions,
    report: watch::Sender<SourceState>,
) {
    while status.changed().await.is_ok() {
        let state = SourceState::of_xds(&status.borrow_and_update(), &options);
        report.send_replace(state);
    }
}

/// Reloads on every SIGHUP, as daemons conventionally do.
async fn reload_on_hangup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the quota files");
            reloader.reload_now();
        }
    }
    #[cfg(not(unix))]
    let _ = reloader;
}
