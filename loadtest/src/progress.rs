//! [`Live`]: counters the workers bump as answers come, and [`ProgressDisplay`], the progress
//! bar on stderr that shows them while a run lasts (hidden when stderr is not a terminal).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

/// Answers so far, for the progress bar (the tally is only complete at the end).
#[derive(Debug, Default)]
pub struct Live {
    /// Answers of any kind, warm-up included.
    pub answers: AtomicU64,
    /// Of which gRPC errors.
    pub errors: AtomicU64,
}

impl Live {
    /// Counts one answer.
    pub fn count(&self, error: bool) {
        self.answers.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A progress bar redrawn a few times a second until [`ProgressDisplay::finish`].
pub struct ProgressDisplay {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

impl ProgressDisplay {
    /// Shows `label` and a bar over `total` (warm-up plus measurement); hidden if not `visible`.
    pub fn start(live: Arc<Live>, label: &str, total: Duration, visible: bool) -> ProgressDisplay {
        let bar = if visible {
            ProgressBar::new(total.as_millis() as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        let ticker = {
            let bar = bar.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let mut last = (started, 0u64);
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    let now = Instant::now();
                    let answers = live.answers.load(Ordering::Relaxed);
                    let rate = (answers - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-3);
                    last = (now, answers);
                    bar.set_position(started.elapsed().as_millis() as u64);
                    bar.set_message(format!(
                        "{answers} answers, {rate:.0}/s, {} errors",
                        live.errors.load(Ordering::Relaxed)
                    ));
                }
            })
        };
        ProgressDisplay { bar, ticker }
    }

    /// Stops redrawing and clears the bar.
    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}
