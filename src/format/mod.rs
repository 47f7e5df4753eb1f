//! The on-disk byte layouts, as pure functions over `&[u8]`: no I/O, no panics on any input.
//!
//! All integers are big-endian, as RocketMQ writes them (Java `ByteBuffer` order).

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
