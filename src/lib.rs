//! rocketstore: the storage engine of Apache RocketMQ as an embeddable, synchronous crate.
//!
//! A [`Store`] keeps messages durably in a store root that is byte-compatible with RocketMQ's:
//! an append-only CommitLog of fixed-size mapped segments (the only source of truth), a
//! ConsumeQueue of 20-byte units per (topic, queue) so message `n` of a queue is one seek, and an
//! IndexFile hash index from message key to messages. Puts return after the record is in the
//! page cache ([`FlushMode::Async`]) or on disk ([`FlushMode::Sync`], group commit). Opening a
//! root recovers it: the CommitLog tail is validated record by record, a torn tail is cut and
//! zeroed, and ConsumeQueue and IndexFile are brought in line with the CommitLog.
//!
//! How the modules divide the work (each layer uses only the ones below it; `tests/layers.rs`
//! checks this):
//!
//! * **put** — [`Store::put`] (`store`) → `engine::put` validates and encodes the record outside
//!   any lock (`format::record`), then under the append lock stamps the store time and offsets
//!   and copies it into the active segment (`commitlog`, rolling with a BLANK record), and
//!   dispatches it (`dispatch`: a `consume_queue` unit and `index` keys); in Sync mode it then
//!   sleeps until the group-commit thread (`engine::flush`, `engine::group_commit`) has synced
//!   past its end.
//! * **get** — [`Store::get`] → `engine::read` reads units from the `consume_queue`, locates
//!   each record in the `commitlog` segments and checks it (`format::record`), returning views
//!   into the mappings (`storage`).
//! * **open** — [`Store::open`] → `engine::lifecycle` locks the root, reads `abort` and the
//!   `checkpoint`, runs `recovery` (validate the CommitLog tail, cut a torn tail, keep or rebuild
//!   ConsumeQueue and IndexFile through `dispatch`), writes `abort`, checkpoints and starts the
//!   threads (`engine::workers`). Every path of a root is spelled in `format::root`; every byte
//!   layout in [`format`](mod@format); every OS call in `storage`, behind [`vfs::Vfs`].
//!
//! ```
//! use rocketstore::{Message, Store, StoreConfig};
//! # fn main() -> rocketstore::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), StoreConfig::small())?;
//! store.put(&Message::new("orders", 0, b"hello").with_keys(["ORDER-1"]))?;
//! let got = store.get("orders", 0, 0, 32)?;
//! assert_eq!(got.messages().next().unwrap().body(), b"hello");
//! store.close()?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod checkpoint;
pub mod clock;
mod commitlog;
mod config;
mod consume_queue;
pub mod consumer;
mod dispatch;
mod engine;
mod error;
pub mod format;
mod index;
#[cfg(feature = "internals")]
pub mod internals;
mod message;
mod recovery;
mod results;
mod root;
mod segments;
mod stats;
mod storage;
mod store;

pub use config::{FlushMode, GapPolicy, StoreConfig, WriteMode};
pub use engine::{
    AckResult, DeliveryPass, DlqStats, LevelStats, MAX_PASS, MAX_QUERY_RESULTS, PROGRESS_GROUP,
};
pub use error::{Error, Result};
pub use format::geometry::RootGeometry;
pub use format::topic::MAX_TOPIC_LEN;
pub use format::FormatError;
pub use message::{queue_for_key, Message, MessageView};
pub use recovery::{GapRepair, RecoveryReport, Salvage};
pub use results::{
    GetOptions, GetResult, GetStatus, KeyPage, PutResult, PutStatus, StoredMessage, TagFilter,
    TimeBoundary,
};
pub use stats::{CleanupReport, GroupStats, QueueStats, StoreStats};
pub use store::Store;

/// The file-system seam: the engine reaches the disk only through [`Vfs`](vfs::Vfs), so a
/// store can run on any implementation of it ([`Store::open_with_vfs`]), such as a simulated
/// disk that drops, tears or reorders unsynced writes for crash tests. [`OsVfs`](vfs::OsVfs) is
/// the real one, which [`Store::open`] uses.
pub mod vfs {
    pub use crate::storage::os::OsVfs;
    pub use crate::storage::vfs::{
        DirEntry, DiskUsage, FileKind, LockGuard, MapRegion, OpenMode, Vfs, VfsFile,
    };
}
