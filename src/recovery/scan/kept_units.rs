//! The check of an incremental walk below `Dd`: the kept ConsumeQueue must already have each
//! record as the unit at its queue offset ([`unit_agrees`]), read through a cache of unit runs
//! ([`KeptUnits`]).

use std::collections::HashMap;

use crate::consume_queue::UnitRun;
use crate::format::cq_unit::CqUnit;
use crate::format::record::{RecordView, TRANSACTION_COMMIT, TRANSACTION_NOT_TYPE};

use crate::recovery::load::Queues;

/// Whether the kept ConsumeQueue has `rec` (below `Dd`) as the unit at its queue offset.
/// Records that get no unit (prepared or rolled-back transactions) pass.
///
/// `cursors` remembers, per queue, the run of published units of the file the last check read
/// (see [`KeptUnits`]), so a record whose unit lies in that run costs no map lookup, lock or
/// `Arc` clone; the answer is the same as reading `queues` directly.
pub(super) fn unit_agrees(queues: &Queues, cursors: &mut KeptUnits, rec: &RecordView<'_>) -> bool {
    let tx = rec.transaction_type();
    if tx != TRANSACTION_NOT_TYPE && tx != TRANSACTION_COMMIT {
        return true;
    }
    let n = rec.queue_offset() as u64;
    let unit = match cursors.run(rec.topic(), rec.queue_id(), n) {
        Some(run) => run.unit(n),
        None => {
            let Some(q) = queues.get(rec.topic()).and_then(|m| m.get(&rec.queue_id())) else {
                return false;
            };
            let max = q.max_offset();
            if n >= max {
                return false;
            }
            match q.units_from(n, usize::MAX) {
                Some(run) => {
                    let unit = run.unit(0);
                    cursors.keep(rec.topic(), rec.queue_id(), n, max, run);
                    unit
                }
                None => q.unit(n),
            }
        }
    };
    unit.is_some_and(|u| {
        u.commitlog_offset == rec.physical_offset() && u.size as usize == rec.total_size()
    })
}

/// The kept ConsumeQueue units the below-`Dd` check of [`unit_agrees`] read last: per topic,
/// per queue id, a run of consecutive published units (all below the queue's max offset when
/// it was taken) of the file holding the last unit checked. Records of a queue come in queue
/// offset order, so nearly every check finds its unit in the run of its queue. Units below
/// `Dd` do not change during the walk (only units from `Dd` on are appended), so a run stays
/// valid for the whole walk.
#[derive(Default)]
pub(super) struct KeptUnits {
    /// The topic `current` belongs to.
    topic: String,
    /// Runs of `topic`, indexed by queue id.
    current: Vec<Option<KeptRun>>,
    /// Runs of the other topics met so far.
    others: HashMap<String, Vec<Option<KeptRun>>>,
}

/// Queue ids from here on are not given a run by [`KeptUnits::keep`].
const MAX_KEPT_QUEUE_ID: usize = 4096;

/// A run of a queue's units: units `first..end` are `run.unit(n - first)`.
struct KeptRun {
    first: u64,
    end: u64,
    run: UnitRun,
}

impl KeptUnits {
    /// The run holding unit `n` of `topic:queue_id`, if one was kept.
    fn run(&mut self, topic: &str, queue_id: i32, n: u64) -> Option<KeptUnitAt<'_>> {
        if topic != self.topic && !self.switch_to(topic, false) {
            return None;
        }
        let r = self
            .current
            .get(usize::try_from(queue_id).ok()?)?
            .as_ref()?;
        (r.first..r.end).contains(&n).then_some(KeptUnitAt(r))
    }

    /// Remembers `run`, which starts at unit `n` of `topic:queue_id` (whose max offset is
    /// `max`).
    fn keep(&mut self, topic: &str, queue_id: i32, n: u64, max: u64, run: UnitRun) {
        // Runs are indexed by queue id: a (configurable) huge id is looked up every time
        // instead of sizing a table for it.
        let Some(i) = usize::try_from(queue_id)
            .ok()
            .filter(|&i| i < MAX_KEPT_QUEUE_ID)
        else {
            return;
        };
        if topic != self.topic {
            self.switch_to(topic, true);
        }
        if self.current.len() <= i {
            self.current.resize_with(i + 1, || None);
        }
        let end = n.saturating_add(run.count as u64).min(max);
        self.current[i] = Some(KeptRun { first: n, end, run });
    }

    /// Makes `topic` current, parking the current topic's runs. Without `create`, returns
    /// whether `topic` had runs.
    fn switch_to(&mut self, topic: &str, create: bool) -> bool {
        let (name, runs) = match self.others.remove_entry(topic) {
            Some(found) => found,
            None if create => (topic.to_owned(), Vec::new()),
            None => return false,
        };
        let old_name = std::mem::replace(&mut self.topic, name);
        let old_runs = std::mem::replace(&mut self.current, runs);
        if !old_runs.is_empty() {
            self.others.insert(old_name, old_runs);
        }
        true
    }
}

/// A kept run known to hold the unit asked for.
struct KeptUnitAt<'a>(&'a KeptRun);

impl KeptUnitAt<'_> {
    fn unit(&self, n: u64) -> Option<CqUnit> {
        let i = usize::try_from(n - self.0.first).ok()?;
        self.0.run.unit(i)
    }
}
