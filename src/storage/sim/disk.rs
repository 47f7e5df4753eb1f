//! The state of a simulated disk: the current and durable namespaces, the pending metadata
//! operations, every file's images, the operation count and armed faults; and the disk a crash
//! leaves behind.
//!
//! Counted operations are the state-changing ones (create, write, allocate, set_len,
//! zero_range, remove, rename, mkdir, sync, flush, lock); reads are not crash points, so a
//! crash point names the same disk state regardless of how often the engine looks around.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::buffer::Content;
use super::{
    eio, enospc, invalid, not_found, CrashMode, FaultError, FaultKind, SIM_PAGE_SIZE,
    SIM_SECTOR_SIZE,
};

/// splitmix64: a tiny seeded generator, enough for choosing crash outcomes.
#[derive(Clone, Debug)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
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
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

pub(super) type FileId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Node {
    Dir,
    File(FileId),
}

/// A metadata operation not yet made durable by a directory sync.
#[derive(Clone, Debug)]
pub(super) enum MetaOp {
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
    pub(super) fn dir(&self) -> Option<&Path> {
        match self {
            MetaOp::Mkdir { path }
            | MetaOp::Create { path, .. }
            | MetaOp::Remove { path, .. }
            | MetaOp::RemoveTree { path } => path.parent(),
            MetaOp::Rename { to, .. } => to.parent(),
        }
    }

    pub(super) fn apply(&self, ns: &mut BTreeMap<PathBuf, Node>) {
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

#[derive(Debug)]
pub(super) struct FileData {
    pub(super) cur: Content,
    /// The durable image; its length is the durable length.
    pub(super) durable: Vec<u8>,
}

impl FileData {
    /// Makes the length durable and copies the pages covering `[from, to)` of the current image
    /// into the durable image.
    pub(super) fn make_durable(&mut self, from: usize, to: usize) {
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

/// A frozen copy of a disk: the input of [`SimVfs::crash`](super::SimVfs::crash).
#[derive(Clone, Debug)]
pub(super) struct Image {
    cur_ns: BTreeMap<PathBuf, Node>,
    durable_ns: BTreeMap<PathBuf, Node>,
    pending: Vec<MetaOp>,
    /// (current, durable) bytes of every file still reachable.
    files: BTreeMap<FileId, (Vec<u8>, Vec<u8>)>,
    next_id: FileId,
}

#[derive(Debug)]
pub(super) struct ArmedFault {
    pub(super) kind: FaultKind,
    pub(super) remaining: u64,
    pub(super) error: FaultError,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) cur_ns: BTreeMap<PathBuf, Node>,
    pub(super) durable_ns: BTreeMap<PathBuf, Node>,
    pub(super) pending: Vec<MetaOp>,
    pub(super) files: HashMap<FileId, FileData>,
    pub(super) next_id: FileId,
    /// Counted (state-changing) operations done so far.
    pub(super) ops: u64,
    /// Crash once `ops` reaches this.
    pub(super) crash_at: Option<u64>,
    /// The image at the crash point; `Some` means crashed: everything fails with `EIO`.
    pub(super) crashed: Option<Image>,
    pub(super) faults: Vec<ArmedFault>,
    pub(super) capacity_bytes: u64,
    pub(super) locks: HashSet<PathBuf>,
    pub(super) rng: Rng,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
}

pub(super) fn root_ns() -> BTreeMap<PathBuf, Node> {
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
    pub(super) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
        shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn alive(&self) -> io::Result<()> {
        if self.crashed.is_some() {
            return Err(eio());
        }
        Ok(())
    }

    /// Counts an operation of `kind` against the armed faults; `Err` if one fires.
    pub(super) fn check_fault(&mut self, kind: FaultKind) -> io::Result<()> {
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
    pub(super) fn done(&mut self) {
        self.ops += 1;
        if self.crash_at == Some(self.ops) {
            self.crashed = Some(self.image());
        }
    }

    pub(super) fn image(&self) -> Image {
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

    pub(super) fn used_bytes(&self) -> u64 {
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
    pub(super) fn check_space(&self, grow: u64) -> io::Result<()> {
        if grow > 0 && self.used_bytes().saturating_add(grow) > self.capacity_bytes {
            return Err(enospc());
        }
        Ok(())
    }

    pub(super) fn node(&self, path: &Path) -> Option<Node> {
        self.cur_ns.get(path).copied()
    }

    pub(super) fn parent_is_dir(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(p) if self.node(p) == Some(Node::Dir) => Ok(()),
            Some(p) => Err(not_found(p)),
            None => Err(invalid(format!("{} has no parent", path.display()))),
        }
    }

    pub(super) fn create_file(&mut self, path: &Path) -> FileId {
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

    pub(super) fn file(&mut self, id: FileId) -> &mut FileData {
        self.files.get_mut(&id).expect("open file has data")
    }

    pub(super) fn from_image(img: Image, mode: CrashMode, seed: u64, capacity_bytes: u64) -> State {
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
