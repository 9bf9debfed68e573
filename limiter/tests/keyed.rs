//! Behaviour of the keyed store [`Keyed`]: lookups by borrowed keys, one state per key even
//! under racing inserts, and sweeps that drop exactly the idle states.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use limiter::{Bucket, Keyed, Rate, Window};

const START: u64 = 1_700_000_000_000_000_000;
const SECOND: u64 = 1_000_000_000;

fn ten_per_second() -> Rate {
    Rate::new(10, Duration::from_secs(1), 10)
}

#[test]
fn sweep_drops_full_buckets_and_keeps_the_others() {
    let keyed: Keyed<String, Bucket> = Keyed::new();
    let rate = ten_per_second();
    keyed.with("short", |b| b.check(&rate, 1, START)); // full again at +100 ms
    keyed.with("long", |b| b.check(&rate, 10, START)); // full again at +1 s
    keyed.with("peeked", |b| b.check(&rate, 0, START)); // never charged
    assert_eq!(keyed.len(), 3);

    assert_eq!(
        keyed.sweep(START),
        1,
        "only the never-charged bucket is full"
    );
    assert_eq!(keyed.sweep(START + SECOND / 10), 1);
    assert!(keyed.with_existing("short", |_| ()).is_none());
    assert_eq!(keyed.len(), 1);
    assert_eq!(keyed.sweep(START + SECOND - 1), 0);
    assert_eq!(keyed.sweep(START + SECOND), 1);
    assert!(keyed.is_empty());
}

#[test]
fn sweep_drops_ended_windows_and_keeps_current_ones() {
    let keyed: Keyed<String, Window> = Keyed::new();
    let minute_end = 1_700_000_040 * SECOND;
    keyed.with("minute", |w| w.hit(60, 1, minute_end - SECOND));
    keyed.with("hour", |w| w.hit(3600, 1, minute_end - SECOND));
    keyed.with("peeked", |w| w.peek(60, minute_end - SECOND));
    assert_eq!(keyed.sweep(minute_end - 1), 1);
    assert_eq!(keyed.sweep(minute_end), 1);
    assert_eq!(
        keyed.with_existing("hour", |w| w.peek(3600, minute_end).after),
        Some(1)
    );
}

#[test]
fn string_keys_are_looked_up_by_str() {
    let keyed: Keyed<String, Bucket> = Keyed::new();
    let rate = ten_per_second();
    let key = String::from("tenant=a");
    keyed.with(key.as_str(), |b| b.check(&rate, 4, START));
    let remaining = keyed.with("tenant=a", |b| b.check(&rate, 0, START).remaining());
    assert_eq!(remaining, 6);
    assert_eq!(keyed.len(), 1);
}

#[test]
fn byte_keys_are_looked_up_by_slice() {
    let keyed: Keyed<Box<[u8]>, Bucket> = Keyed::new();
    let rate = ten_per_second();
    let key: &[u8] = b"domain\0generic_key\0slowpath";
    keyed.with(key, |b| b.check(&rate, 3, START));
    assert_eq!(
        keyed.with_existing(key, |b| b.check(&rate, 0, START).remaining()),
        Some(7)
    );
    assert_eq!(keyed.len(), 1);
}

#[test]
fn with_existing_never_inserts() {
    let keyed: Keyed<String, Bucket> = Keyed::default();
    assert_eq!(keyed.with_existing("absent", |_| ()), None);
    assert!(keyed.is_empty());
}

#[test]
fn threads_racing_to_insert_one_key_share_one_state() {
    let keyed: Keyed<String, Bucket> = Keyed::new();
    let rate = ten_per_second();
    let allowed = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    if keyed.with("hot", |b| b.check(&rate, 1, START)).is_allowed() {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(allowed.load(Ordering::Relaxed), 10);
    assert_eq!(keyed.len(), 1);
}

#[test]
fn memory_tracks_only_keys_in_use_after_a_sweep() {
    let keyed: Keyed<Box<[u8]>, Bucket> = Keyed::new();
    let rate = ten_per_second();
    for i in 0u32..10_000 {
        keyed.with(&i.to_be_bytes()[..], |b| b.check(&rate, 1, START));
    }
    assert_eq!(keyed.len(), 10_000);
    keyed.with(&b"busy"[..], |b| b.check(&rate, 10, START));
    assert_eq!(keyed.sweep(START + SECOND / 10), 10_000);
    assert_eq!(keyed.len(), 1);
}
