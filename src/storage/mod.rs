//! The only layer that touches the OS: file-system trait, real implementation, mapped files.
//!
//! Everything `unsafe` in the crate lives here, each block with a `// SAFETY:` comment. The
//! engine above reaches the disk only through [`Vfs`] and the mapped-file types, which hand out
//! `&[u8]` and atomics under rules that make `unsafe` unnecessary above this layer:
//!
//! * [`MappedFile`]: a single writer appends and publishes (Release); readers see only the
//!   published prefix (Acquire), which is never written again while shared.
//! * [`MappedWords`]: in-place updated files (IndexFile) accessed only as atomic big-endian
//!   words.
//! * No file is mapped past its end, and no mapped file is sparse.

// The Vfs surface is complete for the simulated disk and retention (disk usage, pwrite
// appends, sequential advice) ahead of the engine code that calls every part of it.
#![allow(dead_code)]

pub mod mapped_file;
pub mod mapped_words;
pub mod os;
#[cfg(any(test, feature = "internals"))]
pub mod sim;
pub mod vfs;
pub mod wake_word;

#[allow(unused_imports)]
pub use mapped_file::{FlushStrategy, MappedFile, MappedWriter, OpenError};
#[allow(unused_imports)]
pub use mapped_words::MappedWords;
#[allow(unused_imports)]
pub use os::{format_local_time_ms, local_hour, now_ms, OsVfs};
#[allow(unused_imports)]
pub use vfs::{DirEntry, DiskUsage, FileKind, LockGuard, MapRegion, OpenMode, Vfs, VfsFile};
#[allow(unused_imports)]
pub use wake_word::WakeWord;
