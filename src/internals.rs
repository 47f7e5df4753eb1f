//! Seams for tests, fuzz targets and benches (feature `internals`; not a stable API; the
//! `rocketstore` CLI in `cli/` uses only the public API).
//!
//! The file-system trait the engine reaches the disk through, its OS implementation, and the
//! mapped-file types, so that a simulated disk can be plugged in with
//! [`Store::open_with_vfs`](crate::Store::open_with_vfs).

pub use crate::storage::sim::{
    CrashMode, FaultError, FaultKind, SimVfs, SIM_PAGE_SIZE, SIM_SECTOR_SIZE,
};
pub use crate::storage::WakeWord;
pub use crate::vfs::{
    DirEntry, DiskUsage, FileKind, LockGuard, MapRegion, OpenMode, OsVfs, Vfs, VfsFile,
};
