//! [`drive`]: opens HTTP/2 connections to the targets ([`connect`]) and loads them with
//! `concurrency` workers, closed loop (next request when the answer comes) or open loop (a
//! fixed schedule; a request that goes out late because earlier answers were slow counts its
//! latency from its scheduled start, so that a stalled server shows up in every request it
//! delayed: no coordinated omission). [`drive_with`] does the same through any [`Caller`]
//! (`loadtest http` sends HTTP requests).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::uri::PathAndQuery;
use prost::bytes::Bytes;
use tokio::sync::mpsc;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};

use crate::error::HarnessError;
use crate::progress::Live;
use crate::sampler::SplitMix64;
use crate::spec::PhaseSpec;
use crate::stats::{Outcome, Sample, Tally};
use crate::wire::{RawCodec, SHOULD_RATE_LIMIT};
use crate::workload::Workload;

/// Samples a worker collects before handing them to the tally: few channel sends per second.
const BATCH: usize = 256;

/// Sends request number `number` of a workload and says how it ended; the generator times
/// it out after the plan's timeout.
pub trait Caller: Clone + Send + 'static {
    /// One request.
    fn call(&mut self, number: u32, timeout: Duration) -> impl Future<Output = Outcome> + Send;
}

/// A gRPC `ShouldRateLimit` caller on one connection.
#[derive(Clone)]
pub struct GrpcCaller {
    grpc: Grpc<Channel>,
    workload: Arc<Workload>,
}

impl Caller for GrpcCaller {
    async fn call(&mut self, number: u32, timeout: Duration) -> Outcome {
        call(&mut self.grpc, self.workload.request(number), timeout).await
    }
}

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// Each worker sends its next request when the previous one is answered.
    Closed,
    /// Requests go out on a fixed schedule of `rate` a second, worker `w` of `W` taking the
    /// requests `w, w + W, w + 2W, ...`: the workers bound what is in flight.
    Open {
        /// Requests per second.
        rate: f64,
    },
}

/// How long and how hard a phase drives its targets.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Closed or open loop.
    pub pace: Pace,
    /// Number of workers (each has at most one request in flight).
    pub concurrency: usize,
    /// Load before measuring.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Per request.
    pub timeout: Duration,
    /// Seed of the workers' key sequences.
    pub seed: u64,
}

impl Plan {
    /// The plan of a phase.
    pub fn of(spec: &PhaseSpec) -> Plan {
        Plan {
            pace: spec.rate.map_or(Pace::Closed, |rate| Pace::Open { rate }),
            concurrency: spec.concurrency,
            warmup: spec.warmup,
            duration: spec.duration,
            timeout: spec.timeout,
            seed: spec.seed,
        }
    }
}

/// When the measured part of a run happened.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// Unix time (seconds) at which the measurement began, after the warm-up.
    pub start_unix: f64,
    /// From then to the last measured answer (at least the planned duration).
    pub elapsed: Duration,
}

/// Opens `connections` HTTP/2 connections (at least one per target), spread round-robin
/// over `targets` (`host:port` or `http://host:port`).
pub async fn connect(targets: &[String], connections: usize) -> Result<Vec<Channel>, HarnessError> {
    if targets.is_empty() {
        return Err(HarnessError::Workload(
            "at least one --target is required".into(),
        ));
    }
    let mut channels = Vec::new();
    for i in 0..connections.max(targets.len()) {
        let target = &targets[i % targets.len()];
        let uri = if target.contains("://") {
            target.clone()
        } else {
            format!("http://{target}")
        };
        let connect = |source| HarnessError::Connect {
            target: target.clone(),
            source,
        };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(connect)?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        channels.push(endpoint.connect().await.map_err(connect)?);
    }
    Ok(channels)
}

/// Runs `plan` over `channels` and returns what was measured. Worker `w` uses connection
/// `w mod connections`; answers to requests due before the warm-up ended are counted in
/// `live` and [`Tally::warmup_answers`] only.
pub async fn drive(
    channels: &[Channel],
    workload: Arc<Workload>,
    plan: &Plan,
    live: Arc<Live>,
) -> (Tally, Timing) {
    let callers: Vec<GrpcCaller> = channels
        .iter()
        .map(|channel| GrpcCaller {
            grpc: Grpc::new(channel.clone()),
            workload: workload.clone(),
        })
        .collect();
    drive_with(&callers, workload, plan, live).await
}

/// [`drive`] through `callers`: worker `w` uses `callers[w mod callers]`, cloned.
pub async fn drive_with<C: Caller>(
    callers: &[C],
    workload: Arc<Workload>,
    plan: &Plan,
    live: Arc<Live>,
) -> (Tally, Timing) {
    let start = Instant::now();
    let start_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let measure_start = start + plan.warmup;
    let end = measure_start + plan.duration;

    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Sample>>();
    let collector = {
        let workload = workload.clone();
        tokio::spawn(async move {
            let mut tally = Tally::new(workload.keys.len());
            while let Some(batch) = rx.recv().await {
                for sample in &batch {
                    tally.add(sample, &workload);
                }
            }
            tally
        })
    };

    let mut workers = tokio::task::JoinSet::new();
    for w in 0..plan.concurrency {
        let worker = Worker {
            caller: callers[w % callers.len()].clone(),
            workload: workload.clone(),
            rng: SplitMix64::new(seed_of(plan.seed, w)),
            batch: Vec::with_capacity(BATCH),
            tx: tx.clone(),
            measure_start,
            live: live.clone(),
            timeout: plan.timeout,
            warmup_answers: 0,
        };
        match plan.pace {
            Pace::Closed => workers.spawn(worker.closed(end)),
            Pace::Open { rate } => {
                workers.spawn(worker.open(start, end, rate, w, plan.concurrency))
            }
        };
    }
    drop(tx);
    let mut warmup_answers = 0;
    while let Some(joined) = workers.join_next().await {
        warmup_answers += joined.unwrap_or(0);
    }
    let mut tally = collector
        .await
        .unwrap_or_else(|_| Tally::new(workload.keys.len()));
    tally.warmup_answers = warmup_answers;
    let elapsed = plan.duration.max(Duration::from_micros(tally.last_done_us));
    let timing = Timing {
        start_unix: start_unix + plan.warmup.as_secs_f64(),
        elapsed,
    };
    (tally, timing)
}

fn seed_of(seed: u64, worker: usize) -> u64 {
    // Spread worker seeds so that their key sequences do not overlap.
    seed ^ (worker as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D)
}

struct Worker<C> {
    caller: C,
    workload: Arc<Workload>,
    rng: SplitMix64,
    batch: Vec<Sample>,
    tx: mpsc::UnboundedSender<Vec<Sample>>,
    measure_start: Instant,
    live: Arc<Live>,
    timeout: Duration,
    warmup_answers: u64,
}

impl<C: Caller> Worker<C> {
    /// Returns the number of warm-up answers, as does [`Worker::open`].
    async fn closed(mut self, end: Instant) -> u64 {
        loop {
            let sent = Instant::now();
            if sent >= end {
                break;
            }
            self.one(sent, sent).await;
        }
        self.flush();
        self.warmup_answers
    }

    async fn open(
        mut self,
        start: Instant,
        end: Instant,
        rate: f64,
        first: usize,
        step: usize,
    ) -> u64 {
        let mut i = first as u64;
        loop {
            let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
            if scheduled >= end {
                break;
            }
            // Behind schedule (the previous answer came late): send at once, and count the
            // latency from the scheduled start, so that the wait is the server's. On time:
            // sleep, and count from the actual send, so that the timer's rounding (up to a
            // millisecond) is not.
            let from = if Instant::now() >= scheduled {
                scheduled
            } else {
                tokio::time::sleep_until(scheduled.into()).await;
                Instant::now()
            };
            self.one(scheduled, from).await;
            i += step as u64;
        }
        self.flush();
        self.warmup_answers
    }

    /// Sends one request and records its answer, with latency counted from `from`; the
    /// request belongs to the warm-up if it was due (`due`) before the measurement began.
    async fn one(&mut self, due: Instant, from: Instant) {
        let number = self.workload.sampler.sample(&mut self.rng);
        let call = self.caller.call(number, self.timeout);
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Error(tonic::Code::DeadlineExceeded),
        };
        let done = Instant::now();
        let warmup = due < self.measure_start;
        self.live.count(!outcome.is_decision());
        if warmup {
            self.warmup_answers += 1;
            return;
        }
        self.batch.push(Sample {
            done_us: (done - self.measure_start).as_micros() as u64,
            latency_us: (done - from).as_micros() as u64,
            outcome: outcome.index() as u8,
            request: number,
        });
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.batch.is_empty() {
            let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
            // The tally outlives every worker; a failed send means the run is being dropped.
            let _ = self.tx.send(batch);
        }
    }
}

async fn call(grpc: &mut Grpc<Channel>, body: Bytes, timeout: Duration) -> Outcome {
    if grpc.ready().await.is_err() {
        return Outcome::Error(tonic::Code::Unavailable);
    }
    let path = PathAndQuery::from_static(SHOULD_RATE_LIMIT);
    // Sent as `grpc-timeout`, as Envoy sends its RLS timeout.
    let mut request = tonic::Request::new(body);
    request.set_timeout(timeout);
    match grpc.unary(request, path, RawCodec).await {
        Ok(answer) => Outcome::of_code(answer.into_inner().overall_code),
        Err(status) => Outcome::Error(status.code()),
    }
}
