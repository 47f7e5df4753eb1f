//! How records are shown: one human-readable line, or one JSON object (serde_json).

use std::fmt::Write;
use std::net::SocketAddr;

use rocketstore::format::properties::{self, CRC32, KEYS, TAGS};
use rocketstore::format::record::{RecordView, MAGIC_V2};
use serde_json::{json, Map, Value};

use crate::commitlog::check_crcs;

/// Longest body prefix shown in the human-readable form.
const BODY_PREVIEW_BYTES: usize = 64;

/// `2024-05-01T12:00:00.123Z` for epoch milliseconds (UTC, proleptic Gregorian).
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// RocketMQ's offset message id: uppercase hex of store address, port (i32) and offset (i64).
pub fn msg_id(store_host: SocketAddr, offset: u64) -> String {
    let mut bytes = Vec::with_capacity(28);
    match store_host {
        SocketAddr::V4(a) => bytes.extend_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => bytes.extend_from_slice(&a.ip().octets()),
    }
    bytes.extend_from_slice(&i32::from(store_host.port()).to_be_bytes());
    bytes.extend_from_slice(&offset.to_be_bytes());
    hex(&bytes, true)
}

/// Hex of `bytes`.
pub fn hex(bytes: &[u8], upper: bool) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = if upper {
            write!(s, "{b:02X}")
        } else {
            write!(s, "{b:02x}")
        };
    }
    s
}

/// User properties (everything but TAGS, KEYS and the CRC property), as text.
fn user_properties<'a>(rec: &RecordView<'a>) -> Vec<(String, String)> {
    properties::iter(rec.properties())
        .filter(|(n, _)| ![TAGS.as_bytes(), KEYS.as_bytes(), CRC32.as_bytes()].contains(n))
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

/// One line describing `rec`, found at CommitLog offset `offset` (shown as `@offset`; a
/// PHYSICALOFFSET field that disagrees is shown too).
pub fn human(offset: u64, rec: &RecordView<'_>) -> String {
    let crc = check_crcs(rec);
    let mut s = format!(
        "@{offset} size={} {} topic={} queue={} qoff={} store={} ({}) born={} flag={} sysflag={:#x}",
        rec.total_size(),
        if rec.magic() == MAGIC_V2 { "v2" } else { "v1" },
        rec.topic(),
        rec.queue_id(),
        rec.queue_offset(),
        utc(rec.store_timestamp()),
        rec.store_timestamp(),
        rec.born_host(),
        rec.flag(),
        rec.sys_flag(),
    );
    if rec.physical_offset() != offset as i64 {
        let _ = write!(s, " PHYSICALOFFSET={}(WRONG)", rec.physical_offset());
    }
    if let Some(t) = rec.tags() {
        let _ = write!(s, " tags={t:?}");
    }
    let keys: Vec<&str> = rec.keys().collect();
    if !keys.is_empty() {
        let _ = write!(s, " keys={keys:?}");
    }
    for (n, v) in user_properties(rec) {
        let _ = write!(s, " {n}={v:?}");
    }
    let _ = write!(
        s,
        " body_crc={}",
        if crc.body_ok() {
            "ok".to_string()
        } else {
            format!(
                "BAD(stored {}, computed {})",
                crc.body_stored, crc.body_computed
            )
        }
    );
    let _ = write!(
        s,
        " record_crc={}",
        match crc.record {
            None => "none".to_string(),
            Some((a, b)) if a == b => "ok".to_string(),
            Some((a, b)) => format!("BAD(stored {a}, computed {b})"),
        }
    );
    let body = rec.body();
    let shown = &body[..body.len().min(BODY_PREVIEW_BYTES)];
    let _ = write!(
        s,
        " body[{}]={:?}",
        body.len(),
        String::from_utf8_lossy(shown)
    );
    if shown.len() < body.len() {
        s.push('…');
    }
    s
}

/// One JSON object describing `rec`, found at CommitLog offset `offset` (full body: `body`
/// if UTF-8, else `body_hex`).
pub fn json(offset: u64, rec: &RecordView<'_>) -> Value {
    let crc = check_crcs(rec);
    let props: Map<String, Value> = user_properties(rec)
        .into_iter()
        .map(|(n, v)| (n, Value::String(v)))
        .collect();
    let mut v = json!({
        "offset": offset,
        "physical_offset_field": rec.physical_offset(),
        "size": rec.total_size(),
        "magic": if rec.magic() == MAGIC_V2 { "v2" } else { "v1" },
        "topic": rec.topic(),
        "queue_id": rec.queue_id(),
        "queue_offset": rec.queue_offset(),
        "flag": rec.flag(),
        "sys_flag": rec.sys_flag(),
        "born_timestamp": rec.born_timestamp(),
        "born_host": rec.born_host().to_string(),
        "store_timestamp": rec.store_timestamp(),
        "store_host": rec.store_host().to_string(),
        "reconsume_times": rec.reconsume_times(),
        "prepared_transaction_offset": rec.prepared_transaction_offset(),
        "msg_id": msg_id(rec.store_host(), offset),
        "tags": rec.tags(),
        "keys": rec.keys().collect::<Vec<_>>(),
        "properties": props,
        "body_crc": crc.body_stored,
        "body_crc_ok": crc.body_ok(),
        "record_crc": crc.record.map(|r| r.0),
        "record_crc_ok": crc.record_ok(),
        "body_len": rec.body().len(),
    });
    match std::str::from_utf8(rec.body()) {
        Ok(text) => v["body"] = Value::String(text.to_string()),
        Err(_) => v["body_hex"] = Value::String(hex(rec.body(), false)),
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_714_564_800_123), "2024-05-01T12:00:00.123Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn msg_id_matches_rocketmq_layout() {
        let id = msg_id("10.0.0.1:10911".parse().unwrap(), 0x1234);
        assert_eq!(id, "0A00000100002A9F0000000000001234");
    }
}
