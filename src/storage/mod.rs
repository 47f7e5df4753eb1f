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

pub mod mapped_file;
pub mod mapped_words;
pub mod os;
#[cfg(any(test, feature = "internals"))]
pub mod sim;
pub mod vfs;
pub mod wake_word;

pub use mapped_file::{FlushStrategy, MappedFile, MappedWriter, OpenError};
pub use mapped_words::MappedWords;
pub use os::{format_local_time_ms, local_hour, now_ms, OsVfs};
pub use vfs::{FileKind, LockGuard, OpenMode, Vfs};
pub use wake_word::WakeWord;
