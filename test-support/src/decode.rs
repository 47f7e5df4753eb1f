//! The decoder entry points: `record_decode` and `cq_index_decode`.

use std::collections::HashMap;

use byteorder::{BigEndian, ByteOrder};

use rocketstore::format::checkpoint_layout::{Checkpoint, CHECKPOINT_SIZE};
use rocketstore::format::cq_unit::{CqUnit, CQ_UNIT_SIZE};
use rocketstore::format::index_layout::{self, entry_pos, slot_pos, time_diff_secs};
use rocketstore::format::record::{
    self, DecodeOptions, Decoded, EncodeOptions, RecordFields, RecordView,
};
use rocketstore::format::{java_hash, properties};

// ---------------------------------------------------------------------------------------------
// record_decode
// ---------------------------------------------------------------------------------------------

/// Record decoding over arbitrary bytes: [`record::decode`] with several option sets, the
/// property parser, the Java hashes and the checkpoint decoder. Asserts that an accepted record
/// lies within the input, has fields that add up to its size, every accessor works, and that
/// re-encoding its fields gives a record that decodes to the same fields.
pub fn record_decode(data: &[u8]) {
    let limits = [
        usize::MAX,
        4 * 1024 * 1024 + 64 * 1024,
        2048 + 64 * 1024,
        200,
    ];
    for (i, &max_record_size) in limits.iter().enumerate() {
        let opts = DecodeOptions {
            verify_body_crc: i % 2 == 0,
            verify_record_crc: i == 0 || i == 3,
            max_record_size,
        };
        match record::decode(data, &opts) {
            Ok(Decoded::Record(v)) => check_record_view(&v, data, &opts),
            Ok(Decoded::Blank { total_size }) => {
                assert!(total_size as usize >= record::END_FILE_MIN_BLANK_LENGTH);
                assert_eq!(
                    record::blank_record(total_size)[..],
                    data[..record::END_FILE_MIN_BLANK_LENGTH]
                );
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    if let Some((size, magic)) = record::peek_header(data) {
        assert_eq!(size.to_be_bytes(), data[0..4]);
        assert_eq!(magic.to_be_bytes(), data[4..8]);
    }

    // Properties: every entry the iterator yields lies inside the input with non-empty name
    // and value, and `find` agrees with the last entry of that name.
    let mut last: HashMap<&[u8], &[u8]> = HashMap::new();
    for (name, value) in properties::iter(data) {
        assert!(!name.is_empty() && !value.is_empty());
        assert!(!name.contains(&properties::PROPERTY_SEPARATOR));
        assert!(!value.contains(&properties::PROPERTY_SEPARATOR));
        last.insert(name, value);
    }
    for (name, value) in &last {
        if let Ok(n) = std::str::from_utf8(name) {
            assert_eq!(properties::find(data, n), Some(*value));
        }
    }
    if let Some(crc) = properties::parse_crc_property(data) {
        let mut slot = [0u8; properties::CRC32_RESERVED_LEN];
        properties::write_crc_property(&mut slot, crc);
        assert_eq!(
            slot[..],
            data[data.len() - properties::CRC32_RESERVED_LEN..]
        );
    }

    // Hashes of arbitrary text: index hashes are never negative.
    let text = String::from_utf8_lossy(data);
    let _ = java_hash::tags_code(&text);
    assert!(java_hash::index_key_hash(&text) >= 0);
    let (topic, key) = text.split_at(
        text.char_indices()
            .nth(text.chars().count() / 2)
            .map_or(text.len(), |(i, _)| i),
    );
    assert!(java_hash::index_topic_key_hash(topic, key) >= 0);
    assert_eq!(
        java_hash::index_topic_key_hash(topic, key),
        java_hash::index_key_hash(&format!("{topic}#{key}"))
    );

    // Checkpoint: decoding never panics; an intact trailer round-trips.
    let cp = Checkpoint::decode(data);
    if cp.trailer.is_some() {
        assert_eq!(data.len(), CHECKPOINT_SIZE);
        assert_eq!(Checkpoint::decode(&cp.encode()), cp);
    }
    let _ = cp.min_timestamp();
}

fn check_record_view(v: &RecordView<'_>, data: &[u8], opts: &DecodeOptions) {
    let size = v.total_size();
    assert!(size <= data.len() && size <= opts.max_record_size);
    assert_eq!(v.as_bytes(), &data[..size]);
    assert_eq!(
        record::record_len(
            v.topic().len(),
            v.body().len(),
            v.properties().len(),
            v.born_host().is_ipv6(),
            v.store_host().is_ipv6()
        ) + usize::from(v.magic() == record::MAGIC_V2 && v.topic().len() <= 127),
        size,
        "fields add up to TOTALSIZE"
    );
    if opts.verify_record_crc {
        // The one CRC rule: a property is there, or the properties are a well-formed list
        // without one (the record then passed on its BODYCRC).
        assert_ne!(
            properties::crc_property(v.properties()),
            properties::CrcProperty::Damaged
        );
        if v.record_crc().is_none() && !v.body().is_empty() {
            assert_eq!(v.body_crc(), record::masked_crc32(v.body()));
        }
    }
    // Every accessor is total.
    let _ = (
        v.magic(),
        v.body_crc(),
        v.queue_id(),
        v.flag(),
        v.queue_offset(),
        v.physical_offset(),
        v.sys_flag(),
        v.transaction_type(),
        v.born_timestamp(),
        v.store_timestamp(),
        v.reconsume_times(),
        v.prepared_transaction_offset(),
        v.tags(),
        v.tags_code(),
        v.uniq_key(),
        v.property("KEYS"),
        format!("{v:?}"),
    );
    for k in v.keys() {
        assert!(!k.is_empty() && !k.contains(' '));
    }

    // Re-encode the decoded fields: the result decodes to the same record.
    if v.topic().is_empty() {
        return;
    }
    let fields = RecordFields {
        topic: v.topic(),
        queue_id: v.queue_id(),
        flag: v.flag(),
        sys_flag: v.sys_flag(),
        born_timestamp: v.born_timestamp(),
        born_host: v.born_host(),
        store_host: v.store_host(),
        reconsume_times: v.reconsume_times(),
        prepared_transaction_offset: v.prepared_transaction_offset(),
        body: v.body(),
        properties: v.properties(),
    };
    let enc = EncodeOptions {
        append_crc_property: false,
        max_body_size: usize::MAX / 4,
    };
    let mut buf = Vec::new();
    let Ok(layout) = record::encode(&mut buf, &fields, &enc) else {
        return;
    };
    record::finalize(
        &mut buf,
        &layout,
        v.queue_offset(),
        v.physical_offset(),
        v.store_timestamp(),
    );
    let again = DecodeOptions {
        verify_body_crc: true,
        verify_record_crc: false,
        max_record_size: usize::MAX,
    };
    match record::decode(&buf, &again) {
        Ok(Decoded::Record(w)) => {
            assert_eq!(w.total_size(), buf.len());
            assert_eq!(w.topic(), v.topic());
            assert_eq!(w.body(), v.body());
            assert_eq!(w.properties(), v.properties());
            assert_eq!(
                (w.queue_id(), w.flag(), w.sys_flag(), w.queue_offset()),
                (v.queue_id(), v.flag(), v.sys_flag(), v.queue_offset())
            );
            assert_eq!(
                (w.physical_offset(), w.born_timestamp(), w.store_timestamp()),
                (v.physical_offset(), v.born_timestamp(), v.store_timestamp())
            );
            assert_eq!(
                (w.born_host(), w.store_host(), w.reconsume_times()),
                (v.born_host(), v.store_host(), v.reconsume_times())
            );
            assert_eq!(
                w.prepared_transaction_offset(),
                v.prepared_transaction_offset()
            );
            assert_eq!(w.body_crc(), record::masked_crc32(v.body()));
        }
        other => panic!("re-encoded record does not decode: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// cq_index_decode
// ---------------------------------------------------------------------------------------------

/// ConsumeQueue and IndexFile decoding over arbitrary bytes.
///
/// The bytes are read as a ConsumeQueue file (units round-trip; the end of data is the first
/// invalid unit, as the engine's loader finds it) and as an IndexFile whose geometry comes from
/// the first two bytes (1..=64 slots, 2..=128 entries). The header is read with RocketMQ's
/// rules, then every slot's chain is walked with the engine's bounds (entry number within
/// `1..=count` and below the capacity, strictly decreasing): each walk stays inside the file and
/// ends within `entries` steps.
pub fn cq_index_decode(data: &[u8]) {
    // ConsumeQueue.
    let units: Vec<CqUnit> = data
        .chunks_exact(CQ_UNIT_SIZE)
        .filter_map(CqUnit::decode)
        .collect();
    assert_eq!(units.len(), data.len() / CQ_UNIT_SIZE);
    for (i, u) in units.iter().enumerate() {
        let raw = &data[i * CQ_UNIT_SIZE..(i + 1) * CQ_UNIT_SIZE];
        assert_eq!(u.encode()[..], raw[..]);
        assert_eq!(u.is_valid(), u.commitlog_offset >= 0 && u.size > 0);
        if u.is_pre_blank() {
            assert!(u.is_valid());
        }
        // The engine computes a unit's end as offset + size in u64: never overflows for a
        // valid unit.
        if u.is_valid() {
            assert!((u.commitlog_offset as u64)
                .checked_add(u.size as u64)
                .is_some());
        }
    }
    let end = units.iter().take_while(|u| u.is_valid()).count();
    let min = units[..end].iter().take_while(|u| u.is_pre_blank()).count();
    assert!(min <= end);
    assert!(CqUnit::decode(&data[data.len() - data.len() % CQ_UNIT_SIZE..]).is_none());

    // IndexFile.
    let (Some(&s), Some(&e)) = (data.first(), data.get(1)) else {
        return;
    };
    let slots = u32::from(s % 64) + 1;
    let entries = u32::from(e % 127) + 2;
    let size = index_layout::file_size(slots, entries) as usize;
    let mut file = data[2..].to_vec();
    file.resize(size, 0);
    assert_eq!(entry_pos(slots, entries), size);
    assert_eq!(slot_pos(slots), entry_pos(slots, 0));
    let count = BigEndian::read_i32(&file[index_layout::POS_INDEX_COUNT..]).max(1) as u32;
    let used = BigEndian::read_i32(&file[index_layout::POS_HASH_SLOT_COUNT..]);
    let header_ok = count <= entries && used >= 0 && used as u32 <= slots;
    let begin = BigEndian::read_i64(&file[index_layout::POS_BEGIN_TIMESTAMP..]);
    let _ = BigEndian::read_i64(&file[index_layout::POS_END_TIMESTAMP..]);
    for slot in 0..slots {
        let p = slot_pos(slot);
        assert!(p + index_layout::SLOT_SIZE <= entry_pos(slots, 0));
        let mut k = BigEndian::read_i32(&file[p..]);
        let mut steps = 0u32;
        while k > 0 && k as u32 <= count && (k as u32) < entries {
            steps += 1;
            assert!(
                steps <= entries,
                "chain walk of slot {slot} did not terminate"
            );
            let at = entry_pos(slots, k as u32);
            assert!(
                at + index_layout::ENTRY_SIZE <= size,
                "entry {k} outside the file"
            );
            let entry = &file[at..at + index_layout::ENTRY_SIZE];
            let hash = BigEndian::read_i32(&entry[index_layout::ENTRY_KEY_HASH..]);
            let _offset = BigEndian::read_u64(&entry[index_layout::ENTRY_COMMITLOG_OFFSET..]);
            let diff = BigEndian::read_i32(&entry[index_layout::ENTRY_TIME_DIFF..]);
            let prev = BigEndian::read_i32(&entry[index_layout::ENTRY_PREV_INDEX..]);
            if header_ok {
                let _ = hash as u32 % slots;
            }
            if diff < 0 {
                break;
            }
            let t = begin.saturating_add(i64::from(diff) * 1000);
            assert!(t >= begin || begin > i64::MAX - i64::from(i32::MAX) * 1000);
            if prev >= k {
                break;
            }
            k = prev;
        }
    }
    let ts = BigEndian::read_i64(&file[index_layout::POS_END_TIMESTAMP..]);
    let diff = time_diff_secs(begin, ts);
    assert!(diff >= 0);
}
