//! Whole directory trees: copying a store root, and reading every file under one, so that a test
//! can work on a copy or assert that an operation changed nothing.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Copies the tree `from` to `to` (directories, empty ones included, and regular files),
/// skipping files that vanish while it copies: copying a running store's files is how the
/// tests take a crash image, and a crash at that moment would not have the file either (the
/// checkpoint's temporary file, renamed or removed meanwhile).
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else {
            match std::fs::copy(e.path(), &dst) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(())
}

/// Every file under `root` by its full path, with its bytes; a symbolic link is not followed
/// and stands for the bytes of its target path. Empty directories do not appear.
///
/// # Panics
///
/// If `root` or anything under it cannot be read (a test cannot go on without it).
pub fn files_under(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let entries = std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("cannot read directory {}: {e}", d.display()));
        for e in entries {
            let e = e.unwrap_or_else(|err| panic!("cannot read {}: {err}", d.display()));
            let path = e.path();
            let kind = e
                .file_type()
                .unwrap_or_else(|err| panic!("cannot stat {}: {err}", path.display()));
            let bytes = if kind.is_dir() {
                dirs.push(path);
                continue;
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path)
                    .unwrap_or_else(|err| panic!("cannot read link {}: {err}", path.display()));
                target.into_os_string().into_encoded_bytes()
            } else {
                std::fs::read(&path)
                    .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
            };
            out.insert(path, bytes);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScratchDir;

    #[test]
    fn a_copied_tree_reads_back_as_the_same_files_and_links_are_not_followed() {
        let scratch = ScratchDir::new("files");
        let a = scratch.path().join("a");
        std::fs::create_dir_all(a.join("commitlog")).unwrap();
        std::fs::create_dir_all(a.join("empty")).unwrap();
        std::fs::write(a.join("commitlog/00000000000000000000"), b"seg").unwrap();
        std::fs::write(a.join("checkpoint"), b"cp").unwrap();
        std::os::unix::fs::symlink("/nonexistent/target", a.join("link")).unwrap();
        let files = files_under(&a);
        assert_eq!(files.len(), 3, "{files:?}");
        assert_eq!(files[&a.join("checkpoint")], b"cp");
        assert_eq!(files[&a.join("link")], b"/nonexistent/target");

        std::fs::remove_file(a.join("link")).unwrap();
        let b = scratch.path().join("b");
        copy_tree(&a, &b).unwrap();
        assert!(b.join("empty").is_dir());
        let rel = |m: BTreeMap<PathBuf, Vec<u8>>, root: &Path| -> BTreeMap<PathBuf, Vec<u8>> {
            m.into_iter()
                .map(|(p, v)| (p.strip_prefix(root).unwrap().to_path_buf(), v))
                .collect()
        };
        assert_eq!(rel(files_under(&a), &a), rel(files_under(&b), &b));
        assert!(copy_tree(&scratch.path().join("missing"), &b).is_err());
    }
}
