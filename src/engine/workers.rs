//! The store's background threads: the group-commit sync thread (Sync mode), the periodic
//! flusher and the cleaner. Each holds an `Arc<Engine>`; all are std threads, joined by
//! `close` (the sync thread last, after the final flush, so no waiting put is left asleep).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::Engine;
use crate::clock::TimeSource;
use crate::config::FlushMode;
use crate::error::{Error, Result};

/// Handles of the running threads and the stop signal of the flusher and the cleaner.
#[derive(Default)]
pub(super) struct Workers {
    /// The group-commit sync thread (Sync flush mode only).
    syncer: Mutex<Option<JoinHandle<()>>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    cleaner: Mutex<Option<JoinHandle<()>>>,
    /// The delivery thread of scheduled messages.
    scheduler: Mutex<Option<JoinHandle<()>>>,
    stop: (Mutex<bool>, Condvar),
}

impl Workers {
    /// Sleeps up to `timeout` or until the stop signal; true once stopped.
    pub(super) fn sleep_unless_stopped(&self, timeout: Duration) -> bool {
        let (lock, cv) = &self.stop;
        let mut stopped = lock.lock();
        if !*stopped {
            cv.wait_for(&mut stopped, timeout);
        }
        *stopped
    }

    /// Whether the stop signal was given.
    pub(super) fn stopped(&self) -> bool {
        *self.stop.0.lock()
    }

    /// Signals the flusher and the cleaner to stop and joins them.
    pub(super) fn stop_background(&self) {
        {
            let (lock, cv) = &self.stop;
            *lock.lock() = true;
            cv.notify_all();
        }
        for h in [
            self.flusher.lock().take(),
            self.cleaner.lock().take(),
            self.scheduler.lock().take(),
        ]
        .into_iter()
        .flatten()
        {
            join_unless_current(h);
        }
    }

    /// Joins the sync thread (after `GroupCommit::stop`).
    pub(super) fn join_syncer(&self) {
        if let Some(h) = self.syncer.lock().take() {
            join_unless_current(h);
        }
    }
}

/// Joins `h`, unless it is the calling thread: `close` (or the drop of the last handle to the
/// store) can run on a worker, from an acknowledgement callback holding the store. That thread
/// sees the stop signal and exits once the callback returns.
fn join_unless_current(h: JoinHandle<()>) {
    if h.thread().id() != std::thread::current().id() {
        let _ = h.join();
    }
}

impl Engine {
    /// Starts the flusher, the sync thread (Sync mode) and the cleaner (if enabled). If one
    /// cannot be started, the store is closed again and the error returned.
    pub(super) fn start_workers(self: &Arc<Self>) -> Result<()> {
        let started = self.spawn(
            "rocketstore-flusher",
            &self.workers.flusher,
            Engine::run_flusher,
        );
        let started = started.and_then(|_| match self.config.flush_mode {
            FlushMode::Sync => {
                self.spawn("rocketstore-sync", &self.workers.syncer, Engine::run_sync)
            }
            FlushMode::Async => Ok(()),
        });
        let started = started.and_then(|_| match self.config.cleaner_enabled {
            true => self.spawn(
                "rocketstore-cleaner",
                &self.workers.cleaner,
                Engine::run_cleaner,
            ),
            false => Ok(()),
        });
        // With a manual clock nothing moves by itself: `Store::deliver_due` delivers.
        let started = started.and_then(|_| {
            if self.config.schedule_delivery && self.config.clock.is_real() {
                self.spawn(
                    "rocketstore-schedule",
                    &self.workers.scheduler,
                    Engine::run_scheduler,
                )
            } else {
                Ok(())
            }
        });
        if started.is_err() {
            let _ = self.close();
        }
        started
    }

    fn spawn(
        self: &Arc<Self>,
        name: &str,
        slot: &Mutex<Option<JoinHandle<()>>>,
        body: fn(&Engine),
    ) -> Result<()> {
        let worker = self.clone();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&worker))
            .map_err(|e| Error::io(self.root.path(), e))?;
        *slot.lock() = Some(handle);
        Ok(())
    }
}
