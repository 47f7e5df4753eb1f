//! Queue allocation: how clustering splits a topic's queues among a group's consumers, as
//! RocketMQ's `AllocateMessageQueueStrategy` implementations do. Every consumer of a group
//! computes its own share from the same inputs (the consumer ids sorted in Java's
//! `String.compareTo` order and the queue ids sorted, as `RebalanceImpl` sorts them), so the
//! shares cover every queue exactly once when all of them use the same strategy.

use std::collections::BTreeMap;

use md5::{Digest, Md5};

use crate::format::java_hash::java_string_cmp;

/// Virtual nodes per consumer on the ring of [`Strategy::ConsistentHash`] (RocketMQ's default).
pub const DEFAULT_VIRTUAL_NODES: usize = 10;

/// How clustering splits a topic's queues among a group's consumers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// RocketMQ's `AllocateMessageQueueAveragely`: consecutive runs of queues, the first
    /// `queues % consumers` consumers getting one more.
    #[default]
    Averagely,
    /// RocketMQ's `AllocateMessageQueueAveragelyByCircle`: queue `i` goes to consumer
    /// `i % consumers`.
    AveragelyByCircle,
    /// RocketMQ's `AllocateMessageQueueConsistentHash`: an MD5 ring of `virtual_nodes` points
    /// per consumer (keys `"{id}-{i}"`), each queue going to the first point at or after the
    /// hash of its `MessageQueue` name. Joining or leaving moves only the queues next to the
    /// consumer's points. `broker_name` is the name in those queue names (RocketMQ's
    /// `MessageQueue [topic=T, brokerName=B, queueId=N]`): the same as the broker's, the ring
    /// matches a Java consumer's.
    ConsistentHash {
        /// Points per consumer on the ring; RocketMQ's default is [`DEFAULT_VIRTUAL_NODES`].
        virtual_nodes: usize,
        /// The broker name in the hashed queue names.
        broker_name: String,
    },
}

impl Strategy {
    /// [`Strategy::ConsistentHash`] with RocketMQ's default of 10 virtual nodes.
    pub fn consistent_hash(broker_name: impl Into<String>) -> Strategy {
        Strategy::ConsistentHash {
            virtual_nodes: DEFAULT_VIRTUAL_NODES,
            broker_name: broker_name.into(),
        }
    }

    /// The queue ids of `queues` (sorted) that `current` gets among `consumers` (sorted by
    /// [`sort_consumer_ids`]).
    pub(crate) fn allocate_ids(
        &self,
        current: &str,
        consumers: &[String],
        topic: &str,
        queues: &[i32],
    ) -> Vec<i32> {
        let Some(index) = consumers.iter().position(|c| c == current) else {
            return Vec::new();
        };
        match self {
            Strategy::Averagely => averagely(index, consumers.len(), queues),
            Strategy::AveragelyByCircle => queues
                .iter()
                .enumerate()
                .skip(index)
                .filter(|(i, _)| i % consumers.len() == index)
                .map(|(_, &q)| q)
                .collect(),
            Strategy::ConsistentHash {
                virtual_nodes,
                broker_name,
            } => {
                let ring = Ring::new(consumers, *virtual_nodes);
                queues
                    .iter()
                    .copied()
                    .filter(|&q| {
                        let name = format!(
                            "MessageQueue [topic={topic}, brokerName={broker_name}, queueId={q}]"
                        );
                        ring.route(&name) == Some(current)
                    })
                    .collect()
            }
        }
    }
}

/// Sorts consumer ids as RocketMQ does before allocating (Java's `String.compareTo`).
pub(crate) fn sort_consumer_ids(ids: &mut [String]) {
    ids.sort_by(|a, b| java_string_cmp(a, b));
}

fn averagely(index: usize, m: usize, queues: &[i32]) -> Vec<i32> {
    let n = queues.len();
    let modulo = n % m;
    let size = if n <= m {
        1
    } else if modulo > 0 && index < modulo {
        n / m + 1
    } else {
        n / m
    };
    let start = if modulo > 0 && index < modulo {
        index * size
    } else {
        index * size + modulo
    };
    let range = size.min(n.saturating_sub(start));
    (0..range).map(|i| queues[(start + i) % n]).collect()
}

/// RocketMQ's `ConsistentHashRouter` with its default hash: the first four bytes of the MD5
/// of the key's UTF-8 bytes, big-endian, as an unsigned number.
struct Ring<'a> {
    /// Hash → consumer id; a later point with the same hash replaces an earlier one, as in
    /// the Java `TreeMap`.
    points: BTreeMap<u32, &'a str>,
}

impl<'a> Ring<'a> {
    fn new(consumers: &'a [String], virtual_nodes: usize) -> Ring<'a> {
        let mut points = BTreeMap::new();
        for id in consumers {
            for i in 0..virtual_nodes {
                points.insert(md5_hash(&format!("{id}-{i}")), id.as_str());
            }
        }
        Ring { points }
    }

    /// The consumer owning `key`: the first point at or after its hash, wrapping around.
    fn route(&self, key: &str) -> Option<&'a str> {
        let h = md5_hash(key);
        self.points
            .range(h..)
            .next()
            .or_else(|| self.points.iter().next())
            .map(|(_, &id)| id)
    }
}

fn md5_hash(key: &str) -> u32 {
    let digest = Md5::digest(key.as_bytes());
    u32::from_be_bytes(digest[..4].try_into().expect("16-byte digest"))
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use super::*;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn shares(strategy: &Strategy, consumers: &[String], queues: &[i32]) -> Vec<Vec<i32>> {
        consumers
            .iter()
            .map(|id| strategy.allocate_ids(id, consumers, "t", queues))
            .collect()
    }

    /// Every queue in exactly one share.
    fn assert_partition(shares: &[Vec<i32>], queues: &[i32]) {
        let mut all: Vec<i32> = shares.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, queues, "{shares:?}");
    }

    #[test]
    fn averagely_gives_rocketmqs_split() {
        let c = ids(&["a", "b", "c"]);
        let queues: Vec<i32> = (0..8).collect();
        assert_eq!(
            shares(&Strategy::Averagely, &c, &queues),
            [vec![0, 1, 2], vec![3, 4, 5], vec![6, 7]]
        );
        // More consumers than queues: one each, the rest none.
        let few: Vec<i32> = (0..2).collect();
        assert_eq!(
            shares(&Strategy::Averagely, &c, &few),
            [vec![0], vec![1], vec![]]
        );
        assert!(Strategy::Averagely
            .allocate_ids("x", &c, "t", &queues)
            .is_empty());
    }

    #[test]
    fn by_circle_deals_the_queues_round_robin() {
        let c = ids(&["a", "b", "c"]);
        let queues: Vec<i32> = (0..8).collect();
        assert_eq!(
            shares(&Strategy::AveragelyByCircle, &c, &queues),
            [vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]
        );
        let few: Vec<i32> = (0..2).collect();
        assert_eq!(
            shares(&Strategy::AveragelyByCircle, &c, &few),
            [vec![0], vec![1], vec![]]
        );
    }

    /// The hash is RocketMQ's: values computed with Java's `MessageDigest` and the router's
    /// four-byte fold.
    #[test]
    fn the_ring_hash_is_rocketmqs_md5_fold() {
        assert_eq!(md5_hash("c1-0"), 3_886_541_579);
        assert_eq!(
            md5_hash("MessageQueue [topic=t, brokerName=b, queueId=0]"),
            1_143_333_663
        );
    }

    #[test]
    fn consistent_hash_partitions_and_moves_little_on_a_join() {
        let strategy = Strategy::consistent_hash("broker-a");
        let queues: Vec<i32> = (0..64).collect();
        let before = ids(&["c1", "c2", "c3"]);
        let s1 = shares(&strategy, &before, &queues);
        assert_partition(&s1, &queues);
        assert!(s1.iter().all(|s| !s.is_empty()), "{s1:?}");
        let after = ids(&["c1", "c2", "c3", "c4"]);
        let s2 = shares(&strategy, &after, &queues);
        assert_partition(&s2, &queues);
        // A join only takes queues for the newcomer: nothing moves between the old members.
        for (old, new) in s1.iter().zip(&s2) {
            assert!(new.iter().all(|q| old.contains(q)), "{old:?} -> {new:?}");
        }
        // One consumer owns everything; no consumers, nothing.
        let alone = ids(&["c1"]);
        assert_eq!(
            shares(&strategy, &alone, &queues),
            std::slice::from_ref(&queues)
        );
        assert!(strategy.allocate_ids("c1", &[], "t", &queues).is_empty());
        // Zero virtual nodes: an empty ring owns nothing.
        let none = Strategy::ConsistentHash {
            virtual_nodes: 0,
            broker_name: "b".into(),
        };
        assert!(shares(&none, &before, &queues).iter().all(Vec::is_empty));
    }

    #[test]
    fn consumer_ids_sort_in_javas_utf16_order() {
        // U+FF21 (fullwidth A) is one UTF-16 unit 0xFF21; U+1F600 is the pair D83D DE00.
        // Code-point order puts the emoji last; Java's puts it first.
        let mut v = ids(&["\u{FF21}", "\u{1F600}", "a"]);
        sort_consumer_ids(&mut v);
        assert_eq!(v, ids(&["a", "\u{1F600}", "\u{FF21}"]));
        assert_eq!(java_string_cmp("\u{1F600}", "\u{FF21}"), Ordering::Less);
        assert_eq!("\u{1F600}".cmp("\u{FF21}"), Ordering::Greater);
    }
}
