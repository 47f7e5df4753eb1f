//! Encoder behaviour.

use super::*;

#[test]
fn encode_sets_host_width_flags_from_addresses_and_keeps_other_bits() {
    let flags = SYSFLAG_COMPRESSED | TRANSACTION_COMMIT;
    let cases = [
        (v4(1, 1, 1, 1, 1), v4(2, 2, 2, 2, 2), 0),
        (v6([1; 8], 1), v4(2, 2, 2, 2, 2), SYSFLAG_BORNHOST_V6),
        (v4(1, 1, 1, 1, 1), v6([2; 8], 2), SYSFLAG_STOREHOST_V6),
        (
            v6([1; 8], 1),
            v6([2; 8], 2),
            SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6,
        ),
    ];
    for (born_host, store_host, host_bits) in cases {
        let fields = RecordFields {
            // Stale host bits from the caller must not survive.
            sys_flag: flags | SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6,
            born_host,
            store_host,
            ..foo_bar_fields()
        };
        for opts in [PLAIN, WITH_CRC] {
            let encoded = encode_finalized(&fields, &opts, 4, 5, 6);
            let record = view(&encoded, &checks_for(opts));
            assert_eq!(record.sys_flag(), flags | host_bits);
            assert_eq!(record.transaction_type(), TRANSACTION_COMMIT);
            assert_eq!(record.born_host(), born_host);
            assert_eq!(record.store_host(), store_host);
            assert_eq!(record.store_timestamp(), 6);
            assert_eq!(record.reconsume_times(), 1);
            assert_eq!(record.body(), FOO_BAR_BODY);
            assert_eq!(
                record.total_size(),
                record_len(
                    6,
                    32,
                    record.properties().len(),
                    born_host.is_ipv6(),
                    store_host.is_ipv6()
                )
            );
        }
    }
}
#[test]
fn encode_reuses_buffer_capacity_without_allocating() {
    let mut buf = Vec::with_capacity(1024);
    buf.extend_from_slice(b"stale bytes from the previous record");
    let ptr = buf.as_ptr();
    let layout = encode(&mut buf, &foo_bar_fields(), &WITH_CRC).unwrap();
    assert_eq!(buf.as_ptr(), ptr);
    assert_eq!(buf.capacity(), 1024);
    assert_eq!(buf.len(), layout.total_size);
    finalize(&mut buf, &layout, 9, 1422, 1_600_000_000_005);
    assert_eq!(buf, foo_bar_record(&WITH_CRC));
}

#[test]
fn encode_rejects_empty_topic() {
    let fields = RecordFields {
        topic: "",
        ..foo_bar_fields()
    };
    assert_eq!(
        encode(&mut Vec::new(), &fields, &PLAIN),
        Err(EncodeError::EmptyTopic)
    );
}

#[test]
fn encode_rejects_topic_longer_than_i16() {
    let topic = "t".repeat(32768);
    let fields = RecordFields {
        topic: &topic,
        ..foo_bar_fields()
    };
    assert_eq!(
        encode(&mut Vec::new(), &fields, &PLAIN),
        Err(EncodeError::TopicTooLong { len: 32768 })
    );
}

#[test]
fn encode_accepts_body_of_max_size_and_rejects_one_more_byte() {
    let opts = EncodeOptions {
        append_crc_property: true,
        max_body_size: 100,
    };
    let body = [7u8; 101];
    let fields = RecordFields {
        body: &body[..100],
        ..foo_bar_fields()
    };
    assert!(encode(&mut Vec::new(), &fields, &opts).is_ok());
    let fields = RecordFields {
        body: &body,
        ..foo_bar_fields()
    };
    assert_eq!(
        encode(&mut Vec::new(), &fields, &opts),
        Err(EncodeError::BodyTooLarge { len: 101, max: 100 })
    );
}

#[test]
fn encode_limits_properties_to_32767_bytes() {
    let props = |len: usize| {
        let mut p = b"K\x01".to_vec();
        p.resize(len - 1, b'v');
        p.push(PROPERTY_SEPARATOR);
        p
    };
    let encode_props = |p: &[u8], opts: &EncodeOptions| {
        let fields = RecordFields {
            properties: p,
            ..foo_bar_fields()
        };
        encode(&mut Vec::new(), &fields, opts)
    };
    assert!(encode_props(&props(32767), &PLAIN).is_ok());
    assert_eq!(
        encode_props(&props(32768), &PLAIN),
        Err(EncodeError::PropertiesTooLong {
            len: 32768,
            max: 32767
        })
    );
    // The CRC property takes 20 of the 32767 bytes...
    assert!(encode_props(&props(32747), &WITH_CRC).is_ok());
    assert_eq!(
        encode_props(&props(32748), &WITH_CRC),
        Err(EncodeError::PropertiesTooLong {
            len: 32768,
            max: 32767
        })
    );
    // ...and the separator added before it one more.
    let mut old_style = props(32747);
    old_style.pop();
    old_style.push(b'v');
    assert_eq!(
        encode_props(&old_style, &WITH_CRC),
        Err(EncodeError::PropertiesTooLong {
            len: 32768,
            max: 32767
        })
    );
}

#[test]
fn encode_limits_record_to_max_body_plus_64_kib() {
    // RocketMQ's testPutLongMessage: a maximal body with a 32767-byte topic is too long.
    let opts = EncodeOptions {
        append_crc_property: false,
        max_body_size: 1000,
    };
    let body = [1u8; 1000];
    let mut props = b"K\x01".to_vec();
    props.resize(32767, b'v');
    let short_topic = "t".repeat(127);
    let fields = RecordFields {
        topic: &short_topic,
        body: &body,
        properties: &props,
        ..foo_bar_fields()
    };
    let layout = encode(&mut Vec::new(), &fields, &opts).unwrap();
    assert_eq!(layout.total_size, 74 + 16 + 1 + 1000 + 127 + 32767);

    let long_topic = "t".repeat(32767);
    let fields = RecordFields {
        topic: &long_topic,
        ..fields
    };
    assert_eq!(
        encode(&mut Vec::new(), &fields, &opts),
        Err(EncodeError::RecordTooLarge {
            len: 74 + 16 + 2 + 1000 + 32767 + 32767,
            max: 1000 + 65536
        })
    );
}

#[test]
fn encode_error_messages_carry_the_numbers() {
    let err = EncodeError::BodyTooLarge { len: 11, max: 10 };
    assert_eq!(
        err.to_string(),
        "body is 11 bytes, more than the maximum of 10"
    );
}

#[test]
fn combined_record_crc_equals_a_second_pass_over_the_record() {
    for body_len in [
        COMBINE_CRC_MIN_BODY - 1,
        COMBINE_CRC_MIN_BODY,
        16 * 1024,
        100_003,
    ] {
        let body: Vec<u8> = (0..body_len).map(|i| (i * 31 + 7) as u8).collect();
        let fields = RecordFields {
            body: &body,
            ..foo_bar_fields()
        };
        let mut buf = Vec::new();
        let layout = encode(&mut buf, &fields, &WITH_CRC).unwrap();
        assert_eq!(
            layout.body_crc.is_some(),
            body_len >= COMBINE_CRC_MIN_BODY,
            "{body_len}"
        );
        finalize(&mut buf, &layout, 5, 1 << 33, 1_700_000_000_000);
        let crc_pos = buf.len() - CRC32_RESERVED_LEN;
        let stored = properties::parse_crc_property(&buf[crc_pos - 1..]);
        assert_eq!(stored, Some(masked_crc32(&buf[..crc_pos])), "{body_len}");
    }
}

#[test]
#[should_panic(expected = "does not match its encoded layout")]
fn finalize_rejects_a_record_of_another_length() {
    let mut buf = Vec::new();
    let layout = encode(&mut buf, &foo_bar_fields(), &PLAIN).unwrap();
    finalize(&mut buf[..100], &layout, 0, 0, 0);
}
