//! Fault injection through the `Vfs` seam: failed syncs and slow syncs in Sync mode.
//! (The full simulated disk with crash images is the crash-testing issue's; these cover the
//! durability rules that need a sync to misbehave on demand.)

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::vfs::{DirEntry, DiskUsage, LockGuard, MapRegion, OpenMode, OsVfs, Vfs, VfsFile};
use crate::{Error, FlushMode, Message, PutStatus, Store, StoreConfig};

/// Shared switches of the faulty disk.
#[derive(Debug, Default)]
struct Faults {
    fail_sync: AtomicBool,
    /// Milliseconds every CommitLog `sync_data` sleeps (0 = none).
    slow_sync_ms: AtomicU64,
    /// Told once when a slow sync starts.
    sync_started: Mutex<Option<mpsc::Sender<()>>>,
}

#[derive(Debug)]
struct FaultyVfs {
    os: OsVfs,
    faults: Arc<Faults>,
}

#[derive(Debug)]
struct FaultyFile {
    inner: Box<dyn VfsFile>,
    faults: Arc<Faults>,
    commitlog: bool,
}

impl Vfs for FaultyVfs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.os.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.os.read_dir(path)
    }
    fn metadata(&self, path: &Path) -> io::Result<Option<DirEntry>> {
        self.os.metadata(path)
    }
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let commitlog = path.parent().is_some_and(|p| p.ends_with("commitlog"));
        Ok(Box::new(FaultyFile {
            inner: self.os.open_file(path, mode)?,
            faults: self.faults.clone(),
            commitlog,
        }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.os.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.os.remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.os.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.os.sync_dir(path)
    }
    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        self.os.lock_exclusive(path)
    }
    fn disk_usage(&self, path: &Path) -> io::Result<DiskUsage> {
        self.os.disk_usage(path)
    }
}

impl VfsFile for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.inner.allocate(len)
    }
    fn zero_range(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.zero_range(offset, len)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.commitlog {
            self.faults.before_sync()?;
        }
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.inner.sync_all()
    }
    fn map(&self, len: usize, writable: bool) -> io::Result<Box<dyn MapRegion>> {
        let inner = self.inner.map(len, writable)?;
        if !self.commitlog {
            return Ok(inner);
        }
        Ok(Box::new(FaultyRegion {
            inner,
            faults: self.faults.clone(),
        }))
    }
}

impl Faults {
    /// The injected behaviour of a CommitLog sync (fdatasync or msync).
    fn before_sync(&self) -> io::Result<()> {
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let ms = self.slow_sync_ms.load(Ordering::SeqCst);
        if ms > 0 {
            if let Some(tx) = self.sync_started.lock().unwrap().take() {
                let _ = tx.send(());
            }
            std::thread::sleep(Duration::from_millis(ms));
        }
        Ok(())
    }
}

/// A CommitLog mapping whose `msync` goes through the same faults as `fdatasync`.
#[derive(Debug)]
struct FaultyRegion {
    inner: Box<dyn MapRegion>,
    faults: Arc<Faults>,
}

// SAFETY: every method that the contract constrains (pointers, length, thread safety, not
// changing bytes) is forwarded unchanged to `inner`, a region that already upholds it; only
// `flush_range` may fail or sleep first, which the contract allows.
unsafe impl MapRegion for FaultyRegion {
    fn as_ptr(&self) -> *const u8 {
        self.inner.as_ptr()
    }
    fn as_mut_ptr(&self) -> *mut u8 {
        self.inner.as_mut_ptr()
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn flush_range(&self, offset: usize, len: usize) -> io::Result<()> {
        self.faults.before_sync()?;
        self.inner.flush_range(offset, len)
    }
    fn prefault_write_range(&self, offset: usize, len: usize) -> io::Result<()> {
        self.inner.prefault_write_range(offset, len)
    }
    fn advise_sequential(&self) -> io::Result<()> {
        self.inner.advise_sequential()
    }
}

fn sync_config() -> StoreConfig {
    StoreConfig {
        flush_mode: FlushMode::Sync,
        preallocate_next_segment: false,
        // No periodic flush: its CommitLog sync would race the syncs these tests stage (CI once
        // saw the background flusher, not the put's leader, take the slowed sync).
        consume_queue_flush_interval: Duration::from_secs(3600),
        ..StoreConfig::small()
    }
}

#[test]
fn failed_sync_is_never_acknowledged_and_turns_store_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let vfs = Arc::new(FaultyVfs {
        os: OsVfs,
        faults: faults.clone(),
    });
    let store = Store::open_with_vfs(dir.path(), sync_config(), vfs).unwrap();
    let ok = store.put(&Message::new("t", 0, b"durable")).unwrap();
    assert_eq!(ok.status, PutStatus::Ok);

    faults.fail_sync.store(true, Ordering::SeqCst);
    let failed = store.put(&Message::new("t", 0, b"not acknowledged"));
    assert!(
        matches!(failed, Err(Error::FlushFailed { .. })),
        "{failed:?}"
    );
    // Never retried into an acknowledgement, even once the disk "recovers".
    faults.fail_sync.store(false, Ordering::SeqCst);
    assert!(matches!(
        store.put(&Message::new("t", 0, b"x")),
        Err(Error::ReadOnly { .. })
    ));
    // Reads keep working.
    assert_eq!(
        store
            .get("t", 0, 0, 1)
            .unwrap()
            .messages()
            .next()
            .unwrap()
            .body(),
        b"durable"
    );
    // Close refuses to bless the state: `abort` stays, the next open recovers.
    assert!(matches!(store.close(), Err(Error::ReadOnly { .. })));
    assert!(dir.path().join("abort").exists());
    drop(store);

    let store = Store::open(dir.path(), sync_config()).unwrap();
    assert!(!store.recovery_report().clean_shutdown);
    let first = store.read_at(ok.commitlog_offset).unwrap();
    assert_eq!(first.view().body(), b"durable");
    // A new acknowledged put lands after whatever recovery kept.
    let again = store.put(&Message::new("t", 0, b"after")).unwrap();
    assert_eq!(again.status, PutStatus::Ok);
    assert_eq!(
        store.read_at(again.commitlog_offset).unwrap().view().body(),
        b"after"
    );
    store.close().unwrap();
}

#[test]
fn slow_sync_gives_flush_disk_timeout_to_waiters_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let vfs = Arc::new(FaultyVfs {
        os: OsVfs,
        faults: faults.clone(),
    });
    let config = StoreConfig {
        sync_flush_timeout: Duration::from_millis(50),
        ..sync_config()
    };
    let store = Arc::new(Store::open_with_vfs(dir.path(), config, vfs).unwrap());
    // The first segment's creation syncs too: create it before syncs are slowed, so the slowed
    // sync the test waits for is the group commit's.
    store.put(&Message::new("warm-up", 0, b"x")).unwrap();
    let (tx, rx) = mpsc::channel();
    *faults.sync_started.lock().unwrap() = Some(tx);
    faults.slow_sync_ms.store(600, Ordering::SeqCst);

    let first = {
        let s = store.clone();
        std::thread::spawn(move || s.put(&Message::new("t", 0, b"first")).unwrap())
    };
    rx.recv().unwrap(); // the sync thread is inside the (slow) sync of `first` now
    let follower = store.put(&Message::new("t", 0, b"follower")).unwrap();
    assert_eq!(follower.status, PutStatus::FlushDiskTimeout);
    // Puts never sync themselves: the put whose record the hung sync covers also returns at
    // its timeout, not when the sync comes back (it would then have said Ok).
    assert_eq!(first.join().unwrap().status, PutStatus::FlushDiskTimeout);
    faults.slow_sync_ms.store(0, Ordering::SeqCst);
    // The follower's record is stored and becomes durable with the next sync.
    assert_eq!(
        store
            .get("t", 0, 1, 1)
            .unwrap()
            .messages()
            .next()
            .unwrap()
            .body(),
        b"follower"
    );
    store.flush().unwrap();
    assert!(store.durable_offset() >= follower.commitlog_offset + follower.wrote_bytes as u64);
    Arc::try_unwrap(store).ok().unwrap().close().unwrap();
}

/// After a failed fsync the kernel may have dropped the dirty pages; a later fsync can then
/// succeed without them. So a failed CommitLog sync is final: a flush after the disk "recovers"
/// still fails, and the durable offset never moves past what the failed sync should have made
/// durable.
#[test]
fn a_failed_commitlog_sync_is_never_retried_into_durability() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let vfs = Arc::new(FaultyVfs {
        os: OsVfs,
        faults: faults.clone(),
    });
    let config = StoreConfig {
        consume_queue_flush_interval: Duration::from_secs(3600),
        flush_interval: Duration::from_secs(3600),
        ..StoreConfig::small()
    };
    let store = Store::open_with_vfs(dir.path(), config, vfs).unwrap();
    store.put(&Message::new("t", 0, b"synced")).unwrap();
    store.flush().unwrap();
    let durable = store.durable_offset();
    store
        .put(&Message::new("t", 0, b"lost to the failed sync"))
        .unwrap();
    faults.fail_sync.store(true, Ordering::SeqCst);
    assert!(store.flush().is_err());
    faults.fail_sync.store(false, Ordering::SeqCst);
    assert!(
        store.flush().is_err(),
        "a flush after a failed sync succeeded"
    );
    assert_eq!(store.durable_offset(), durable);
    assert!(matches!(
        store.put(&Message::new("t", 0, b"x")),
        Err(Error::ReadOnly { .. })
    ));
}
