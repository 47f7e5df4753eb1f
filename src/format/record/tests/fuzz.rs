//! Never panic: proptest strategies for arbitrary records and the properties every decoder
//! run must keep.

use super::*;

fn arb_host() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(ip.into(), port))),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| { SocketAddr::V6(SocketAddrV6::new(ip.into(), port, 0, 0)) }),
    ]
}

fn arb_properties() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(("[A-Z_]{1,10}", "[^\\x01\\x02]{1,30}"), 0..6),
        any::<bool>(),
    )
        .prop_map(|(entries, trailing)| {
            let mut text = Vec::new();
            for (name, value) in &entries {
                properties::append_property(&mut text, name, value);
            }
            if !trailing {
                text.pop();
            }
            text
        })
}

/// An owned [`RecordFields`] plus encoder choice and append-time values, for proptest.
#[derive(Clone, Debug)]
struct ArbRecord {
    topic: String,
    queue_id: i32,
    flag: i32,
    sys_flag: i32,
    born_timestamp: i64,
    born_host: SocketAddr,
    store_host: SocketAddr,
    reconsume_times: i32,
    prepared_transaction_offset: i64,
    body: Vec<u8>,
    properties: Vec<u8>,
    opts: EncodeOptions,
    /// Queue offset, physical offset, store timestamp.
    offsets: (i64, i64, i64),
}

impl ArbRecord {
    fn fields(&self) -> RecordFields<'_> {
        RecordFields {
            topic: &self.topic,
            queue_id: self.queue_id,
            flag: self.flag,
            sys_flag: self.sys_flag,
            born_timestamp: self.born_timestamp,
            born_host: self.born_host,
            store_host: self.store_host,
            reconsume_times: self.reconsume_times,
            prepared_transaction_offset: self.prepared_transaction_offset,
            body: &self.body,
            properties: &self.properties,
        }
    }

    fn encode_finalized(&self) -> Vec<u8> {
        let (q, p, t) = self.offsets;
        encode_finalized(&self.fields(), &self.opts, q, p, t)
    }
}

prop_compose! {
    fn arb_record()(
        topic in "[a-zA-Z0-9_%|-]{1,300}",
        ints in any::<(i32, i32, i32, i32)>(),
        born_timestamp in any::<i64>(),
        born_host in arb_host(),
        store_host in arb_host(),
        prepared_transaction_offset in any::<i64>(),
        body in prop::collection::vec(any::<u8>(), 0..512),
        properties in arb_properties(),
        append_crc_property in any::<bool>(),
        offsets in any::<(i64, i64, i64)>(),
    ) -> ArbRecord {
        let (queue_id, flag, sys_flag, reconsume_times) = ints;
        ArbRecord {
            topic, queue_id, flag, sys_flag, born_timestamp, born_host, store_host,
            reconsume_times, prepared_transaction_offset, body, properties,
            opts: EncodeOptions { append_crc_property, max_body_size: MAX_BODY },
            offsets,
        }
    }
}

/// A valid finalized record (with or without CRC property) for mutation tests.
fn arb_record_bytes() -> impl Strategy<Value = Vec<u8>> {
    arb_record().prop_map(|r| r.encode_finalized())
}

fn decode_with_every_option_set(bytes: &[u8]) {
    for verify_body_crc in [false, true] {
        for verify_record_crc in [false, true] {
            for max_record_size in [0, 200, MAX_BODY] {
                let opts = DecodeOptions {
                    verify_body_crc,
                    verify_record_crc,
                    max_record_size,
                };
                if let Ok(Decoded::Record(record)) = decode(bytes, &opts) {
                    assert!(record.total_size() <= bytes.len());
                    touch_every_accessor(&record);
                }
            }
        }
    }
}

proptest! {
    #[test]
    fn random_records_round_trip(r in arb_record()) {
        let fields = r.fields();
        let mut buf = Vec::new();
        let layout = encode(&mut buf, &fields, &r.opts).unwrap();
        prop_assert_eq!(layout.total_size, buf.len());
        let (q, p, t) = r.offsets;
        finalize(&mut buf, &layout, q, p, t);
        let record = view(&buf, &checks_for(r.opts));
        assert_fields_round_trip(&record, &fields, r.offsets);
        prop_assert_eq!(record.magic() == MAGIC_V2, r.topic.len() > 127);
        prop_assert_eq!(
            record.total_size(),
            record_len(
                r.topic.len(),
                r.body.len(),
                record.properties().len(),
                r.born_host.is_ipv6(),
                r.store_host.is_ipv6()
            )
        );
        prop_assert_eq!(record.record_crc().is_some(), r.opts.append_crc_property);
        let expected: Vec<_> = properties::iter(&r.properties).collect();
        let parsed: Vec<_> = properties::iter(record.properties()).take(expected.len()).collect();
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        decode_with_every_option_set(&bytes);
        let _ = peek_header(&bytes);
    }

    #[test]
    fn arbitrary_bytes_behind_a_plausible_header_never_panic(
        v2 in any::<bool>(),
        size in 0i32..400,
        sys_flag in any::<i32>(),
        tail in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut bytes = Vec::new();
        put_i32(&mut bytes, size);
        put_u32(&mut bytes, if v2 { MAGIC_V2 } else { MAGIC_V1 });
        bytes.extend_from_slice(&tail);
        if bytes.len() >= 40 {
            BigEndian::write_i32(&mut bytes[POS_SYS_FLAG..], sys_flag);
        }
        decode_with_every_option_set(&bytes);
    }

    #[test]
    fn mutated_records_never_panic(
        bytes in arb_record_bytes(),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut bytes = bytes;
        for (index, value) in mutations {
            let pos = index.index(bytes.len());
            bytes[pos] = value;
        }
        if do_cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        decode_with_every_option_set(&bytes);
    }

    #[test]
    fn single_byte_flip_is_always_detected_with_record_crc(
        bytes in arb_record_bytes(),
        index in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        prop_assume!(properties::parse_crc_property(view(&bytes, &NO_CRCS).properties()).is_some());
        let mut bytes = bytes;
        let pos = index.index(bytes.len());
        bytes[pos] ^= mask;
        prop_assert!(decode(&bytes, &ALL_CRCS).is_err());
    }
}
