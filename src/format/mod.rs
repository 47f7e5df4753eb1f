//! The on-disk byte layouts, as pure functions over `&[u8]`: no I/O, no panics on any input.
//!
//! All integers are big-endian, as RocketMQ writes them (Java `ByteBuffer` order).
//!
//! Names: a field of a file layout keeps the name the spec gives it (`physical_offset()` for a
//! record's PHYSICALOFFSET, `begin_phy_offset` in the IndexFile header, `physic_msg_timestamp`
//! in the checkpoint), so the code reads against `shared/spec/rocketmq-store.md`. Everywhere
//! else, from [`dispatch_entry`] up, a byte position in the CommitLog is a `commitlog_offset`
//! (RocketMQ's own API name, `commitLogOffset`).

pub mod checkpoint_layout;
pub mod cq_unit;
pub mod dispatch_entry;
pub mod evidence;
pub mod filler;
pub mod geometry;
pub mod index_layout;
pub mod java_hash;
pub mod offset_commit;
pub mod offset_table;
pub mod properties;
pub mod record;
pub mod root;
pub mod schedule;
pub mod subscription_group;
pub mod topic;

// FormatError is defined in record/decoder.rs by the format work and re-exported here.
pub use record::FormatError;
