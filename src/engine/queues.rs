//! The queue table: every (topic, queue id) the store has, and the put path's own cache of it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::consume_queue::ConsumeQueue;

pub(super) type QueueTable = HashMap<String, HashMap<i32, Arc<ConsumeQueue>, QueueIdHash>>;

/// Hashes a queue id with one multiply instead of SipHash: the queue table is looked up on
/// every put, and the ids are small integers the store validated (`< max_queues_per_topic`), so
/// keyed hashing buys nothing there. Topics keep the default (keyed) hasher.
pub(super) type QueueIdHash = std::hash::BuildHasherDefault<QueueIdHasher>;

/// See [`QueueIdHash`].
#[derive(Default)]
pub(super) struct QueueIdHasher(u64);

impl std::hash::Hasher for QueueIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i32(&mut self, id: i32) {
        // Fibonacci hashing: the high bits (hashbrown's tag) and the low bits (its bucket
        // index) both vary with the id.
        self.0 = (u64::from(id as u32) ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// append lock: a put finds its queue without the table's read lock, an `Arc` clone and a
/// keyed hash of its topic. The topic of the previous put is checked first; queue ids below
/// [`DENSE_QUEUE_IDS`] index a vector, larger ones (`max_queues_per_topic` may be up to
/// `i32::MAX`) a map.
#[derive(Default)]
pub(super) struct PutQueues {
    topics: Vec<(String, TopicQueues)>,
    by_name: HashMap<String, usize>,
    recent: usize,
}

/// One topic's queues in [`PutQueues`].
#[derive(Default)]
struct TopicQueues {
    dense: Vec<Option<Arc<ConsumeQueue>>>,
    sparse: HashMap<i32, Arc<ConsumeQueue>, QueueIdHash>,
}

/// Queue ids below this are looked up by index in [`PutQueues`].
const DENSE_QUEUE_IDS: usize = 4096;

impl PutQueues {
    /// The queue `(topic, queue_id)`, taken from `table` the first time.
    pub(super) fn get(
        &mut self,
        topic: &str,
        queue_id: i32,
        table: impl FnOnce() -> Arc<ConsumeQueue>,
    ) -> &ConsumeQueue {
        let t = match self.topics.get(self.recent) {
            Some((name, _)) if name == topic => self.recent,
            _ => {
                let t = match self.by_name.get(topic) {
                    Some(&t) => t,
                    None => {
                        self.topics.push((topic.to_owned(), TopicQueues::default()));
                        self.by_name.insert(topic.to_owned(), self.topics.len() - 1);
                        self.topics.len() - 1
                    }
                };
                self.recent = t;
                t
            }
        };
        let queues = &mut self.topics[t].1;
        match usize::try_from(queue_id) {
            Ok(i) if i < DENSE_QUEUE_IDS => {
                if queues.dense.len() <= i {
                    queues.dense.resize(i + 1, None);
                }
                queues.dense[i].get_or_insert_with(table)
            }
            _ => queues.sparse.entry(queue_id).or_insert_with(table),
        }
    }
}
