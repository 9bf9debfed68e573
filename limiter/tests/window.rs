//! Behaviour of the fixed-window counter [`Window`]: envoyproxy/ratelimit's epoch-aligned
//! windows, over-limit hits still counted, reset at the boundary, and the decision a count makes.

use std::time::Duration;

use limiter::window::MAX_PERIOD_SECS;
use limiter::{Clock, Decision, FakeClock, Window, WindowCount};

const SECOND: u64 = 1_000_000_000;
/// 1_700_000_030 s is 50 s into a minute (1_700_000_030 % 60 == 50): not a window start.
const MID_MINUTE: u64 = 1_700_000_030 * SECOND;

#[test]
fn windows_are_aligned_to_the_epoch_not_to_the_first_hit() {
    let clock = FakeClock::new(MID_MINUTE);
    let window = Window::new();
    assert_eq!(
        window.hit(60, 1, clock.now()),
        WindowCount {
            after: 1,
            reset_after: 10 * SECOND
        }
    );
    clock.advance(Duration::from_secs(9));
    assert_eq!(window.hit(60, 1, clock.now()).after, 2);
    // 10 s after the first hit, not 60: the minute that started at 1_699_999_980 s has ended.
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        window.hit(60, 1, clock.now()),
        WindowCount {
            after: 1,
            reset_after: 60 * SECOND
        }
    );
}

#[test]
fn over_limit_hits_are_still_counted() {
    let window = Window::new();
    let limit = 2;
    let decisions: Vec<Decision> = (0..5)
        .map(|_| window.hit(60, 1, MID_MINUTE).decision(limit))
        .collect();
    assert_eq!(
        decisions.iter().filter(|d| d.is_allowed()).count(),
        2,
        "{decisions:?}"
    );
    assert_eq!(window.peek(60, MID_MINUTE).after, 5);
    // Like the reference, the next hit is judged on 6, not on a count capped at the limit.
    assert_eq!(window.hit(60, 0, MID_MINUTE).after, 5);
    assert_eq!(window.hit(60, 1, MID_MINUTE).after, 6);
}

#[test]
fn the_count_resets_at_the_window_boundary() {
    let end = 1_700_000_040 * SECOND; // a multiple of 60 s
    let window = Window::new();
    assert_eq!(window.hit(60, 7, end - 1).after, 7);
    assert_eq!(window.hit(60, 1, end - 1).reset_after, 1);
    assert_eq!(window.peek(60, end).after, 0);
    assert_eq!(
        window.hit(60, 3, end),
        WindowCount {
            after: 3,
            reset_after: 60 * SECOND
        }
    );
}

#[test]
fn reset_after_is_the_time_to_the_window_end_to_the_nanosecond() {
    let window = Window::new();
    let now = MID_MINUTE + 123_456_789;
    assert_eq!(
        window.hit(60, 1, now).reset_after,
        10 * SECOND - 123_456_789
    );
    assert_eq!(window.peek(60, now).reset_after, 10 * SECOND - 123_456_789);
    // An hour window: 1_700_000_030 s is 830 s into its hour.
    assert_eq!(
        Window::new().hit(3600, 1, MID_MINUTE).reset_after,
        2_770 * SECOND
    );
}

#[test]
fn the_decision_follows_the_reference_service() {
    let count = |after| WindowCount {
        after,
        reset_after: 42,
    };
    assert_eq!(
        count(3).decision(5),
        Decision::Allowed {
            remaining: 2,
            reset_after: 42
        }
    );
    assert_eq!(
        count(5).decision(5),
        Decision::Allowed {
            remaining: 0,
            reset_after: 42
        }
    );
    assert_eq!(
        count(6).decision(5),
        Decision::Denied {
            retry_after: 42,
            reset_after: 42
        }
    );
    assert!(count(0).decision(0).is_allowed());
    assert!(!count(u64::MAX).decision(u32::MAX).is_allowed());
}

#[test]
fn the_count_saturates_at_u32_max() {
    let window = Window::new();
    window.hit(60, u32::MAX, MID_MINUTE);
    assert_eq!(window.hit(60, 5, MID_MINUTE).after, u64::from(u32::MAX));
    assert!(
        !window
            .peek(60, MID_MINUTE)
            .decision(u32::MAX - 1)
            .is_allowed()
    );
}

#[test]
fn a_hit_stamped_just_before_a_newer_window_counts_into_the_newer_window() {
    let end = 1_700_000_040 * SECOND;
    let window = Window::new();
    window.hit(60, 1, end - 2);
    window.hit(60, 1, end); // the next window starts, count 1
    // A caller that read the clock a moment earlier must not move the window back and lose it.
    let late = window.hit(60, 1, end - 1);
    assert_eq!(late.after, 2);
    assert_eq!(late.reset_after, 60 * SECOND + 1);
    assert_eq!(window.peek(60, end).after, 2);
}

#[test]
fn a_window_is_expired_once_its_end_passes_or_while_it_counts_nothing() {
    let end = 1_700_000_040 * SECOND;
    let window = Window::new();
    assert!(window.is_expired(end - SECOND));
    window.hit(60, 0, end - SECOND);
    assert!(window.is_expired(end - SECOND), "a zero count is no state");
    window.hit(60, 1, end - SECOND);
    assert!(!window.is_expired(end - 1));
    assert!(window.is_expired(end));
    assert!(window.is_expired(end + 3600 * SECOND));
}

#[test]
fn a_zero_period_counts_one_second_windows() {
    let window = Window::new();
    assert_eq!(
        window.hit(0, 1, MID_MINUTE + 1),
        WindowCount {
            after: 1,
            reset_after: SECOND - 1
        }
    );
    assert_eq!(window.hit(0, 1, MID_MINUTE + SECOND).after, 1);
}

#[test]
fn windows_keep_working_past_2106_when_seconds_pass_u32() {
    // The minute from 2^32 − 16 s to 2^32 + 44 s (2106-02-07): its end wraps in the packed
    // state while its start does not.
    let end = ((1u64 << 32) + 44) * SECOND;
    let window = Window::new();
    assert_eq!(
        window.hit(60, 1, end - 30 * SECOND).reset_after,
        30 * SECOND
    );
    assert_eq!(window.hit(60, 1, end - 1).after, 2);
    assert!(!window.is_expired(end - 1));
    assert!(window.is_expired(end));
    assert_eq!(window.hit(60, 1, end).after, 1);
    assert!(!window.is_expired(end + 59 * SECOND));
    // A state never hit stays idle whatever the year.
    assert!(Window::new().is_expired(end));
}

#[test]
fn huge_periods_and_times_do_not_panic() {
    // Periods past MAX_PERIOD_SECS (34 years) are shortened to it, still epoch-aligned.
    let window = Window::new();
    let count = window.hit(u64::MAX, 1, MID_MINUTE);
    let start = MID_MINUTE / SECOND / MAX_PERIOD_SECS * MAX_PERIOD_SECS;
    assert_eq!(
        count.reset_after,
        (start + MAX_PERIOD_SECS) * SECOND - MID_MINUTE
    );
    assert!(!window.is_expired(MID_MINUTE));
    let window = Window::new();
    assert_eq!(window.hit(60, 1, u64::MAX).after, 1);
    assert_eq!(window.hit(60, 1, u64::MAX).after, 2);
    assert_eq!(Window::new().peek(u64::MAX, u64::MAX).after, 0);
}
