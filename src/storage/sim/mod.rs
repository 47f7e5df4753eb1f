//! `SimVfs`: an in-memory disk that remembers what is durable, for crash tests.
//!
//! Every file has a *current* image (what reads and mappings see: the page cache) and a
//! *durable* image (what the platter holds). Writes, through the file or through a mapping,
//! change only the current image; `sync_data`/`sync_all` copy the whole file to the durable image,
//! [`MapRegion::flush_range`] the 4 KiB pages it covers. Writes through a mapping cannot be
//! intercepted, so dirty pages are found by diffing the two images when they matter (sync and
//! crash), never tracked on the write path.
//!
//! The namespace works the same way: creates, renames, removes and `mkdir`s change the current
//! namespace at once and are queued as pending metadata operations; [`Vfs::sync_dir`] makes the
//! pending operations of that directory durable. A file's length is durable once the file is
//! synced (data sync or a `flush_range`, as `fdatasync`/`msync` persist the size they need).
//!
//! [`SimVfs::crash`] builds the disk a crash leaves ([`CrashMode`]): the page cache as is
//! (`Kill`), only the durable images (`Drop`), dirty pages kept, lost or torn at a sector
//! boundary (`Torn`), or pending metadata operations individually undone (`Meta`). Bad-disk
//! faults ([`FaultKind`], [`SimVfs::flip_bit`], [`SimVfs::zero_sector`]) and a countdown
//! ([`SimVfs::crash_after_ops`]) after which every operation fails with `EIO` complete it.
//! Everything random is drawn from seeded generators: the same seeds give the same disk.
//!
//! The code is split by concern: this module has the public face (crash modes, faults, the
//! [`SimVfs`] handle and its test controls); `disk` the disk state (namespaces, pending metadata,
//! file images, operation counting) and the building of a crashed disk, `buffer` the current
//! image of a file, `namespace` the path operations and locks, `file` the open files and their
//! mappings.
//!
//! [`MapRegion::flush_range`]: crate::storage::vfs::MapRegion::flush_range
//! [`Vfs::sync_dir`]: crate::storage::vfs::Vfs::sync_dir

mod buffer;
mod disk;
mod file;
mod namespace;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use disk::{root_ns, ArmedFault, Node, Rng, Shared, State};

/// Page size for dirty tracking, `flush_range` rounding and tearing.
pub const SIM_PAGE_SIZE: usize = 4096;
/// Sector size: a torn page is torn at a multiple of this.
pub const SIM_SECTOR_SIZE: usize = 512;
/// Default capacity of a simulated disk: 1 TiB.
const DEFAULT_CAPACITY_BYTES: u64 = 1 << 40;

/// What a crash leaves on the disk, see [`SimVfs::crash`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashMode {
    /// `kill -9`: the page cache survives. The new disk keeps the current images *and* the
    /// knowledge of what is still unsynced, so a later power loss can still drop it.
    Kill,
    /// Power loss: only synced bytes and durable metadata survive.
    Drop,
    /// Power loss with write-back in flight: metadata as it was, each dirty 4 KiB page kept, lost
    /// or torn at a 512-byte boundary (new sectors first or old sectors first).
    Torn,
    /// Power loss that lost part of the metadata journal: each pending create, rename, remove,
    /// `mkdir` and unsynced length change is independently kept or undone; data as in the page
    /// cache.
    Meta,
}

impl CrashMode {
    /// Every mode, for loops.
    pub const ALL: [CrashMode; 4] = [
        CrashMode::Kill,
        CrashMode::Drop,
        CrashMode::Torn,
        CrashMode::Meta,
    ];
}

/// Which operations a one-shot fault ([`SimVfs::fail_nth`]) counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// `write_all_at` and `zero_range`.
    Write,
    /// `sync_data`, `sync_all`, `flush_range` and `sync_dir`.
    Sync,
    /// `allocate` and `set_len`.
    Allocate,
}

/// The error an injected fault returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultError {
    /// `EIO`.
    Eio,
    /// `ENOSPC`.
    Enospc,
}

impl FaultError {
    fn to_io(self) -> io::Error {
        io::Error::from_raw_os_error(match self {
            FaultError::Eio => libc::EIO,
            FaultError::Enospc => libc::ENOSPC,
        })
    }
}

/// The in-memory simulated disk. Cloning shares the same disk.
#[derive(Clone, Debug)]
pub struct SimVfs {
    shared: Arc<Shared>,
}

impl Default for SimVfs {
    fn default() -> Self {
        SimVfs::new(0)
    }
}

impl SimVfs {
    /// An empty disk holding only the directory `/`; `seed` drives [`SimVfs::flip_random_bit`].
    pub fn new(seed: u64) -> SimVfs {
        let state = State {
            cur_ns: root_ns(),
            durable_ns: root_ns(),
            pending: Vec::new(),
            files: HashMap::new(),
            next_id: 1,
            ops: 0,
            crash_at: None,
            crashed: None,
            faults: Vec::new(),
            capacity_bytes: DEFAULT_CAPACITY_BYTES,
            locks: HashSet::new(),
            rng: Rng::new(seed),
        };
        SimVfs::from_state(state)
    }

    fn from_state(state: State) -> SimVfs {
        SimVfs {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        State::lock(&self.shared)
    }

    /// Sets the disk size reported by `disk_usage`; growing files past it fails with `ENOSPC`.
    pub fn set_capacity(&self, bytes: u64) {
        self.state().capacity_bytes = bytes;
    }

    /// Counted (state-changing) operations done on this disk so far.
    pub fn op_count(&self) -> u64 {
        self.state().ops
    }

    /// Crashes after `k` more counted operations (`k >= 1`): the disk as it is right after the
    /// `k`-th is what [`crash`](Self::crash) uses, and every operation after it fails with `EIO`.
    pub fn crash_after_ops(&self, k: u64) {
        let mut st = self.state();
        st.crash_at = Some(st.ops + k.max(1));
    }

    /// Disarms a countdown set by [`crash_after_ops`](Self::crash_after_ops) that has not fired
    /// yet; `false` if the crash already happened.
    pub fn cancel_crash(&self) -> bool {
        let mut st = self.state();
        st.crash_at = None;
        st.crashed.is_none()
    }

    /// Crashes now: every further operation fails with `EIO`.
    pub fn crash_now(&self) {
        let mut st = self.state();
        if st.crashed.is_none() {
            st.crashed = Some(st.image());
        }
    }

    /// Whether the crash point was reached.
    pub fn is_crashed(&self) -> bool {
        self.state().crashed.is_some()
    }

    /// Arms a one-shot fault: the `n`-th operation of `kind` from now (`n >= 1`) fails with
    /// `error` and has no effect.
    pub fn fail_nth(&self, kind: FaultKind, n: u64, error: FaultError) {
        self.state().faults.push(ArmedFault {
            kind,
            remaining: n.max(1),
            error,
        });
    }

    /// The disk a crash leaves: built from the image at the crash point (or from now if no
    /// crash point was reached), as `mode` says, with outcomes drawn from `seed`. The new disk
    /// has no locks, open files, faults or countdown and keeps the capacity.
    pub fn crash(&self, mode: CrashMode, seed: u64) -> SimVfs {
        let st = self.state();
        let img = st.crashed.clone().unwrap_or_else(|| st.image());
        let capacity = st.capacity_bytes;
        drop(st);
        SimVfs::from_state(State::from_image(img, mode, seed, capacity))
    }

    /// Flips bit `bit` (0..8) of byte `offset` of the file at `path`, in the page cache and on
    /// the platter (media corruption).
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        self.corrupt(path, offset, 1, |b| b[0] ^= 1 << (bit % 8))
    }

    /// Zeroes the 512-byte sector `sector` of the file at `path` (clipped to the file), in the
    /// page cache and on the platter.
    pub fn zero_sector(&self, path: &Path, sector: u64) -> io::Result<()> {
        let offset = sector * SIM_SECTOR_SIZE as u64;
        self.corrupt(path, offset, SIM_SECTOR_SIZE, |b| b.fill(0))
    }

    /// Flips one seeded-random bit of a seeded-random non-empty file whose path starts with
    /// `under`; returns the file and the byte offset, `None` if there is no such file.
    pub fn flip_random_bit(&self, under: &Path) -> Option<(PathBuf, u64)> {
        let (path, offset, bit) = {
            let mut st = self.state();
            let candidates: Vec<(PathBuf, usize)> = st
                .cur_ns
                .iter()
                .filter(|(p, _)| p.starts_with(under))
                .filter_map(|(p, n)| match n {
                    Node::File(id) => {
                        let len = st.files.get(id)?.cur.len();
                        (len > 0).then(|| (p.clone(), len))
                    }
                    Node::Dir => None,
                })
                .collect();
            if candidates.is_empty() {
                return None;
            }
            let (path, len) = candidates[st.rng.below(candidates.len() as u64) as usize].clone();
            let offset = st.rng.below(len as u64);
            let bit = st.rng.below(8) as u8;
            (path, offset, bit)
        };
        self.flip_bit(&path, offset, bit).ok()?;
        Some((path, offset))
    }

    fn corrupt(
        &self,
        path: &Path,
        offset: u64,
        len: usize,
        f: impl Fn(&mut [u8]),
    ) -> io::Result<()> {
        let mut st = self.state();
        let Some(Node::File(id)) = st.node(path) else {
            return Err(not_found(path));
        };
        let data = st.file(id);
        let start = usize::try_from(offset).map_err(|_| invalid("offset".into()))?;
        let cur_len = data.cur.len();
        if start >= cur_len {
            return Err(invalid(format!(
                "offset {offset} past the end of {}",
                path.display()
            )));
        }
        let end = (start + len).min(cur_len);
        let mut bytes = vec![0u8; end - start];
        data.cur.read(start, &mut bytes);
        f(&mut bytes);
        data.cur.write(start, &bytes)?;
        if start < data.durable.len() {
            let dend = end.min(data.durable.len());
            let mut d = data.durable[start..dend].to_vec();
            f(&mut d);
            data.durable[start..dend].copy_from_slice(&d);
        }
        Ok(())
    }

    /// Every regular file and its current bytes (what a reader sees), by path.
    pub fn current_files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let st = self.state();
        st.cur_ns
            .iter()
            .filter_map(|(p, n)| match n {
                Node::File(id) => Some((p.clone(), st.files.get(id)?.cur.to_vec())),
                Node::Dir => None,
            })
            .collect()
    }

    /// Every directory of the current namespace.
    pub fn current_dirs(&self) -> Vec<PathBuf> {
        let st = self.state();
        st.cur_ns
            .iter()
            .filter(|(_, n)| **n == Node::Dir)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Whether the disk holds unsynced data or metadata (a power loss now would change it).
    pub fn has_unsynced(&self) -> bool {
        let st = self.state();
        !st.pending.is_empty()
            || st.cur_ns.values().any(|n| match n {
                Node::File(id) => st
                    .files
                    .get(id)
                    .is_some_and(|f| f.cur.to_vec() != f.durable),
                Node::Dir => false,
            })
    }
}

fn mapped_resize() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "SimVfs: the length of a mapped file cannot change while it is mapped",
    )
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("SimVfs: {} not found", path.display()),
    )
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

#[cfg(test)]
mod tests;
