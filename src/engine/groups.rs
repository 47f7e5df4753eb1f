//! The consumers of this process, by group and topic: who is in a group (the input of queue
//! allocation, RocketMQ's `ConsumerManager` as the broker keeps it), and which consumer holds
//! the consume lock of a queue in ordered consumption (the broker's `RebalanceLockManager`).

use std::collections::{BTreeSet, HashMap};

use parking_lot::Mutex;

use crate::format::java_hash::java_string_cmp;

#[derive(Default)]
struct Members {
    ids: BTreeSet<String>,
    /// Bumped by every join and leave: a consumer rebalances when it changed.
    generation: u64,
}

#[derive(Default)]
struct Inner {
    /// group → topic → members (nested so a lookup by `&str` needs no key to be built).
    members: HashMap<String, HashMap<String, Members>>,
    /// Ordered consumption: `(group, topic, queue id)` → the consumer holding it.
    locks: HashMap<(String, String, i32), String>,
    /// Ids handed out so far (for unnamed consumers).
    next_id: u64,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct Groups {
    inner: Mutex<Inner>,
}

impl Groups {
    /// Adds `id` (or a new unique id) to the group; `None` if `id` is already a member.
    pub(crate) fn join(&self, group: &str, topic: &str, id: Option<&str>) -> Option<String> {
        let mut inner = self.inner.lock();
        let id = match id {
            Some(id) => id.to_owned(),
            None => {
                inner.next_id += 1;
                format!("{}_{}", std::process::id(), inner.next_id)
            }
        };
        let m = inner
            .members
            .entry(group.to_owned())
            .or_default()
            .entry(topic.to_owned())
            .or_default();
        if !m.ids.insert(id.clone()) {
            return None;
        }
        m.generation += 1;
        Some(id)
    }

    /// Removes `id` from the group and releases its queue locks.
    pub(crate) fn leave(&self, group: &str, topic: &str, id: &str) {
        let mut inner = self.inner.lock();
        if let Some(topics) = inner.members.get_mut(group) {
            if let Some(m) = topics.get_mut(topic) {
                m.ids.remove(id);
                m.generation += 1;
                if m.ids.is_empty() {
                    topics.remove(topic);
                }
            }
            if topics.is_empty() {
                inner.members.remove(group);
            }
        }
        inner
            .locks
            .retain(|(g, t, _), owner| !(g == group && t == topic && owner == id));
    }

    /// The group's generation and members, sorted as RocketMQ sorts consumer ids before
    /// allocating (Java's `String.compareTo`).
    pub(crate) fn members(&self, group: &str, topic: &str) -> (u64, Vec<String>) {
        let inner = self.inner.lock();
        let (generation, mut ids) = inner
            .members
            .get(group)
            .and_then(|t| t.get(topic))
            .map_or((0, Vec::new()), |m| {
                (m.generation, m.ids.iter().cloned().collect())
            });
        ids.sort_by(|a, b| java_string_cmp(a, b));
        (generation, ids)
    }

    /// The group's generation alone: what a consumer checks on every poll, without copying
    /// the member list.
    pub(crate) fn generation(&self, group: &str, topic: &str) -> u64 {
        let inner = self.inner.lock();
        inner
            .members
            .get(group)
            .and_then(|t| t.get(topic))
            .map_or(0, |m| m.generation)
    }

    /// Takes the consume lock of a queue for `id`: `Ok` if it now holds it (or already did),
    /// `Err(holder)` if another consumer does.
    pub(crate) fn lock_queue(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
        id: &str,
    ) -> Result<(), String> {
        let mut inner = self.inner.lock();
        let holder = inner
            .locks
            .entry((group.to_owned(), topic.to_owned(), queue_id))
            .or_insert_with(|| id.to_owned());
        if holder == id {
            Ok(())
        } else {
            Err(holder.clone())
        }
    }

    /// Releases the consume lock of a queue if `id` holds it.
    pub(crate) fn unlock_queue(&self, group: &str, topic: &str, queue_id: i32, id: &str) {
        let mut inner = self.inner.lock();
        let key = (group.to_owned(), topic.to_owned(), queue_id);
        if inner.locks.get(&key).is_some_and(|h| h == id) {
            inner.locks.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_leaves_bump_the_generation_and_locks_have_one_holder() {
        let g = Groups::default();
        let a = g.join("g", "t", Some("a")).unwrap();
        assert_eq!(
            g.join("g", "t", Some("a")),
            None,
            "ids are unique in a group"
        );
        let b = g.join("g", "t", None).unwrap();
        let (generation, ids) = g.members("g", "t");
        assert_eq!(generation, 2);
        assert_eq!(ids.len(), 2);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(g.lock_queue("g", "t", 0, &a), Ok(()));
        assert_eq!(g.lock_queue("g", "t", 0, &a), Ok(()));
        assert_eq!(g.lock_queue("g", "t", 0, &b), Err(a.clone()));
        assert_eq!(
            g.lock_queue("g2", "t", 0, &b),
            Ok(()),
            "locks are per group"
        );
        g.leave("g", "t", &a);
        assert_eq!(g.lock_queue("g", "t", 0, &b), Ok(()), "leaving releases");
        assert_eq!(g.members("g", "t"), (3, vec![b.clone()]));
        g.unlock_queue("g", "t", 0, &b);
        g.leave("g", "t", &b);
        assert_eq!(g.members("g", "t"), (0, vec![]));
    }
}
