//! Durability acknowledgements for callers that must not block a thread per put
//! ([`Store::put_with_ack`](crate::Store::put_with_ack),
//! [`Store::when_durable`](crate::Store::when_durable)): a callback per CommitLog offset, run
//! once the log is durable past it.
//!
//! Why: a Sync put sleeps until the group commit covers it, so a producer needs one blocked
//! thread per put in flight, and on this VM no design of that shape reaches 0.8× of the ideal
//! group commit (the README's `ceiling_threaded_commit`). A producer that is told, instead of
//! waiting, can keep thousands of puts in flight from one thread, as Kafka's producer and
//! RocketMQ's `asyncPutMessage` do; and a Raft log needs exactly this contract (entries readable
//! on return, a callback once durable).
//!
//! Callbacks run on the thread that made the log durable (the group-commit thread, the
//! flusher, `flush`, `close`), or on the registering thread if the log is durable past the
//! offset already, outside every lock of the store but one that keeps them in offset order
//! across threads (reentrant: a callback may register another). A callback must not wait on
//! the store (a Sync put, `flush`, `close`): it would wait for the thread running it. Each runs
//! exactly once: with `Ok` once the log is durable past its offset, with the error once a sync
//! failed (a failed sync is final: nothing after it is ever acknowledged), or with
//! [`Error::Closed`] if the store closed before (it does not: `close` flushes first).
//!
//! No cost while unused: the sync paths read one atomic (the lowest pending offset).

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, ReentrantMutex};

use crate::error::{Error, Result};

/// What an acknowledgement callback is given: `Ok` once durable, else why never.
pub type AckResult = Result<()>;

/// A callback waiting for the log to be durable past `offset`.
struct Pending {
    offset: u64,
    /// Registration order, so callbacks for one offset run in the order they were registered.
    seq: u64,
    callback: Box<dyn FnOnce(AckResult) + Send>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.offset, self.seq) == (other.offset, other.seq)
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    /// Reversed: `BinaryHeap` is a max-heap, the lowest offset must come out first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.offset, other.seq).cmp(&(self.offset, self.seq))
    }
}

#[derive(Default)]
struct State {
    pending: BinaryHeap<Pending>,
    next_seq: u64,
    /// Set once a sync failed (or the store closed): later registrations fail at once.
    failed: Option<FailedWith>,
}

/// Why callbacks fail from now on (an `Error` is not `Clone`: each callback gets its own).
#[derive(Clone)]
enum FailedWith {
    Sync {
        path: std::path::PathBuf,
        kind: std::io::ErrorKind,
        message: String,
    },
    Closed,
}

impl FailedWith {
    fn error(&self) -> Error {
        match self {
            FailedWith::Sync {
                path,
                kind,
                message,
            } => Error::FlushFailed {
                path: path.clone(),
                source: std::io::Error::new(*kind, message.clone()),
            },
            FailedWith::Closed => Error::Closed,
        }
    }
}

/// The pending acknowledgements of one store.
pub(crate) struct Acks {
    state: Mutex<State>,
    /// The lowest pending offset, `u64::MAX` if none: what the sync paths check.
    lowest: AtomicU64,
    /// Held while callbacks run, so that two threads finding the log durable (the sync
    /// thread and a `flush`) run them in offset order, not interleaved.
    firing: ReentrantMutex<()>,
}

impl Default for Acks {
    fn default() -> Self {
        Acks {
            state: Mutex::new(State::default()),
            lowest: AtomicU64::new(u64::MAX),
            firing: ReentrantMutex::new(()),
        }
    }
}

impl std::fmt::Debug for Acks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acks")
            .field("pending", &self.state.lock().pending.len())
            .finish()
    }
}

impl Acks {
    /// Registers `callback` for `offset`, unless the log is durable past it already (`durable`
    /// reads the durable offset) or syncs have failed (or the store closed) short of it: then
    /// it runs here, now, with `Ok` or the error. The caller makes sure a sync will come (see
    /// `Engine::when_durable`).
    pub(crate) fn register(
        &self,
        offset: u64,
        durable: impl Fn() -> u64,
        callback: Box<dyn FnOnce(AckResult) + Send>,
    ) {
        let mut st = self.state.lock();
        if let Some(f) = &st.failed {
            // Durable before the failure (a failed sync never moves the durable offset), or
            // flushed by `close`: still `Ok`.
            let result = if durable() >= offset {
                Ok(())
            } else {
                Err(f.error())
            };
            drop(st);
            callback(result);
            return;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.pending.push(Pending {
            offset,
            seq,
            callback,
        });
        self.lowest.fetch_min(offset, Ordering::SeqCst);
        drop(st);
        // Pairs with the fence in `durable`: a sync publishing its durable offset meanwhile
        // either sees `lowest` (and runs the callback) or its offset is seen by this read.
        std::sync::atomic::fence(Ordering::SeqCst);
        let now = durable();
        if now >= offset {
            self.durable(now);
        }
    }

    /// Whether any callback waits (what the Async flusher checks to sync without waiting for
    /// `flush_least_pages`).
    pub(crate) fn any_pending(&self) -> bool {
        self.lowest.load(Ordering::Acquire) != u64::MAX
    }

    /// The log is durable up to `durable` (already published): runs every callback at or
    /// below it, in offset order, outside the lock.
    pub(crate) fn durable(&self, durable: u64) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.lowest.load(Ordering::SeqCst) > durable {
            return;
        }
        let _firing = self.firing.lock();
        let mut due = Vec::new();
        {
            let mut st = self.state.lock();
            while st.pending.peek().is_some_and(|p| p.offset <= durable) {
                due.push(st.pending.pop().expect("peeked"));
            }
            let lowest = st.pending.peek().map_or(u64::MAX, |p| p.offset);
            self.lowest.store(lowest, Ordering::Release);
        }
        for p in due {
            (p.callback)(Ok(()));
        }
    }

    /// A CommitLog sync failed: every pending callback, and every later one, gets the error.
    pub(crate) fn sync_failed(&self, path: &std::path::Path, source: &std::io::Error) {
        self.fail_all(FailedWith::Sync {
            path: path.to_path_buf(),
            kind: source.kind(),
            message: source.to_string(),
        });
    }

    /// The store closed (after its last flush fired what it made durable): whatever still
    /// waits, and every later registration, gets [`Error::Closed`].
    pub(crate) fn closed(&self) {
        self.fail_all(FailedWith::Closed);
    }

    fn fail_all(&self, why: FailedWith) {
        let _firing = self.firing.lock();
        let (mut due, why) = {
            let mut st = self.state.lock();
            let why = st.failed.get_or_insert(why).clone();
            self.lowest.store(u64::MAX, Ordering::Release);
            (std::mem::take(&mut st.pending).into_vec(), why)
        };
        due.sort_by_key(|p| (p.offset, p.seq));
        for p in due {
            (p.callback)(Err(why.error()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// What ran: (tag, whether with `Ok`).
    type Log = Arc<parking_lot::Mutex<Vec<(u64, bool)>>>;

    /// A callback that records its tag.
    type Callback = Box<dyn FnOnce(AckResult) + Send>;

    fn recorder() -> (Log, impl Fn(u64) -> Callback) {
        let log = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let l = log.clone();
        let make = move |tag: u64| -> Callback {
            let l = l.clone();
            Box::new(move |r: AckResult| l.lock().push((tag, r.is_ok())))
        };
        (log, make)
    }

    #[test]
    fn callbacks_run_once_the_log_is_durable_past_them_in_offset_order() {
        let acks = Acks::default();
        let (log, cb) = recorder();
        acks.register(300, || 0, cb(300));
        acks.register(100, || 0, cb(100));
        acks.register(200, || 0, cb(200));
        acks.register(100, || 0, cb(101));
        assert!(acks.any_pending());
        acks.durable(99);
        assert!(log.lock().is_empty());
        acks.durable(200);
        assert_eq!(*log.lock(), [(100, true), (101, true), (200, true)]);
        acks.durable(1000);
        assert_eq!(log.lock().len(), 4);
        assert!(!acks.any_pending());
        acks.durable(2000);
        assert_eq!(log.lock().len(), 4, "each runs once");
    }

    #[test]
    fn an_offset_already_durable_runs_at_registration() {
        let acks = Acks::default();
        let (log, cb) = recorder();
        acks.register(50, || 50, cb(50));
        assert_eq!(*log.lock(), [(50, true)]);
        assert!(!acks.any_pending());
    }

    #[test]
    fn a_failed_sync_fails_what_waits_and_everything_after() {
        let acks = Acks::default();
        let (log, cb) = recorder();
        acks.register(10, || 0, cb(10));
        acks.register(20, || 0, cb(20));
        acks.durable(10);
        acks.sync_failed(
            std::path::Path::new("commitlog/0"),
            &std::io::Error::other("EIO"),
        );
        acks.register(30, || 0, cb(30));
        // A later durable offset (another flush path) acknowledges nothing more.
        acks.durable(100);
        assert_eq!(*log.lock(), [(10, true), (20, false), (30, false)]);
    }

    #[test]
    fn after_a_failure_an_offset_durable_before_it_is_still_acknowledged() {
        let acks = Acks::default();
        let (log, cb) = recorder();
        acks.closed();
        // Flushed by `close` (or durable before a failed sync): Ok; past it: the error.
        acks.register(40, || 50, cb(40));
        acks.register(60, || 50, cb(60));
        assert_eq!(*log.lock(), [(40, true), (60, false)]);
    }

    #[test]
    fn close_fails_what_is_left_with_closed() {
        let acks = Acks::default();
        let got = Arc::new(parking_lot::Mutex::new(None));
        let g = got.clone();
        acks.register(
            10,
            || 0,
            Box::new(move |r| *g.lock() = Some(matches!(r, Err(Error::Closed)))),
        );
        acks.closed();
        assert_eq!(*got.lock(), Some(true));
    }
}
