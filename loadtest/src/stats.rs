//! [`Tally`]: answers by [`Outcome`], latency in HDR histograms (whole run and per second),
//! and hits allowed per accounting key, fed with batches of [`Sample`]s by the generator.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::workload::Workload;

/// Highest latency recorded exactly: one hour, in microseconds (longer ones saturate).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with `overall_code` OK.
    Ok,
    /// Answered with `overall_code` OVER_LIMIT.
    OverLimit,
    /// Answered with `overall_code` UNKNOWN (0): a decision the service could not make.
    Unknown,
    /// No answer but a gRPC status (including DEADLINE_EXCEEDED for the harness's timeout).
    Error(tonic::Code),
}

/// Number of distinct outcomes: three answer codes and the 17 gRPC codes.
pub const OUTCOMES: usize = 20;

const GRPC_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl Outcome {
    /// The outcome of a decoded `overall_code`.
    pub fn of_code(overall_code: i32) -> Outcome {
        match overall_code {
            1 => Outcome::Ok,
            2 => Outcome::OverLimit,
            _ => Outcome::Unknown,
        }
    }

    /// A dense index in `0..OUTCOMES`.
    pub fn index(self) -> usize {
        match self {
            Outcome::Ok => 0,
            Outcome::OverLimit => 1,
            Outcome::Unknown => 2,
            Outcome::Error(code) => 3 + (code as usize).min(16),
        }
    }

    /// The outcome at `index` (inverse of [`Outcome::index`]).
    pub fn from_index(index: usize) -> Outcome {
        match index {
            0 => Outcome::Ok,
            1 => Outcome::OverLimit,
            2 => Outcome::Unknown,
            i => Outcome::Error(tonic::Code::from((i - 3) as i32)),
        }
    }

    /// `OK`, `OVER_LIMIT`, `UNKNOWN` for answers; `grpc UNAVAILABLE` and so on for errors.
    pub fn name(self) -> String {
        match self {
            Outcome::Ok => "OK".into(),
            Outcome::OverLimit => "OVER_LIMIT".into(),
            Outcome::Unknown => "UNKNOWN".into(),
            Outcome::Error(code) => format!("grpc {}", GRPC_NAMES[(code as usize).min(16)]),
        }
    }

    /// Whether the service decided (OK, OVER_LIMIT or UNKNOWN), rather than failing.
    pub fn is_decision(self) -> bool {
        !matches!(self, Outcome::Error(_))
    }
}

/// One measured answer, as a worker reports it.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// When the answer came, in µs since the measurement began (after the warm-up).
    pub done_us: u64,
    /// From the request's start (closed loop) or scheduled start (open loop), in µs.
    pub latency_us: u64,
    /// [`Outcome::index`].
    pub outcome: u8,
    /// The key number of the request.
    pub request: u32,
}

/// One second of the run.
#[derive(Clone, Debug)]
pub struct SecondTally {
    /// Answers by [`Outcome::index`].
    pub counts: [u64; OUTCOMES],
    /// Latency of that second's answers (2 significant figures: a chart, not a table).
    pub latency: Histogram<u64>,
}

/// Everything counted in a run's measured part.
#[derive(Clone, Debug)]
pub struct Tally {
    /// Latency of every measured answer, in µs, 3 significant figures.
    pub latency: Histogram<u64>,
    /// Answers by [`Outcome::index`].
    pub counts: [u64; OUTCOMES],
    /// Per second since the measurement began, by the time the answer came.
    pub seconds: Vec<SecondTally>,
    /// Hits asked per accounting key (id into `Workload::keys`).
    pub asked: Vec<u64>,
    /// Hits allowed (the request was answered OK) per accounting key.
    pub allowed: Vec<u64>,
    /// Answers to requests started during the warm-up (not counted anywhere else).
    pub warmup_answers: u64,
    /// The latest `done_us` seen.
    pub last_done_us: u64,
}

fn histogram(figures: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, figures).expect("constant bounds are valid")
}

impl Tally {
    /// An empty tally for a workload of `keys` accounting keys.
    pub fn new(keys: usize) -> Tally {
        Tally {
            latency: histogram(3),
            counts: [0; OUTCOMES],
            seconds: Vec::new(),
            asked: vec![0; keys],
            allowed: vec![0; keys],
            warmup_answers: 0,
            last_done_us: 0,
        }
    }

    /// Counts one measured answer.
    pub fn add(&mut self, sample: &Sample, workload: &Workload) {
        let latency = sample.latency_us.max(1);
        self.latency.saturating_record(latency);
        let outcome = usize::from(sample.outcome);
        self.counts[outcome] += 1;
        let second = (sample.done_us / 1_000_000) as usize;
        while self.seconds.len() <= second {
            self.seconds.push(SecondTally {
                counts: [0; OUTCOMES],
                latency: histogram(2),
            });
        }
        let slot = &mut self.seconds[second];
        slot.counts[outcome] += 1;
        slot.latency.saturating_record(latency);
        self.last_done_us = self.last_done_us.max(sample.done_us);
        let allowed = outcome == Outcome::Ok.index();
        for &key in workload.charges(sample.request) {
            self.asked[key as usize] += workload.hits;
            if allowed {
                self.allowed[key as usize] += workload.hits;
            }
        }
    }

    /// All measured answers, errors included.
    pub fn answers(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Measured answers that are decisions (OK, OVER_LIMIT, UNKNOWN).
    pub fn decisions(&self) -> u64 {
        self.counts[..3].iter().sum()
    }

    /// Non-zero counts in a fixed order: OK, OVER_LIMIT, UNKNOWN, then gRPC codes.
    pub fn by_outcome(&self) -> Vec<(Outcome, u64)> {
        nonzero(&self.counts)
    }
}

/// The non-zero entries of a count array, as outcomes.
pub fn nonzero(counts: &[u64; OUTCOMES]) -> Vec<(Outcome, u64)> {
    counts
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n > 0)
        .map(|(i, &n)| (Outcome::from_index(i), n))
        .collect()
}

/// Latency percentiles of a histogram, in µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
    /// Arithmetic mean.
    pub mean_us: f64,
}

impl LatencySummary {
    /// The summary of `histogram` (all zero when it is empty).
    pub fn of(histogram: &Histogram<u64>) -> LatencySummary {
        if histogram.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
            mean_us: histogram.mean(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::PhaseSpec;

    #[test]
    fn outcome_indexes_round_trip_and_name_grpc_codes() {
        for i in 0..OUTCOMES {
            assert_eq!(Outcome::from_index(i).index(), i);
        }
        let unavailable = Outcome::Error(tonic::Code::Unavailable);
        assert_eq!(unavailable.name(), "grpc UNAVAILABLE");
        assert!(!unavailable.is_decision());
        assert_eq!(Outcome::of_code(2), Outcome::OverLimit);
        assert_eq!(Outcome::of_code(0), Outcome::Unknown);
    }

    #[test]
    fn a_tally_counts_answers_per_second_and_hits_allowed_per_key() {
        let spec = PhaseSpec {
            domain: "d".into(),
            descriptors: vec!["user={key}".into()],
            keys: 2,
            hits: 2,
            ..PhaseSpec::default()
        };
        let workload = Workload::build(&spec).expect("builds");
        let mut tally = Tally::new(workload.keys.len());
        let sample = |done_us, outcome: Outcome, request| Sample {
            done_us,
            latency_us: 100,
            outcome: outcome.index() as u8,
            request,
        };
        tally.add(&sample(10, Outcome::Ok, 0), &workload);
        tally.add(&sample(1_500_000, Outcome::OverLimit, 0), &workload);
        tally.add(&sample(1_600_000, Outcome::Ok, 1), &workload);
        let timeout = Outcome::Error(tonic::Code::DeadlineExceeded);
        tally.add(&sample(1_700_000, timeout, 1), &workload);
        assert_eq!(tally.answers(), 4);
        assert_eq!(tally.decisions(), 3);
        assert_eq!(tally.seconds.len(), 2);
        assert_eq!(tally.seconds[1].counts.iter().sum::<u64>(), 3);
        assert_eq!(tally.asked, [4, 4]);
        assert_eq!(tally.allowed, [2, 2]);
        assert_eq!(
            tally.by_outcome(),
            [(Outcome::Ok, 2), (Outcome::OverLimit, 1), (timeout, 1)]
        );
        assert_eq!(tally.last_done_us, 1_700_000);
    }
}
