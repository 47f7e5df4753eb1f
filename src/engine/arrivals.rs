//! Waiting reads: RocketMQ's long polling, in process. A reader with nothing to read at its
//! offset registers a [`Waiter`] under each queue it waits on (RocketMQ's
//! `PullRequestHoldService` keys them `topic@queueId`) and sleeps; the put path wakes the
//! waiters of a queue after dispatching to it (RocketMQ's `MessageArrivingListener`), the
//! durability threads wake the waiters of durable-only reads after each sync, and `close` wakes
//! everyone.
//!
//! Idle waiters cost nothing: each sleeps on its own condition variable. The put path pays one
//! `SeqCst` fence and one atomic load when nobody waits, and a lock plus a map lookup when
//! somebody does. The fence pairs with the one a waiter runs after registering and before
//! checking its condition (Dekker's pattern): either the put sees the waiter, or the waiter sees
//! the put's new queue max, so no wake-up is lost.

use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

/// One sleeping reader.
#[derive(Default)]
struct Waiter {
    woken: Mutex<bool>,
    cv: Condvar,
}

impl Waiter {
    fn wake(&self) {
        *self.woken.lock() = true;
        self.cv.notify_one();
    }
}

#[derive(Default)]
struct Table {
    /// Waiters by topic, then queue id.
    by_queue: HashMap<String, HashMap<i32, Vec<Arc<Waiter>>>>,
    /// Waiters of durable-only reads: woken by every sync.
    durable: Vec<Arc<Waiter>>,
    closed: bool,
}

/// The waiters of one engine (see the module docs).
#[derive(Default)]
pub(crate) struct Arrivals {
    /// Waiters registered by queue (the put path's fast check).
    by_queue: AtomicUsize,
    /// Waiters registered for durability.
    durable: AtomicUsize,
    table: Mutex<Table>,
}

/// What a waiting read waits for.
pub(crate) enum WaitOn<'a> {
    /// A put into any of these queues.
    Queues(&'a [(&'a str, i32)]),
    /// A sync that makes more of the CommitLog durable.
    Durable,
}

impl Arrivals {
    /// Wakes the waiters of `topic:queue_id`: called after a put dispatched to it.
    pub(crate) fn arrived(&self, topic: &str, queue_id: i32) {
        fence(Ordering::SeqCst);
        if self.by_queue.load(Ordering::Relaxed) == 0 {
            return;
        }
        let table = self.table.lock();
        if let Some(ws) = table.by_queue.get(topic).and_then(|m| m.get(&queue_id)) {
            for w in ws {
                w.wake();
            }
        }
    }

    /// Wakes the waiters of durable-only reads: called after the CommitLog's durable offset
    /// moved.
    pub(crate) fn synced(&self) {
        fence(Ordering::SeqCst);
        if self.durable.load(Ordering::Relaxed) == 0 {
            return;
        }
        for w in &self.table.lock().durable {
            w.wake();
        }
    }

    /// Wakes everyone for good: later waits fail at once with [`Error::Closed`].
    pub(crate) fn close(&self) {
        let mut table = self.table.lock();
        table.closed = true;
        for w in table
            .by_queue
            .values()
            .flat_map(|m| m.values())
            .flatten()
            .chain(&table.durable)
        {
            w.wake();
        }
    }

    /// Sleeps until `ready` returns true (`Ok(true)`), `deadline` passes (`Ok(false)`) or the
    /// store closes ([`Error::Closed`]). `ready` is checked first, then after every wake-up;
    /// it must read what the wakers change (queue max offsets, the durable offset).
    pub(crate) fn wait(
        &self,
        on: WaitOn<'_>,
        deadline: Instant,
        mut ready: impl FnMut() -> bool,
    ) -> Result<bool> {
        if ready() {
            return Ok(true);
        }
        let waiter = Arc::new(Waiter::default());
        let _registered = self.register(&on, &waiter)?;
        // Pairs with the fence in `arrived` / `synced` (see the module docs).
        fence(Ordering::SeqCst);
        loop {
            if ready() {
                return Ok(true);
            }
            if self.table.lock().closed {
                return Err(Error::Closed);
            }
            let mut woken = waiter.woken.lock();
            if !*woken {
                let timed_out = waiter.cv.wait_until(&mut woken, deadline).timed_out();
                if timed_out && !*woken {
                    drop(woken);
                    return Ok(ready());
                }
            }
            *woken = false;
        }
    }

    fn register<'a>(&'a self, on: &WaitOn<'a>, w: &Arc<Waiter>) -> Result<Registration<'a>> {
        let mut table = self.table.lock();
        if table.closed {
            return Err(Error::Closed);
        }
        match on {
            WaitOn::Queues(queues) => {
                for &(topic, queue_id) in *queues {
                    table
                        .by_queue
                        .entry(topic.to_owned())
                        .or_default()
                        .entry(queue_id)
                        .or_default()
                        .push(w.clone());
                }
                self.by_queue.fetch_add(queues.len(), Ordering::SeqCst);
            }
            WaitOn::Durable => {
                table.durable.push(w.clone());
                self.durable.fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(Registration {
            arrivals: self,
            on: match on {
                WaitOn::Queues(q) => WaitOn::Queues(q),
                WaitOn::Durable => WaitOn::Durable,
            },
            waiter: w.clone(),
        })
    }
}

/// Removes a waiter's registrations when its wait ends, however it ends.
struct Registration<'a> {
    arrivals: &'a Arrivals,
    on: WaitOn<'a>,
    waiter: Arc<Waiter>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut table = self.arrivals.table.lock();
        let me = |w: &Arc<Waiter>| !Arc::ptr_eq(w, &self.waiter);
        match self.on {
            WaitOn::Queues(queues) => {
                for &(topic, queue_id) in queues {
                    let Some(m) = table.by_queue.get_mut(topic) else {
                        continue;
                    };
                    if let Some(ws) = m.get_mut(&queue_id) {
                        ws.retain(me);
                        if ws.is_empty() {
                            m.remove(&queue_id);
                        }
                    }
                    if m.is_empty() {
                        table.by_queue.remove(topic);
                    }
                }
                self.arrivals
                    .by_queue
                    .fetch_sub(queues.len(), Ordering::SeqCst);
            }
            WaitOn::Durable => {
                table.durable.retain(me);
                self.arrivals.durable.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    #[test]
    fn a_put_wakes_only_the_waiters_of_its_queue() {
        let a = Arc::new(Arrivals::default());
        let max = Arc::new(AtomicU64::new(0));
        let (a2, m2) = (a.clone(), max.clone());
        let t = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            a2.wait(WaitOn::Queues(&[("t", 1)]), deadline, || {
                m2.load(Ordering::SeqCst) > 0
            })
        });
        while a.by_queue.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        // Another queue's put does not satisfy it; this one's does.
        a.arrived("t", 2);
        max.store(1, Ordering::SeqCst);
        a.arrived("t", 1);
        assert!(t.join().unwrap().unwrap());
        assert_eq!(a.by_queue.load(Ordering::SeqCst), 0);
        assert!(a.table.lock().by_queue.is_empty());
    }

    #[test]
    fn a_wait_times_out_and_close_ends_every_wait() {
        let a = Arc::new(Arrivals::default());
        let t0 = Instant::now();
        let got = a
            .wait(WaitOn::Durable, t0 + Duration::from_millis(30), || false)
            .unwrap();
        assert!(!got && t0.elapsed() >= Duration::from_millis(30));
        let a2 = a.clone();
        let t = std::thread::spawn(move || {
            a2.wait(
                WaitOn::Queues(&[("t", 0)]),
                Instant::now() + Duration::from_secs(60),
                || false,
            )
        });
        while a.by_queue.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        a.close();
        assert!(matches!(t.join().unwrap(), Err(Error::Closed)));
        assert!(matches!(
            a.wait(WaitOn::Durable, Instant::now(), || false),
            Err(Error::Closed)
        ));
    }
}
