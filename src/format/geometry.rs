//! The `rocketstore-geometry` file of a store root: the sizes of the root's files, which the
//! files themselves do not record unambiguously (an IndexFile of `40 + 4*slots + 20*entries`
//! bytes fits many geometries). rocketstore writes it when it first opens a root; RocketMQ
//! ignores files it does not know, so a broker can still use the root.
//!
//! Text, one `key=value` per line, `#` comments, unknown keys ignored:
//!
//! ```text
//! # rocketstore: the file geometry of this store root (RocketMQ ignores this file)
//! commitlog_segment_size=1073741824
//! consume_queue_units_per_file=300000
//! index_hash_slots=5000000
//! index_max_entries=20000000
//! ```

use std::fmt;

use super::cq_unit::CQ_UNIT_SIZE;
use super::index_layout;

/// The sizes of a root's files: what must be the same at every open of the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootGeometry {
    /// Bytes per CommitLog segment file.
    pub commitlog_segment_size: u64,
    /// 20-byte units per ConsumeQueue file.
    pub consume_queue_units_per_file: u64,
    /// Hash slots per IndexFile.
    pub index_hash_slots: u32,
    /// Entries per IndexFile (entry 0 unused).
    pub index_max_entries: u32,
}

const KEYS: [&str; 4] = [
    "commitlog_segment_size",
    "consume_queue_units_per_file",
    "index_hash_slots",
    "index_max_entries",
];

impl RootGeometry {
    /// The file's text.
    pub fn encode(&self) -> String {
        format!(
            "# rocketstore: the file geometry of this store root (RocketMQ ignores this file)\n\
             {}={}\n{}={}\n{}={}\n{}={}\n",
            KEYS[0],
            self.commitlog_segment_size,
            KEYS[1],
            self.consume_queue_units_per_file,
            KEYS[2],
            self.index_hash_slots,
            KEYS[3],
            self.index_max_entries
        )
    }

    /// Parses the file's text. Every key must be present once and every value in the range a
    /// store accepts (segments 4096 ..= 2^31 - 1 bytes, at least one unit per ConsumeQueue file
    /// and files under 2 GiB, at least 1 slot and 2 entries); the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<RootGeometry, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let mut values: [Option<u64>; 4] = [None; 4];
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!(
                    "line {}: expected key=value, found {line:?}",
                    n + 1
                ));
            };
            let Some(i) = KEYS.iter().position(|k| *k == key.trim()) else {
                continue;
            };
            let v = value
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("line {}: {} is not a number: {value:?}", n + 1, KEYS[i]))?;
            if values[i].replace(v).is_some() {
                return Err(format!("{} given twice", KEYS[i]));
            }
        }
        let get = |i: usize| values[i].ok_or_else(|| format!("{} missing", KEYS[i]));
        let g = RootGeometry {
            commitlog_segment_size: get(0)?,
            consume_queue_units_per_file: get(1)?,
            index_hash_slots: u32::try_from(get(2)?).map_err(|_| "index_hash_slots too large")?,
            index_max_entries: u32::try_from(get(3)?).map_err(|_| "index_max_entries too large")?,
        };
        g.check()?;
        Ok(g)
    }

    /// Whether every value is one a store can have.
    fn check(&self) -> Result<(), String> {
        let max = i32::MAX as u64;
        if !(4096..=max).contains(&self.commitlog_segment_size) {
            return Err(format!(
                "commitlog_segment_size {} not in 4096..={max}",
                self.commitlog_segment_size
            ));
        }
        let cq = self.consume_queue_units_per_file;
        if cq == 0 || cq.saturating_mul(CQ_UNIT_SIZE as u64) > max {
            return Err(format!(
                "consume_queue_units_per_file {cq} not in 1..={}",
                max / CQ_UNIT_SIZE as u64
            ));
        }
        if self.index_hash_slots == 0
            || self.index_max_entries < 2
            || index_layout::file_size(self.index_hash_slots, self.index_max_entries) > max
        {
            return Err(format!(
                "index geometry {} slots / {} entries impossible",
                self.index_hash_slots, self.index_max_entries
            ));
        }
        Ok(())
    }
}

impl fmt::Display for RootGeometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-byte CommitLog segments, {} units per ConsumeQueue file, IndexFiles of {} slots / {} entries",
            self.commitlog_segment_size,
            self.consume_queue_units_per_file,
            self.index_hash_slots,
            self.index_max_entries
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: RootGeometry = RootGeometry {
        commitlog_segment_size: 1 << 20,
        consume_queue_units_per_file: 1000,
        index_hash_slots: 500,
        index_max_entries: 3000,
    };

    #[test]
    fn encodes_and_decodes_back() {
        assert_eq!(RootGeometry::decode(G.encode().as_bytes()), Ok(G));
        let with_extra = format!("{}\n# later\nfuture_key=7\n", G.encode());
        assert_eq!(RootGeometry::decode(with_extra.as_bytes()), Ok(G));
    }

    #[test]
    fn rejects_what_a_store_cannot_have() {
        let text = G.encode();
        for (bad, why) in [
            (text.replace("=1048576", "=100"), "commitlog_segment_size"),
            (
                text.replace("=1000\n", "=0\n"),
                "consume_queue_units_per_file",
            ),
            (text.replace("=3000", "=1"), "index geometry"),
            (text.replace("index_hash_slots=500\n", ""), "missing"),
            (format!("{text}index_hash_slots=5\n"), "twice"),
            (text.replace("=500", "=five"), "not a number"),
            ("garbage".to_string(), "key=value"),
        ] {
            let e = RootGeometry::decode(bad.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
        assert!(RootGeometry::decode(&[0xff, 0xfe]).is_err());
    }
}
