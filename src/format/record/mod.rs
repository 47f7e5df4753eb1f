//! The CommitLog record: encoder, validating decoder and BLANK filler (spec §1.1 – §1.8, §1.12).
//!
//! Layout (big-endian; `B`/`S` = born/store host field width, 8 for IPv4 and 20 for IPv6; `T` =
//! topic-length width, 1 for magic V1 and 2 for V2):
//!
//! ```text
//! 0 TOTALSIZE i32 | 4 MAGIC | 8 BODYCRC | 12 QUEUEID | 16 FLAG | 20 QUEUEOFFSET i64
//! 28 PHYSICALOFFSET i64 | 36 SYSFLAG | 40 BORNTIMESTAMP i64 | 48 BORNHOST (B)
//! 48+B STORETIMESTAMP i64 | 56+B STOREHOST (S) | 56+B+S RECONSUMETIMES | 60+B+S PREPARED i64
//! 68+B+S BODYLEN i32 | BODY | TOPICLEN (T) | TOPIC | PROPLEN i16 | PROPERTIES
//! total = 74 + B + S + T + body + topic + properties
//! ```
//!
//! The code is split by concern: `layout` (magic codes, SYSFLAG bits, field offsets and
//! lengths), `encoder` (encode, finalize, BLANK), `decoder` (the validating decoder) and `view`
//! (the accessors of a validated record); every public item is re-exported here.

mod decoder;
mod encoder;
mod layout;
mod view;

pub use decoder::{decode, peek_header, DecodeOptions, Decoded, FormatError};
pub use encoder::{
    blank_record, encode, finalize, record_len, BodyCrc, EncodeError, EncodeOptions, EncodedLayout,
    RecordFields, COMBINE_CRC_MIN_BODY,
};
pub use layout::{
    masked_crc32, BLANK_MAGIC, END_FILE_MIN_BLANK_LENGTH, MAGIC_V1, MAGIC_V2, MIN_RECORD_LEN,
    POS_BODY_CRC, POS_BORN_HOST, POS_BORN_TIMESTAMP, POS_FLAG, POS_MAGIC, POS_PHYSICAL_OFFSET,
    POS_QUEUE_ID, POS_QUEUE_OFFSET, POS_SYS_FLAG, POS_TOTAL_SIZE, SYSFLAG_BORNHOST_V6,
    SYSFLAG_COMPRESSED, SYSFLAG_MULTI_TAGS, SYSFLAG_STOREHOST_V6, SYSFLAG_TRANSACTION_MASK,
    TRANSACTION_COMMIT, TRANSACTION_NOT_TYPE, TRANSACTION_PREPARED, TRANSACTION_ROLLBACK,
};
pub use view::{DispatchProperties, RecordView};

#[cfg(test)]
mod tests;
