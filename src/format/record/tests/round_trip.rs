//! Round trips, BLANK records and the header peek.

use super::*;

#[test]
fn every_variant_round_trips() {
    let long_topic = "%RETRY%".repeat(40);
    let topics = ["FooBar", long_topic.as_str()];
    let hosts = [
        v4(192, 168, 0, 1, 65535),
        v6([0xfe80, 0, 0, 0, 1, 2, 3, 4], 0),
    ];
    let props: &[&[u8]] = &[b"", FOO_BAR_PROPS, &FOO_BAR_PROPS[..28]];
    for topic in topics {
        for born_host in hosts {
            for store_host in hosts {
                for &properties in props {
                    for opts in [PLAIN, WITH_CRC] {
                        let fields = RecordFields {
                            topic,
                            queue_id: i32::MAX,
                            flag: -1,
                            sys_flag: TRANSACTION_PREPARED,
                            born_timestamp: i64::MIN,
                            born_host,
                            store_host,
                            reconsume_times: 16,
                            prepared_transaction_offset: i64::MAX,
                            body: b"\x00\x01\x02",
                            properties,
                        };
                        let encoded = encode_finalized(&fields, &opts, -1, 1 << 40, i64::MAX);
                        let record = view(&encoded, &checks_for(opts));
                        assert_fields_round_trip(&record, &fields, (-1, 1 << 40, i64::MAX));
                        assert_eq!(record.magic() == MAGIC_V2, topic.len() > 127);
                        assert_eq!(record.record_crc().is_some(), opts.append_crc_property);
                        assert_eq!(record.transaction_type(), TRANSACTION_PREPARED);
                    }
                }
            }
        }
    }
}

#[test]
fn decode_ignores_bytes_after_the_record() {
    let mut bytes = foo_bar_record(&WITH_CRC);
    bytes.extend_from_slice(&[0xAB; 50]);
    let record = view(&bytes, &ALL_CRCS);
    assert_eq!(record.total_size(), 178);
    assert_eq!(record.as_bytes(), &bytes[..178]);
}

#[test]
fn accessors_read_keys_tags_and_uniq_key() {
    let fields = RecordFields {
        properties: b"KEYS\x01 k1  k2 \x02UNIQ_KEY\x01ABC\x02TAGS\x01TagA\x02",
        ..foo_bar_fields()
    };
    let encoded = encode_finalized(&fields, &WITH_CRC, 0, 0, 0);
    let record = view(&encoded, &ALL_CRCS);
    assert_eq!(record.keys().collect::<Vec<_>>(), ["k1", "k2"]);
    assert_eq!(record.uniq_key(), Some("ABC"));
    assert_eq!(record.tags(), Some("TagA"));
    assert_eq!(record.tags_code(), 2_598_919);
    assert_eq!(record.property("MISSING"), None);
}

#[test]
fn record_without_tags_has_tags_code_zero_and_no_keys() {
    let fields = RecordFields {
        properties: b"UNIQ_KEY\x01A\x02",
        ..foo_bar_fields()
    };
    let encoded = encode_finalized(&fields, &PLAIN, 0, 0, 0);
    let record = view(&encoded, &BODY_CRC_ONLY);
    assert_eq!(record.tags(), None);
    assert_eq!(record.tags_code(), 0);
    assert_eq!(record.keys().count(), 0);
}

#[test]
fn non_utf8_property_value_reads_as_absent() {
    let fields = RecordFields {
        properties: b"TAGS\x01\xFF\xFE\x02",
        ..foo_bar_fields()
    };
    let encoded = encode_finalized(&fields, &PLAIN, 0, 0, 0);
    let record = view(&encoded, &BODY_CRC_ONLY);
    assert_eq!(record.tags(), None);
    assert_eq!(record.tags_code(), 0);
}

#[test]
fn port_field_is_truncated_to_16_bits() {
    let mut bytes = foo_bar_record(&PLAIN);
    // Java never writes these, but a decoder must not choke on them.
    BigEndian::write_i32(&mut bytes[52..], 0x0001_04D2);
    BigEndian::write_i32(&mut bytes[68..], -1);
    let record = view(&bytes, &BODY_CRC_ONLY);
    assert_eq!(record.born_host().port(), 1234);
    assert_eq!(record.store_host().port(), 65535);
}

#[test]
fn debug_output_names_the_record_without_dumping_the_body() {
    let bytes = foo_bar_record(&PLAIN);
    let text = format!("{:?}", view(&bytes, &BODY_CRC_ONLY));
    assert!(text.contains("FooBar"), "{text}");
    assert!(text.contains("1422"), "{text}");
    assert!(!text.contains("79, 110, 99, 101"), "{text}");
}

#[test]
fn blank_record_is_size_then_blank_magic() {
    assert_eq!(
        blank_record(1000),
        [0x00, 0x00, 0x03, 0xE8, 0xCB, 0xD4, 0x31, 0x94]
    );
}

#[test]
fn blank_decodes_without_reading_past_its_header() {
    // A BLANK claims the rest of the segment, which need not be in the buffer.
    let blank = blank_record(1000);
    assert!(matches!(
        decode(&blank, &ALL_CRCS),
        Ok(Decoded::Blank { total_size: 1000 })
    ));
    assert!(matches!(
        decode(&blank_record(8), &ALL_CRCS),
        Ok(Decoded::Blank { total_size: 8 })
    ));
}

#[test]
fn blank_smaller_than_its_header_is_rejected() {
    assert_eq!(
        decode(&blank_record(7), &ALL_CRCS).unwrap_err(),
        FormatError::BadBlank { size: 7 }
    );
    assert_eq!(
        decode(&blank_record(0), &ALL_CRCS).unwrap_err(),
        FormatError::BadBlank { size: 0 }
    );
    assert_eq!(
        decode(&blank_record(u32::MAX), &ALL_CRCS).unwrap_err(),
        FormatError::BadBlank { size: -1 }
    );
}

#[test]
fn peek_header_reads_size_and_magic() {
    let bytes = foo_bar_record(&PLAIN);
    assert_eq!(peek_header(&bytes), Some((158, MAGIC_V1)));
    assert_eq!(peek_header(&blank_record(64)), Some((64, BLANK_MAGIC)));
    assert_eq!(peek_header(&bytes[..7]), None);
}
