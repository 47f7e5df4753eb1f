//! A `Vfs` over the real file system with settable faults: the disk's fill ratio, `ENOSPC` on
//! allocation, and permission denied on one path.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rocketstore::internals::{
    DirEntry, DiskUsage, LockGuard, MapRegion, OpenMode, OsVfs, Vfs, VfsFile,
};

/// The real file system, with a settable fill ratio (per mille) and `ENOSPC` on allocation.
#[derive(Debug, Default)]
pub struct TightDisk {
    used_per_mille: AtomicU64,
    /// Fail every `allocate` with ENOSPC while set.
    pub enospc: AtomicBool,
    /// Opening this path fails with `PermissionDenied`.
    pub deny: Mutex<Option<PathBuf>>,
}

impl TightDisk {
    pub fn new() -> Arc<Self> {
        let d = TightDisk::default();
        d.used_per_mille.store(500, Ordering::SeqCst);
        Arc::new(d)
    }
    pub fn set_used(&self, ratio: f64) {
        self.used_per_mille
            .store((ratio * 1000.0) as u64, Ordering::SeqCst);
    }
}

#[derive(Debug)]
struct TightFile {
    inner: Box<dyn VfsFile>,
    disk: Arc<TightDisk>,
}

/// A [`Vfs`] over the real file system whose faults a test sets through [`TightDisk`].
#[derive(Debug)]
pub struct TightVfs {
    disk: Arc<TightDisk>,
}

impl TightVfs {
    pub fn new(disk: Arc<TightDisk>) -> Self {
        TightVfs { disk }
    }

    fn denied(&self, path: &Path) -> io::Result<()> {
        match &*self.disk.deny.lock().unwrap() {
            Some(p) if path == p => Err(io::Error::from(io::ErrorKind::PermissionDenied)),
            _ => Ok(()),
        }
    }
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc_enospc())
}

fn libc_enospc() -> i32 {
    28 // ENOSPC on Linux
}

impl Vfs for TightVfs {
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
        self.denied(path)?;
        Ok(Box::new(TightFile {
            inner: OsVfs.open_file(path, mode)?,
            disk: self.disk.clone(),
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
    fn disk_usage(&self, _path: &Path) -> io::Result<DiskUsage> {
        let total = 1_000_000;
        Ok(DiskUsage {
            total_bytes: total,
            available_bytes: total - self.disk.used_per_mille.load(Ordering::SeqCst) * 1000,
        })
    }
}

impl VfsFile for TightFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        if self.disk.enospc.load(Ordering::SeqCst) {
            return Err(enospc());
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
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.inner.sync_all()
    }
    fn map(&self, len: usize, writable: bool) -> io::Result<Box<dyn MapRegion>> {
        self.inner.map(len, writable)
    }
}
