//! `Leases`: tokens of hot buckets taken from Redis ahead of time and given out here.
//!
//! A bucket this replica checks more than `--lease-threshold` times in one second is hot:
//! from then on, tokens are taken from its shared bucket in leases of about
//! `--lease-span` of its traffic here (one script call each, `lease_script.rs`), and
//! checks are answered from the lease while it lasts. Tokens are taken before they are
//! given out, so no number of replicas ever allows more than the quota; what leasing
//! costs is tokens parked at one replica while another denies: at most, over all
//! replicas, replicas × the largest lease.
//!
//! The bucket as this replica sees it is Redis's state less the tokens it holds: a check
//! answered from a lease gets the answer Redis would give if the lease were handed back
//! first, so with one replica every answer is the answer without leasing. A lease not
//! drawn on for a span is handed back (so is every lease at reload and shutdown); a
//! window's lease ends with its window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use limiter::{Decision, Nanos};
use tokio::sync::watch;

use super::lease_bucket::take_back;
pub use super::lease_bucket::{Basis, HandBack, Lease};
use super::lease_script::{LEASABLE_TOLERANCE, Taken};
use super::placement::{CallGroup, Placer};
use crate::store::{Batch, Check, Meter, Role};

/// Most buckets whose checks are counted for heat at once; more wait for the next second.
const HEAT_KEYS: usize = 10_000;

/// How long a lease that holds nothing is kept after its last use.
const IDLE: Nanos = 10_000_000_000;

/// The leasing settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseOptions {
    /// Checks a second of one bucket, at this replica, above which it is leased.
    pub threshold: u32,
    /// How much of a bucket's traffic here one lease is sized for; also how long an
    /// unused lease is kept before it is handed back.
    pub span: Duration,
}

/// How a request's checks are to be answered.
#[derive(Default)]
pub struct Plan {
    /// Per check: answered from a lease (its tokens already taken), or `None`: ask Redis.
    pub served: Vec<Option<Decision>>,
    /// Leases to hand back before asking Redis (their tokens no longer here).
    pub hand_back: Vec<HandBack>,
    /// Grants or hand-backs in flight on buckets this request needs.
    pub wait: Vec<watch::Receiver<()>>,
}

/// A grant to ask for: a hot bucket whose lease runs low.
pub struct Want {
    /// The batch key (the lease's name here).
    pub key: Box<[u8]>,
    /// Its Redis key.
    pub redis_key: Vec<u8>,
    /// Where it lives.
    pub group: CallGroup,
    /// How it counts.
    pub meter: Meter,
    /// Tokens to ask for.
    pub tokens: u64,
    /// Dropped when the grant has landed.
    pub _done: watch::Sender<()>,
}

/// The leases of one store.
pub struct Leases {
    /// The settings.
    pub options: LeaseOptions,
    entries: DashMap<Box<[u8]>, Lease>,
    heat: DashMap<Box<[u8]>, (u64, u32)>,
    largest: AtomicU64,
    /// The second whose heat is being counted (older heat is dropped once a second).
    heat_second: AtomicU64,
    /// Lease script calls (grants and hand-backs).
    pub calls: AtomicU64,
}

/// Whether `check` may be answered from a lease: a token bucket whose tolerance the script
/// counts exactly, or a window when the request is not in stop-increment mode (whose
/// increments depend on every window of the request at once). A cost-0 check takes
/// nothing, but is answered from the lease too: Redis alone would not count its tokens.
fn leasable(check: &Check, stop_increment: bool) -> bool {
    match check.meter {
        Meter::TokenBucket(rate) => rate.burst() > 0 && rate.tolerance() < LEASABLE_TOLERANCE,
        Meter::FixedWindow { limit, .. } => !stop_increment && limit > 0,
    }
}

impl Leases {
    /// No leases yet.
    pub fn new(options: LeaseOptions) -> Leases {
        Leases {
            options,
            entries: DashMap::new(),
            heat: DashMap::new(),
            largest: AtomicU64::new(0),
            heat_second: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        }
    }

    /// The largest lease held so far (tokens, after a grant): the bound's factor.
    pub fn largest(&self) -> u64 {
        self.largest.load(Ordering::Relaxed)
    }

    /// Tokens held now, over every lease.
    pub fn held(&self) -> u64 {
        self.entries.iter().map(|lease| lease.tokens).sum()
    }

    /// The grants and hand-backs in flight: each closes when it is done.
    pub fn in_flight(&self) -> Vec<watch::Receiver<()>> {
        (self.entries.iter())
            .filter(|lease| lease.is_busy())
            .filter_map(|lease| lease.busy.clone())
            .collect()
    }

    fn span(&self) -> Nanos {
        u64::try_from(self.options.span.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Counts a check of the cold bucket `key` at `now`: true once it is hot.
    fn heat_up(&self, key: &[u8], now: Nanos) -> bool {
        let second = now / 1_000_000_000;
        let threshold = self.options.threshold;
        if let Some(mut heat) = self.heat.get_mut(key) {
            if heat.0 != second {
                *heat = (second, 0);
            }
            heat.1 = heat.1.saturating_add(1);
            return heat.1 > threshold;
        }
        if self.heat.len() < HEAT_KEYS {
            self.heat.insert(key.into(), (second, 1));
        }
        threshold == 0
    }

    /// Answers `batch` from leases if every check can be, taking their tokens, with the
    /// grants to ask for; else takes nothing (and counts the checks' heat and demand).
    /// One look at each bucket's lease. No I/O.
    pub fn serve_all(&self, batch: &Batch, placer: &Placer) -> Option<(Vec<Decision>, Vec<Want>)> {
        let mut served = Vec::with_capacity(batch.checks.len());
        let mut wants = Vec::new();
        for (i, check) in batch.checks.iter().enumerate() {
            match self.serve_one(batch, check, placer, &mut wants) {
                Some(decision) => served.push(Some(decision)),
                None => {
                    for rest in &batch.checks[i + 1..] {
                        self.note(batch, rest, placer);
                    }
                    // Give back what was taken: Redis decides this one.
                    self.undo(batch, &served, |_| true);
                    return None;
                }
            }
        }
        Some((served.into_iter().flatten().collect(), wants))
    }

    /// `check` answered from its lease, if it has a live one with enough tokens, and the
    /// grant to ask for if that leaves it short.
    fn serve_one(
        &self,
        batch: &Batch,
        check: &Check,
        placer: &Placer,
        wants: &mut Vec<Want>,
    ) -> Option<Decision> {
        if !leasable(check, batch.stop_increment) {
            return None;
        }
        let (key, now, cost) = (batch.key(check), batch.now, u64::from(check.cost));
        let Some(mut lease) = self.entries.get_mut(key) else {
            self.note(batch, check, placer);
            return None;
        };
        lease.demand += cost;
        lease.used = now;
        if !(lease.is_live(now) && lease.tokens >= cost) {
            return None;
        }
        let decision = lease.decide(check.cost, now);
        lease.draw(cost, now, self.span());
        wants.extend(self.want(key, &mut lease, now));
        Some(decision)
    }

    /// Counts `check`'s heat, or its demand when it is leased; makes a lease for a bucket
    /// that turns hot.
    fn note(&self, batch: &Batch, check: &Check, placer: &Placer) {
        if !leasable(check, batch.stop_increment) {
            return;
        }
        let key = batch.key(check);
        let now = batch.now;
        if let Some(mut lease) = self.entries.get_mut(key) {
            lease.demand += u64::from(check.cost);
            lease.used = now;
            return;
        }
        if self.heat_up(key, now) {
            let place = placer.place(batch.identity(check));
            self.entries.insert(
                key.into(),
                Lease {
                    tokens: 0,
                    basis: Basis::None,
                    due: 0,
                    busy: None,
                    demand: u64::from(check.cost),
                    size: 1,
                    since: now,
                    used: now,
                    redis_key: placer.key(key, place.tag),
                    group: place.group(),
                    meter: check.meter,
                },
            );
        }
    }

    /// How to answer each check of `batch`: from its lease when it has enough live tokens
    /// (taken now); otherwise Redis, after handing back what the lease holds, or after
    /// the grant or hand-back in flight on it when `may_wait`.
    pub fn plan(&self, batch: &Batch, may_wait: bool) -> Plan {
        let mut plan = Plan {
            served: vec![None; batch.checks.len()],
            ..Plan::default()
        };
        let now = batch.now;
        for (i, check) in batch.checks.iter().enumerate() {
            if !leasable(check, batch.stop_increment) {
                continue;
            }
            let Some(mut lease) = self.entries.get_mut(batch.key(check)) else {
                continue;
            };
            let cost = u64::from(check.cost);
            lease.close_ended_window(now);
            if lease.is_live(now) && lease.tokens >= cost {
                plan.served[i] = Some(lease.decide(check.cost, now));
                lease.draw(cost, now, self.span());
                continue;
            }
            match lease.busy.clone().filter(|_| lease.is_busy()) {
                Some(busy) if may_wait => plan.wait.push(busy),
                Some(_) => {}
                None if lease.tokens > 0 => {
                    plan.hand_back.push(take_back(batch.key(check), &mut lease));
                }
                None => {}
            }
        }
        plan
    }

    /// Gives the tokens of the served checks that `undo` picks back to their leases (the
    /// request took nothing from them after all).
    pub fn undo(&self, batch: &Batch, served: &[Option<Decision>], undo: impl Fn(&Check) -> bool) {
        for (check, decision) in batch.checks.iter().zip(served) {
            if decision.is_some()
                && undo(check)
                && let Some(mut lease) = self.entries.get_mut(batch.key(check))
            {
                lease.tokens += u64::from(check.cost);
            }
        }
    }

    /// Takes out, for handing back, every token the leases of `batch`'s buckets hold
    /// (those with a hand-back or grant in flight: after it).
    pub fn take_all(&self, batch: &Batch) -> (Vec<HandBack>, Vec<watch::Receiver<()>>) {
        let (mut backs, mut waits) = (Vec::new(), Vec::new());
        for check in &batch.checks {
            let key = batch.key(check);
            if let Some(mut lease) = self.entries.get_mut(key) {
                if let Some(busy) = lease.busy.clone().filter(|_| lease.is_busy()) {
                    waits.push(busy);
                } else if lease.tokens > 0 {
                    backs.push(take_back(key, &mut lease));
                }
            }
        }
        (backs, waits)
    }

    /// Grants to ask for after a request: hot buckets among `batch`'s checks (answered
    /// `allowed`) whose lease holds less than one lease should, with no grant in flight.
    /// Each is marked busy until its grant lands.
    pub fn wants(&self, batch: &Batch, allowed: &[bool]) -> Vec<Want> {
        let mut wants = Vec::new();
        let now = batch.now;
        for (check, &allowed) in batch.checks.iter().zip(allowed) {
            if !allowed || !leasable(check, batch.stop_increment) {
                continue;
            }
            let key = batch.key(check);
            if let Some(mut lease) = self.entries.get_mut(key) {
                wants.extend(self.want(key, &mut lease, now));
            }
        }
        wants
    }

    /// The grant to ask for the lease `key` at `now`, when it holds less than one lease
    /// should and none is in flight; marks it busy until the grant lands.
    fn want(&self, key: &[u8], lease: &mut Lease, now: Nanos) -> Option<Want> {
        if lease.is_busy() {
            return None;
        }
        let size = self.size(lease, now);
        if lease.is_live(now) && lease.tokens >= size {
            return None;
        }
        // A whole lease more, asked while the one held still lasts: one call a span at a
        // steady rate, however long the call takes (within a span).
        let (done, busy) = watch::channel(());
        lease.busy = Some(busy);
        Some(Want {
            key: key.into(),
            redis_key: lease.redis_key.clone(),
            group: lease.group,
            meter: lease.meter,
            tokens: size,
            _done: done,
        })
    }

    /// What one lease of this bucket should hold: its demand here over one span (at least
    /// one token, at most a full bucket), measured over whole spans; while a span is not
    /// over yet, at least what it has seen so far.
    fn size(&self, lease: &mut Lease, now: Nanos) -> u64 {
        let span = self.span();
        let elapsed = now.saturating_sub(lease.since);
        let cap = lease.capacity().max(1);
        if elapsed >= span {
            let size = u128::from(lease.demand) * u128::from(span) / u128::from(elapsed);
            lease.size = u64::try_from(size).unwrap_or(u64::MAX).clamp(1, cap);
            lease.demand = 0;
            lease.since = now;
        } else {
            lease.size = lease.size.max(lease.demand.clamp(1, cap));
        }
        lease.size
    }

    /// Lands a grant sent at `sent` (local clock): its tokens join the lease, whose basis
    /// becomes what Redis reported, due a span from now.
    pub fn land(&self, key: &[u8], sent: Nanos, taken: Taken) {
        let Some(mut lease) = self.entries.get_mut(key) else {
            return;
        };
        if let (Basis::Window { start: held, .. }, Taken::Window { start, .. }) =
            (&lease.basis, &taken)
            && held != start
        {
            // Taken in another window: the hits held were counted in theirs, which Redis
            // has ended; handed back to this one they would be given out twice.
            lease.tokens = 0;
        }
        lease.tokens += taken.granted();
        lease.basis = match taken {
            Taken::Bucket { ahead, .. } => Basis::Tat(sent.saturating_add(ahead)),
            Taken::Window {
                count,
                ends_in,
                start,
                ..
            } => Basis::Window {
                count,
                end: sent.saturating_add(ends_in),
                start,
            },
        };
        lease.due = sent.saturating_add(self.span());
        self.largest.fetch_max(lease.tokens, Ordering::Relaxed);
        metrics::gauge!("rls_lease_largest_tokens").set(self.largest() as f64);
    }

    /// Takes the tokens of leases not drawn on by `now` (all of them with `all`) for
    /// handing back; forgets windows that ended, idle leases and old heat.
    pub fn expired(&self, now: Nanos, all: bool) -> Vec<HandBack> {
        let mut backs = Vec::new();
        let second = now / 1_000_000_000;
        if self.heat_second.swap(second, Ordering::Relaxed) != second {
            self.heat.retain(|_, heat| heat.0 == second);
        }
        self.entries.retain(|name, lease| {
            lease.close_ended_window(now);
            let busy = lease.is_busy();
            if lease.tokens > 0 && !busy && (all || now >= lease.due) {
                backs.push(take_back(name, lease));
            }
            busy || lease.tokens > 0 || now.saturating_sub(lease.used) < IDLE
        });
        backs
    }
}

/// Whether `batch` has quota-mode descriptors, whose verdict needs all of them at once:
/// its checks are then answered from leases all together or not at all.
pub fn has_quota_mode(batch: &Batch) -> bool {
    batch.checks.iter().any(|c| c.role == Role::Quota)
}
