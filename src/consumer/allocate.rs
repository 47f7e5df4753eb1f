//! Queue allocation: how clustering splits a topic's queues among a group's consumers, as RocketMQ's
//! `AllocateMessageQueueAveragely` does (the consumer ids and queue ids sorted first, as
//! `RebalanceImpl` sorts them). Circle and consistent hash are not built yet.

/// How clustering splits a topic's queues among a group's consumers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// RocketMQ's `AllocateMessageQueueAveragely`.
    #[default]
    Averagely,
}

impl Strategy {
    /// The queue ids of `queues` (sorted) that `current` gets among `consumers` (sorted).
    pub(crate) fn allocate_ids(
        &self,
        current: &str,
        consumers: &[String],
        _topic: &str,
        queues: &[i32],
    ) -> Vec<i32> {
        let Some(index) = consumers.iter().position(|c| c == current) else {
            return Vec::new();
        };
        let (n, m) = (queues.len(), consumers.len());
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averagely_gives_rocketmqs_split() {
        let ids: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let queues: Vec<i32> = (0..8).collect();
        let got: Vec<Vec<i32>> = ids
            .iter()
            .map(|id| Strategy::Averagely.allocate_ids(id, &ids, "t", &queues))
            .collect();
        assert_eq!(got, [vec![0, 1, 2], vec![3, 4, 5], vec![6, 7]]);
        // More consumers than queues: one each, the rest none.
        let few: Vec<i32> = (0..2).collect();
        let got: Vec<Vec<i32>> = ids
            .iter()
            .map(|id| Strategy::Averagely.allocate_ids(id, &ids, "t", &few))
            .collect();
        assert_eq!(got, [vec![0], vec![1], vec![]]);
        assert!(Strategy::Averagely
            .allocate_ids("x", &ids, "t", &queues)
            .is_empty());
    }
}
