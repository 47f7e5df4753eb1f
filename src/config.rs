//! [`StoreConfig`]: every tunable of the store, with RocketMQ's defaults.
//!
//! Sizes default to what a RocketMQ broker uses, so a store root written here has the same file
//! sizes as one written by the broker. Every field can be made tiny for tests.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::format::cq_unit::CQ_UNIT_SIZE;
use crate::format::record::END_FILE_MIN_BLANK_LENGTH;
use crate::format::schedule::{DelayLevels, DEFAULT_DELAY_LEVELS};

/// When a `put` returns relative to its bytes reaching the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FlushMode {
    /// RocketMQ's ASYNC_FLUSH: `put` returns once the record is in the page cache; a background
    /// flusher syncs every [`StoreConfig::flush_interval`]. A power loss can lose the last
    /// unsynced records (always a suffix of the log); a process crash loses nothing.
    #[default]
    Async,
    /// RocketMQ's SYNC_FLUSH: `put` returns only after every CommitLog byte up to the end of its
    /// record is durable. Concurrent puts share one sync (group commit).
    Sync,
}

/// How appended bytes reach a CommitLog segment.
///
/// Measured here (`benches/append.rs`, 1 KiB records): `Mmap` does 1.55 M async puts/s against
/// 0.22 M for `WriteBuffer` (a `pwrite` per put costs more than a copy into a prefaulted
/// mapping), while for Sync puts `WriteBuffer` has p50 89 µs against 116 µs with one producer
/// and 3-9x the throughput with 4-64 producers (appends no longer wait on the pages a sync is
/// writing back). Hence [`Auto`](Self::Auto).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// [`WriteBuffer`](Self::WriteBuffer) with [`FlushMode::Sync`], [`Mmap`](Self::Mmap) with
    /// [`FlushMode::Async`]. The default.
    #[default]
    Auto,
    /// Records are copied into the segment's shared mapping (RocketMQ's default). Segments are
    /// prefaulted in the background and flushed with a range `msync`.
    Mmap,
    /// Write-buffer mode (in the spirit of RocketMQ's transient store pool): each put's records
    /// are encoded into a per-thread buffer and written to the segment with `pwrite`; readers
    /// still read through the mapping (the page cache is shared); the flusher uses
    /// `fdatasync`. Appends never take page faults on the mapping and segments need no write
    /// prefault. Unlike RocketMQ there is no separate committer thread: a record is in the file
    /// (and visible) when its put returns.
    WriteBuffer,
}

/// What recovery does with a gap between CommitLog segment files that it cannot explain as the
/// remains of an interrupted cut (`src/recovery/gaps.rs`): the last segment before the gap is
/// full, so the missing one held data, and which side is the log cannot be read off the files.
/// Gaps this version leaves behind are closed at open whatever this says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GapPolicy {
    /// `open` fails with [`Error::SegmentGap`](crate::Error::SegmentGap) and changes nothing.
    #[default]
    Refuse,
    /// Keep the segments before the first gap and delete every one after it.
    KeepBefore,
    /// Keep the segments after the last gap and delete every one before it (what a crash
    /// during retention of an older version leaves: the files before the gap were being
    /// deleted as expired).
    KeepAfter,
}

/// Configuration of a [`Store`](crate::Store). Validated by [`StoreConfig::validate`] at open.
///
/// Start from [`StoreConfig::default`] (RocketMQ's broker settings) or [`StoreConfig::small`]
/// and change what you need; an invalid combination names its field:
///
/// ```
/// use std::time::Duration;
/// use rocketstore::{Error, FlushMode, StoreConfig};
///
/// let config = StoreConfig {
///     flush_mode: FlushMode::Sync,
///     sync_flush_timeout: Duration::from_secs(2),
///     file_reserved_time: Duration::from_secs(24 * 3600),
///     ..StoreConfig::default()
/// };
/// config.validate().unwrap();
///
/// let bad = StoreConfig { delete_when: "25".into(), ..StoreConfig::small() };
/// assert!(matches!(bad.validate(), Err(Error::InvalidConfig { field: "delete_when", .. })));
/// ```
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Size of one CommitLog segment file in bytes. Default 1 GiB (RocketMQ
    /// `mappedFileSizeCommitLog`). Range: 4096 ..= 2^31 - 1 (record positions are i32 inside a
    /// segment), and large enough for the biggest record plus the 8-byte end-of-file blank.
    ///
    /// This and the other three geometry fields (`consume_queue_units_per_file`,
    /// `index_hash_slots`, `index_max_entries`) are fixed when a root is created, and recorded
    /// in its `rocketstore-geometry` file. Opening an existing root: a field left at the
    /// default adopts the root's value (from that record; for a root without one, such as a
    /// root RocketMQ wrote, from the length of its CommitLog segments and ConsumeQueue files
    /// when they all agree, while the index geometry stays as configured); a field set to
    /// another value that contradicts the root is [`Error::GeometryMismatch`]. So
    /// `StoreConfig::default()` opens any root rocketstore created, whatever its geometry, and
    /// [`Store::config`](crate::Store::config) shows the geometry in use.
    pub commitlog_segment_size: usize,
    /// ConsumeQueue units (20 bytes each) per ConsumeQueue file. Default 300,000 (6,000,000-byte
    /// files). Range: >= 1. Fixed for a root, adopted from it when left at the default (see
    /// [`commitlog_segment_size`](Self::commitlog_segment_size)).
    pub consume_queue_units_per_file: usize,
    /// Hash slots per IndexFile. Default 5,000,000. Range: >= 1. Fixed for a root, adopted from
    /// its geometry record when left at the default (see
    /// [`commitlog_segment_size`](Self::commitlog_segment_size)).
    pub index_hash_slots: u32,
    /// Entries per IndexFile (entry 0 is reserved, so a file holds one fewer). Default 20,000,000.
    /// Range: >= 2. Fixed for a root, adopted from its geometry record when left at the default
    /// (see [`commitlog_segment_size`](Self::commitlog_segment_size)).
    pub index_max_entries: u32,
    /// Build the IndexFile (key lookups). Default true (RocketMQ `messageIndexEnable`).
    pub index_enabled: bool,
    /// Largest accepted body in bytes (and largest batch body). Default 4 MiB (RocketMQ
    /// `maxMessageSize`). A record may be up to this plus 64 KiB of topic and properties. Left
    /// at the default while the segment size is adopted from a root whose segments cannot hold
    /// 4 MiB records, it shrinks to the largest body a segment holds.
    pub max_message_size: usize,
    /// Queue ids must be in `0..max_queues_per_topic`. Default 1024.
    pub max_queues_per_topic: u32,
    /// Sync or async flush. Default [`FlushMode::Async`].
    pub flush_mode: FlushMode,
    /// Sync mode: how long a put waits for its group commit before returning
    /// [`PutStatus::FlushDiskTimeout`](crate::PutStatus::FlushDiskTimeout). Default 5 s.
    pub sync_flush_timeout: Duration,
    /// Async mode: flusher period. Default 500 ms.
    pub flush_interval: Duration,
    /// Async mode: flush only when at least this many 4 KiB pages are dirty. Default 4.
    pub flush_least_pages: usize,
    /// Async mode: flush everything at least this often regardless of dirty pages. Default 10 s.
    pub flush_thorough_interval: Duration,
    /// Period of the ConsumeQueue/IndexFile flush and checkpoint write. Default 1 s.
    pub consume_queue_flush_interval: Duration,
    /// Write RocketMQ 5.2's whole-record CRC property (`__CRC32#`) into every record, so
    /// corruption anywhere in a record is detected. Default true.
    pub append_crc_property: bool,
    /// Check body and record CRCs while recovering. Default true.
    pub check_crc_on_recover: bool,
    /// What recovery does with an invalid record below the checkpoint's durable offset (damage
    /// to acknowledged data). `false` (default): `open` fails with
    /// [`Error::Corruption`](crate::Error::Corruption) and changes nothing, so an operator can
    /// copy the root and decide. `true`: cut the log at that record like a torn tail, zero the
    /// rest, and say what was given up in
    /// [`RecoveryReport::salvaged`](crate::RecoveryReport::salvaged).
    pub salvage_corrupt_log: bool,
    /// What recovery does when the CommitLog's segment files have a gap it cannot explain as
    /// the remains of an interrupted cut (see [`GapPolicy`]). Default [`GapPolicy::Refuse`].
    pub segment_gap: GapPolicy,
    /// How records reach the CommitLog file. Default [`WriteMode::Auto`].
    pub write_mode: WriteMode,
    /// Prepare (create, allocate, prefault) the next CommitLog segment in a background thread so
    /// a roll never waits for the disk. Default true.
    pub preallocate_next_segment: bool,
    /// The store host written into every record (RocketMQ writes the broker's address).
    /// Default 127.0.0.1:10911.
    pub store_host: SocketAddr,
    /// Run the background cleaner (retention and disk-space watch) every
    /// [`clean_resource_interval`](Self::clean_resource_interval). Default true. Manual cleanup
    /// ([`Store::clean_expired_now`](crate::Store::clean_expired_now),
    /// [`Store::delete_before`](crate::Store::delete_before)) works either way.
    pub cleaner_enabled: bool,
    /// Period of the cleaner. Default 10 s (RocketMQ `cleanResourceInterval`).
    pub clean_resource_interval: Duration,
    /// A CommitLog segment expires this long after it was filled (after the first record of the
    /// next segment was stored). Default 72 h (RocketMQ `fileReservedTime`).
    pub file_reserved_time: Duration,
    /// Local hours of the day at which expired segments are deleted, RocketMQ syntax: two-digit
    /// hours separated by `;`. Default `"04"` (RocketMQ `deleteWhen`).
    pub delete_when: String,
    /// Disk use (percent of the file system holding the root) above which expired segments are
    /// deleted at any hour. Range 10..=95, default 75 (RocketMQ `diskMaxUsedSpaceRatio`).
    pub disk_max_used_space_ratio: u32,
    /// Disk use above which the oldest segments are deleted even if not expired (when
    /// [`clean_file_forcibly_enable`](Self::clean_file_forcibly_enable)). Default 0.85.
    pub disk_space_clean_forcibly_ratio: f64,
    /// Disk use above which puts fail with [`Error::DiskFull`](crate::Error::DiskFull) until
    /// space returns. Default 0.90.
    pub disk_space_warning_level_ratio: f64,
    /// Allow deleting unexpired segments when disk use passes the forcible ratio. Default true.
    pub clean_file_forcibly_enable: bool,
    /// At most this many CommitLog segments are deleted per cleaner pass. Default 10
    /// (RocketMQ `deleteFileBatchMax`).
    pub delete_files_batch_max: usize,
    /// Let `open` create a store in an existing directory that holds other entries and is not a
    /// store root. Default false: such an open fails with
    /// [`Error::NotAStoreRoot`](crate::Error::NotAStoreRoot) and creates nothing, so a mistyped
    /// path does not turn a directory of unrelated files into a store. A missing or empty
    /// directory (or one holding only `lost+found`) always becomes a new store, and an existing
    /// root always opens.
    pub create_in_non_empty_dir: bool,
    /// The clock that stamps store times and decides when scheduled messages are due. Default:
    /// the system clock; a [`ManualClock`](crate::clock::ManualClock) in tests.
    pub clock: Clock,
    /// The delay of each level of scheduled messages, RocketMQ's `messageDelayLevel` (default
    /// `1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h`; units `s m h d`).
    pub message_delay_level: String,
    /// The furthest a message may be scheduled with an exact delivery time
    /// ([`Message::with_deliver_time_ms`](crate::Message::with_deliver_time_ms)); further is
    /// [`Error::InvalidArgument`]. Default 3 days (RocketMQ 5's `timerMaxDelaySec`).
    pub max_delivery_delay: Duration,
    /// Deliver due scheduled messages from a background thread (default true). Off, or with
    /// a manual clock, [`Store::deliver_due`](crate::Store::deliver_due) delivers them.
    pub schedule_delivery: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            commitlog_segment_size: 1 << 30,
            consume_queue_units_per_file: 300_000,
            index_hash_slots: 5_000_000,
            index_max_entries: 20_000_000,
            index_enabled: true,
            max_message_size: 4 * 1024 * 1024,
            max_queues_per_topic: 1024,
            flush_mode: FlushMode::Async,
            sync_flush_timeout: Duration::from_secs(5),
            flush_interval: Duration::from_millis(500),
            flush_least_pages: 4,
            flush_thorough_interval: Duration::from_secs(10),
            consume_queue_flush_interval: Duration::from_secs(1),
            append_crc_property: true,
            check_crc_on_recover: true,
            salvage_corrupt_log: false,
            segment_gap: GapPolicy::Refuse,
            write_mode: WriteMode::Auto,
            preallocate_next_segment: true,
            store_host: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 10911)),
            cleaner_enabled: true,
            clean_resource_interval: Duration::from_secs(10),
            file_reserved_time: Duration::from_secs(72 * 3600),
            delete_when: "04".into(),
            disk_max_used_space_ratio: 75,
            disk_space_clean_forcibly_ratio: 0.85,
            disk_space_warning_level_ratio: 0.90,
            clean_file_forcibly_enable: true,
            delete_files_batch_max: 10,
            create_in_non_empty_dir: false,
            clock: Clock::default(),
            message_delay_level: DEFAULT_DELAY_LEVELS.into(),
            max_delivery_delay: Duration::from_secs(3 * 24 * 3600),
            schedule_delivery: true,
        }
    }
}

/// Topic and properties may add up to this much on top of the body (RocketMQ: record limit is
/// `maxMessageSize + 64 KiB`).
pub(crate) const RECORD_OVERHEAD_LIMIT: usize = 64 * 1024;

impl StoreConfig {
    /// A configuration with small files for tests and examples: 1 MiB CommitLog segments,
    /// 1,000-unit ConsumeQueue files, a 1,000-slot / 4,000-entry IndexFile and 64 KiB messages.
    pub fn small() -> Self {
        StoreConfig {
            commitlog_segment_size: 1 << 20,
            consume_queue_units_per_file: 1_000,
            index_hash_slots: 1_000,
            index_max_entries: 4_000,
            max_message_size: 64 * 1024,
            ..StoreConfig::default()
        }
    }

    /// The write mode in effect: [`WriteMode::Auto`] resolved by the flush mode.
    pub(crate) fn effective_write_mode(&self) -> WriteMode {
        match (self.write_mode, self.flush_mode) {
            (WriteMode::Auto, FlushMode::Sync) => WriteMode::WriteBuffer,
            (WriteMode::Auto, FlushMode::Async) => WriteMode::Mmap,
            (mode, _) => mode,
        }
    }

    /// Largest record the store accepts: body limit plus topic/properties allowance.
    pub(crate) fn max_record_size(&self) -> usize {
        self.max_message_size.saturating_add(RECORD_OVERHEAD_LIMIT)
    }

    /// Bytes of one ConsumeQueue file.
    pub(crate) fn consume_queue_file_size(&self) -> usize {
        self.consume_queue_units_per_file * CQ_UNIT_SIZE
    }

    /// Checks every field and the combinations; the error names the field.
    pub fn validate(&self) -> Result<()> {
        fn bad(field: &'static str, reason: String) -> Result<()> {
            Err(Error::InvalidConfig { field, reason })
        }
        if let Err(reason) = DelayLevels::parse(&self.message_delay_level) {
            return bad("message_delay_level", reason);
        }
        let seg = self.commitlog_segment_size;
        if !(4096..=i32::MAX as usize).contains(&seg) {
            return bad(
                "commitlog_segment_size",
                format!("{seg} not in 4096..={}", i32::MAX),
            );
        }
        if self.max_message_size == 0 {
            return bad("max_message_size", "must be > 0".into());
        }
        if self.max_message_size > i32::MAX as usize / 2 {
            return bad(
                "max_message_size",
                format!("{} larger than {}", self.max_message_size, i32::MAX / 2),
            );
        }
        // The largest record plus the end-of-file blank must fit in an empty segment, or a put
        // could roll forever.
        let need = self.max_record_size() + END_FILE_MIN_BLANK_LENGTH;
        if need > seg {
            return bad(
                "commitlog_segment_size",
                format!("{seg} cannot hold the largest record ({need} bytes with max_message_size {} + 64 KiB + 8)", self.max_message_size),
            );
        }
        if self.consume_queue_units_per_file == 0 {
            return bad("consume_queue_units_per_file", "must be >= 1".into());
        }
        if self.consume_queue_file_size() > i32::MAX as usize {
            return bad(
                "consume_queue_units_per_file",
                "file would exceed 2 GiB".into(),
            );
        }
        if self.index_hash_slots == 0 {
            return bad("index_hash_slots", "must be >= 1".into());
        }
        if self.index_max_entries < 2 || self.index_max_entries > i32::MAX as u32 {
            return bad(
                "index_max_entries",
                format!("{} not in 2..={}", self.index_max_entries, i32::MAX),
            );
        }
        let index_size =
            crate::format::index_layout::file_size(self.index_hash_slots, self.index_max_entries);
        if index_size > i32::MAX as u64 {
            return bad(
                "index_max_entries",
                format!("index file of {index_size} bytes exceeds 2 GiB"),
            );
        }
        if self.max_queues_per_topic == 0 || self.max_queues_per_topic > i32::MAX as u32 {
            return bad(
                "max_queues_per_topic",
                format!("{} not in 1..={}", self.max_queues_per_topic, i32::MAX),
            );
        }
        if self.flush_interval.is_zero() {
            return bad("flush_interval", "must be > 0".into());
        }
        if self.consume_queue_flush_interval.is_zero() {
            return bad("consume_queue_flush_interval", "must be > 0".into());
        }
        if self.sync_flush_timeout.is_zero() {
            return bad("sync_flush_timeout", "must be > 0".into());
        }
        if self.clean_resource_interval.is_zero() {
            return bad("clean_resource_interval", "must be > 0".into());
        }
        if let Err(reason) = self.delete_hours() {
            return bad("delete_when", reason);
        }
        if !(10..=95).contains(&self.disk_max_used_space_ratio) {
            return bad(
                "disk_max_used_space_ratio",
                format!("{} not in 10..=95", self.disk_max_used_space_ratio),
            );
        }
        let forcibly = self.disk_space_clean_forcibly_ratio;
        if !(0.30..=0.99).contains(&forcibly) {
            return bad(
                "disk_space_clean_forcibly_ratio",
                format!("{forcibly} not in 0.30..=0.99"),
            );
        }
        let warning = self.disk_space_warning_level_ratio;
        if !(0.35..=0.99).contains(&warning) || warning < forcibly {
            return bad(
                "disk_space_warning_level_ratio",
                format!("{warning} not in 0.35..=0.99 or below disk_space_clean_forcibly_ratio {forcibly}"),
            );
        }
        if self.delete_files_batch_max == 0 {
            return bad("delete_files_batch_max", "must be >= 1".into());
        }
        Ok(())
    }

    /// The hours of [`delete_when`](Self::delete_when), each in 0..24.
    pub(crate) fn delete_hours(&self) -> std::result::Result<Vec<u32>, String> {
        self.delete_when
            .split(';')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| match h.parse::<u32>() {
                Ok(n) if n < 24 => Ok(n),
                _ => Err(format!("{h:?} is not an hour 00..23 (syntax: \"04;16\")")),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_rocketmq_and_validate() {
        let c = StoreConfig::default();
        assert_eq!(c.commitlog_segment_size, 1_073_741_824);
        assert_eq!(c.consume_queue_file_size(), 6_000_000);
        assert_eq!(c.max_message_size, 4_194_304);
        assert_eq!(c.index_hash_slots, 5_000_000);
        assert_eq!(c.index_max_entries, 20_000_000);
        c.validate().unwrap();
        StoreConfig::small().validate().unwrap();
    }

    fn field_of(c: StoreConfig) -> &'static str {
        match c.validate() {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        let s = StoreConfig::small;
        assert_eq!(
            field_of(StoreConfig {
                commitlog_segment_size: 100,
                ..s()
            }),
            "commitlog_segment_size"
        );
        assert_eq!(
            field_of(StoreConfig {
                max_message_size: 1 << 20,
                ..s()
            }),
            "commitlog_segment_size"
        );
        assert_eq!(
            field_of(StoreConfig {
                max_message_size: 0,
                ..s()
            }),
            "max_message_size"
        );
        assert_eq!(
            field_of(StoreConfig {
                consume_queue_units_per_file: 0,
                ..s()
            }),
            "consume_queue_units_per_file"
        );
        assert_eq!(
            field_of(StoreConfig {
                index_hash_slots: 0,
                ..s()
            }),
            "index_hash_slots"
        );
        assert_eq!(
            field_of(StoreConfig {
                index_max_entries: 1,
                ..s()
            }),
            "index_max_entries"
        );
        assert_eq!(
            field_of(StoreConfig {
                max_queues_per_topic: 0,
                ..s()
            }),
            "max_queues_per_topic"
        );
        assert_eq!(
            field_of(StoreConfig {
                flush_interval: Duration::ZERO,
                ..s()
            }),
            "flush_interval"
        );
        assert_eq!(
            field_of(StoreConfig {
                sync_flush_timeout: Duration::ZERO,
                ..s()
            }),
            "sync_flush_timeout"
        );
    }
}
