//! The line of requests waiting for a turn to be decided (`--max-concurrent-requests`).
//!
//! A bounded number of requests are decided at once; the rest wait, parked. Who goes next
//! depends on whether the callers are giving up in the line:
//!
//! - While none are, the oldest goes first: callers that wait (a closed loop, a client
//!   with a long deadline) are served in arrival order and none waits longer than its
//!   place in the line.
//! - Once a caller gave up while waiting (its deadline, such as Envoy's `grpc-timeout`,
//!   passed or it reset the stream), the newest goes first, for [`NEWEST_FIRST_FOR`]
//!   after the last one that gave up. Under overload a first-come line serves only
//!   requests already late by their turn; newest first, the requests served still have
//!   their deadline ahead, and those at the back expire at their callers, who have
//!   stopped waiting for them anyway. A request that has waited [`PATIENCE`] goes first
//!   even then, so a caller without a deadline is not starved.
//!
//! Each waiter is a oneshot channel: a finished turn is handed straight to the next
//! waiter. A caller that gives up closes its end; the line drops such waiters as it meets
//! them, and sweeps them out when it grows, so it holds live waiters and at most as many
//! again that gave up.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use limiter::{Clock, Nanos};
use tokio::sync::oneshot;

/// How long after the last caller that gave up in the line the newest goes first.
pub const NEWEST_FIRST_FOR: Nanos = 1_000_000_000;

/// How long a request may wait before it goes first whatever the order.
pub const PATIENCE: Nanos = 1_000_000_000;

/// The smallest line the sweep of waiters who gave up runs at.
const SWEEP_FROM: usize = 64;

/// A bounded number of turns and the line of requests waiting for one.
pub struct Admission {
    line: Mutex<Line>,
    clock: Arc<dyn Clock>,
}

struct Line {
    /// Turns not taken.
    free: usize,
    /// Oldest at the front.
    waiting: VecDeque<Waiter>,
    /// Until when the newest goes first (a time of `clock`).
    newest_first_until: Nanos,
    /// The length at which waiters who gave up are swept out.
    sweep_at: usize,
}

struct Waiter {
    since: Nanos,
    wake: oneshot::Sender<()>,
}

/// A turn: while it lives, its request counts against the bound; dropped, it goes to the
/// next request in the line.
pub struct Turn<'a> {
    admission: &'a Admission,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.admission.release();
    }
}

/// A request waiting in the line. Dropped before its turn came (its caller gave up), it
/// closes its end; dropped after its turn came but before it ran, it passes the turn on.
struct Waiting<'a> {
    admission: &'a Admission,
    wake: oneshot::Receiver<()>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.wake.close();
        // A value still here was a turn handed over and never taken.
        if self.wake.try_recv().is_ok() {
            self.admission.release();
        }
    }
}

impl Admission {
    /// `turns` requests decided at once, timed by `clock`.
    pub fn new(turns: NonZeroUsize, clock: Arc<dyn Clock>) -> Admission {
        // At zero from the start, for dashboards and alerts.
        metrics::counter!("rls_requests_queued_total").increment(0);
        metrics::counter!("rls_requests_gave_up_waiting_total").increment(0);
        Admission {
            line: Mutex::new(Line {
                free: turns.get(),
                waiting: VecDeque::new(),
                newest_first_until: 0,
                sweep_at: SWEEP_FROM,
            }),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Line> {
        // The line's state is whole between statements: a panic elsewhere cannot leave
        // it half-changed.
        self.line
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a turn. Counts the requests that waited (`rls_requests_queued_total`).
    pub async fn turn(&self) -> Turn<'_> {
        let mut counted = false;
        loop {
            let wake = {
                let mut line = self.lock();
                if line.free > 0 {
                    line.free -= 1;
                    return Turn { admission: self };
                }
                let (wake, woken) = oneshot::channel();
                let since = self.clock.now();
                line.push(Waiter { since, wake }, since);
                woken
            };
            if !counted {
                metrics::counter!("rls_requests_queued_total").increment(1);
                counted = true;
            }
            let mut waiting = Waiting {
                admission: self,
                wake,
            };
            if (&mut waiting.wake).await.is_ok() {
                return Turn { admission: self };
            }
            // The line dropped its end without a turn: it only does so for waiters
            // that have closed theirs, which this one had not; wait again.
        }
    }

    /// Hands a finished turn to the next live waiter, or frees it.
    fn release(&self) {
        let mut line = self.lock();
        let now = self.clock.now();
        loop {
            let Some(next) = line.next(now) else {
                line.free += 1;
                return;
            };
            if next.wake.send(()).is_ok() {
                return;
            }
            line.gave_up(now, 1);
        }
    }

    /// Requests waiting now, including any that gave up and are not yet swept out.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Turns not taken.
    #[cfg(test)]
    fn free(&self) -> usize {
        self.lock().free
    }
}

impl Line {
    fn push(&mut self, waiter: Waiter, now: Nanos) {
        if self.waiting.len() >= self.sweep_at {
            let before = self.waiting.len();
            self.waiting.retain(|w| !w.wake.is_closed());
            let gone = before - self.waiting.len();
            if gone > 0 {
                self.gave_up(now, gone);
            }
            self.sweep_at = SWEEP_FROM.max(2 * self.waiting.len());
        }
        self.waiting.push_back(waiter);
    }

    /// `count` waiters were found to have given up.
    fn gave_up(&mut self, now: Nanos, count: usize) {
        self.newest_first_until = now.saturating_add(NEWEST_FIRST_FOR);
        metrics::counter!("rls_requests_gave_up_waiting_total").increment(count as u64);
    }

    /// The waiter whose turn is next, after dropping those at the front who gave up.
    fn next(&mut self, now: Nanos) -> Option<Waiter> {
        let mut gone = 0;
        while self.waiting.front().is_some_and(|w| w.wake.is_closed()) {
            self.waiting.pop_front();
            gone += 1;
        }
        if gone > 0 {
            self.gave_up(now, gone);
        }
        let oldest_since = self.waiting.front()?.since;
        let newest_first =
            now < self.newest_first_until && now.saturating_sub(oldest_since) < PATIENCE;
        if newest_first {
            self.waiting.pop_back()
        } else {
            self.waiting.pop_front()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::num::NonZeroUsize;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use limiter::FakeClock;

    use super::{Admission, NEWEST_FIRST_FOR, PATIENCE, Turn};

    /// A line of `turns` and the clock it reads, which the test moves.
    fn line(turns: usize) -> (Admission, Arc<FakeClock>) {
        let clock = Arc::new(FakeClock::new(1_700_000_000_000_000_000));
        let turns = NonZeroUsize::new(turns).expect("at least one turn");
        (Admission::new(turns, clock.clone()), clock)
    }

    type Wait<'a> = Pin<Box<dyn Future<Output = Turn<'a>> + 'a>>;

    /// Callers, each waiting for a turn, holding one, or gone.
    struct Callers<'a> {
        admission: &'a Admission,
        waiting: Vec<Option<Wait<'a>>>,
        holding: Vec<Option<Turn<'a>>>,
    }

    impl<'a> Callers<'a> {
        fn new(admission: &'a Admission) -> Self {
            Callers {
                admission,
                waiting: Vec::new(),
                holding: Vec::new(),
            }
        }

        /// `count` more callers ask for a turn, in this order.
        fn arrive(&mut self, count: usize) {
            for _ in 0..count {
                self.waiting.push(Some(Box::pin(self.admission.turn())));
                self.holding.push(None);
            }
            self.poll();
        }

        /// Polls every waiting caller once; returns those whose turn came, in order.
        fn poll(&mut self) -> Vec<usize> {
            let mut cx = Context::from_waker(Waker::noop());
            let mut served = Vec::new();
            for (n, wait) in self.waiting.iter_mut().enumerate() {
                if let Some(Poll::Ready(turn)) = wait.as_mut().map(|w| w.as_mut().poll(&mut cx)) {
                    *wait = None;
                    self.holding[n] = Some(turn);
                    served.push(n);
                }
            }
            served
        }

        /// Caller `n` gives up waiting.
        fn give_up(&mut self, n: usize) {
            assert!(self.waiting[n].take().is_some(), "caller {n} was waiting");
        }

        /// Caller `n` ends its turn; returns the callers whose turn came.
        fn finish(&mut self, n: usize) -> Vec<usize> {
            assert!(self.holding[n].take().is_some(), "caller {n} had a turn");
            self.poll()
        }
    }

    #[test]
    fn while_no_caller_gives_up_turns_go_in_arrival_order() {
        let (admission, _clock) = line(2);
        let mut callers = Callers::new(&admission);
        callers.arrive(6);
        assert!(callers.holding[0].is_some() && callers.holding[1].is_some());
        assert_eq!(admission.waiting(), 4);
        assert_eq!(callers.finish(1), [2]);
        assert_eq!(callers.finish(0), [3]);
        assert_eq!(callers.finish(3), [4]);
        assert_eq!(callers.finish(2), [5]);
        assert_eq!(callers.finish(4), [] as [usize; 0]);
        assert_eq!(callers.finish(5), [] as [usize; 0]);
        assert_eq!(admission.free(), 2);
    }

    #[test]
    fn once_a_caller_gives_up_in_the_line_the_newest_goes_first() {
        let (admission, _clock) = line(1);
        let mut callers = Callers::new(&admission);
        callers.arrive(5);
        // Caller 1, the oldest waiting, gives up: it never gets a turn, and from then on
        // the newest goes first.
        callers.give_up(1);
        assert_eq!(callers.finish(0), [4]);
        assert_eq!(callers.finish(4), [3]);
        assert_eq!(callers.finish(3), [2]);
        assert_eq!(callers.finish(2), [] as [usize; 0]);
        assert_eq!((admission.free(), admission.waiting()), (1, 0));
    }

    #[test]
    fn arrival_order_comes_back_once_no_one_gave_up_for_a_while() {
        let (admission, clock) = line(1);
        let mut callers = Callers::new(&admission);
        callers.arrive(3);
        callers.give_up(1);
        assert_eq!(callers.finish(0), [2]);
        callers.arrive(3);
        clock.advance(Duration::from_nanos(NEWEST_FIRST_FOR));
        assert_eq!(callers.finish(2), [3]);
        assert_eq!(callers.finish(3), [4]);
    }

    #[test]
    fn a_request_that_waited_its_patience_goes_first_even_newest_first() {
        let (admission, clock) = line(1);
        let mut callers = Callers::new(&admission);
        callers.arrive(3);
        callers.give_up(1);
        clock.advance(Duration::from_nanos(PATIENCE));
        callers.arrive(2);
        // Newest first (caller 1 gave up), but caller 2 has waited its patience.
        assert_eq!(callers.finish(0), [2]);
        assert_eq!(callers.finish(2), [4]);
    }

    #[test]
    fn a_turn_handed_to_a_caller_who_gave_up_before_it_ran_is_passed_on() {
        let (admission, _clock) = line(1);
        let mut callers = Callers::new(&admission);
        callers.arrive(3);
        // Caller 0's turn goes to caller 1, which gives up before it is polled again.
        callers.holding[0] = None;
        callers.give_up(1);
        assert_eq!(callers.poll(), [2]);
        assert_eq!(callers.finish(2), [] as [usize; 0]);
        assert_eq!(admission.free(), 1);
    }

    #[test]
    fn callers_who_gave_up_are_swept_out_as_the_line_grows() {
        let (admission, _clock) = line(1);
        let mut callers = Callers::new(&admission);
        // Caller 0 holds the turn; caller 1 waits throughout.
        callers.arrive(2);
        for n in 2..1002 {
            callers.arrive(1);
            callers.give_up(n);
            assert!(admission.waiting() <= 65, "{}", admission.waiting());
        }
        assert_eq!(callers.finish(0), [1]);
        assert_eq!(admission.waiting(), 0);
    }
}
