//! The path operations of [`SimVfs`]: directories, create, open, remove, rename, directory
//! sync, locks and disk usage.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::disk::{MetaOp, Node, Shared, State};
use super::file::SimFile;
use super::{not_found, FaultKind, SimVfs};
use crate::storage::vfs::{DirEntry, DiskUsage, FileKind, LockGuard, OpenMode, Vfs, VfsFile};

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
