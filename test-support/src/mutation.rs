//! Mutations of a store image: the `recover_image` input language and the hostile-file
//! fixtures' recipes.
//!
//! The byte encoding ([`encode_mutations`] / [`decode_mutations`]) is hand-written and frozen:
//! the committed corpus under `fuzz/corpus/recover_image` and the fixtures of
//! `tests/hostile_files.rs` are inputs in it, and `tests/fuzz_corpus.rs` replays them. Do not
//! change the decoding of existing opcodes, and do not switch to `arbitrary` (it would give every
//! committed input a new meaning).

use byteorder::{BigEndian, ByteOrder};

use rocketstore::format::checkpoint_layout::{CHECKPOINT_SIZE, POS_CRC, TRAILER_POS};
use rocketstore::format::properties;
use rocketstore::format::record;

use crate::image::{BaseImage, BaseRecord, StoreImage};
use crate::input::ByteReader;
use crate::FIXTURE_SEGMENT_SIZE;

/// Most mutations decoded from one input (bounds the work per fuzz execution).
const MAX_MUTATIONS: usize = 64;
/// Most bytes one [`Mutation::SetBytes`] writes.
const MAX_SET_BYTES: usize = 32;

/// Record fields [`Mutation::SetRecordField`] can overwrite (value written big-endian in the
/// field's width; the topic length in 1 or 2 bytes as the record's magic says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordField {
    /// TOTALSIZE (4 bytes).
    TotalSize,
    /// MAGICCODE (4).
    Magic,
    /// BODYCRC (4).
    BodyCrc,
    /// QUEUEID (4).
    QueueId,
    /// QUEUEOFFSET (8).
    QueueOffset,
    /// PHYSICALOFFSET (8).
    PhysicalOffset,
    /// SYSFLAG (4).
    SysFlag,
    /// BODY LENGTH (4).
    BodyLength,
    /// TOPIC LENGTH (1 or 2).
    TopicLength,
    /// PROPERTIES LENGTH (2).
    PropertiesLength,
    /// STORETIMESTAMP (8).
    StoreTimestamp,
}

const RECORD_FIELDS: [RecordField; 11] = [
    RecordField::TotalSize,
    RecordField::Magic,
    RecordField::BodyCrc,
    RecordField::QueueId,
    RecordField::QueueOffset,
    RecordField::PhysicalOffset,
    RecordField::SysFlag,
    RecordField::BodyLength,
    RecordField::TopicLength,
    RecordField::PropertiesLength,
    RecordField::StoreTimestamp,
];

impl RecordField {
    fn code(self) -> u8 {
        RECORD_FIELDS
            .iter()
            .position(|&f| f == self)
            .expect("listed") as u8
    }

    /// (position in the record, width).
    fn span(self, r: &BaseRecord) -> (usize, usize) {
        match self {
            RecordField::TotalSize => (record::POS_TOTAL_SIZE, 4),
            RecordField::Magic => (record::POS_MAGIC, 4),
            RecordField::BodyCrc => (record::POS_BODY_CRC, 4),
            RecordField::QueueId => (record::POS_QUEUE_ID, 4),
            RecordField::QueueOffset => (record::POS_QUEUE_OFFSET, 8),
            RecordField::PhysicalOffset => (record::POS_PHYSICAL_OFFSET, 8),
            RecordField::SysFlag => (record::POS_SYS_FLAG, 4),
            RecordField::BodyLength => (r.body_len_pos, 4),
            RecordField::TopicLength => (r.topic_len_pos, r.topic_len_width),
            RecordField::PropertiesLength => (r.properties_len_pos, 2),
            RecordField::StoreTimestamp => (r.store_timestamp_pos, 8),
        }
    }
}

/// Checkpoint fields [`Mutation::SetCheckpointField`] can overwrite (8 bytes each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointField {
    /// `physicMsgTimestamp`.
    PhysicTimestamp,
    /// `logicsMsgTimestamp`.
    LogicsTimestamp,
    /// `indexMsgTimestamp`.
    IndexTimestamp,
    /// Trailer: durable CommitLog offset.
    DurableOffset,
    /// Trailer: derived-data durable offset.
    DerivedDurableOffset,
    /// Trailer: number of queues.
    Queues,
    /// Trailer: number of units.
    Units,
    /// Trailer: number of index files.
    IndexFiles,
    /// Trailer: number of index entries.
    IndexEntries,
}

const CHECKPOINT_FIELDS: [CheckpointField; 9] = [
    CheckpointField::PhysicTimestamp,
    CheckpointField::LogicsTimestamp,
    CheckpointField::IndexTimestamp,
    CheckpointField::DurableOffset,
    CheckpointField::DerivedDurableOffset,
    CheckpointField::Queues,
    CheckpointField::Units,
    CheckpointField::IndexFiles,
    CheckpointField::IndexEntries,
];

impl CheckpointField {
    fn code(self) -> u8 {
        CHECKPOINT_FIELDS
            .iter()
            .position(|&f| f == self)
            .expect("listed") as u8
    }

    fn pos(self) -> usize {
        match self {
            CheckpointField::PhysicTimestamp => 0,
            CheckpointField::LogicsTimestamp => 8,
            CheckpointField::IndexTimestamp => 16,
            CheckpointField::DurableOffset => TRAILER_POS + 16,
            CheckpointField::DerivedDurableOffset => TRAILER_POS + 24,
            CheckpointField::Queues => TRAILER_POS + 32,
            CheckpointField::Units => TRAILER_POS + 40,
            CheckpointField::IndexFiles => TRAILER_POS + 48,
            CheckpointField::IndexEntries => TRAILER_POS + 56,
        }
    }
}

/// Directories [`Mutation::AddFile`] and [`Mutation::AddDir`] can add to.
pub const ADD_DIRS: [&str; 5] = [
    "commitlog",
    "consumequeue",
    "consumequeue/alpha/0",
    "index",
    "",
];

/// Names [`Mutation::AddFile`] and [`Mutation::AddDir`] can use: `NEXT_SEGMENT` stands for the
/// 20-digit name of the segment after the last one of the base image.
pub const ADD_NAMES: [&str; 6] = [
    "junk",
    "NEXT_SEGMENT",
    "00000000000000000001",
    "20991231235959999",
    "00000000000000000080",
    "abort",
];

/// One change to a store image. File selectors pick from the image's current files in sorted
/// order (modulo their number); offsets and lengths are reduced modulo the file length, so every
/// mutation applies to any image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Flips bit `bit % 8` of byte `offset`.
    FlipBit {
        /// File selector.
        file: u8,
        /// Byte offset.
        offset: u32,
        /// Bit number.
        bit: u8,
    },
    /// Overwrites bytes starting at `offset` (clipped at the file end).
    SetBytes {
        /// File selector.
        file: u8,
        /// Byte offset.
        offset: u32,
        /// At most 32 bytes.
        bytes: Vec<u8>,
    },
    /// Cuts the file to `len % (file length + 1)` bytes.
    Truncate {
        /// File selector.
        file: u8,
        /// New length.
        len: u32,
    },
    /// Appends `by` zero bytes.
    Extend {
        /// File selector.
        file: u8,
        /// Bytes to add.
        by: u16,
    },
    /// Zeroes `len` bytes from `offset` (clipped).
    Zero {
        /// File selector.
        file: u8,
        /// Byte offset.
        offset: u32,
        /// Bytes to zero.
        len: u16,
    },
    /// Removes the file.
    Delete {
        /// File selector.
        file: u8,
    },
    /// Adds a file `ADD_DIRS[dir]/ADD_NAMES[name]` of `len` bytes of `fill` (replacing any).
    AddFile {
        /// Directory index (modulo).
        dir: u8,
        /// Name index (modulo).
        name: u8,
        /// Length.
        len: u16,
        /// Byte value of the content.
        fill: u8,
    },
    /// Adds a directory `ADD_DIRS[dir]/ADD_NAMES[name]`.
    AddDir {
        /// Directory index (modulo).
        dir: u8,
        /// Name index (modulo).
        name: u8,
    },
    /// Creates an empty `abort` file (the next open is an unclean one).
    CreateAbort,
    /// Writes `value` into a field of base record `record % 13`, at its base position (no-op if
    /// its segment is gone or too short).
    SetRecordField {
        /// Base record index (modulo).
        record: u8,
        /// Field code (modulo; see [`RecordField`]).
        field: u8,
        /// Value, truncated to the field's width.
        value: u64,
    },
    /// Recomputes BODYCRC and the `__CRC32#` property of base record `record % 13` over its base
    /// span, so field changes pass the CRC checks.
    ResealRecord {
        /// Base record index (modulo).
        record: u8,
    },
    /// Writes `value` into a checkpoint field (no-op if the checkpoint is too short).
    SetCheckpointField {
        /// Field code (modulo; see [`CheckpointField`]).
        field: u8,
        /// Value.
        value: u64,
    },
    /// Recomputes the checkpoint trailer CRC (no-op unless the checkpoint is 4096 bytes).
    ResealCheckpoint,
    /// Removes the `checkpoint` file (no-op if it is gone).
    DeleteCheckpoint,
    /// XORs byte `offset % 92` of our checkpoint trailer (`TRAILER_POS..POS_CRC + 4`: magic,
    /// version, flags, offsets, summary, timestamps, CRC) with `xor` (1 if zero), without
    /// resealing: the trailer no longer checks out (no-op if the checkpoint is too short).
    DamageCheckpointTrailer {
        /// Byte within the trailer (modulo its length).
        offset: u8,
        /// Bits to flip (zero flips bit 0).
        xor: u8,
    },
    /// XORs byte `offset % 24` of RocketMQ's three timestamps at the checkpoint's head with
    /// `xor` (1 if zero), as a broker rewriting them does; the trailer, whose CRC covers only
    /// itself, stays intact (no-op if the checkpoint is too short).
    DamageCheckpointHead {
        /// Byte within the head (modulo 24).
        offset: u8,
        /// Bits to flip (zero flips bit 0).
        xor: u8,
    },
}

/// Length of our checkpoint trailer, CRC included.
const CHECKPOINT_TRAILER_LEN: usize = POS_CRC + 4 - TRAILER_POS;
/// Length of RocketMQ's timestamps at the head of the checkpoint.
const CHECKPOINT_HEAD_LEN: usize = 24;

/// XORs byte `pos` of the image's checkpoint with `xor` (1 if zero), if it has that byte.
fn flip_checkpoint_byte(img: &mut StoreImage, pos: usize, xor: u8) {
    if let Some(b) = img
        .files
        .get_mut("checkpoint")
        .and_then(|cp| cp.get_mut(pos))
    {
        *b ^= xor.max(1);
    }
}

impl Mutation {
    /// A [`Mutation::SetRecordField`].
    pub fn set_record_field(record: usize, field: RecordField, value: u64) -> Mutation {
        Mutation::SetRecordField {
            record: record as u8,
            field: field.code(),
            value,
        }
    }

    /// A [`Mutation::SetCheckpointField`].
    pub fn set_checkpoint_field(field: CheckpointField, value: u64) -> Mutation {
        Mutation::SetCheckpointField {
            field: field.code(),
            value,
        }
    }

    /// Applies the mutation to `img`, whose records are those of `base`.
    pub fn apply(&self, img: &mut StoreImage, base: &BaseImage) {
        match self {
            Mutation::FlipBit { file, offset, bit } => {
                if let Some(f) = file_mut(img, *file) {
                    if !f.is_empty() {
                        let i = *offset as usize % f.len();
                        f[i] ^= 1 << (bit % 8);
                    }
                }
            }
            Mutation::SetBytes {
                file,
                offset,
                bytes,
            } => {
                if let Some(f) = file_mut(img, *file) {
                    if !f.is_empty() {
                        let start = *offset as usize % f.len();
                        let n = bytes.len().min(f.len() - start);
                        f[start..start + n].copy_from_slice(&bytes[..n]);
                    }
                }
            }
            Mutation::Truncate { file, len } => {
                if let Some(f) = file_mut(img, *file) {
                    let n = *len as usize % (f.len() + 1);
                    f.truncate(n);
                }
            }
            Mutation::Extend { file, by } => {
                if let Some(f) = file_mut(img, *file) {
                    f.resize(f.len() + *by as usize, 0);
                }
            }
            Mutation::Zero { file, offset, len } => {
                if let Some(f) = file_mut(img, *file) {
                    if !f.is_empty() {
                        let start = *offset as usize % f.len();
                        let end = start.saturating_add(*len as usize).min(f.len());
                        f[start..end].fill(0);
                    }
                }
            }
            Mutation::Delete { file } => {
                if let Some(p) = img.select(*file) {
                    img.files.remove(&p);
                }
            }
            Mutation::AddFile {
                dir,
                name,
                len,
                fill,
            } => {
                let path = added_path(*dir, *name, base);
                img.dirs.remove(&path);
                img.files.insert(path, vec![*fill; *len as usize]);
            }
            Mutation::AddDir { dir, name } => {
                let path = added_path(*dir, *name, base);
                img.files.remove(&path);
                img.dirs.insert(path);
            }
            Mutation::CreateAbort => {
                img.dirs.remove("abort");
                img.files.insert("abort".into(), Vec::new());
            }
            Mutation::SetRecordField {
                record,
                field,
                value,
            } => {
                let r = &base.records[*record as usize % base.records.len()];
                let f = RECORD_FIELDS[*field as usize % RECORD_FIELDS.len()];
                let (pos, width) = f.span(r);
                if let Some(seg) = img.files.get_mut(&r.segment_path()) {
                    let at = r.segment_pos() + pos;
                    if let Some(dst) = seg.get_mut(at..at + width) {
                        dst.copy_from_slice(&value.to_be_bytes()[8 - width..]);
                    }
                }
            }
            Mutation::ResealRecord { record } => {
                let r = &base.records[*record as usize % base.records.len()];
                if let Some(seg) = img.files.get_mut(&r.segment_path()) {
                    let at = r.segment_pos();
                    if let Some(rec) = seg.get_mut(at..at + r.size) {
                        let body_pos = r.body_len_pos + 4;
                        let crc = record::masked_crc32(&rec[body_pos..body_pos + r.body.len()]);
                        BigEndian::write_u32(&mut rec[record::POS_BODY_CRC..], crc);
                        let crc_pos = r.size - properties::CRC32_RESERVED_LEN;
                        let crc = record::masked_crc32(&rec[..crc_pos]);
                        properties::write_crc_property(&mut rec[crc_pos..], crc);
                    }
                }
            }
            Mutation::SetCheckpointField { field, value } => {
                let f = CHECKPOINT_FIELDS[*field as usize % CHECKPOINT_FIELDS.len()];
                if let Some(cp) = img.files.get_mut("checkpoint") {
                    if let Some(dst) = cp.get_mut(f.pos()..f.pos() + 8) {
                        dst.copy_from_slice(&value.to_be_bytes());
                    }
                }
            }
            Mutation::ResealCheckpoint => {
                if let Some(cp) = img.files.get_mut("checkpoint") {
                    if cp.len() == CHECKPOINT_SIZE {
                        rocketstore::format::checkpoint_layout::reseal(cp);
                    }
                }
            }
            Mutation::DeleteCheckpoint => {
                img.files.remove("checkpoint");
            }
            Mutation::DamageCheckpointTrailer { offset, xor } => {
                let pos = TRAILER_POS + *offset as usize % CHECKPOINT_TRAILER_LEN;
                flip_checkpoint_byte(img, pos, *xor);
            }
            Mutation::DamageCheckpointHead { offset, xor } => {
                flip_checkpoint_byte(img, *offset as usize % CHECKPOINT_HEAD_LEN, *xor);
            }
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Mutation::FlipBit { file, offset, bit } => {
                out.push(0);
                out.push(*file);
                out.extend_from_slice(&offset.to_be_bytes());
                out.push(*bit);
            }
            Mutation::SetBytes {
                file,
                offset,
                bytes,
            } => {
                out.push(1);
                out.push(*file);
                out.extend_from_slice(&offset.to_be_bytes());
                let n = bytes.len().min(MAX_SET_BYTES);
                out.push(n as u8);
                out.extend_from_slice(&bytes[..n]);
            }
            Mutation::Truncate { file, len } => {
                out.push(2);
                out.push(*file);
                out.extend_from_slice(&len.to_be_bytes());
            }
            Mutation::Extend { file, by } => {
                out.push(3);
                out.push(*file);
                out.extend_from_slice(&by.to_be_bytes());
            }
            Mutation::Zero { file, offset, len } => {
                out.push(4);
                out.push(*file);
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
            }
            Mutation::Delete { file } => {
                out.push(5);
                out.push(*file);
            }
            Mutation::AddFile {
                dir,
                name,
                len,
                fill,
            } => {
                out.extend_from_slice(&[6, *dir, *name]);
                out.extend_from_slice(&len.to_be_bytes());
                out.push(*fill);
            }
            Mutation::AddDir { dir, name } => out.extend_from_slice(&[7, *dir, *name]),
            Mutation::CreateAbort => out.push(8),
            Mutation::SetRecordField {
                record,
                field,
                value,
            } => {
                out.extend_from_slice(&[9, *record, *field]);
                out.extend_from_slice(&value.to_be_bytes());
            }
            Mutation::ResealRecord { record } => out.extend_from_slice(&[10, *record]),
            Mutation::SetCheckpointField { field, value } => {
                out.extend_from_slice(&[11, *field]);
                out.extend_from_slice(&value.to_be_bytes());
            }
            Mutation::ResealCheckpoint => out.push(12),
            Mutation::DeleteCheckpoint => out.push(13),
            Mutation::DamageCheckpointTrailer { offset, xor } => {
                out.extend_from_slice(&[14, *offset, *xor]);
            }
            Mutation::DamageCheckpointHead { offset, xor } => {
                out.extend_from_slice(&[15, *offset, *xor]);
            }
        }
    }
}

fn file_mut(img: &mut StoreImage, sel: u8) -> Option<&mut Vec<u8>> {
    let p = img.select(sel)?;
    img.files.get_mut(&p)
}

fn added_path(dir: u8, name: u8, base: &BaseImage) -> String {
    let dir = ADD_DIRS[dir as usize % ADD_DIRS.len()];
    let name = match ADD_NAMES[name as usize % ADD_NAMES.len()] {
        "NEXT_SEGMENT" => {
            let next =
                base.end - base.end % FIXTURE_SEGMENT_SIZE as u64 + FIXTURE_SEGMENT_SIZE as u64;
            format!("{next:020}")
        }
        n => n.to_string(),
    };
    if dir.is_empty() {
        name
    } else {
        format!("{dir}/{name}")
    }
}

/// Encodes mutations as a `recover_image` input.
pub fn encode_mutations(mutations: &[Mutation]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in mutations {
        m.encode_into(&mut out);
    }
    out
}

/// Decodes a `recover_image` input: at most 64 mutations; an opcode byte (modulo 16) then its
/// fields, big-endian, missing bytes read as zero. Every byte string decodes.
///
/// Opcodes 0..=12 are those of the first version (modulo 13), so an old corpus file whose
/// opcode bytes are all below 13 decodes as it always did; 13..=15 are the checkpoint
/// mutations.
pub fn decode_mutations(data: &[u8]) -> Vec<Mutation> {
    let mut r = ByteReader::new(data);
    let mut out = Vec::new();
    while !r.is_empty() && out.len() < MAX_MUTATIONS {
        let m = match r.u8() % 16 {
            0 => Mutation::FlipBit {
                file: r.u8(),
                offset: r.u32(),
                bit: r.u8(),
            },
            1 => {
                let file = r.u8();
                let offset = r.u32();
                let n = r.u8() as usize % (MAX_SET_BYTES + 1);
                Mutation::SetBytes {
                    file,
                    offset,
                    bytes: (0..n).map(|_| r.u8()).collect(),
                }
            }
            2 => Mutation::Truncate {
                file: r.u8(),
                len: r.u32(),
            },
            3 => Mutation::Extend {
                file: r.u8(),
                by: r.u16(),
            },
            4 => Mutation::Zero {
                file: r.u8(),
                offset: r.u32(),
                len: r.u16(),
            },
            5 => Mutation::Delete { file: r.u8() },
            6 => Mutation::AddFile {
                dir: r.u8(),
                name: r.u8(),
                len: r.u16(),
                fill: r.u8(),
            },
            7 => Mutation::AddDir {
                dir: r.u8(),
                name: r.u8(),
            },
            8 => Mutation::CreateAbort,
            9 => Mutation::SetRecordField {
                record: r.u8(),
                field: r.u8(),
                value: r.u64(),
            },
            10 => Mutation::ResealRecord { record: r.u8() },
            11 => Mutation::SetCheckpointField {
                field: r.u8(),
                value: r.u64(),
            },
            12 => Mutation::ResealCheckpoint,
            13 => Mutation::DeleteCheckpoint,
            14 => Mutation::DamageCheckpointTrailer {
                offset: r.u8(),
                xor: r.u8(),
            },
            _ => Mutation::DamageCheckpointHead {
                offset: r.u8(),
                xor: r.u8(),
            },
        };
        out.push(m);
    }
    out
}
