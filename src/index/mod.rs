//! IndexFile: an on-disk hash index from `topic#key` to CommitLog offsets, one file per time
//! range, rolled when full (spec §4).
//!
//! The code is split by concern: `file` (one IndexFile: its header, its hash slots and entry
//! chains, and the checks recovery makes of it), `service` (all IndexFiles of a store: build,
//! roll, lookup, retention, recovery cut).

mod file;
mod service;

pub(crate) use file::{EntryRecord, IndexFile};
pub(crate) use service::IndexService;

use crate::format::java_hash;

/// Java `String.hashCode` of `topic#key`, made non-negative as RocketMQ's `indexKeyHashMethod`.
pub(crate) fn key_hash(topic: &str, key: &str) -> i32 {
    java_hash::index_topic_key_hash(topic, key)
}

#[cfg(test)]
mod tests;
