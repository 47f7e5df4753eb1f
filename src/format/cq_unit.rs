//! ConsumeQueue unit (spec §3.1): 20 bytes, `commitlog offset i64 | size i32 | tags code i64`.
//!
//! Message `n` of a queue is the unit at byte `n * 20` of the queue's byte stream, which is split
//! into files of `units_per_file * 20` bytes named by their start byte offset. An all-zero unit
//! marks the end of the written data (files are preallocated with zeros).

use byteorder::{BigEndian, ByteOrder};

/// Bytes per unit (`CQ_STORE_UNIT_SIZE`).
pub const CQ_UNIT_SIZE: usize = 20;

/// One ConsumeQueue unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CqUnit {
    /// Absolute CommitLog offset of the record.
    pub commitlog_offset: i64,
    /// The record's TOTALSIZE.
    pub size: i32,
    /// Java hash of the TAGS property (sign-extended), or 0.
    pub tags_code: i64,
}

impl CqUnit {
    /// RocketMQ's filler for units before the first real one of a queue that starts at a
    /// non-zero offset ("pre blank"): offset 0, size `i32::MAX`, tags 0.
    pub const PRE_BLANK: CqUnit = CqUnit {
        commitlog_offset: 0,
        size: i32::MAX,
        tags_code: 0,
    };

    /// The 20 bytes of this unit.
    pub fn encode(&self) -> [u8; CQ_UNIT_SIZE] {
        let mut b = [0u8; CQ_UNIT_SIZE];
        BigEndian::write_i64(&mut b[0..8], self.commitlog_offset);
        BigEndian::write_i32(&mut b[8..12], self.size);
        BigEndian::write_i64(&mut b[12..20], self.tags_code);
        b
    }

    /// Decodes the first 20 bytes of `b`; `None` if it is shorter.
    pub fn decode(b: &[u8]) -> Option<CqUnit> {
        let b = b.get(..CQ_UNIT_SIZE)?;
        Some(CqUnit {
            commitlog_offset: BigEndian::read_i64(&b[0..8]),
            size: BigEndian::read_i32(&b[8..12]),
            tags_code: BigEndian::read_i64(&b[12..20]),
        })
    }

    /// RocketMQ's validity test: offset >= 0 and size > 0 (an all-zero unit is the end of data).
    pub fn is_valid(&self) -> bool {
        self.commitlog_offset >= 0 && self.size > 0
    }

    /// Whether this is the [`CqUnit::PRE_BLANK`] filler.
    pub fn is_pre_blank(&self) -> bool {
        *self == CqUnit::PRE_BLANK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes() {
        let u = CqUnit {
            commitlog_offset: 0x0102_0304_0506_0708,
            size: 0x0A0B_0C0D,
            tags_code: -2,
        };
        let expect: [u8; 20] = [
            1, 2, 3, 4, 5, 6, 7, 8, // commitlog offset
            0x0A, 0x0B, 0x0C, 0x0D, // size
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, // tags code -2
        ];
        assert_eq!(u.encode(), expect);
        assert_eq!(CqUnit::decode(&expect), Some(u));
    }

    #[test]
    fn validity_rules() {
        assert!(!CqUnit::decode(&[0u8; 20]).unwrap().is_valid());
        assert!(CqUnit::PRE_BLANK.is_valid());
        assert!(CqUnit::PRE_BLANK.is_pre_blank());
        assert!(!CqUnit {
            commitlog_offset: -1,
            size: 10,
            tags_code: 0
        }
        .is_valid());
        assert!(CqUnit::decode(&[0u8; 19]).is_none());
    }
}
