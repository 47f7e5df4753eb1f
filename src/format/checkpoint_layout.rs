//! The `checkpoint` file (spec §5.1) plus rocketstore's trailer.
//!
//! Bytes 0..40 are RocketMQ's: `physicMsgTimestamp`, `logicsMsgTimestamp`, `indexMsgTimestamp`,
//! `masterFlushedOffset`, `confirmPhyOffset` (i64 each). RocketMQ leaves the rest of the 4 KiB
//! zero; we put a trailer at [`TRAILER_POS`]: magic `RSTORECK`, version, flags, the durable
//! CommitLog offset, the CommitLog offset below which ConsumeQueue and IndexFile are durable, a
//! summary of the derived data (queue, unit, index file and entry counts), RocketMQ's three
//! timestamps as we wrote them, and a CRC32 over the trailer alone. A checkpoint whose trailer
//! fails the check is ignored, never trusted.
//!
//! A RocketMQ broker that opens the root rewrites its own fields on every flush and leaves ours
//! alone, so the trailer stays valid; a timestamp newer than the one the trailer recorded says
//! the broker wrote here after our checkpoint ([`Checkpoint::written_since_trailer`]).

use byteorder::{BigEndian, ByteOrder};

/// Size of the checkpoint file (RocketMQ maps 4 KiB).
pub const CHECKPOINT_SIZE: usize = 4096;
/// Where our trailer starts.
pub const TRAILER_POS: usize = 3968;
/// Trailer magic, ASCII `RSTORECK`.
pub const TRAILER_MAGIC: u64 = u64::from_be_bytes(*b"RSTORECK");
/// Trailer version written by this crate.
///
/// * 1: no flags; a summary of `queues = u64::MAX` meant "derived data damaged"; the CRC at
///   `TRAILER_POS + 64` covers every byte before it, RocketMQ's fields included.
/// * 2: a flags word at `TRAILER_POS + 12` ([`FLAG_DERIVED_DAMAGED`]); CRC as version 1.
/// * 3: RocketMQ's three timestamps as written at `TRAILER_POS + 64..88`, and the CRC at
///   [`POS_CRC`] covers the trailer only (`TRAILER_POS..POS_CRC`), so a broker rewriting its
///   fields no longer voids it.
pub const TRAILER_VERSION: u32 = 3;
/// Trailer flag: the run that wrote the checkpoint found ConsumeQueue or IndexFile damaged (or
/// a rebuild of them had begun): the next open rebuilds them from the CommitLog.
pub const FLAG_DERIVED_DAMAGED: u32 = 0x1;
/// What version 1 wrote as the queue count to say [`FLAG_DERIVED_DAMAGED`].
const V1_DAMAGED_QUEUES: u64 = u64::MAX;
/// Where the CRC of a version 3 trailer is.
pub const POS_CRC: usize = TRAILER_POS + 88;
/// Where the CRC of a version 1 or 2 trailer was.
const POS_CRC_V2: usize = TRAILER_POS + 64;
/// Where version 3 records RocketMQ's timestamps as written.
const POS_TIMESTAMPS: usize = TRAILER_POS + 64;

/// Decoded checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// RocketMQ `physicMsgTimestamp`: store time of the last flushed CommitLog record.
    pub physic_msg_timestamp: i64,
    /// RocketMQ `logicsMsgTimestamp`: store time of the last flushed ConsumeQueue unit.
    pub logics_msg_timestamp: i64,
    /// RocketMQ `indexMsgTimestamp`: end time of the last flushed full IndexFile.
    pub index_msg_timestamp: i64,
    /// RocketMQ 5.x `masterFlushedOffset` (kept as read).
    pub master_flushed_offset: i64,
    /// RocketMQ 5.x `confirmPhyOffset` (kept as read).
    pub confirm_phy_offset: i64,
    /// Our trailer, if present and intact.
    pub trailer: Option<Trailer>,
}

/// rocketstore's own part of the checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trailer {
    /// Every CommitLog byte below this offset was synced before the checkpoint was written.
    pub durable_commitlog_offset: u64,
    /// Every record below this CommitLog offset has its ConsumeQueue unit and index entries
    /// synced.
    pub derived_durable_offset: u64,
    /// Shape of the derived data when the checkpoint was written, counted just before
    /// `derived_durable_offset` was sampled (so it describes only records below it, and is
    /// exact when nothing was being put, as at close). A clean open compares it with what it
    /// loads, so a deleted or truncated ConsumeQueue or IndexFile is rebuilt; an unclean open
    /// requires the derived data it keeps to hold at least this much.
    pub derived: DerivedSummary,
    /// ConsumeQueue or IndexFile is known to be damaged ([`FLAG_DERIVED_DAMAGED`]): the summary
    /// vouches for nothing and the next open rebuilds them.
    pub derived_damaged: bool,
    /// RocketMQ's `physicMsgTimestamp`, `logicsMsgTimestamp` and `indexMsgTimestamp` as this
    /// crate wrote them with the trailer. A version 1 or 2 trailer (whose CRC covered them)
    /// reads the file's current values.
    pub rocketmq_timestamps: [i64; 3],
}

/// Counts describing ConsumeQueue and IndexFile contents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DerivedSummary {
    /// Number of queues holding at least one unit.
    pub queues: u64,
    /// Sum over queues of their max offset.
    pub units: u64,
    /// Number of index files.
    pub index_files: u64,
    /// Sum of index entries over all files.
    pub index_entries: u64,
}

impl Checkpoint {
    /// Encodes the 4 KiB file image.
    pub fn encode(&self) -> [u8; CHECKPOINT_SIZE] {
        let mut b = [0u8; CHECKPOINT_SIZE];
        BigEndian::write_i64(&mut b[0..8], self.physic_msg_timestamp);
        BigEndian::write_i64(&mut b[8..16], self.logics_msg_timestamp);
        BigEndian::write_i64(&mut b[16..24], self.index_msg_timestamp);
        BigEndian::write_i64(&mut b[24..32], self.master_flushed_offset);
        BigEndian::write_i64(&mut b[32..40], self.confirm_phy_offset);
        if let Some(t) = self.trailer {
            let p = TRAILER_POS;
            BigEndian::write_u64(&mut b[p..p + 8], TRAILER_MAGIC);
            BigEndian::write_u32(&mut b[p + 8..p + 12], TRAILER_VERSION);
            let flags = if t.derived_damaged {
                FLAG_DERIVED_DAMAGED
            } else {
                0
            };
            BigEndian::write_u32(&mut b[p + 12..p + 16], flags);
            BigEndian::write_u64(&mut b[p + 16..p + 24], t.durable_commitlog_offset);
            BigEndian::write_u64(&mut b[p + 24..p + 32], t.derived_durable_offset);
            BigEndian::write_u64(&mut b[p + 32..p + 40], t.derived.queues);
            BigEndian::write_u64(&mut b[p + 40..p + 48], t.derived.units);
            BigEndian::write_u64(&mut b[p + 48..p + 56], t.derived.index_files);
            BigEndian::write_u64(&mut b[p + 56..p + 64], t.derived.index_entries);
            for (i, ts) in t.rocketmq_timestamps.iter().enumerate() {
                let at = POS_TIMESTAMPS + 8 * i;
                BigEndian::write_i64(&mut b[at..at + 8], *ts);
            }
            reseal(&mut b);
        }
        b
    }

    /// Decodes a checkpoint image. RocketMQ's fields are read from whatever bytes exist (a short
    /// file reads as zeros past its end); the trailer is `Some` only if magic, version and CRC
    /// all check out and the file is complete.
    pub fn decode(b: &[u8]) -> Checkpoint {
        let field = |pos: usize| b.get(pos..pos + 8).map_or(0, BigEndian::read_i64);
        Checkpoint {
            physic_msg_timestamp: field(0),
            logics_msg_timestamp: field(8),
            index_msg_timestamp: field(16),
            master_flushed_offset: field(24),
            confirm_phy_offset: field(32),
            trailer: decode_trailer(b),
        }
    }

    /// Whether another store (a RocketMQ broker) wrote to the root after the trailer: one of
    /// RocketMQ's timestamps is newer than the trailer recorded. The trailer still vouches for
    /// what it covers; records and derived data past it must be checked.
    pub fn written_since_trailer(&self) -> bool {
        self.trailer.is_some_and(|t| {
            let now = [
                self.physic_msg_timestamp,
                self.logics_msg_timestamp,
                self.index_msg_timestamp,
            ];
            now.iter()
                .zip(t.rocketmq_timestamps)
                .any(|(n, was)| *n > was)
        })
    }

    /// RocketMQ's `getMinTimestamp`: `min(physic, logics) - 3000`, floored at 0.
    pub fn min_timestamp(&self) -> i64 {
        (self.physic_msg_timestamp.min(self.logics_msg_timestamp) - 3000).max(0)
    }
}

/// The version of the trailer in a checkpoint image if its magic is there, valid or not (the
/// CLI tells an outdated trailer a broker's rewrite voided from a damaged one).
pub fn trailer_version(b: &[u8]) -> Option<u32> {
    let p = TRAILER_POS;
    let head = b.get(p..p + 12)?;
    (BigEndian::read_u64(&head[..8]) == TRAILER_MAGIC).then(|| BigEndian::read_u32(&head[8..]))
}

/// Whether a checkpoint image is one RocketMQ wrote: the full 4 KiB, no intact trailer, and its
/// trailer area either zero (RocketMQ leaves it so) or a version 1 or 2 trailer, whose CRC a
/// broker's rewrite of its own fields voids. A damaged version 3 trailer, a short file or
/// anything else is not.
pub fn written_by_rocketmq(b: &[u8]) -> bool {
    b.len() == CHECKPOINT_SIZE
        && decode_trailer(b).is_none()
        && (b[TRAILER_POS..].iter().all(|&x| x == 0) || matches!(trailer_version(b), Some(1 | 2)))
}

/// Rewrites the CRC of the version 3 trailer in a checkpoint image after its fields were set
/// (tests and fuzzers mutate fields and reseal). Does nothing to a short image.
pub fn reseal(b: &mut [u8]) {
    if b.len() >= POS_CRC + 4 {
        let crc = crc32fast::hash(&b[TRAILER_POS..POS_CRC]);
        BigEndian::write_u32(&mut b[POS_CRC..POS_CRC + 4], crc);
    }
}

fn decode_trailer(b: &[u8]) -> Option<Trailer> {
    if b.len() != CHECKPOINT_SIZE {
        return None;
    }
    let p = TRAILER_POS;
    let version = BigEndian::read_u32(&b[p + 8..p + 12]);
    if BigEndian::read_u64(&b[p..p + 8]) != TRAILER_MAGIC
        || !(1..=TRAILER_VERSION).contains(&version)
    {
        return None;
    }
    let (covered, crc_at) = match version {
        1 | 2 => (&b[..POS_CRC_V2], POS_CRC_V2),
        _ => (&b[TRAILER_POS..POS_CRC], POS_CRC),
    };
    if crc32fast::hash(covered) != BigEndian::read_u32(&b[crc_at..crc_at + 4]) {
        return None;
    }
    let field = |pos: usize| BigEndian::read_i64(&b[pos..pos + 8]);
    let rocketmq_timestamps = match version {
        1 | 2 => [field(0), field(8), field(16)],
        _ => [
            field(POS_TIMESTAMPS),
            field(POS_TIMESTAMPS + 8),
            field(POS_TIMESTAMPS + 16),
        ],
    };
    let durable = BigEndian::read_u64(&b[p + 16..p + 24]);
    let derived = BigEndian::read_u64(&b[p + 24..p + 32]);
    let mut summary = DerivedSummary {
        queues: BigEndian::read_u64(&b[p + 32..p + 40]),
        units: BigEndian::read_u64(&b[p + 40..p + 48]),
        index_files: BigEndian::read_u64(&b[p + 48..p + 56]),
        index_entries: BigEndian::read_u64(&b[p + 56..p + 64]),
    };
    let derived_damaged = match version {
        1 => summary.queues == V1_DAMAGED_QUEUES,
        _ => BigEndian::read_u32(&b[p + 12..p + 16]) & FLAG_DERIVED_DAMAGED != 0,
    };
    if derived_damaged && version == 1 {
        summary.queues = 0;
    }
    Some(Trailer {
        durable_commitlog_offset: durable,
        derived_durable_offset: derived,
        derived: summary,
        derived_damaged,
        rocketmq_timestamps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            physic_msg_timestamp: 0xAABB,
            logics_msg_timestamp: 0xCCDD,
            index_msg_timestamp: 7,
            master_flushed_offset: 0,
            confirm_phy_offset: 0,
            trailer: Some(Trailer {
                durable_commitlog_offset: 4096,
                derived_durable_offset: 2048,
                derived: DerivedSummary {
                    queues: 3,
                    units: 90,
                    index_files: 1,
                    index_entries: 80,
                },
                derived_damaged: false,
                rocketmq_timestamps: [0xAABB, 0xCCDD, 7],
            }),
        }
    }

    #[test]
    fn the_damaged_flag_round_trips_and_is_covered_by_the_crc() {
        let mut c = sample();
        c.trailer.as_mut().unwrap().derived_damaged = true;
        let b = c.encode();
        assert_eq!(&b[TRAILER_POS + 12..TRAILER_POS + 16], &[0, 0, 0, 1]);
        assert_eq!(Checkpoint::decode(&b), c);
        let mut m = b;
        m[TRAILER_POS + 15] = 0;
        assert_eq!(
            Checkpoint::decode(&m).trailer,
            None,
            "the flag is under the CRC"
        );
    }

    #[test]
    fn a_version_1_trailer_reads_its_sentinel_as_the_damaged_flag() {
        let v1 = |queues: u64| {
            let mut c = sample();
            c.trailer.as_mut().unwrap().derived.queues = queues;
            let mut b = c.encode();
            b[TRAILER_POS + 8..TRAILER_POS + 12].copy_from_slice(&1u32.to_be_bytes());
            b[TRAILER_POS + 12..TRAILER_POS + 16].copy_from_slice(&[0; 4]);
            b[POS_TIMESTAMPS..POS_CRC + 4].fill(0);
            let crc = crc32fast::hash(&b[..POS_CRC_V2]);
            b[POS_CRC_V2..POS_CRC_V2 + 4].copy_from_slice(&crc.to_be_bytes());
            Checkpoint::decode(&b)
                .trailer
                .expect("version 1 is still read")
        };
        let intact = v1(3);
        assert!(!intact.derived_damaged);
        assert_eq!(intact.derived, sample().trailer.unwrap().derived);
        let damaged = v1(u64::MAX);
        assert!(damaged.derived_damaged);
        assert_eq!(damaged.derived.queues, 0);
        assert_eq!(
            intact.rocketmq_timestamps,
            [0xAABB, 0xCCDD, 7],
            "as in the file"
        );
    }

    #[test]
    fn a_version_2_trailer_is_still_read_and_its_crc_covers_rocketmqs_fields() {
        let mut b = sample().encode();
        b[TRAILER_POS + 8..TRAILER_POS + 12].copy_from_slice(&2u32.to_be_bytes());
        b[POS_TIMESTAMPS..POS_CRC + 4].fill(0);
        let crc = crc32fast::hash(&b[..POS_CRC_V2]);
        b[POS_CRC_V2..POS_CRC_V2 + 4].copy_from_slice(&crc.to_be_bytes());
        let t = Checkpoint::decode(&b)
            .trailer
            .expect("version 2 is still read");
        assert_eq!(t.derived, sample().trailer.unwrap().derived);
        assert!(!Checkpoint::decode(&b).written_since_trailer());
        b[7] ^= 1;
        assert_eq!(Checkpoint::decode(&b).trailer, None);
    }

    /// RocketMQ rewrites its first 24 bytes on every flush (issue 19): a version 3 trailer stays
    /// valid, and a newer timestamp says a broker wrote since.
    #[test]
    fn rocketmq_rewriting_its_fields_keeps_the_trailer_and_shows_a_newer_writer() {
        let b = sample().encode();
        assert!(!Checkpoint::decode(&b).written_since_trailer());
        for (field, newer) in [(0, true), (8, true), (16, true), (24, false), (32, false)] {
            let mut m = b;
            let v = BigEndian::read_i64(&m[field..field + 8]);
            BigEndian::write_i64(&mut m[field..field + 8], v + 1000);
            let cp = Checkpoint::decode(&m);
            assert_eq!(cp.trailer, sample().trailer, "field at {field}");
            assert_eq!(cp.written_since_trailer(), newer, "field at {field}");
            // An older timestamp (a broker that wrote nothing new) is no newer writer.
            BigEndian::write_i64(&mut m[field..field + 8], v - 1);
            assert!(
                !Checkpoint::decode(&m).written_since_trailer(),
                "field at {field}"
            );
        }
    }

    #[test]
    fn a_checkpoint_rocketmq_wrote_is_told_from_ours_and_from_damage() {
        let ours = sample().encode();
        assert!(!written_by_rocketmq(&ours), "an intact trailer");
        let rocketmq = Checkpoint {
            trailer: None,
            ..sample()
        }
        .encode();
        assert!(written_by_rocketmq(&rocketmq));
        assert!(!written_by_rocketmq(&rocketmq[..40]), "short");
        let mut damaged = ours;
        damaged[POS_CRC] ^= 1;
        assert!(
            !written_by_rocketmq(&damaged),
            "a damaged version 3 trailer"
        );
        let mut outdated = ours;
        outdated[TRAILER_POS + 11] = 1;
        assert!(
            written_by_rocketmq(&outdated),
            "a version 1 trailer a broker voided"
        );
    }

    #[test]
    fn golden_layout_and_round_trip() {
        let c = sample();
        let b = c.encode();
        assert_eq!(&b[0..8], &[0, 0, 0, 0, 0, 0, 0xAA, 0xBB]);
        assert_eq!(&b[8..16], &[0, 0, 0, 0, 0, 0, 0xCC, 0xDD]);
        assert_eq!(&b[TRAILER_POS..TRAILER_POS + 8], b"RSTORECK");
        assert!(
            b[40..TRAILER_POS].iter().all(|&x| x == 0),
            "RocketMQ's unused area stays zero"
        );
        assert_eq!(Checkpoint::decode(&b), c);
        assert_eq!(c.min_timestamp(), 0xAABB - 3000);
    }

    #[test]
    fn any_flipped_byte_of_the_trailer_voids_it() {
        let b = sample().encode();
        for pos in (TRAILER_POS..POS_CRC + 4)
            .step_by(7)
            .chain([TRAILER_POS, POS_CRC, POS_CRC + 3])
        {
            let mut m = b;
            m[pos] ^= 0x10;
            assert_eq!(Checkpoint::decode(&m).trailer, None, "flip at {pos}");
        }
    }

    #[test]
    fn short_or_foreign_files_have_no_trailer() {
        let b = sample().encode();
        assert_eq!(Checkpoint::decode(&b[..100]).trailer, None);
        assert_eq!(Checkpoint::decode(&b[..100]).physic_msg_timestamp, 0xAABB);
        assert_eq!(Checkpoint::decode(&[]).physic_msg_timestamp, 0);
        let rocketmq_written = Checkpoint {
            trailer: None,
            ..sample()
        }
        .encode();
        assert_eq!(Checkpoint::decode(&rocketmq_written).trailer, None);
    }
}
