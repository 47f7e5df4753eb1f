//! The record-by-record walk ([`walk_dispatching`]): validates each record from the walk's
//! start, hands those from the dispatch start on to the [`Sink`], checks those below it against
//! the kept derived data, and asks [`invalid_at`] what the first invalid one means.
//!
//! The walk accepts a record only if it decodes (magic, lengths, CRCs when configured), its
//! PHYSICALOFFSET equals its position, it ends at least a BLANK's header before its segment's
//! end, and (from the dispatch start) it names a usable queue and continues it.

use crate::format::dispatch_entry::DispatchEntry;
use crate::format::filler;
use crate::format::record::{self, DecodeOptions, Decoded, RecordView};
use crate::format::topic::check_topic;
use crate::index::IndexService;

use super::damage::{invalid_at, Verdict};
use super::kept_units::{unit_agrees, KeptUnits};
use super::sink::{Sink, Stop};
use super::{WalkCtx, Walked};
use crate::error::Result;
use crate::recovery::plan::Plan;
use crate::recovery::RecoveryReport;

/// What the walk found at its offset (one flat enum: the walk matches it once a record).
enum Step {
    /// Goes on at the walker's offset.
    Next,
    /// The log ends at the walker's offset.
    End,
    /// An incremental walk met a record its kept data disagrees with: rebuild everything.
    Abandoned(String),
    /// The record at the walker's offset is not accepted, and whether salvage may skip it (a
    /// record whose bytes are valid but that dispatch refuses is never skipped: the
    /// dispatching thread of a long rebuild could not skip it either).
    Invalid { reason: String, can_skip: bool },
}

impl Step {
    /// An invalid record salvage may skip.
    fn skippable(reason: String) -> Self {
        Step::Invalid {
            reason,
            can_skip: true,
        }
    }
}

/// What the walk does after an invalid record.
enum Flow {
    /// Goes on at the walker's offset (past a skipped span).
    Next,
    /// The log ends at the walker's offset.
    End,
    /// An incremental walk's filler was refused by the kept data: rebuild everything.
    Abandoned(String),
}

/// The segment the last record was in and its bytes (nothing writes the CommitLog during the
/// walk), looked up again only when the walk leaves it.
#[derive(Clone, Copy)]
struct Seg<'a> {
    idx: usize,
    start: u64,
    bytes: &'a [u8],
}

/// The walk's position and what it has seen.
struct Walker<'a, 'c> {
    ctx: &'c WalkCtx<'a>,
    plan: &'c Plan,
    opts: DecodeOptions,
    offset: u64,
    last_store_timestamp: i64,
    kept_units: KeptUnits,
    current: Option<Seg<'a>>,
}

/// [`walk`](fn@super::walk) itself: validates records and hands those from the dispatch start
/// on to `sink`.
pub(super) fn walk_dispatching<'a>(
    ctx: &WalkCtx<'a>,
    walk_from: u64,
    plan: &Plan,
    sink: &mut Sink<'a, '_, '_>,
    report: &mut RecoveryReport,
) -> Result<Walked> {
    let mut walker = Walker::new(ctx, walk_from, plan);
    while !ctx.files.is_empty() {
        let Some(seg) = walker.segment() else {
            break;
        };
        match walker.check(seg, sink, report)? {
            Step::Next => {}
            Step::End => break,
            Step::Abandoned(reason) => return Ok(Walked::Abandoned(reason)),
            Step::Invalid { reason, can_skip } => {
                match walker.invalid(reason, can_skip, sink, report)? {
                    Flow::Next => {}
                    Flow::End => break,
                    Flow::Abandoned(reason) => return Ok(Walked::Abandoned(reason)),
                }
            }
        }
    }
    Ok(walker.end())
}

impl<'a, 'c> Walker<'a, 'c> {
    fn new(ctx: &'c WalkCtx<'a>, walk_from: u64, plan: &'c Plan) -> Self {
        // One CRC rule for every record (`properties::crc_property`): a `__CRC32#` property is
        // checked; a record without one (RocketMQ 4.x, or a broker appending to a segment this
        // store began) is valid on its BODYCRC and structure, wherever it sits; a damaged
        // property or a torn property list is invalid.
        let check = ctx.config.check_crc_on_recover;
        Walker {
            ctx,
            plan,
            opts: DecodeOptions {
                verify_body_crc: check,
                verify_record_crc: check,
                max_record_size: ctx.config.max_record_size(),
            },
            offset: walk_from,
            last_store_timestamp: 0,
            kept_units: KeptUnits::default(),
            current: None,
        }
    }

    /// The segment holding the walk's offset; `None` past the last one (the log ends there).
    fn segment(&mut self) -> Option<Seg<'a>> {
        let (files, size) = (self.ctx.files, self.ctx.size);
        match self.current {
            Some(c) if self.offset.wrapping_sub(c.start) < size as u64 => Some(c),
            _ => {
                let idx = ((self.offset - self.ctx.first_start) / size as u64) as usize;
                let (seg_start, file) = files.get(idx)?;
                let c = Seg {
                    idx,
                    start: *seg_start,
                    bytes: file.readable(),
                };
                self.current = Some(c);
                Some(c)
            }
        }
    }

    /// Decodes what lies at the walk's offset in `seg` and accepts it or says why not.
    fn check(
        &mut self,
        seg: Seg<'a>,
        sink: &mut Sink<'a, '_, '_>,
        report: &mut RecoveryReport,
    ) -> Result<Step> {
        let data = &seg.bytes[(self.offset - seg.start) as usize..];
        match record::decode(data, &self.opts) {
            Ok(Decoded::Blank { total_size }) => {
                Ok(self.blank(seg, data.len(), total_size, report))
            }
            Ok(Decoded::Record(rec)) => self.record(rec, data.len(), sink, report),
            Err(e) => Ok(Step::skippable(e.to_string())),
        }
    }

    /// A BLANK must fill the rest of its segment (`left` bytes); the walk goes on at the next
    /// segment, or the log ends after the last one.
    fn blank(
        &mut self,
        seg: Seg<'a>,
        left: usize,
        total_size: u32,
        report: &mut RecoveryReport,
    ) -> Step {
        if total_size as usize != left {
            return Step::skippable(format!(
                "BLANK record of {total_size} bytes but {left} bytes left in the segment"
            ));
        }
        report.scanned_bytes += left as u64;
        self.offset = seg.start + self.ctx.size as u64;
        if seg.idx + 1 == self.ctx.files.len() {
            Step::End
        } else {
            Step::Next
        }
    }

    /// A decoded record (`left` bytes were left in its segment from its start): checked where
    /// it lies, dispatched from the dispatch start on, checked against the kept derived data
    /// below it.
    fn record(
        &mut self,
        rec: RecordView<'a>,
        left: usize,
        sink: &mut Sink<'a, '_, '_>,
        report: &mut RecoveryReport,
    ) -> Result<Step> {
        let offset = self.offset;
        if rec.physical_offset() as u64 != offset {
            return Ok(Step::skippable(format!(
                "record claims physical offset {}",
                rec.physical_offset()
            )));
        }
        if left - rec.total_size() < record::END_FILE_MIN_BLANK_LENGTH {
            return Ok(Step::skippable(
                "record ends closer than 8 bytes to the segment end".into(),
            ));
        }
        if offset >= self.plan.cq_from {
            // The sink counts it in `records_without_crc` once it is dispatched.
            match self.dispatch(&rec, sink, report)? {
                Step::Next => {}
                stopped => return Ok(stopped),
            }
        } else if let Some(reason) = self.disagrees_with_kept(&rec, sink) {
            return Ok(Step::Abandoned(reason));
        } else if rec.record_crc().is_none() {
            report.records_without_crc += 1;
        }
        self.last_store_timestamp = self.last_store_timestamp.max(rec.store_timestamp());
        report.scanned_bytes += rec.total_size() as u64;
        self.offset += rec.total_size() as u64;
        Ok(Step::Next)
    }

    /// Sends a record from the dispatch start on to `sink`; anything but [`Step::Next`] when
    /// the walk does not go on past it.
    fn dispatch(
        &mut self,
        rec: &RecordView<'a>,
        sink: &mut Sink<'a, '_, '_>,
        report: &mut RecoveryReport,
    ) -> Result<Step> {
        let config = self.ctx.config;
        if rec.queue_id() < 0
            || rec.queue_id() as u32 >= config.max_queues_per_topic
            || check_topic(rec.topic()).is_err()
        {
            return Ok(Step::skippable(format!(
                "record names an unusable queue {}:{}",
                rec.topic(),
                rec.queue_id()
            )));
        }
        let (entry, without_crc) = (DispatchEntry::of_record(rec), rec.record_crc().is_none());
        Ok(match sink.send(entry, without_crc, report)? {
            None => Step::Next,
            // A record whose bytes are valid but that dispatch refuses is never skipped
            // (the dispatching thread of a long rebuild could not skip it either).
            Some(Stop::Refused(reason)) => Step::Invalid {
                reason,
                can_skip: false,
            },
            Some(Stop::Abandoned(reason)) => Step::Abandoned(reason),
            Some(Stop::PipeClosed) => Step::End,
        })
    }

    /// For a record below the dispatch start of an incremental walk: why the kept derived data
    /// does not agree with it, if it does not.
    fn disagrees_with_kept(
        &mut self,
        rec: &RecordView<'a>,
        sink: &Sink<'a, '_, '_>,
    ) -> Option<String> {
        let (offset, plan) = (self.offset, self.plan);
        if plan.incremental && !unit_agrees(sink.queues(), &mut self.kept_units, rec) {
            // Below `Dd` the kept ConsumeQueue already has this record: it must be the unit at
            // its queue offset (this also checks the queue offset as a re-dispatch would). If
            // not, the kept data or the record is wrong: a rebuild finds out which.
            return Some(format!(
                "the record at {offset} ({}:{} offset {}) is not where the kept ConsumeQueue points",
                rec.topic(),
                rec.queue_id(),
                rec.queue_offset()
            ));
        }
        // Between the end of the kept IndexFile and `Dd`: the checkpoint vouches for the index
        // entries of these records, so there may be none.
        let keyed = || !IndexService::key_hashes(&DispatchEntry::of_record(rec)).is_empty();
        if offset >= plan.index_from && sink.index().is_some() && keyed() {
            return Some(format!(
                "the record at {offset}, below the derived-durable offset {}, has index keys the kept IndexFile lacks",
                plan.cq_from
            ));
        }
        None
    }

    /// What the invalid record at the walk's offset means ([`invalid_at`]): the end of the log,
    /// or (salvage) a span the walk skips, dispatching a filler in its place.
    fn invalid(
        &mut self,
        reason: String,
        can_skip: bool,
        sink: &mut Sink<'a, '_, '_>,
        report: &mut RecoveryReport,
    ) -> Result<Flow> {
        let offset = self.offset;
        let verdict = invalid_at(self.ctx, report, offset, reason, can_skip)?;
        let Verdict::Skip { to } = verdict else {
            return Ok(Flow::End);
        };
        // The damaged span becomes filler records once the walk is over; what follows is
        // dispatched as if they were there already (their queues skip the lost offsets).
        if offset >= self.plan.cq_from {
            let filled = filler::filled_len(offset, to, self.ctx.size);
            let first = filler::pieces(filled, self.ctx.config.max_record_size());
            let filler = DispatchEntry::filler(offset, first[0]);
            match sink.send(filler, false, report)? {
                None => {}
                Some(Stop::Abandoned(reason)) => return Ok(Flow::Abandoned(reason)),
                Some(Stop::Refused(_) | Stop::PipeClosed) => return Ok(Flow::End),
            }
        }
        report.scanned_bytes += to - offset;
        self.offset = to;
        Ok(Flow::Next)
    }

    /// How the walk ended: the log ends at its offset, unless that is below the kept derived
    /// data of an incremental walk.
    fn end(&self) -> Walked {
        let end = self.offset;
        if self.plan.incremental && end < self.plan.cq_from {
            return Walked::Abandoned(format!(
                "the CommitLog ends at {end}, below the kept derived data ({})",
                self.plan.cq_from
            ));
        }
        Walked::End {
            end,
            last_store_timestamp: self.last_store_timestamp,
        }
    }
}
