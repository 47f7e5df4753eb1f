//! Magic codes, SYSFLAG bits, field offsets and lengths of the record layout (spec §1.1), and
//! Java's masked CRC32 that BODYCRC and the CRC property hold.

/// Magic code of a record with a 1-byte topic length (all RocketMQ versions).
pub const MAGIC_V1: u32 = 0xDAA3_20A7;
/// Magic code of a record with a 2-byte topic length (RocketMQ 5.1.0+, topics over 127 bytes).
pub const MAGIC_V2: u32 = 0xDAA3_20AB;
/// Magic code of the end-of-segment filler record.
pub const BLANK_MAGIC: u32 = 0xCBD4_3194;
/// A record never ends closer than this to its segment end; a BLANK record is 8 bytes (size + magic).
pub const END_FILE_MIN_BLANK_LENGTH: usize = 8;

/// SYSFLAG: the body is compressed.
pub const SYSFLAG_COMPRESSED: i32 = 0x1;
/// SYSFLAG: the message has several tags (informational; tag hashing is unchanged).
pub const SYSFLAG_MULTI_TAGS: i32 = 0x2;
/// SYSFLAG mask of the transaction type.
pub const SYSFLAG_TRANSACTION_MASK: i32 = 0xC;
/// Transaction type: not a transactional message.
pub const TRANSACTION_NOT_TYPE: i32 = 0;
/// Transaction type: half (prepared) message; not dispatched to a ConsumeQueue.
pub const TRANSACTION_PREPARED: i32 = 0x4;
/// Transaction type: commit of a half message.
pub const TRANSACTION_COMMIT: i32 = 0x8;
/// Transaction type: rollback of a half message; neither dispatched nor indexed.
pub const TRANSACTION_ROLLBACK: i32 = 0xC;
/// SYSFLAG: the BORNHOST field is 20 bytes (IPv6).
pub const SYSFLAG_BORNHOST_V6: i32 = 0x10;
/// SYSFLAG: the STOREHOST field is 20 bytes (IPv6).
pub const SYSFLAG_STOREHOST_V6: i32 = 0x20;

/// Offset of TOTALSIZE (i32).
pub const POS_TOTAL_SIZE: usize = 0;
/// Offset of MAGICCODE (u32).
pub const POS_MAGIC: usize = 4;
/// Offset of BODYCRC (masked CRC32 of the body).
pub const POS_BODY_CRC: usize = 8;
/// Offset of QUEUEID (i32).
pub const POS_QUEUE_ID: usize = 12;
/// Offset of FLAG (i32).
pub const POS_FLAG: usize = 16;
/// Offset of QUEUEOFFSET (i64).
pub const POS_QUEUE_OFFSET: usize = 20;
/// Offset of PHYSICALOFFSET (i64).
pub const POS_PHYSICAL_OFFSET: usize = 28;
/// Offset of SYSFLAG (i32).
pub const POS_SYS_FLAG: usize = 36;
/// Offset of BORNTIMESTAMP (i64).
pub const POS_BORN_TIMESTAMP: usize = 40;
/// Offset of BORNHOST; every later field moves with the host widths.
pub const POS_BORN_HOST: usize = 48;

/// Bytes of all fixed-width fields: everything except the two hosts, the topic-length field and
/// the three variable-length fields.
pub(super) const FIXED_FIELDS_LEN: usize = 74;
/// Host field width for IPv4: 4 address bytes + port as i32.
pub(super) const HOST_V4_LEN: usize = 8;
/// Host field width for IPv6: 16 address bytes + port as i32.
pub(super) const HOST_V6_LEN: usize = 20;
/// Longest topic a V1 record (signed 1-byte length) can hold.
pub(super) const MAX_V1_TOPIC_LEN: usize = 127;
/// Longest topic a V2 record (signed 2-byte length) can hold.
pub(super) const MAX_TOPIC_LEN: usize = i16::MAX as usize;
/// Room the encoder allows on top of the body limit for headers, topic and properties (spec §1.12).
pub(super) const RECORD_HEADROOM: usize = 64 * 1024;
/// Shortest possible V1 record: IPv4 hosts, empty body, topic and properties.
pub(super) const MIN_V1_RECORD_LEN: usize = FIXED_FIELDS_LEN + 2 * HOST_V4_LEN + 1;
/// No valid record is shorter than this (TOTALSIZE of a V1 record with IPv4 hosts and empty
/// body, topic and properties).
pub const MIN_RECORD_LEN: usize = MIN_V1_RECORD_LEN;

/// Java's masked CRC32 (`UtilAll.crc32`): CRC-32/IEEE with the top bit cleared.
pub fn masked_crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes) & 0x7FFF_FFFF
}

pub(super) fn host_len(v6: bool) -> usize {
    if v6 {
        HOST_V6_LEN
    } else {
        HOST_V4_LEN
    }
}

pub(super) fn topic_len_width(topic_len: usize) -> usize {
    if topic_len > MAX_V1_TOPIC_LEN {
        2
    } else {
        1
    }
}
