//! Reading fuzz inputs: the hand-written, fixed-width big-endian decoding shared by
//! [`decode_mutations`](crate::decode_mutations) and [`decode_model_ops`](crate::decode_model_ops).
//!
//! The byte format of both input languages is frozen: the committed corpus under `fuzz/corpus`
//! and its replay in `tests/fuzz_corpus.rs` depend on it, so it is not derived with
//! `arbitrary` and must not change.

/// Reads fixed-width big-endian fields; past the end every byte reads as zero.
pub(crate) struct ByteReader<'a> {
    data: &'a [u8],
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        ByteReader { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub(crate) fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }
}
