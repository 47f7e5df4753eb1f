//! IndexFile layout (spec §4.1): a 40-byte header, `slots` 4-byte hash slots, `entries` 20-byte
//! entries. Every field boundary is a multiple of 4 from the file start, which lets the engine
//! access the mapped file as 32-bit words.
//!
//! Header: `begin_timestamp i64 | end_timestamp i64 | begin_phy_offset i64 | end_phy_offset i64 |
//! hash_slot_count i32 | index_count i32`. Entry: `key_hash i32 | commitlog_offset i64 |
//! time_diff_secs i32 | prev_index i32`. Entry 0 is never used; slot value 0 means empty.

/// Header bytes.
pub const HEADER_SIZE: usize = 40;
/// Bytes per hash slot.
pub const SLOT_SIZE: usize = 4;
/// Bytes per entry.
pub const ENTRY_SIZE: usize = 20;

/// Header field positions.
pub const POS_BEGIN_TIMESTAMP: usize = 0;
/// End timestamp position.
pub const POS_END_TIMESTAMP: usize = 8;
/// Begin physical offset position.
pub const POS_BEGIN_PHY_OFFSET: usize = 16;
/// End physical offset position.
pub const POS_END_PHY_OFFSET: usize = 24;
/// Used-slot counter position.
pub const POS_HASH_SLOT_COUNT: usize = 32;
/// Next-entry counter position (starts at 1).
pub const POS_INDEX_COUNT: usize = 36;

/// Entry field offsets (relative to the entry).
pub const ENTRY_KEY_HASH: usize = 0;
/// Commitlog offset (i64, split into two words).
pub const ENTRY_COMMITLOG_OFFSET: usize = 4;
/// Seconds since the file's begin timestamp.
pub const ENTRY_TIME_DIFF: usize = 12;
/// Previous entry in the same bucket.
pub const ENTRY_PREV_INDEX: usize = 16;

/// Total file size for the given geometry.
pub fn file_size(slots: u32, entries: u32) -> u64 {
    HEADER_SIZE as u64 + slots as u64 * SLOT_SIZE as u64 + entries as u64 * ENTRY_SIZE as u64
}

/// Byte position of hash slot `slot`.
pub fn slot_pos(slot: u32) -> usize {
    HEADER_SIZE + slot as usize * SLOT_SIZE
}

/// Byte position of entry `index` in a file with `slots` slots.
pub fn entry_pos(slots: u32, index: u32) -> usize {
    HEADER_SIZE + slots as usize * SLOT_SIZE + index as usize * ENTRY_SIZE
}

/// The key stored for a message key: `topic#key`.
pub fn index_key(buf: &mut String, topic: &str, key: &str) {
    buf.clear();
    buf.push_str(topic);
    buf.push('#');
    buf.push_str(key);
}

/// Time difference written into an entry: whole seconds since `begin_ms`, 0 if the file has no
/// begin time yet or the clock went backwards, capped at `i32::MAX`.
pub fn time_diff_secs(begin_ms: i64, store_ms: i64) -> i32 {
    if begin_ms <= 0 {
        return 0;
    }
    let diff = store_ms.saturating_sub(begin_ms) / 1000;
    diff.clamp(0, i32::MAX as i64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocketmq_default_geometry() {
        assert_eq!(file_size(5_000_000, 20_000_000), 420_000_040);
        assert_eq!(slot_pos(0), 40);
        assert_eq!(entry_pos(100, 1), 40 + 400 + 20);
        for (s, e) in [(1u32, 2u32), (100, 400), (7, 9)] {
            assert_eq!(entry_pos(s, e) as u64, file_size(s, e));
            assert_eq!(entry_pos(s, 0) % 4, 0);
        }
    }

    #[test]
    fn time_diff_rules() {
        assert_eq!(time_diff_secs(0, 5_000), 0);
        assert_eq!(time_diff_secs(10_000, 9_000), 0);
        assert_eq!(time_diff_secs(10_000, 12_999), 2);
        assert_eq!(time_diff_secs(1, i64::MAX), i32::MAX);
    }

    #[test]
    fn key_is_topic_hash_key() {
        let mut s = String::new();
        index_key(&mut s, "orders", "ORDER-1");
        assert_eq!(s, "orders#ORDER-1");
    }
}
