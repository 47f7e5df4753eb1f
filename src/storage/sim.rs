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
//! Invariants:
//!
//! * A mapped file's current image lives in one heap buffer allocated at the file's full length
//!   when it is first mapped; it never moves or changes size while a region of it lives (a
//!   resize of such a file is refused with `InvalidInput`), so region pointers stay valid.
//! * The simulated disk reads mapped memory inside its own operations (sync, crash snapshot,
//!   `read_exact_at`). Like the kernel reading a page under a writer, a thread writing through
//!   the mapping into the very bytes a concurrent operation reads would race; the crash tests
//!   drive the store from one thread, and the engine only syncs bytes it has finished writing.
//! * Counted operations are the state-changing ones (create, write, allocate, set_len,
//!   zero_range, remove, rename, mkdir, sync, flush, lock); reads are not crash points, so a
//!   crash point names the same disk state regardless of how often the engine looks around.

use std::alloc::{self, Layout};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};

use super::vfs::{DirEntry, DiskUsage, FileKind, LockGuard, MapRegion, OpenMode, Vfs, VfsFile};

/// Page size for dirty tracking, `flush_range` rounding and tearing.
pub const SIM_PAGE_SIZE: usize = 4096;
/// Sector size: a torn page is torn at a multiple of this.
pub const SIM_SECTOR_SIZE: usize = 512;
/// Alignment of mapped buffers (a real mapping is page-aligned).
const MAP_ALIGN: usize = 4096;
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

/// splitmix64: a tiny seeded generator, enough for choosing crash outcomes.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

type FileId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(FileId),
}

/// A metadata operation not yet made durable by a directory sync.
#[derive(Clone, Debug)]
enum MetaOp {
    Mkdir {
        path: PathBuf,
    },
    Create {
        path: PathBuf,
        id: FileId,
    },
    Remove {
        path: PathBuf,
        id: FileId,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
        id: FileId,
    },
    RemoveTree {
        path: PathBuf,
    },
}

impl MetaOp {
    /// The directory whose sync makes this operation durable.
    fn dir(&self) -> Option<&Path> {
        match self {
            MetaOp::Mkdir { path }
            | MetaOp::Create { path, .. }
            | MetaOp::Remove { path, .. }
            | MetaOp::RemoveTree { path } => path.parent(),
            MetaOp::Rename { to, .. } => to.parent(),
        }
    }

    fn apply(&self, ns: &mut BTreeMap<PathBuf, Node>) {
        match self {
            MetaOp::Mkdir { path } => {
                ns.entry(path.clone()).or_insert(Node::Dir);
            }
            MetaOp::Create { path, id } => {
                ns.insert(path.clone(), Node::File(*id));
            }
            MetaOp::Remove { path, id } => {
                if ns.get(path) == Some(&Node::File(*id)) {
                    ns.remove(path);
                }
            }
            MetaOp::Rename { from, to, id } => {
                if ns.get(from) == Some(&Node::File(*id)) {
                    ns.remove(from);
                }
                ns.insert(to.clone(), Node::File(*id));
            }
            MetaOp::RemoveTree { path } => {
                ns.retain(|p, _| !p.starts_with(path));
            }
        }
    }

    fn file_id(&self) -> Option<FileId> {
        match self {
            MetaOp::Create { id, .. } | MetaOp::Remove { id, .. } | MetaOp::Rename { id, .. } => {
                Some(*id)
            }
            _ => None,
        }
    }
}

/// A fixed-size, page-aligned, zero-initialised heap buffer: the current image of a mapped file.
struct MapBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `MapBuf` owns its allocation exclusively; the pointer is never reallocated or freed
// before drop. Concurrent access through it follows the rules of the module docs (the mapping
// contract of `MapRegion`), exactly as for a real shared mapping, which is `Send + Sync` too.
unsafe impl Send for MapBuf {}
// SAFETY: see the `Send` impl: shared access goes through raw pointers only.
unsafe impl Sync for MapBuf {}

impl MapBuf {
    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len.max(1), MAP_ALIGN).expect("mapping layout")
    }

    fn new(content: &[u8]) -> MapBuf {
        let layout = MapBuf::layout(content.len());
        // SAFETY: the layout has a non-zero size (`max(1)`).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        // SAFETY: `ptr` is a fresh allocation of at least `content.len()` bytes that cannot
        // overlap `content`.
        unsafe { std::ptr::copy_nonoverlapping(content.as_ptr(), ptr.as_ptr(), content.len()) };
        MapBuf {
            ptr,
            len: content.len(),
        }
    }

    fn read(&self, offset: usize, buf: &mut [u8]) {
        assert!(offset + buf.len() <= self.len, "MapBuf read out of range");
        // SAFETY: the range is inside the allocation (checked above) and `buf` is a distinct
        // Rust buffer. The bytes may be written through a mapping by another thread only under
        // the single-writer discipline described in the module docs.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
    }

    fn write(&self, offset: usize, src: &[u8]) {
        assert!(offset + src.len() <= self.len, "MapBuf write out of range");
        // SAFETY: the range is inside the allocation (checked above); `src` is a distinct Rust
        // buffer. Writing the file's bytes is the file's own data changing, which the
        // `MapRegion` contract allows under a live mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len())
        };
    }

    fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len];
        self.read(0, &mut v);
        v
    }
}

impl Drop for MapBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout and not freed before.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), MapBuf::layout(self.len)) };
    }
}

impl fmt::Debug for MapBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MapBuf({} bytes at {:p})", self.len, self.ptr)
    }
}

/// The current image of a file: a plain vector, or the mapped buffer once mapped.
#[derive(Debug)]
enum Content {
    Plain(Vec<u8>),
    Mapped(Arc<MapBuf>),
}

impl Content {
    fn len(&self) -> usize {
        match self {
            Content::Plain(v) => v.len(),
            Content::Mapped(m) => m.len,
        }
    }

    fn to_vec(&self) -> Vec<u8> {
        match self {
            Content::Plain(v) => v.clone(),
            Content::Mapped(m) => m.to_vec(),
        }
    }

    fn read(&self, offset: usize, buf: &mut [u8]) {
        match self {
            Content::Plain(v) => buf.copy_from_slice(&v[offset..offset + buf.len()]),
            Content::Mapped(m) => m.read(offset, buf),
        }
    }

    /// The plain vector, converting an unused mapped buffer back; `None` while a region lives.
    fn plain_mut(&mut self) -> Option<&mut Vec<u8>> {
        if let Content::Mapped(m) = self {
            if Arc::strong_count(m) > 1 {
                return None;
            }
            *self = Content::Plain(m.to_vec());
        }
        match self {
            Content::Plain(v) => Some(v),
            Content::Mapped(_) => None,
        }
    }

    /// Writes `src` at `offset` (inside the current length for a mapped file).
    fn write(&mut self, offset: usize, src: &[u8]) -> io::Result<()> {
        let end = offset + src.len();
        if let Content::Mapped(m) = self {
            if end <= m.len {
                m.write(offset, src);
                return Ok(());
            }
        }
        let v = self.plain_mut().ok_or_else(mapped_resize)?;
        if v.len() < end {
            v.resize(end, 0);
        }
        v[offset..end].copy_from_slice(src);
        Ok(())
    }

    fn set_len(&mut self, len: usize) -> io::Result<()> {
        if len == self.len() {
            return Ok(());
        }
        self.plain_mut().ok_or_else(mapped_resize)?.resize(len, 0);
        Ok(())
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

#[derive(Debug)]
struct FileData {
    cur: Content,
    /// The durable image; its length is the durable length.
    durable: Vec<u8>,
}

impl FileData {
    /// Makes the length durable and copies the pages covering `[from, to)` of the current image
    /// into the durable image.
    fn make_durable(&mut self, from: usize, to: usize) {
        let len = self.cur.len();
        self.durable.resize(len, 0);
        let from = from / SIM_PAGE_SIZE * SIM_PAGE_SIZE;
        let to = to
            .div_ceil(SIM_PAGE_SIZE)
            .saturating_mul(SIM_PAGE_SIZE)
            .min(len);
        if from < to {
            self.cur.read(from, &mut self.durable[from..to]);
        }
    }
}

/// A frozen copy of a disk: the input of [`SimVfs::crash`].
#[derive(Clone, Debug)]
struct Image {
    cur_ns: BTreeMap<PathBuf, Node>,
    durable_ns: BTreeMap<PathBuf, Node>,
    pending: Vec<MetaOp>,
    /// (current, durable) bytes of every file still reachable.
    files: BTreeMap<FileId, (Vec<u8>, Vec<u8>)>,
    next_id: FileId,
}

#[derive(Debug)]
struct ArmedFault {
    kind: FaultKind,
    remaining: u64,
    error: FaultError,
}

#[derive(Debug)]
struct State {
    cur_ns: BTreeMap<PathBuf, Node>,
    durable_ns: BTreeMap<PathBuf, Node>,
    pending: Vec<MetaOp>,
    files: HashMap<FileId, FileData>,
    next_id: FileId,
    /// Counted (state-changing) operations done so far.
    ops: u64,
    /// Crash once `ops` reaches this.
    crash_at: Option<u64>,
    /// The image at the crash point; `Some` means crashed: everything fails with `EIO`.
    crashed: Option<Image>,
    faults: Vec<ArmedFault>,
    capacity_bytes: u64,
    locks: HashSet<PathBuf>,
    rng: Rng,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
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

fn root_ns() -> BTreeMap<PathBuf, Node> {
    BTreeMap::from([(PathBuf::from("/"), Node::Dir)])
}

/// Keeps only entries whose parent is a directory that is kept (the root always is).
fn materialize(ns: BTreeMap<PathBuf, Node>) -> BTreeMap<PathBuf, Node> {
    let mut out: BTreeMap<PathBuf, Node> = root_ns();
    // Path order puts a directory before everything below it.
    for (path, node) in ns {
        if path.parent().is_none() {
            continue;
        }
        let parent_ok = path
            .parent()
            .is_some_and(|p| out.get(p) == Some(&Node::Dir));
        if parent_ok {
            out.insert(path, node);
        }
    }
    out
}

impl State {
    fn lock(shared: &Shared) -> MutexGuard<'_, State> {
        shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn alive(&self) -> io::Result<()> {
        if self.crashed.is_some() {
            return Err(eio());
        }
        Ok(())
    }

    /// Counts an operation of `kind` against the armed faults; `Err` if one fires.
    fn check_fault(&mut self, kind: FaultKind) -> io::Result<()> {
        let mut fired = None;
        for (i, f) in self.faults.iter_mut().enumerate() {
            if f.kind == kind {
                f.remaining -= 1;
                if f.remaining == 0 && fired.is_none() {
                    fired = Some(i);
                }
            }
        }
        if let Some(i) = fired {
            let f = self.faults.remove(i);
            return Err(f.error.to_io());
        }
        Ok(())
    }

    /// A counted operation completed: count it and crash if the countdown says so.
    fn done(&mut self) {
        self.ops += 1;
        if self.crash_at == Some(self.ops) {
            self.crashed = Some(self.image());
        }
    }

    fn image(&self) -> Image {
        let mut ids: HashSet<FileId> = HashSet::new();
        for ns in [&self.cur_ns, &self.durable_ns] {
            ids.extend(ns.values().filter_map(|n| match n {
                Node::File(id) => Some(*id),
                Node::Dir => None,
            }));
        }
        ids.extend(self.pending.iter().filter_map(MetaOp::file_id));
        let files = ids
            .into_iter()
            .filter_map(|id| {
                let f = self.files.get(&id)?;
                Some((id, (f.cur.to_vec(), f.durable.clone())))
            })
            .collect();
        Image {
            cur_ns: self.cur_ns.clone(),
            durable_ns: self.durable_ns.clone(),
            pending: self.pending.clone(),
            files,
            next_id: self.next_id,
        }
    }

    fn used_bytes(&self) -> u64 {
        let mut seen = HashSet::new();
        let mut used = 0u64;
        for n in self.cur_ns.values() {
            if let Node::File(id) = n {
                if seen.insert(*id) {
                    used += self.files.get(id).map_or(0, |f| f.cur.len() as u64);
                }
            }
        }
        used
    }

    /// `ENOSPC` if growing a file by `grow` bytes would exceed the capacity.
    fn check_space(&self, grow: u64) -> io::Result<()> {
        if grow > 0 && self.used_bytes().saturating_add(grow) > self.capacity_bytes {
            return Err(enospc());
        }
        Ok(())
    }

    fn node(&self, path: &Path) -> Option<Node> {
        self.cur_ns.get(path).copied()
    }

    fn parent_is_dir(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(p) if self.node(p) == Some(Node::Dir) => Ok(()),
            Some(p) => Err(not_found(p)),
            None => Err(invalid(format!("{} has no parent", path.display()))),
        }
    }

    fn create_file(&mut self, path: &Path) -> FileId {
        let id = self.next_id;
        self.next_id += 1;
        self.files.insert(
            id,
            FileData {
                cur: Content::Plain(Vec::new()),
                durable: Vec::new(),
            },
        );
        self.cur_ns.insert(path.to_path_buf(), Node::File(id));
        self.pending.push(MetaOp::Create {
            path: path.to_path_buf(),
            id,
        });
        id
    }

    fn file(&mut self, id: FileId) -> &mut FileData {
        self.files.get_mut(&id).expect("open file has data")
    }

    fn from_image(img: Image, mode: CrashMode, seed: u64, capacity_bytes: u64) -> State {
        let mut rng = Rng::new(seed);
        let mut state = State {
            cur_ns: root_ns(),
            durable_ns: root_ns(),
            pending: Vec::new(),
            files: HashMap::new(),
            next_id: img.next_id,
            ops: 0,
            crash_at: None,
            crashed: None,
            faults: Vec::new(),
            capacity_bytes,
            locks: HashSet::new(),
            rng: Rng::new(seed.rotate_left(17) ^ 0xA5A5),
        };
        if mode == CrashMode::Kill {
            state.cur_ns = img.cur_ns;
            state.durable_ns = img.durable_ns;
            state.pending = img.pending;
            state.files = img
                .files
                .into_iter()
                .map(|(id, (cur, durable))| {
                    (
                        id,
                        FileData {
                            cur: Content::Plain(cur),
                            durable,
                        },
                    )
                })
                .collect();
            return state;
        }
        let ns = match mode {
            CrashMode::Drop => img.durable_ns.clone(),
            CrashMode::Torn => img.cur_ns.clone(),
            _ => {
                let mut ns = img.durable_ns.clone();
                for op in &img.pending {
                    if rng.below(2) == 0 {
                        op.apply(&mut ns);
                    }
                }
                ns
            }
        };
        let ns = materialize(ns);
        for node in ns.values() {
            let Node::File(id) = *node else { continue };
            if state.files.contains_key(&id) {
                continue;
            }
            let Some((cur, durable)) = img.files.get(&id) else {
                continue;
            };
            let bytes = match mode {
                CrashMode::Drop => durable.clone(),
                CrashMode::Torn => tear(cur, durable, &mut rng),
                _ => {
                    if cur.len() != durable.len() && rng.below(2) == 0 {
                        // The length change is undone; data as in the page cache.
                        let mut v = cur.clone();
                        if durable.len() < cur.len() {
                            v.truncate(durable.len());
                        } else {
                            v.extend_from_slice(&durable[cur.len()..]);
                        }
                        v
                    } else {
                        cur.clone()
                    }
                }
            };
            state.files.insert(
                id,
                FileData {
                    durable: bytes.clone(),
                    cur: Content::Plain(bytes),
                },
            );
        }
        state.cur_ns = ns.clone();
        state.durable_ns = ns;
        state
    }
}

/// The durable image with each dirty page of `cur` kept, lost or torn (current length).
fn tear(cur: &[u8], durable: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = durable.to_vec();
    out.resize(cur.len(), 0);
    for start in (0..cur.len()).step_by(SIM_PAGE_SIZE) {
        let end = (start + SIM_PAGE_SIZE).min(cur.len());
        if out[start..end] == cur[start..end] {
            continue;
        }
        match rng.below(3) {
            0 => out[start..end].copy_from_slice(&cur[start..end]),
            1 => {}
            _ => {
                let sectors = (end - start).div_ceil(SIM_SECTOR_SIZE);
                if sectors < 2 {
                    continue;
                }
                let cut = (start + (1 + rng.below(sectors as u64 - 1) as usize) * SIM_SECTOR_SIZE)
                    .min(end);
                if rng.below(2) == 0 {
                    out[start..cut].copy_from_slice(&cur[start..cut]);
                } else {
                    out[cut..end].copy_from_slice(&cur[cut..end]);
                }
            }
        }
    }
    out
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

impl Vfs for SimVfs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state();
        st.alive()?;
        let missing: Vec<PathBuf> = path
            .ancestors()
            .take_while(|p| st.node(p).is_none())
            .map(Path::to_path_buf)
            .collect();
        if let Some(top) = missing.last().and_then(|p| p.parent()) {
            if st.node(top) != Some(Node::Dir) {
                return Err(io::Error::other(format!(
                    "SimVfs: {} is not a directory",
                    top.display()
                )));
            }
        } else if st.node(path) != Some(Node::Dir) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("SimVfs: {} exists and is not a directory", path.display()),
            ));
        }
        for p in missing.into_iter().rev() {
            st.cur_ns.insert(p.clone(), Node::Dir);
            st.pending.push(MetaOp::Mkdir { path: p });
        }
        st.done();
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let st = self.state();
        st.alive()?;
        match st.node(path) {
            Some(Node::Dir) => {}
            Some(Node::File(_)) => {
                return Err(io::Error::other(format!(
                    "SimVfs: {} is not a directory",
                    path.display()
                )))
            }
            None => return Err(not_found(path)),
        }
        let mut out = Vec::new();
        for (p, n) in st.cur_ns.range(path.to_path_buf()..) {
            if !p.starts_with(path) {
                break;
            }
            if p.parent() != Some(path) {
                continue;
            }
            out.push(entry_of(&st, p, *n));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn metadata(&self, path: &Path) -> io::Result<Option<DirEntry>> {
        let st = self.state();
        st.alive()?;
        Ok(st.node(path).map(|n| entry_of(&st, path, n)))
    }

    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let mut st = self.state();
        st.alive()?;
        let existing = st.node(path);
        let id = match (existing, mode) {
            (Some(Node::Dir), _) => {
                return Err(io::Error::other(format!(
                    "SimVfs: {} is a directory",
                    path.display()
                )))
            }
            (Some(Node::File(_)), OpenMode::CreateNew) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("SimVfs: {} exists", path.display()),
                ))
            }
            (Some(Node::File(id)), _) => id,
            (None, OpenMode::CreateNew | OpenMode::CreateOrOpen) => {
                st.parent_is_dir(path)?;
                let id = st.create_file(path);
                st.done();
                id
            }
            (None, _) => return Err(not_found(path)),
        };
        Ok(Box::new(SimFile {
            shared: self.shared.clone(),
            id,
            path: path.to_path_buf(),
            writable: mode != OpenMode::ReadOnly,
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state();
        st.alive()?;
        match st.node(path) {
            Some(Node::File(id)) => {
                st.cur_ns.remove(path);
                st.pending.push(MetaOp::Remove {
                    path: path.to_path_buf(),
                    id,
                });
                st.done();
                Ok(())
            }
            Some(Node::Dir) => Err(io::Error::other(format!(
                "SimVfs: {} is a directory",
                path.display()
            ))),
            None => Err(not_found(path)),
        }
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state();
        st.alive()?;
        match st.node(path) {
            Some(Node::Dir) if path.parent().is_some() => {
                st.cur_ns.retain(|p, _| !p.starts_with(path));
                st.pending.push(MetaOp::RemoveTree {
                    path: path.to_path_buf(),
                });
                st.done();
                Ok(())
            }
            Some(_) => Err(io::Error::other(format!(
                "SimVfs: cannot remove {} as a directory tree",
                path.display()
            ))),
            None => Err(not_found(path)),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state();
        st.alive()?;
        let Some(Node::File(id)) = st.node(from) else {
            return Err(not_found(from));
        };
        if st.node(to) == Some(Node::Dir) {
            return Err(io::Error::other(format!(
                "SimVfs: rename onto directory {}",
                to.display()
            )));
        }
        st.parent_is_dir(to)?;
        st.cur_ns.remove(from);
        st.cur_ns.insert(to.to_path_buf(), Node::File(id));
        st.pending.push(MetaOp::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            id,
        });
        st.done();
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state();
        st.alive()?;
        if st.node(path) != Some(Node::Dir) {
            return Err(not_found(path));
        }
        st.check_fault(FaultKind::Sync)?;
        let pending = std::mem::take(&mut st.pending);
        let mut rest = Vec::with_capacity(pending.len());
        for op in pending {
            if op.dir() == Some(path) {
                op.apply(&mut st.durable_ns);
            } else {
                rest.push(op);
            }
        }
        st.pending = rest;
        st.done();
        Ok(())
    }

    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let mut st = self.state();
        st.alive()?;
        if st.locks.contains(path) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another holder", path.display()),
            ));
        }
        let id = match st.node(path) {
            Some(Node::File(id)) => id,
            Some(Node::Dir) => {
                return Err(io::Error::other(format!(
                    "SimVfs: {} is a directory",
                    path.display()
                )))
            }
            None => {
                st.parent_is_dir(path)?;
                st.create_file(path)
            }
        };
        if st.file(id).cur.len() == 0 {
            st.file(id).cur.write(0, b"lock")?;
        }
        st.locks.insert(path.to_path_buf());
        st.done();
        Ok(Box::new(SimLockGuard {
            shared: self.shared.clone(),
            path: path.to_path_buf(),
        }))
    }

    fn disk_usage(&self, _path: &Path) -> io::Result<DiskUsage> {
        let st = self.state();
        st.alive()?;
        Ok(DiskUsage {
            total_bytes: st.capacity_bytes,
            available_bytes: st.capacity_bytes.saturating_sub(st.used_bytes()),
        })
    }
}

fn entry_of(st: &State, path: &Path, node: Node) -> DirEntry {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match node {
        Node::Dir => DirEntry {
            name,
            kind: FileKind::Dir,
            len: 0,
        },
        Node::File(id) => DirEntry {
            name,
            kind: FileKind::File,
            len: st.files.get(&id).map_or(0, |f| f.cur.len() as u64),
        },
    }
}

/// The lock taken by [`SimVfs`]'s `lock_exclusive`; dropping it releases the path.
#[derive(Debug)]
struct SimLockGuard {
    shared: Arc<Shared>,
    path: PathBuf,
}

impl LockGuard for SimLockGuard {}

impl Drop for SimLockGuard {
    fn drop(&mut self) {
        State::lock(&self.shared).locks.remove(&self.path);
    }
}

/// An open file of a [`SimVfs`] (stays usable after the file is unlinked).
#[derive(Debug)]
struct SimFile {
    shared: Arc<Shared>,
    id: FileId,
    path: PathBuf,
    writable: bool,
}

impl SimFile {
    fn state(&self) -> MutexGuard<'_, State> {
        State::lock(&self.shared)
    }

    fn check_writable(&self) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        Ok(())
    }

    fn resize(&self, len: u64, kind: FaultKind, only_grow: bool) -> io::Result<()> {
        self.check_writable()?;
        let mut st = self.state();
        st.alive()?;
        st.check_fault(kind)?;
        let len = usize::try_from(len).map_err(|_| enospc())?;
        let cur = st.file(self.id).cur.len();
        if !(only_grow && len <= cur) {
            st.check_space(len.saturating_sub(cur) as u64)?;
            st.file(self.id).cur.set_len(len)?;
        }
        st.done();
        Ok(())
    }
}

impl VfsFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        let mut st = self.state();
        st.alive()?;
        Ok(st.file(self.id).cur.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.resize(len, FaultKind::Allocate, false)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.resize(len, FaultKind::Allocate, true)
    }

    fn zero_range(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut st = self.state();
        st.alive()?;
        let cur = st.file(self.id).cur.len() as u64;
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= cur)
            .ok_or_else(|| {
                invalid(format!(
                    "zero_range [{offset}, +{len}) is not inside {} (length {cur})",
                    self.path.display()
                ))
            })?;
        st.check_fault(FaultKind::Write)?;
        if end > offset {
            let zeros = vec![0u8; (end - offset) as usize];
            st.file(self.id).cur.write(offset as usize, &zeros)?;
        }
        st.done();
        Ok(())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut st = self.state();
        st.alive()?;
        let data = st.file(self.id);
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > data.cur.len() as u64) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("SimVfs: read past the end of {}", self.path.display()),
            ));
        }
        data.cur.read(offset as usize, buf);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut st = self.state();
        st.alive()?;
        st.check_fault(FaultKind::Write)?;
        let offset = usize::try_from(offset).map_err(|_| enospc())?;
        let cur = st.file(self.id).cur.len();
        st.check_space((offset + buf.len()).saturating_sub(cur) as u64)?;
        st.file(self.id).cur.write(offset, buf)?;
        st.done();
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.state();
        st.alive()?;
        st.check_fault(FaultKind::Sync)?;
        let data = st.file(self.id);
        let len = data.cur.len();
        data.make_durable(0, len);
        st.done();
        Ok(())
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }

    fn map(&self, len: usize, writable: bool) -> io::Result<Box<dyn MapRegion>> {
        if writable {
            self.check_writable()?;
        }
        let mut st = self.state();
        st.alive()?;
        let data = st.file(self.id);
        let file_len = data.cur.len();
        if len == 0 || len > file_len {
            return Err(invalid(format!(
                "refusing to map {len} bytes of {} (length {file_len}): empty, or past the end",
                self.path.display()
            )));
        }
        let buf = match &data.cur {
            Content::Mapped(m) => m.clone(),
            Content::Plain(v) => {
                let m = Arc::new(MapBuf::new(v));
                data.cur = Content::Mapped(m.clone());
                m
            }
        };
        Ok(Box::new(SimMapRegion {
            shared: self.shared.clone(),
            id: self.id,
            buf,
            len,
            writable,
        }))
    }
}

/// A mapping of a [`SimVfs`] file: a view of its current image.
#[derive(Debug)]
struct SimMapRegion {
    shared: Arc<Shared>,
    id: FileId,
    buf: Arc<MapBuf>,
    len: usize,
    writable: bool,
}

// SAFETY: `buf` is held by this region through an `Arc`, so the allocation (aligned to 4096,
// `len <= buf.len` checked in `SimFile::map`, `len > 0`) is neither freed nor moved before the
// region drops; the file's buffer never changes size while a region holds it (`plain_mut`
// refuses while the `Arc` is shared). `as_mut_ptr` returns the same pointer only when writable.
// `flush_range`, `prefault_write` and `advise_sequential` only read the buffer. `MapBuf` is
// `Send + Sync`.
unsafe impl MapRegion for SimMapRegion {
    fn as_ptr(&self) -> *const u8 {
        self.buf.ptr.as_ptr()
    }

    fn as_mut_ptr(&self) -> *mut u8 {
        if self.writable {
            self.buf.ptr.as_ptr()
        } else {
            std::ptr::null_mut()
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn flush_range(&self, offset: usize, len: usize) -> io::Result<()> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| {
                invalid(format!(
                    "flush_range [{offset}, +{len}) outside a mapping of {} bytes",
                    self.len
                ))
            })?;
        let mut st = State::lock(&self.shared);
        st.alive()?;
        st.check_fault(FaultKind::Sync)?;
        if let Some(data) = st.files.get_mut(&self.id) {
            data.make_durable(offset, end);
        }
        st.done();
        Ok(())
    }

    fn prefault_write_range(&self, offset: usize, len: usize) -> io::Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.len()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("prefault of [{offset}, +{len}) outside the mapping"),
            ));
        }
        Ok(())
    }

    fn advise_sequential(&self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// A disk with `/d` durable and `/d/f` durable, `len` zero bytes long and synced.
    fn disk_with_synced_file(len: usize) -> (SimVfs, Box<dyn VfsFile>) {
        let vfs = SimVfs::new(1);
        vfs.create_dir_all(&p("/d")).unwrap();
        vfs.sync_dir(&p("/")).unwrap();
        let f = vfs.open_file(&p("/d/f"), OpenMode::CreateNew).unwrap();
        f.allocate(len as u64).unwrap();
        f.sync_data().unwrap();
        vfs.sync_dir(&p("/d")).unwrap();
        (vfs, f)
    }

    fn read_all(vfs: &SimVfs, path: &str) -> Option<Vec<u8>> {
        vfs.current_files().remove(&p(path))
    }

    #[test]
    fn kill_keeps_unsynced_writes_and_remembers_they_are_unsynced() {
        let (vfs, f) = disk_with_synced_file(8192);
        f.write_all_at(b"hello", 100).unwrap();
        let killed = vfs.crash(CrashMode::Kill, 7);
        assert_eq!(&read_all(&killed, "/d/f").unwrap()[100..105], b"hello");
        assert!(killed.has_unsynced());
        // A power loss after the kill still loses the unsynced write.
        let dropped = killed.crash(CrashMode::Drop, 8);
        assert_eq!(read_all(&dropped, "/d/f").unwrap(), vec![0u8; 8192]);
    }

    #[test]
    fn drop_keeps_only_synced_bytes() {
        let (vfs, f) = disk_with_synced_file(8192);
        f.write_all_at(b"synced", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b"lost", 4096).unwrap();
        let d = vfs.crash(CrashMode::Drop, 1);
        let bytes = read_all(&d, "/d/f").unwrap();
        assert_eq!(&bytes[..6], b"synced");
        assert_eq!(&bytes[4096..4100], &[0, 0, 0, 0]);
        assert!(!d.has_unsynced());
    }

    #[test]
    fn flush_range_makes_only_the_covered_pages_durable() {
        let (vfs, f) = disk_with_synced_file(3 * 4096);
        let map = f.map(3 * 4096, true).unwrap();
        // SAFETY: the mapping is writable and 3 pages long; nothing else touches it.
        unsafe {
            map.as_mut_ptr().add(10).write(0xAA);
            map.as_mut_ptr().add(4096 + 10).write(0xBB);
            map.as_mut_ptr().add(2 * 4096 + 10).write(0xCC);
        }
        map.flush_range(4096 + 5, 4096).unwrap(); // pages 1 and 2
        let d = vfs.crash(CrashMode::Drop, 1);
        let bytes = read_all(&d, "/d/f").unwrap();
        assert_eq!(
            (bytes[10], bytes[4096 + 10], bytes[2 * 4096 + 10]),
            (0, 0xBB, 0xCC)
        );
        assert!(map.flush_range(4096, 3 * 4096).is_err());
    }

    #[test]
    fn torn_pages_are_kept_lost_or_torn_at_a_sector_boundary() {
        let mut seen = [false; 3]; // kept, lost, torn
        for seed in 0..64 {
            let (vfs, f) = disk_with_synced_file(4 * 4096);
            f.write_all_at(&vec![0xFF; 4 * 4096], 0).unwrap();
            let t = vfs.crash(CrashMode::Torn, seed);
            let bytes = read_all(&t, "/d/f").unwrap();
            assert_eq!(bytes.len(), 4 * 4096);
            for page in bytes.chunks(4096) {
                let sectors: Vec<bool> = page.chunks(512).map(|s| s[0] == 0xFF).collect();
                for (s, new) in page.chunks(512).zip(&sectors) {
                    assert!(s.iter().all(|&b| b == if *new { 0xFF } else { 0 }));
                }
                let flips = sectors.windows(2).filter(|w| w[0] != w[1]).count();
                assert!(flips <= 1, "a page is torn at most once: {sectors:?}");
                if sectors.iter().all(|&s| s) {
                    seen[0] = true;
                } else if sectors.iter().all(|&s| !s) {
                    seen[1] = true;
                } else {
                    seen[2] = true;
                }
            }
        }
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn create_without_dir_sync_is_lost_by_drop_and_may_be_undone_by_meta() {
        let vfs = SimVfs::new(1);
        vfs.create_dir_all(&p("/d")).unwrap();
        vfs.sync_dir(&p("/")).unwrap();
        let f = vfs.open_file(&p("/d/f"), OpenMode::CreateNew).unwrap();
        f.write_all_at(b"x", 0).unwrap();
        f.sync_data().unwrap();
        assert!(read_all(&vfs.crash(CrashMode::Drop, 0), "/d/f").is_none());
        assert_eq!(
            read_all(&vfs.crash(CrashMode::Kill, 0), "/d/f").unwrap(),
            b"x"
        );
        assert_eq!(
            read_all(&vfs.crash(CrashMode::Torn, 0), "/d/f").unwrap(),
            b"x"
        );
        let kept: Vec<bool> = (0..32)
            .map(|s| read_all(&vfs.crash(CrashMode::Meta, s), "/d/f").is_some())
            .collect();
        assert!(kept.contains(&true) && kept.contains(&false));
        vfs.sync_dir(&p("/d")).unwrap();
        for s in 0..8 {
            assert_eq!(
                read_all(&vfs.crash(CrashMode::Meta, s), "/d/f").unwrap(),
                b"x"
            );
        }
    }

    #[test]
    fn mkdir_without_parent_sync_loses_the_whole_subtree() {
        let vfs = SimVfs::new(1);
        vfs.create_dir_all(&p("/a/b")).unwrap();
        let f = vfs.open_file(&p("/a/b/f"), OpenMode::CreateNew).unwrap();
        f.sync_data().unwrap();
        vfs.sync_dir(&p("/a/b")).unwrap();
        vfs.sync_dir(&p("/a")).unwrap();
        assert!(vfs.crash(CrashMode::Drop, 0).current_dirs() == vec![p("/")]);
        vfs.sync_dir(&p("/")).unwrap();
        assert!(read_all(&vfs.crash(CrashMode::Drop, 0), "/a/b/f").is_some());
    }

    #[test]
    fn unsynced_rename_gives_old_or_new_name_never_both() {
        let (vfs, f) = disk_with_synced_file(16);
        drop(f);
        vfs.rename(&p("/d/f"), &p("/d/g")).unwrap();
        let mut outcomes = HashSet::new();
        for s in 0..32 {
            let c = vfs.crash(CrashMode::Meta, s);
            let files = c.current_files();
            assert_eq!(files.len(), 1, "{files:?}");
            outcomes.insert(files.keys().next().unwrap().clone());
        }
        assert_eq!(outcomes.len(), 2);
        let d = vfs.crash(CrashMode::Drop, 0);
        assert!(read_all(&d, "/d/f").is_some() && read_all(&d, "/d/g").is_none());
        vfs.sync_dir(&p("/d")).unwrap();
        assert!(read_all(&vfs.crash(CrashMode::Drop, 0), "/d/g").is_some());
    }

    #[test]
    fn unsynced_length_change_may_be_undone() {
        let (vfs, f) = disk_with_synced_file(100);
        f.set_len(5000).unwrap();
        let lens: HashSet<usize> = (0..32)
            .map(|s| {
                read_all(&vfs.crash(CrashMode::Meta, s), "/d/f")
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(lens, HashSet::from([100, 5000]));
        assert_eq!(
            read_all(&vfs.crash(CrashMode::Drop, 0), "/d/f")
                .unwrap()
                .len(),
            100
        );
        f.sync_data().unwrap();
        assert_eq!(
            read_all(&vfs.crash(CrashMode::Meta, 3), "/d/f")
                .unwrap()
                .len(),
            5000
        );
    }

    #[test]
    fn crash_after_k_ops_freezes_the_image_and_fails_everything_after() {
        let (vfs, f) = disk_with_synced_file(64);
        let before = vfs.op_count();
        vfs.crash_after_ops(2);
        f.write_all_at(b"one", 0).unwrap();
        assert!(!vfs.is_crashed());
        f.write_all_at(b"two", 8).unwrap();
        assert!(vfs.is_crashed());
        assert_eq!(vfs.op_count(), before + 2);
        let err = f.write_all_at(b"three", 16).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        assert_eq!(f.len().unwrap_err().raw_os_error(), Some(libc::EIO));
        assert!(vfs.metadata(&p("/d")).is_err());
        let k = vfs.crash(CrashMode::Kill, 0);
        let bytes = read_all(&k, "/d/f").unwrap();
        assert_eq!(
            (&bytes[0..3], &bytes[8..11], &bytes[16..21]),
            (&b"one"[..], &b"two"[..], &[0u8; 5][..])
        );
        // The crashed disk is a fresh, working disk.
        k.open_file(&p("/d/f"), OpenMode::Existing)
            .unwrap()
            .write_all_at(b"x", 0)
            .unwrap();
    }

    #[test]
    fn injected_faults_fire_once_on_the_nth_operation_of_their_kind() {
        let (vfs, f) = disk_with_synced_file(64);
        vfs.fail_nth(FaultKind::Write, 2, FaultError::Eio);
        f.write_all_at(b"a", 0).unwrap();
        let e = f.write_all_at(b"b", 1).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        f.write_all_at(b"c", 2).unwrap();
        assert_eq!(&read_all(&vfs, "/d/f").unwrap()[..3], b"a\0c");

        vfs.fail_nth(FaultKind::Sync, 1, FaultError::Eio);
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
        assert_eq!(
            &read_all(&vfs.crash(CrashMode::Drop, 0), "/d/f").unwrap()[..3],
            b"\0\0\0"
        );
        f.sync_data().unwrap();

        vfs.fail_nth(FaultKind::Allocate, 1, FaultError::Enospc);
        assert_eq!(
            f.allocate(1 << 20).unwrap_err().raw_os_error(),
            Some(libc::ENOSPC)
        );
        assert_eq!(f.len().unwrap(), 64);
    }

    #[test]
    fn capacity_gives_enospc_and_disk_usage() {
        let (vfs, f) = disk_with_synced_file(1000);
        vfs.set_capacity(4096);
        let u = vfs.disk_usage(&p("/")).unwrap();
        assert_eq!((u.total_bytes, u.available_bytes), (4096, 4096 - 1000));
        assert_eq!(
            f.allocate(5000).unwrap_err().raw_os_error(),
            Some(libc::ENOSPC)
        );
        assert_eq!(
            f.write_all_at(&[1; 10], 4090).unwrap_err().raw_os_error(),
            Some(libc::ENOSPC)
        );
        f.allocate(4096).unwrap();
    }

    #[test]
    fn bit_flip_and_zeroed_sector_hit_page_cache_and_platter() {
        let (vfs, f) = disk_with_synced_file(2048);
        f.write_all_at(&[0xFF; 2048], 0).unwrap();
        f.sync_data().unwrap();
        vfs.flip_bit(&p("/d/f"), 3, 0).unwrap();
        vfs.zero_sector(&p("/d/f"), 2).unwrap();
        for img in [vfs.clone(), vfs.crash(CrashMode::Drop, 0)] {
            let b = read_all(&img, "/d/f").unwrap();
            assert_eq!(b[3], 0xFE);
            assert!(b[1024..1536].iter().all(|&x| x == 0));
            assert!(b[1536..].iter().all(|&x| x == 0xFF));
        }
        let (path, off) = vfs.flip_random_bit(&p("/d")).unwrap();
        assert_eq!(path, p("/d/f"));
        assert!(off < 2048);
    }

    #[test]
    fn mapped_file_cannot_be_resized_until_unmapped() {
        let (_vfs, f) = disk_with_synced_file(4096);
        let map = f.map(4096, true).unwrap();
        assert_eq!(map.as_ptr() as usize % MAP_ALIGN, 0);
        assert!(f.map(4097, false).is_err() && f.map(0, false).is_err());
        assert_eq!(
            f.set_len(8192).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        f.allocate(4096).unwrap(); // no change: fine
        f.write_all_at(b"via file", 0).unwrap();
        // SAFETY: the region is live and 4096 bytes long.
        let seen = unsafe { std::slice::from_raw_parts(map.as_ptr(), 8) }.to_vec();
        assert_eq!(seen, b"via file");
        let ro = f.map(4096, false).unwrap();
        assert!(ro.as_mut_ptr().is_null());
        assert_eq!(ro.as_ptr(), map.as_ptr());
        drop((map, ro));
        f.set_len(8192).unwrap();
        assert_eq!(f.len().unwrap(), 8192);
    }

    #[test]
    fn lock_is_exclusive_per_path_until_the_guard_drops() {
        let vfs = SimVfs::new(0);
        let g = vfs.lock_exclusive(&p("/lock")).unwrap();
        assert_eq!(
            vfs.lock_exclusive(&p("/lock")).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(g);
        drop(vfs.lock_exclusive(&p("/lock")).unwrap());
        assert_eq!(read_all(&vfs, "/lock").unwrap(), b"lock");
    }

    #[test]
    fn namespace_operations_behave_like_a_file_system() {
        let vfs = SimVfs::new(0);
        vfs.create_dir_all(&p("/r/x")).unwrap();
        vfs.create_dir_all(&p("/r/x")).unwrap();
        assert!(vfs.open_file(&p("/nope/f"), OpenMode::CreateNew).is_err());
        drop(vfs.open_file(&p("/r/b"), OpenMode::CreateNew).unwrap());
        drop(vfs.open_file(&p("/r/a"), OpenMode::CreateOrOpen).unwrap());
        assert_eq!(
            vfs.open_file(&p("/r/a"), OpenMode::CreateNew)
                .unwrap_err()
                .kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(
            vfs.open_file(&p("/r/c"), OpenMode::Existing)
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        let names: Vec<String> = vfs
            .read_dir(&p("/r"))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["a", "b", "x"]);
        let ro = vfs.open_file(&p("/r/a"), OpenMode::ReadOnly).unwrap();
        assert!(ro.write_all_at(b"x", 0).is_err() && ro.map(1, true).is_err());
        vfs.rename(&p("/r/a"), &p("/r/b")).unwrap();
        assert!(vfs.metadata(&p("/r/a")).unwrap().is_none());
        vfs.remove_file(&p("/r/b")).unwrap();
        vfs.remove_dir_all(&p("/r")).unwrap();
        assert_eq!(vfs.current_dirs(), vec![p("/")]);
        let _ = ro.len().unwrap(); // an unlinked file stays readable through its handle
    }
}
