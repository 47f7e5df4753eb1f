//! Salvage fillers: the records that take the place of a damaged CommitLog span when recovery
//! salvages a log (`StoreConfig::salvage_corrupt_log`), so every later record stays readable at
//! its offset.
//!
//! A filler is an ordinary V1 record of topic [`SALVAGE_TOPIC`] with the rolled-back
//! transaction type, which neither this store nor RocketMQ dispatches to a ConsumeQueue or
//! indexes; its body is zeros, as long as the span needs. A span longer than the largest
//! record is covered by several fillers.

use std::net::{Ipv4Addr, SocketAddr};

use super::record::{self, EncodeOptions, RecordFields, TRANSACTION_ROLLBACK};

/// Topic of a filler record (legal for RocketMQ, refused for user puts).
pub const SALVAGE_TOPIC: &str = "%SALVAGED%";

/// Whether a record with this topic and transaction type is a salvage filler.
pub fn is_filler(topic: &str, transaction_type: i32) -> bool {
    transaction_type == TRANSACTION_ROLLBACK && topic == SALVAGE_TOPIC
}

/// Length of a filler with an empty body: the shortest span one filler covers.
pub fn min_len() -> usize {
    record::record_len(SALVAGE_TOPIC.len(), 0, 0, false, false)
}

fn encode_one(out: &mut Vec<u8>, physical_offset: u64, len: usize, store_timestamp: i64) {
    let body = vec![0u8; len - min_len()];
    let host = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let fields = RecordFields {
        topic: SALVAGE_TOPIC,
        queue_id: 0,
        flag: 0,
        sys_flag: TRANSACTION_ROLLBACK,
        born_timestamp: store_timestamp,
        born_host: host,
        store_host: host,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: &body,
        properties: &[],
    };
    let opts = EncodeOptions {
        append_crc_property: false,
        max_body_size: body.len(),
    };
    let mut buf = Vec::new();
    let layout = record::encode(&mut buf, &fields, &opts).expect("filler fields are valid");
    debug_assert_eq!(layout.total_size, len);
    record::finalize(
        &mut buf,
        &layout,
        0,
        physical_offset as i64,
        store_timestamp,
    );
    out.extend_from_slice(&buf);
}

/// Bytes of fillers that replace the salvaged span `[offset, resume)` of a log of `segment_size`
/// segments: all of it, or when it runs to its segment's end all but the closing BLANK.
pub fn filled_len(offset: u64, resume: u64, segment_size: usize) -> usize {
    let len = (resume - offset) as usize;
    if resume.is_multiple_of(segment_size as u64) {
        len - record::END_FILE_MIN_BLANK_LENGTH
    } else {
        len
    }
}

/// Lengths of the fillers covering a span of `len` bytes, each at most `max_record` bytes
/// (empty when `len` is shorter than [`min_len`] or `max_record` cannot hold two fillers).
pub fn pieces(len: usize, max_record: usize) -> Vec<usize> {
    let min = min_len();
    if len < min || max_record < 2 * min {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        // Never leave a remainder too short for a filler of its own.
        let piece = if left <= max_record {
            left
        } else if left - max_record >= min {
            max_record
        } else {
            left - min
        };
        out.push(piece);
        left -= piece;
    }
    out
}

/// Exactly `len` bytes of fillers for the span starting at CommitLog offset `offset`, each at
/// most `max_record` bytes long. `None` when `len` is shorter than [`min_len`] (or `max_record`
/// cannot hold a filler).
pub fn fillers(
    offset: u64,
    len: usize,
    max_record: usize,
    store_timestamp: i64,
) -> Option<Vec<u8>> {
    let pieces = pieces(len, max_record);
    if pieces.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    for piece in pieces {
        let at = offset + out.len() as u64;
        encode_one(&mut out, at, piece, store_timestamp);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::record::{decode, DecodeOptions, Decoded};

    #[test]
    fn fillers_cover_the_span_exactly_and_decode_as_fillers_where_they_lie() {
        let min = min_len();
        for (len, max) in [
            (min, 4096),
            (min + 1, 4096),
            (10_000, 4096),
            (8192 + min - 1, 4096),
        ] {
            let bytes = fillers(1000, len, max, 7).unwrap();
            assert_eq!(bytes.len(), len);
            let mut pos = 0;
            while pos < len {
                let Decoded::Record(r) = decode(
                    &bytes[pos..],
                    &DecodeOptions {
                        verify_body_crc: true,
                        verify_record_crc: true,
                        max_record_size: max,
                    },
                )
                .unwrap() else {
                    panic!("not a record at {pos}")
                };
                assert!(is_filler(r.topic(), r.transaction_type()));
                assert_eq!(r.physical_offset() as u64, 1000 + pos as u64);
                assert!(r.total_size() <= max);
                pos += r.total_size();
            }
            assert_eq!(pos, len);
        }
        assert!(fillers(0, min - 1, 4096, 0).is_none());
    }
}
