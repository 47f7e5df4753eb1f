//! Opening and closing a store root: the order of the steps is what makes a crash at any point
//! recoverable.
//!
//! Open: validate the configuration → refuse a directory of unrelated files
//! (`crate::root`) → create the root if missing → take the `lock` file → take the file geometry
//! from the root (`crate::root`) → read `abort` and the checkpoint → recover
//! (`crate::recovery`) → record the geometry if the root had no record → write the `abort`
//! marker (synced, with the root directory) → checkpoint the recovered state → start the
//! threads.
//! Close: stop the threads → wait for in-flight puts → flush everything and write the
//! checkpoint → remove `abort` (synced) → release the lock. A store that turned read-only keeps
//! its `abort`, so the next open recovers instead of trusting a checkpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::group_commit::GroupCommit;
use super::put::AppendState;
use super::queues::{PutQueues, QueueTable};
use super::Engine;
use crate::checkpoint;
use crate::commitlog::CommitLog;
use crate::config::{FlushMode, StoreConfig};
use crate::error::{Error, Result};
use crate::format::geometry::RootGeometry;
use crate::format::root::StoreRoot;
use crate::format::schedule::DelayLevels;
use crate::recovery;
use crate::storage::{FileKind, LockGuard, OpenMode, Vfs};

impl Engine {
    /// Opens (creating if needed) the store at `root` through `vfs`, recovering whatever a
    /// previous run left, and starts its threads.
    pub(crate) fn open(root: &Path, config: StoreConfig, vfs: Arc<dyn Vfs>) -> Result<Arc<Engine>> {
        config.validate()?;
        let root = StoreRoot::new(root);
        crate::root::check_is_store_root(&*vfs, &root, config.create_in_non_empty_dir)?;
        let lock = lock_root(&*vfs, &root)?;
        let (config, geometry_recorded) = crate::root::resolve(&*vfs, &root, config)?;
        config.validate()?;
        let abort_path = root.abort();
        let abort = vfs
            .metadata(&abort_path)
            .map_err(|e| Error::io(&abort_path, e))?;
        // The marker is rewritten after recovery: something other than a file there would
        // fail that write after recovery had already cut or zeroed the log. Refuse first, so a
        // failed open changes nothing.
        if let Some(m) = &abort {
            if m.kind != FileKind::File {
                return Err(Error::Layout {
                    path: abort_path,
                    reason: format!(
                        "the abort marker is a {:?}, expected a regular file",
                        m.kind
                    ),
                });
            }
        }
        let abort_present = abort.is_some();
        let cp = checkpoint::read(&*vfs, &root)?;
        let rec = recovery::recover(&*vfs, &root, &config, abort_present, &cp)?;
        if !geometry_recorded {
            // Recovery has checked the files against this geometry (the index files only when
            // the index is enabled): from now on the root says what its files are.
            let g = RootGeometry::of_config(&config);
            if config.index_enabled || crate::root::index_files_fit(&*vfs, &root, &g)? {
                crate::root::write_geometry(&*vfs, &root, &g)?;
            }
        }
        let commitlog_dir = root.commitlog_dir();
        vfs.create_dir_all(&commitlog_dir)
            .map_err(|e| Error::io(&commitlog_dir, e))?;
        let commitlog = CommitLog::new(
            vfs.clone(),
            commitlog_dir,
            config.commitlog_segment_size,
            rec.segments,
            rec.end,
            config.preallocate_next_segment,
            config.effective_write_mode(),
        );
        let commitlog = match config.flush_mode {
            FlushMode::Sync => commitlog.with_zeros_ahead(),
            FlushMode::Async => commitlog,
        };
        let appender = commitlog.appender()?;
        let queues: QueueTable = rec
            .queues
            .into_iter()
            .map(|(t, qs)| (t, qs.into_iter().map(|(id, q)| (id, Arc::new(q))).collect()))
            .collect();
        let (offsets, offsets_from) = super::offsets::load_snapshot(&*vfs, &root, rec.end)?;
        let delay_file = super::schedule::load_delay_offsets(&*vfs, &root)?;
        let subscriptions = super::subscriptions::load(&*vfs, &root)?;
        write_abort_marker(&*vfs, &root)?;
        let engine = Arc::new(Engine {
            root,
            vfs,
            lock: Mutex::new(Some(lock)),
            dispatched_offset: AtomicU64::new(rec.end),
            delays: DelayLevels::parse(&config.message_delay_level).map_err(|reason| {
                Error::InvalidConfig {
                    field: "message_delay_level",
                    reason,
                }
            })?,
            schedule_lock: Mutex::new(()),
            schedule_wake: Default::default(),
            commitlog,
            queues: RwLock::new(queues),
            index: rec.index,
            append: Mutex::new(AppendState {
                appender,
                last_store_timestamp: rec.last_store_timestamp,
                queues: PutQueues::default(),
            }),
            closed: AtomicBool::new(false),
            health: Default::default(),
            derived_damaged: AtomicBool::new(false),
            appending: AtomicUsize::new(0),
            group_commit: GroupCommit::default(),
            acks: Default::default(),
            arrivals: Default::default(),
            offsets,
            groups: Default::default(),
            subscriptions: Mutex::new(subscriptions),
            workers: Default::default(),
            cleanup_lock: Mutex::new(()),
            checkpoint_lock: Mutex::new(()),
            report: rec.report,
            config,
        });
        let replayed = engine.replay_offsets(offsets_from)?;
        if replayed > 0 {
            log::info!("consumer offsets: {replayed} commit records applied after the snapshot");
        }
        engine.seed_schedule_progress(delay_file);
        // Make the recovered state the checkpointed one right away, so a crash before the
        // first periodic flush does not redo this recovery's work.
        engine.flush_all()?;
        engine.start_workers()?;
        Ok(engine)
    }

    /// Flushes everything, writes the checkpoint, removes `abort` and releases the lock.
    /// [`Error::Closed`] if already closed.
    pub(crate) fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Err(Error::Closed);
        }
        self.arrivals.close();
        self.schedule_wake.notify();
        self.workers.stop_background();
        // Wait for in-flight puts: they hold the append lock while writing.
        drop(self.append.lock());
        // Bind first: a guard in the `if let` scrutinee would live through the `else`, where a
        // failed sync calls `set_read_only` and would deadlock on it.
        let read_only = self.health.read_only.lock().clone();
        let result = if let Some(reason) = read_only {
            // Keep `abort`: the next open must recover, not trust a checkpoint.
            Err(Error::ReadOnly { reason })
        } else {
            self.flush_for_close()
        };
        // The last flush acknowledged everything it made durable; what is left never will be.
        self.acks.closed();
        self.stop_sync();
        self.lock.lock().take();
        result
    }

    /// The last flush of a healthy store: derived data and checkpoint, CommitLog shutdown, then
    /// the `abort` marker goes.
    fn flush_for_close(&self) -> Result<()> {
        if let Some(index) = &self.index {
            index.discard_standby(&*self.vfs)?;
        }
        self.flush_all()?;
        self.commitlog.shutdown()?;
        let abort = self.root.abort();
        self.vfs
            .remove_file(&abort)
            .map_err(|e| Error::io(&abort, e))?;
        self.vfs
            .sync_dir(self.root.path())
            .map_err(|e| Error::io(self.root.path(), e))
    }
}

/// Creates the root if it is missing and takes its `lock` file (one process per root).
fn lock_root(vfs: &dyn Vfs, root: &StoreRoot) -> Result<Box<dyn LockGuard>> {
    let dir = root.path();
    match vfs.metadata(dir).map_err(|e| Error::io(dir, e))? {
        Some(m) if m.kind != FileKind::Dir => {
            return Err(Error::Layout {
                path: dir.to_path_buf(),
                reason: "store root is not a directory".into(),
            })
        }
        Some(_) => {}
        None => vfs.create_dir_all(dir).map_err(|e| Error::io(dir, e))?,
    }
    let lock_path = root.lock();
    vfs.lock_exclusive(&lock_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Error::Locked {
                path: dir.to_path_buf(),
            }
        } else {
            Error::io(&lock_path, e)
        }
    })
}

/// Writes the `abort` marker, which says "running": its presence at the next open means a
/// crash. Synced with the root directory before anything is acknowledged.
fn write_abort_marker(vfs: &dyn Vfs, root: &StoreRoot) -> Result<()> {
    let abort_path: PathBuf = root.abort();
    let abort = vfs
        .open_file(&abort_path, OpenMode::CreateOrOpen)
        .map_err(|e| Error::io(&abort_path, e))?;
    abort.set_len(0).map_err(|e| Error::io(&abort_path, e))?;
    abort
        .write_all_at(std::process::id().to_string().as_bytes(), 0)
        .map_err(|e| Error::io(&abort_path, e))?;
    abort.sync_data().map_err(|e| Error::io(&abort_path, e))?;
    vfs.sync_dir(root.path())
        .map_err(|e| Error::io(root.path(), e))
}
