//! The body of a consumer-offset commit record: what a consumer group committed for some
//! queues of one topic, stored as a message of the system topic [`TOPIC`] so that the
//! CommitLog's group commit makes it durable (with the messages put before it, in one sync) and
//! its recovery brings it back (see `engine::offsets`).
//!
//! Layout, big-endian: version `u8` (1), group length `u16` and UTF-8 bytes, topic length `u16`
//! and bytes, entry count `u16`, then per entry queue id `i32` and offset `i64`. RocketMQ has
//! no such record; its broker sees an ordinary topic.

use byteorder::{BigEndian, ByteOrder};

/// The system topic that holds offset commits (queue 0).
pub const TOPIC: &str = "rmq_sys_rocketstore_offsets";

const VERSION: u8 = 1;

/// One decoded commit: `group` committed `offset` for each `(queue id, offset)` of `topic`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommit<'a> {
    /// The consumer group.
    pub group: &'a str,
    /// The topic of the queues.
    pub topic: &'a str,
    /// Queue id and committed offset (the next message the group will consume).
    pub entries: Vec<(i32, i64)>,
}

/// Why a body is not a commit record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OffsetCommitError {
    /// Shorter than its lengths say.
    #[error("offset commit record truncated: {needed} bytes needed, {len} present")]
    Truncated {
        /// Bytes the fields need.
        needed: usize,
        /// Bytes present.
        len: usize,
    },
    /// A version this build does not know.
    #[error("offset commit record version {0} unknown")]
    Version(u8),
    /// A name that is not UTF-8.
    #[error("offset commit record names a group or topic that is not UTF-8")]
    NotUtf8,
    /// Bytes after the last entry.
    #[error("offset commit record has {0} bytes after its entries")]
    Trailing(usize),
    /// More entries than the layout holds, or a name longer than it holds.
    #[error("offset commit too large: {0}")]
    TooLarge(&'static str),
}

/// Appends the body of `commit` to `out`.
pub fn encode(commit: &OffsetCommit<'_>, out: &mut Vec<u8>) -> Result<(), OffsetCommitError> {
    let len16 = |n: usize, what| u16::try_from(n).map_err(|_| OffsetCommitError::TooLarge(what));
    let (g, t, n) = (
        len16(commit.group.len(), "group name over 65535 bytes")?,
        len16(commit.topic.len(), "topic name over 65535 bytes")?,
        len16(commit.entries.len(), "more than 65535 queues in one commit")?,
    );
    out.push(VERSION);
    let mut w = [0u8; 12];
    BigEndian::write_u16(&mut w, g);
    out.extend_from_slice(&w[..2]);
    out.extend_from_slice(commit.group.as_bytes());
    BigEndian::write_u16(&mut w, t);
    out.extend_from_slice(&w[..2]);
    out.extend_from_slice(commit.topic.as_bytes());
    BigEndian::write_u16(&mut w, n);
    out.extend_from_slice(&w[..2]);
    for &(queue_id, offset) in &commit.entries {
        BigEndian::write_i32(&mut w[..4], queue_id);
        BigEndian::write_i64(&mut w[4..], offset);
        out.extend_from_slice(&w);
    }
    Ok(())
}

/// Decodes a body [`encode`] wrote. Never panics.
pub fn decode(body: &[u8]) -> Result<OffsetCommit<'_>, OffsetCommitError> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], OffsetCommitError> {
        let end =
            at.checked_add(n)
                .filter(|&e| e <= body.len())
                .ok_or(OffsetCommitError::Truncated {
                    needed: at.saturating_add(n),
                    len: body.len(),
                })?;
        let s = &body[*at..end];
        *at = end;
        Ok(s)
    };
    let version = take(&mut at, 1)?[0];
    if version != VERSION {
        return Err(OffsetCommitError::Version(version));
    }
    let name = |at: &mut usize| -> Result<&str, OffsetCommitError> {
        let n = BigEndian::read_u16(take(at, 2)?) as usize;
        std::str::from_utf8(take(at, n)?).map_err(|_| OffsetCommitError::NotUtf8)
    };
    let group = name(&mut at)?;
    let topic = name(&mut at)?;
    let n = BigEndian::read_u16(take(&mut at, 2)?) as usize;
    let mut entries = Vec::with_capacity(n.min(body.len() / 12));
    for _ in 0..n {
        let e = take(&mut at, 12)?;
        entries.push((BigEndian::read_i32(&e[..4]), BigEndian::read_i64(&e[4..])));
    }
    if at != body.len() {
        return Err(OffsetCommitError::Trailing(body.len() - at));
    }
    Ok(OffsetCommit {
        group,
        topic,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_commit_round_trips_and_its_bytes_are_the_documented_layout() {
        let c = OffsetCommit {
            group: "g",
            topic: "T",
            entries: vec![(0, 5280), (3, -1)],
        };
        let mut out = Vec::new();
        encode(&c, &mut out).unwrap();
        assert_eq!(
            out,
            [
                &[1u8, 0, 1, b'g', 0, 1, b'T', 0, 2][..],
                &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x14, 0xA0],
                &[0, 0, 0, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            ]
            .concat()
        );
        assert_eq!(decode(&out).unwrap(), c);
        assert_eq!(
            decode(&out[..out.len() - 1]),
            Err(OffsetCommitError::Truncated {
                needed: out.len(),
                len: out.len() - 1
            })
        );
        out.push(0);
        assert_eq!(decode(&out), Err(OffsetCommitError::Trailing(1)));
        assert_eq!(decode(&[2]), Err(OffsetCommitError::Version(2)));
        assert!(decode(&[]).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_inverts_encode(
            group in "\\PC{0,20}",
            topic in "[a-zA-Z0-9_%|-]{1,30}",
            entries in proptest::collection::vec((any::<i32>(), any::<i64>()), 0..40),
            junk in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let c = OffsetCommit { group: &group, topic: &topic, entries };
            let mut out = Vec::new();
            encode(&c, &mut out).unwrap();
            prop_assert_eq!(decode(&out).unwrap(), c);
            let _ = decode(&junk);
        }
    }
}
