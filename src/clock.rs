//! The store's clock: the time that stamps records and decides when scheduled messages are
//! due. The system clock by default; a [`ManualClock`] in tests, so a 2 h delay level is tested
//! in microseconds without sleeping.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A source of wall-clock time in epoch milliseconds.
pub trait TimeSource: Send + Sync {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Whether the time moves by itself: a background thread may then wait for it to pass a
    /// due time. A manual clock only moves when told to, and the store's delivery is driven
    /// by [`Store::deliver_due`](crate::Store::deliver_due).
    fn is_real(&self) -> bool {
        true
    }
}

/// The system's real-time clock (`CLOCK_REALTIME`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl TimeSource for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::storage::now_ms()
    }
}

/// A clock that moves only when told to.
///
/// ```
/// use std::time::Duration;
/// use rocketstore::clock::{Clock, ManualClock, TimeSource};
/// let manual = ManualClock::new(1_700_000_000_000);
/// let clock = Clock::manual(manual.clone());
/// manual.advance(Duration::from_secs(7200));
/// assert_eq!(clock.now_ms(), 1_700_000_000_000 + 7_200_000);
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(start_ms)))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::AcqRel);
    }

    /// Sets the clock (it may go backwards: the store keeps its store times monotonic anyway).
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::Release);
    }
}

impl TimeSource for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Acquire)
    }
    fn is_real(&self) -> bool {
        false
    }
}

/// The clock a store runs on ([`StoreConfig::clock`](crate::StoreConfig::clock)); cheap to
/// clone. Two handles are equal when they share one source.
#[derive(Clone)]
pub struct Clock(Arc<dyn TimeSource>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(SystemClock))
    }

    /// A handle on a manual clock (keep a clone of `clock` to move it).
    pub fn manual(clock: ManualClock) -> Clock {
        Clock(Arc::new(clock))
    }

    /// Any time source.
    pub fn from_source(source: Arc<dyn TimeSource>) -> Clock {
        Clock(source)
    }
}

impl TimeSource for Clock {
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
    fn is_real(&self) -> bool {
        self.0.is_real()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_real() {
            "Clock(system)"
        } else {
            "Clock(manual)"
        })
    }
}

impl PartialEq for Clock {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
