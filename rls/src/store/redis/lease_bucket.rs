//! One hot bucket's [`Lease`]: the tokens held here, what Redis said of the bucket at the
//! last grant ([`Basis`]), how the lease answers a check and is drawn on, and what a
//! hand-back takes out of it ([`HandBack`], [`take_back`]).

use limiter::{Decision, Nanos, WindowCount};
use tokio::sync::watch;

use super::placement::CallGroup;
use crate::store::Meter;

/// What this replica knows of a bucket from its last lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// Nothing yet.
    None,
    /// A token bucket's tat in Redis, on the local clock.
    Tat(Nanos),
    /// A window's count in Redis, its end on the local clock, and its start (its key).
    Window {
        /// The count, this lease's hits included.
        count: u64,
        /// Its end.
        end: Nanos,
        /// Its start, Unix seconds.
        start: u64,
    },
}

/// One hot bucket's lease.
pub struct Lease {
    /// Tokens (hits) held here, taken and not given out.
    pub tokens: u64,
    /// Redis's state at the last grant.
    pub basis: Basis,
    /// Handed back if not drawn on by then: a span after the last grant or use.
    pub due: Nanos,
    /// A grant or a hand-back in flight: closes when it is done.
    pub busy: Option<watch::Receiver<()>>,
    /// Tokens asked of it since `since`, for sizing.
    pub demand: u64,
    /// What one lease should hold, as last measured.
    pub size: u64,
    /// See `demand`.
    pub since: Nanos,
    /// The last use.
    pub used: Nanos,
    /// Its Redis key and where it lives.
    pub redis_key: Vec<u8>,
    /// Its shard (and slot).
    pub group: CallGroup,
    /// How it counts.
    pub meter: Meter,
}

impl Lease {
    /// Drops the tokens of a window that is over at `now`: its hits counted there, as
    /// given out; a window's tokens are handed back only within it.
    pub fn close_ended_window(&mut self, now: Nanos) {
        if let Basis::Window { end, .. } = self.basis
            && now >= end
        {
            self.tokens = 0;
            self.basis = Basis::None;
        }
    }

    pub fn is_busy(&self) -> bool {
        self.busy
            .as_ref()
            .is_some_and(|rx| rx.has_changed().is_ok())
    }

    /// Whether it may answer at `now`. Only while it holds tokens: a check Redis answered
    /// since the last grant (the lease was empty) is in Redis's state but not in the
    /// basis, and the next grant, which brings tokens, brings a basis that has it.
    pub fn is_live(&self, now: Nanos) -> bool {
        self.tokens > 0
            && now < self.due
            && match self.basis {
                Basis::None => false,
                Basis::Tat(_) => true,
                Basis::Window { end, .. } => now < end,
            }
    }

    /// The answer to a check of `cost` served from this lease at `now`, before the tokens
    /// are taken from it: the bucket as Redis holds it less what is held here.
    pub fn decide(&self, cost: u32, now: Nanos) -> Decision {
        match (self.meter, self.basis) {
            (Meter::TokenBucket(rate), Basis::Tat(tat)) => {
                let held = self.tokens.saturating_mul(rate.interval());
                rate.decide(cost, tat.saturating_sub(held), now).0
            }
            (Meter::FixedWindow { limit, .. }, Basis::Window { count, end, .. }) => WindowCount {
                after: count.saturating_sub(self.tokens) + u64::from(cost),
                reset_after: end.saturating_sub(now),
            }
            .decision(limit),
            // Not live: never asked.
            _ => Decision::Denied {
                retry_after: 0,
                reset_after: 0,
            },
        }
    }

    /// Gives out `cost` tokens at `now`: a lease drawn on is kept another span.
    pub fn draw(&mut self, cost: u64, now: Nanos, span: Nanos) {
        self.tokens -= cost;
        self.due = now.saturating_add(span);
    }

    /// The most one lease of this bucket holds.
    pub fn capacity(&self) -> u64 {
        match self.meter {
            Meter::TokenBucket(rate) => u64::from(rate.burst()),
            Meter::FixedWindow { limit, .. } => u64::from(limit),
        }
    }
}

/// Tokens taken out of a lease to be handed back to Redis; the hand-back's end is marked
/// by dropping `done`.
pub struct HandBack {
    /// The lease's name here (the batch key).
    pub name: Box<[u8]>,
    /// The Redis key (a window's with its start).
    pub key: Vec<u8>,
    /// Where it lives.
    pub group: CallGroup,
    /// How it counts.
    pub meter: Meter,
    /// Tokens (hits).
    pub tokens: u64,
    /// Dropped when the hand-back is done.
    pub _done: watch::Sender<()>,
}

/// Takes every token of the lease `name` out for handing back, marking it busy until done.
pub fn take_back(name: &[u8], lease: &mut Lease) -> HandBack {
    let (done, busy) = watch::channel(());
    lease.busy = Some(busy);
    let tokens = std::mem::take(&mut lease.tokens);
    let key = match lease.basis {
        Basis::Window { start, .. } => {
            let mut key = lease.redis_key.clone();
            key.extend_from_slice(format!(":{start}").as_bytes());
            key
        }
        _ => lease.redis_key.clone(),
    };
    HandBack {
        name: name.into(),
        key,
        group: lease.group,
        meter: lease.meter,
        tokens,
        _done: done,
    }
}
