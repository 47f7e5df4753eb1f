//! [`FaultVfs`]: the real file system behind the `Vfs` seam, with faults a test switches on and
//! off while a store runs on it.
//!
//! It is the one fault-injecting file system of the tests (the simulated disk `SimVfs`, which
//! drops, tears and reorders unsynced writes for crash images, is the library's): failed or slow
//! CommitLog syncs, a disk that reports any fill ratio or runs out of space on allocation, and
//! permission denied on one path. With every switch off it behaves exactly like `OsVfs`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use rocketstore::vfs::{DirEntry, DiskUsage, LockGuard, MapRegion, OpenMode, OsVfs, Vfs, VfsFile};

/// Total size of the disk [`FaultVfs::set_used`] simulates.
const SIMULATED_DISK_BYTES: u64 = 1_000_000;

/// The switches, shared by the file system and every file and mapping it opened.
#[derive(Debug, Default)]
struct Switches {
    /// Every CommitLog sync (`fdatasync` or `msync`) fails with `EIO` while set.
    fail_commitlog_sync: AtomicBool,
    /// Milliseconds every CommitLog sync sleeps first (0 = none).
    slow_commitlog_sync_ms: AtomicU64,
    /// Told once when a slowed sync starts.
    slow_sync_started: Mutex<Option<mpsc::Sender<()>>>,
    /// `disk_usage` reports a simulated disk this full (per mille) while set; the real one's
    /// usage otherwise.
    simulated_fill: AtomicBool,
    used_per_mille: AtomicU64,
    /// Every `allocate` fails with `ENOSPC` while set.
    enospc: AtomicBool,
    /// Opening this path fails with `PermissionDenied`.
    denied: Mutex<Option<PathBuf>>,
}

impl Switches {
    /// The injected behaviour of a CommitLog sync (fdatasync or msync).
    fn before_commitlog_sync(&self) -> io::Result<()> {
        if self.fail_commitlog_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let ms = self.slow_commitlog_sync_ms.load(Ordering::SeqCst);
        if ms > 0 {
            if let Some(tx) = self.slow_sync_started.lock().unwrap().take() {
                let _ = tx.send(());
            }
            std::thread::sleep(Duration::from_millis(ms));
        }
        Ok(())
    }
}

/// A [`Vfs`] over the real file system ([`OsVfs`]) with switchable faults.
///
/// Create it with [`FaultVfs::new`] (every fault off), give a clone of the `Arc` to
/// [`Store::open_with_vfs`](rocketstore::Store::open_with_vfs) and flip the switches from the
/// test while the store runs:
///
/// * [`fail_commitlog_syncs`](Self::fail_commitlog_syncs): CommitLog `fdatasync` and `msync`
///   fail with `EIO`;
/// * [`slow_commitlog_syncs`](Self::slow_commitlog_syncs) and
///   [`notify_slow_sync`](Self::notify_slow_sync): they sleep first, and say when one starts;
/// * [`set_used`](Self::set_used): `disk_usage` reports a 1 MB disk filled to that ratio;
/// * [`fail_allocations`](Self::fail_allocations): `allocate` (fallocate) of any file fails
///   with `ENOSPC`;
/// * [`deny`](Self::deny): opening one path fails with `PermissionDenied`.
#[derive(Debug, Default)]
pub struct FaultVfs {
    switches: Arc<Switches>,
}

impl FaultVfs {
    /// The real file system with every fault off.
    pub fn new() -> Arc<FaultVfs> {
        Arc::new(FaultVfs::default())
    }

    /// Makes every CommitLog sync fail with `EIO` (`true`) or pass again (`false`).
    pub fn fail_commitlog_syncs(&self, fail: bool) {
        self.switches
            .fail_commitlog_sync
            .store(fail, Ordering::SeqCst);
    }

    /// Makes every CommitLog sync sleep `delay` first (`Duration::ZERO`: no delay).
    pub fn slow_commitlog_syncs(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.switches
            .slow_commitlog_sync_ms
            .store(ms, Ordering::SeqCst);
    }

    /// Sends once on `tx` when the next slowed CommitLog sync starts.
    pub fn notify_slow_sync(&self, tx: mpsc::Sender<()>) {
        *self.switches.slow_sync_started.lock().unwrap() = Some(tx);
    }

    /// From now on `disk_usage` reports a simulated 1 MB disk with `ratio` (0.0..=1.0) of it
    /// used, instead of the real disk's usage.
    pub fn set_used(&self, ratio: f64) {
        let per_mille = (ratio.clamp(0.0, 1.0) * 1000.0) as u64;
        self.switches
            .used_per_mille
            .store(per_mille, Ordering::SeqCst);
        self.switches.simulated_fill.store(true, Ordering::SeqCst);
    }

    /// Makes every file allocation fail with `ENOSPC` (`true`) or pass again (`false`).
    pub fn fail_allocations(&self, fail: bool) {
        self.switches.enospc.store(fail, Ordering::SeqCst);
    }

    /// Makes opening `path` fail with `PermissionDenied` (`None`: nothing is denied).
    pub fn deny(&self, path: Option<PathBuf>) {
        *self.switches.denied.lock().unwrap() = path;
    }

    fn check_denied(&self, path: &Path) -> io::Result<()> {
        match &*self.switches.denied.lock().unwrap() {
            Some(p) if path == p => Err(io::Error::from(io::ErrorKind::PermissionDenied)),
            _ => Ok(()),
        }
    }
}

impl Vfs for FaultVfs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        OsVfs.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        OsVfs.read_dir(path)
    }
    fn metadata(&self, path: &Path) -> io::Result<Option<DirEntry>> {
        OsVfs.metadata(path)
    }
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        self.check_denied(path)?;
        let commitlog = path.parent().is_some_and(|p| p.ends_with("commitlog"));
        Ok(Box::new(FaultFile {
            inner: OsVfs.open_file(path, mode)?,
            switches: self.switches.clone(),
            commitlog,
        }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        OsVfs.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        OsVfs.remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsVfs.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        OsVfs.sync_dir(path)
    }
    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        OsVfs.lock_exclusive(path)
    }
    fn disk_usage(&self, path: &Path) -> io::Result<DiskUsage> {
        if !self.switches.simulated_fill.load(Ordering::SeqCst) {
            return OsVfs.disk_usage(path);
        }
        let used = self.switches.used_per_mille.load(Ordering::SeqCst) * 1000;
        Ok(DiskUsage {
            total_bytes: SIMULATED_DISK_BYTES,
            available_bytes: SIMULATED_DISK_BYTES - used,
        })
    }
}

/// A file of [`FaultVfs`]; CommitLog segments get the sync faults.
#[derive(Debug)]
struct FaultFile {
    inner: Box<dyn VfsFile>,
    switches: Arc<Switches>,
    commitlog: bool,
}

impl VfsFile for FaultFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        if self.switches.enospc.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
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
            self.switches.before_commitlog_sync()?;
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
        Ok(Box::new(FaultRegion {
            inner,
            switches: self.switches.clone(),
        }))
    }
}

/// A CommitLog mapping whose `msync` goes through the same faults as `fdatasync`.
#[derive(Debug)]
struct FaultRegion {
    inner: Box<dyn MapRegion>,
    switches: Arc<Switches>,
}

// SAFETY: every method that the contract constrains (pointers, length, thread safety, not
// changing bytes) is forwarded unchanged to `inner`, a region that already upholds it; only
// `flush_range` may fail or sleep first, which the contract allows.
unsafe impl MapRegion for FaultRegion {
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
        self.switches.before_commitlog_sync()?;
        self.inner.flush_range(offset, len)
    }
    fn prefault_write_range(&self, offset: usize, len: usize) -> io::Result<()> {
        self.inner.prefault_write_range(offset, len)
    }
    fn advise_sequential(&self) -> io::Result<()> {
        self.inner.advise_sequential()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScratchDir;

    #[test]
    fn each_switch_injects_its_fault_and_off_means_the_real_file_system() {
        let scratch = ScratchDir::new("fault-vfs");
        let vfs = FaultVfs::new();
        let dir = scratch.path().join("commitlog");
        vfs.create_dir_all(&dir).unwrap();
        let seg_path = dir.join("00000000000000000000");
        let other_path = scratch.path().join("checkpoint");
        let seg = vfs.open_file(&seg_path, OpenMode::CreateNew).unwrap();
        let other = vfs.open_file(&other_path, OpenMode::CreateNew).unwrap();
        seg.allocate(4096).unwrap();
        other.allocate(4096).unwrap();
        let map = seg.map(4096, true).unwrap();

        // Failed syncs: CommitLog fdatasync and msync only.
        vfs.fail_commitlog_syncs(true);
        assert_eq!(seg.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
        assert_eq!(
            map.flush_range(0, 4096).unwrap_err().raw_os_error(),
            Some(libc::EIO)
        );
        other.sync_data().unwrap();
        vfs.fail_commitlog_syncs(false);
        seg.sync_data().unwrap();
        map.flush_range(0, 4096).unwrap();

        // Slow syncs, and the notice that one started.
        let (tx, rx) = mpsc::channel();
        vfs.notify_slow_sync(tx);
        vfs.slow_commitlog_syncs(Duration::from_millis(30));
        let start = std::time::Instant::now();
        seg.sync_data().unwrap();
        assert!(start.elapsed() >= Duration::from_millis(30));
        rx.try_recv().unwrap();
        vfs.slow_commitlog_syncs(Duration::ZERO);

        // A full disk.
        // (Available space moves with other writers; the size does not.)
        assert_eq!(
            vfs.disk_usage(scratch.path()).unwrap().total_bytes,
            OsVfs.disk_usage(scratch.path()).unwrap().total_bytes
        );
        vfs.set_used(0.95);
        let usage = vfs.disk_usage(scratch.path()).unwrap();
        assert_eq!(usage.total_bytes, SIMULATED_DISK_BYTES);
        assert_eq!(usage.available_bytes, 50_000);
        vfs.fail_allocations(true);
        assert_eq!(
            other.allocate(8192).unwrap_err().raw_os_error(),
            Some(libc::ENOSPC)
        );
        vfs.fail_allocations(false);
        other.allocate(8192).unwrap();

        // A denied path.
        vfs.deny(Some(other_path.clone()));
        let denied = vfs.open_file(&other_path, OpenMode::Existing).unwrap_err();
        assert_eq!(denied.kind(), io::ErrorKind::PermissionDenied);
        vfs.open_file(&seg_path, OpenMode::Existing).unwrap();
        vfs.deny(None);
        vfs.open_file(&other_path, OpenMode::Existing).unwrap();
    }
}
