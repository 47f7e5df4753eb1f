//! The crate's error type.
//!
//! Every variant carries the facts a reader needs to act: the file, the offset, what was expected
//! and what was found. Bad input is rejected before anything is written, so an `Err` from a write
//! call means the store did not change (except [`Error::FlushFailed`], see there).
//!
//! Display describes the error itself, never its cause: [`Io`](Error::Io),
//! [`FlushFailed`](Error::FlushFailed) and [`CorruptRecord`](Error::CorruptRecord) give theirs
//! through [`source`](std::error::Error::source), so a printer of the chain (anyhow's `{:#}`,
//! the `rocketstore` CLI) shows each part once. Print the chain to see the OS error text.

use std::io;
use std::path::PathBuf;

use crate::format::FormatError;

/// The result type of every fallible call in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a [`Store`](crate::Store).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call failed on `path`.
    #[error("I/O error on {path}")]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Another process (or another `Store` in this process) holds the root's `lock` file.
    #[error("store root {path} is locked by another process (lock file {path}/lock)")]
    Locked {
        /// The store root.
        path: PathBuf,
    },

    /// A [`StoreConfig`](crate::StoreConfig) field is out of range or contradicts another.
    #[error("invalid configuration: {field}: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The topic name is empty, too long or uses characters outside `[%|a-zA-Z0-9_-]`.
    #[error("illegal topic {topic:?}: {reason}")]
    InvalidTopic {
        /// The rejected topic.
        topic: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// The queue id is negative or not below `StoreConfig::max_queues_per_topic`.
    #[error("queue id {queue_id} out of range 0..{limit}")]
    QueueIdOutOfRange {
        /// The rejected queue id.
        queue_id: i32,
        /// The exclusive upper bound.
        limit: u32,
    },

    /// The body (or a whole batch) is larger than `StoreConfig::max_message_size`.
    #[error("message of {len} bytes exceeds max_message_size {limit}")]
    MessageTooLarge {
        /// Size of the rejected body or batch.
        len: usize,
        /// The configured limit.
        limit: usize,
    },

    /// The encoded properties are longer than RocketMQ's i16 length field allows (32767 bytes).
    #[error("properties of {len} bytes exceed the limit of {limit} bytes")]
    PropertiesTooLarge {
        /// Encoded property length.
        len: usize,
        /// The limit (32767).
        limit: usize,
    },

    /// A property name or value cannot be encoded (empty name, or a 0x01/0x02 separator byte inside).
    #[error("invalid property {name:?}: {reason}")]
    InvalidProperty {
        /// The property name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// An argument is outside its domain (empty batch, batch mixing queues, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The store was closed; no further calls are accepted.
    #[error("store is closed")]
    Closed,

    /// Writes are refused until the store is reopened or the condition clears.
    #[error("store is read-only: {reason}")]
    ReadOnly {
        /// Why (a failed sync, a full disk, ...).
        reason: String,
    },

    /// A sync of the CommitLog failed. The records it covered are not known to be durable; the
    /// store turned read-only and must be reopened (recovery then decides what survived).
    #[error("flush of {path} failed")]
    FlushFailed {
        /// The segment whose sync failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A record failed validation where a valid one must be.
    #[error("corrupt record in {path} at offset {offset}")]
    CorruptRecord {
        /// The file holding the record.
        path: PathBuf,
        /// Absolute offset of the record (CommitLog offset for CommitLog files).
        offset: u64,
        /// What the decoder found.
        #[source]
        source: FormatError,
    },

    /// On-disk state contradicts itself (e.g. acknowledged data missing or a record at the wrong
    /// offset).
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        /// The file concerned.
        path: PathBuf,
        /// Offset (absolute CommitLog offset or byte offset in the file, as the reason says).
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// A file in the store root does not fit the layout (wrong length, bad name, a gap between
    /// segments, a symlink or a directory where a segment should be).
    #[error("bad store layout at {path}: {reason}")]
    Layout {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The CommitLog's segment files are not contiguous and recovery cannot tell which side of
    /// the gap holds the log. Nothing was changed; [`StoreConfig::segment_gap`](crate::StoreConfig::segment_gap)
    /// chooses the side to keep.
    #[error(
        "CommitLog {dir} has a gap: no segment holds offsets {missing_from}..{missing_to} \
         ({segments_before} segment(s) before it, {segments_after} after): {reason}. Nothing was \
         changed. To open the root, choose the side to keep: StoreConfig::segment_gap = \
         GapPolicy::KeepAfter deletes the segments before the gap (what a crash during an older \
         version's retention leaves), GapPolicy::KeepBefore deletes those after it \
         (rocketstore recover --segment-gap keep-after|keep-before)"
    )]
    SegmentGap {
        /// The CommitLog directory.
        dir: PathBuf,
        /// First offset no segment holds.
        missing_from: u64,
        /// Start of the first segment after the gap.
        missing_to: u64,
        /// Segment files before the gap.
        segments_before: usize,
        /// Segment files after it.
        segments_after: usize,
        /// Why recovery cannot decide on its own.
        reason: String,
    },

    /// `open` was given an existing directory that holds entries but is not a store root (none
    /// of `commitlog/`, `consumequeue/`, `index/`, `checkpoint`; a store that crashed before
    /// writing any of them leaves only `lock`, `abort` or rocketstore's own files, which do not
    /// count). Nothing was created in it.
    /// [`StoreConfig::create_in_non_empty_dir`](crate::StoreConfig::create_in_non_empty_dir)
    /// makes `open` create a store there anyway.
    #[error(
        "{path} is not a store root and not empty ({total} unrelated entr{}: {}{}): refusing to \
         create a store among them; nothing was created. Open an empty or missing directory, or \
         set StoreConfig::create_in_non_empty_dir to create the store there",
        if *total == 1 { "y" } else { "ies" },
        entries.join(", "),
        if *total > entries.len() { ", ..." } else { "" }
    )]
    NotAStoreRoot {
        /// The directory.
        path: PathBuf,
        /// The first few unrelated entries, sorted by name.
        entries: Vec<String>,
        /// How many unrelated entries there are.
        total: usize,
    },

    /// A file-geometry field of the [`StoreConfig`](crate::StoreConfig) contradicts the existing
    /// root (its `rocketstore-geometry` record or the length of its files): files cannot change
    /// size. A field left at `StoreConfig::default()`'s value adopts the root's value instead.
    #[error(
        "{field} is {configured} in the configuration but {found} in the store root ({path}): \
         the files of an existing root cannot change size; set {field} to {found}, or leave it \
         at StoreConfig::default()'s value to adopt the root's"
    )]
    GeometryMismatch {
        /// The [`StoreConfig`](crate::StoreConfig) field.
        field: &'static str,
        /// The value the configuration asks for.
        configured: u64,
        /// The value the root has.
        found: u64,
        /// Where the root's value comes from (the geometry record or a file it was read off).
        path: PathBuf,
    },

    /// No record starts at this CommitLog offset (outside `[min, max)` or not a record boundary).
    #[error("no record at commitlog offset {offset} (readable range {min}..{max})")]
    NoRecordAt {
        /// The requested offset.
        offset: u64,
        /// Smallest readable CommitLog offset.
        min: u64,
        /// CommitLog end.
        max: u64,
    },

    /// A consumer group name is empty, too long or uses characters outside
    /// `[%|a-zA-Z0-9_-]` (RocketMQ's rule for group names, the same as for topics).
    #[error("illegal consumer group {group:?}: {reason}")]
    InvalidGroup {
        /// The rejected group.
        group: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A configuration file of the root (`config/*.json`) is unreadable, and so is its `.bak`:
    /// nothing was reset; fix or remove the file.
    #[error("{path}: {reason}")]
    CorruptConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (and with its `.bak`).
        reason: String,
    },

    /// Ordered consumption: another consumer of the group holds the queue's consume lock.
    #[error("{topic}:{queue_id} is locked by consumer {holder} of group {group}")]
    QueueLocked {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The queue.
        queue_id: i32,
        /// The consumer holding the lock.
        holder: String,
    },

    /// An offset past the end of its queue: a commit or seek to a message that does not exist.
    #[error("offset {offset} of {topic}:{queue_id} is past the queue's max offset {max}")]
    OffsetPastMax {
        /// The topic.
        topic: String,
        /// The queue.
        queue_id: i32,
        /// The rejected offset.
        offset: u64,
        /// One past the newest message of the queue.
        max: u64,
    },

    /// The disk is (nearly) full; puts are refused until space returns.
    #[error("disk full at {path}: {reason}")]
    DiskFull {
        /// The file or directory where space ran out.
        path: PathBuf,
        /// Usage figures or the failing call.
        reason: String,
    },
}

/// `err` and its sources joined by `": "`, each once: for messages that keep the whole chain
/// in one string (read-only reasons, logs).
pub(crate) fn chain<'a>(err: &'a (dyn std::error::Error + 'static)) -> Chain<'a> {
    Chain(err)
}

/// Display of an error with its sources; see [`chain`].
pub(crate) struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

impl Error {
    /// Wraps an I/O error with the path it concerns; ENOSPC becomes [`Error::DiskFull`].
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        if source.raw_os_error() == Some(libc::ENOSPC)
            || source.kind() == io::ErrorKind::StorageFull
        {
            return Error::DiskFull {
                path,
                reason: source.to_string(),
            };
        }
        Error::Io { path, source }
    }
}
