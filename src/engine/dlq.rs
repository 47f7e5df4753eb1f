//! Dead letters: `%DLQ%group` (one queue) holds what a group's consumers failed
//! `max_reconsume_times` times (see [`consumer`](crate::consumer)); it can be read like any
//! topic, re-driven into the original topic (reconsume count reset), or purged, which commits
//! the group's offset past it (nothing is deleted: retention does that).

use super::Engine;
use crate::error::Result;
use crate::format::schedule;

/// The dead-letter topic of a group ([`crate::Store::dlq`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DlqStats {
    /// `%DLQ%group`.
    pub topic: String,
    /// Dead letters not purged or re-driven: `max_offset - purged_to`.
    pub size: u64,
    /// Where the unpurged dead letters start (queue 0).
    pub purged_to: u64,
    /// One past the newest dead letter.
    pub max_offset: u64,
}

impl Engine {
    pub(crate) fn dlq(&self, group: &str) -> Result<DlqStats> {
        let topic = schedule::dlq_topic(group);
        let (min, max) = self
            .queue(&topic, 0)
            .map_or((0, 0), |q| (q.min_offset(), q.max_offset()));
        let purged_to = self
            .committed_offset(group, &topic, 0)?
            .unwrap_or(min)
            .clamp(min, max);
        Ok(DlqStats {
            size: max - purged_to,
            topic,
            purged_to,
            max_offset: max,
        })
    }

    pub(crate) fn dlq_redrive(&self, group: &str, max: usize) -> Result<usize> {
        let d = self.dlq(group)?;
        let opts = crate::results::GetOptions {
            verify_crc: true,
            ..crate::results::GetOptions::new(max.min(256))
        };
        let mut at = d.purged_to;
        let mut done = 0;
        while done < max && at < d.max_offset {
            let got = self.get(&d.topic, 0, at, &opts)?;
            if got.is_empty() {
                break;
            }
            for m in got.messages() {
                if done == max {
                    break;
                }
                let origin = m.property(schedule::RETRY_TOPIC).unwrap_or(group);
                let count = self.queue_count(origin).max(1) as u32;
                let id = m
                    .property(schedule::ORIGIN_MESSAGE_ID)
                    .map_or_else(|| m.msg_id(), str::to_owned);
                let mut again = m.to_message(origin, crate::message::queue_for_key(&id, count));
                again.properties.retain(|(n, _)| {
                    ![
                        schedule::RECONSUME_TIME,
                        schedule::MAX_RECONSUME_TIMES,
                        schedule::DELAY,
                        schedule::REAL_TOPIC,
                        schedule::REAL_QID,
                    ]
                    .contains(&n.as_ref())
                });
                let again = again.with_reconsume_times(0);
                self.put_batch(&[again])?;
                at = m.queue_offset() + 1;
                done += 1;
            }
        }
        if at > d.purged_to {
            self.commit_offsets(group, &d.topic, &[(0, at)], false)?;
        }
        Ok(done)
    }

    pub(crate) fn dlq_purge(&self, group: &str) -> Result<u64> {
        let d = self.dlq(group)?;
        if d.size > 0 {
            self.commit_offsets(group, &d.topic, &[(0, d.max_offset)], false)?;
        }
        Ok(d.size)
    }
}
