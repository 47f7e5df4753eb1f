//! A hostile environment: a read-only root, permission denied, a symlinked segment, and a second
//! process on the same root. Each gives a typed error that names the path, and the root is left
//! as it was. (A root that is a regular file and a foreign file in `commitlog/` are covered in
//! tests/bad_input.rs.)

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use rocketstore::{Error, Message, Store, StoreConfig};
use rocketstore_test_support::files_under;

fn config() -> StoreConfig {
    StoreConfig {
        cleaner_enabled: false,
        ..tiny()
    }
}

/// A closed store with a few messages; returns its files.
fn closed_store(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let store = Store::open(root, config()).unwrap();
    for i in 0..20u32 {
        store
            .put(&Message::new("t", 0, &i.to_be_bytes()).with_keys([format!("k{i}")]))
            .unwrap();
    }
    store.close().unwrap();
    files_under(root)
}

fn io_error_path(e: Error) -> (PathBuf, std::io::ErrorKind) {
    match e {
        Error::Io { path, source } => (path, source.kind()),
        other => panic!("expected Error::Io, got {other:?}"),
    }
}

struct Mount(PathBuf);

impl Mount {
    /// Mounts a small tmpfs at `dir`, or `None` where the test may not mount (not root).
    fn tmpfs(dir: &Path) -> Option<Mount> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(dir.to_path_buf()))
    }

    fn remount(&self, opt: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {opt}");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_file_system_is_a_typed_error_naming_the_root_and_changes_nothing() {
    let mnt = tempfile::tempdir().unwrap();
    let Some(mount) = Mount::tmpfs(mnt.path()) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        return;
    };
    let root = mnt.path().join("store");
    let before = closed_store(&root);
    mount.remount("ro");
    let err = Store::open(&root, config()).unwrap_err();
    let (path, kind) = io_error_path(err);
    assert!(path.starts_with(&root), "{}", path.display());
    assert_eq!(kind, std::io::ErrorKind::ReadOnlyFilesystem);
    mount.remount("rw");
    assert_eq!(files_under(&root), before);
    // And the store opens normally once the file system is writable again.
    let store = Store::open(&root, config()).unwrap();
    assert_eq!(store.max_offset("t", 0).unwrap(), 20);
    store.close().unwrap();
}

#[test]
fn a_symlinked_segment_is_a_layout_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    closed_store(&root);
    let seg = root.join("commitlog").join("00000000000000000000");
    let elsewhere = dir.path().join("segment-copy");
    std::fs::rename(&seg, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &seg).unwrap();
    let before = files_under(&root);
    match Store::open(&root, config()) {
        Err(Error::Layout { path, reason }) => {
            assert_eq!(path, seg, "{reason}");
        }
        other => panic!("expected a layout error, got {other:?}"),
    }
    assert_eq!(files_under(&root), before, "nothing changed");
}

#[test]
fn a_symlinked_consume_queue_file_is_rebuilt_not_followed() {
    // Derived data is rebuilt from the CommitLog rather than trusted through a link.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    closed_store(&root);
    let cq = root.join("consumequeue/t/0/00000000000000000000");
    let elsewhere = dir.path().join("cq-copy");
    std::fs::rename(&cq, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &cq).unwrap();
    let outside = std::fs::read(&elsewhere).unwrap();
    let store = Store::open(&root, config()).unwrap();
    assert_eq!(store.max_offset("t", 0).unwrap(), 20);
    let g = store.get("t", 0, 19, 1).unwrap();
    assert_eq!(g.messages().next().unwrap().body(), 19u32.to_be_bytes());
    store.close().unwrap();
    assert_eq!(
        std::fs::read(&elsewhere).unwrap(),
        outside,
        "the link target is never written"
    );
}

#[test]
fn a_root_under_a_file_is_a_typed_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let root = file.join("store");
    match Store::open(&root, config()) {
        Err(Error::Io { path, .. }) => assert_eq!(path, root),
        other => panic!("expected an I/O error naming the root, got {other:?}"),
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

/// Child entry point for the second-process test (run by that test, ignored otherwise).
#[test]
#[ignore = "entry point of a child process"]
fn child_opens_the_root_given_in_the_environment() {
    let Ok(root) = std::env::var("ROCKETSTORE_CHILD_ROOT") else {
        return;
    };
    let code = match Store::open(&root, config()) {
        Ok(_) => 10,
        Err(Error::Locked { path }) if path == Path::new(&root) => 11,
        Err(e) => {
            eprintln!("child: {e}");
            12
        }
    };
    std::process::exit(code);
}

#[test]
fn a_second_process_on_an_open_root_gets_locked_and_the_first_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root, config()).unwrap();
    store.put(&Message::new("t", 0, b"first")).unwrap();
    let child = |root: &Path| {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_opens_the_root_given_in_the_environment",
                "--ignored",
                "--nocapture",
            ])
            .env("ROCKETSTORE_CHILD_ROOT", root)
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(child(&root), Some(11), "second process must get Locked");
    store.put(&Message::new("t", 0, b"second")).unwrap();
    assert_eq!(store.max_offset("t", 0).unwrap(), 2);
    store.close().unwrap();
    // Closed: the lock is free, a second process may open it.
    assert_eq!(child(&root), Some(10));
}

#[test]
fn permission_denied_on_a_segment_is_a_typed_error_naming_it_and_changes_nothing() {
    // Root ignores file modes, so the refusal comes from a wrapper over the real file system.
    use rocketstore_test_support::FaultVfs;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let before = closed_store(&root);
    let seg = root.join("commitlog").join("00000000000000000000");
    let vfs = FaultVfs::new();
    // Half full whatever the host's disk is.
    vfs.set_used(0.5);
    vfs.deny(Some(seg.clone()));
    let err = Store::open_with_vfs(&root, config(), vfs.clone()).unwrap_err();
    let (path, kind) = io_error_path(err);
    assert_eq!(path, seg);
    assert_eq!(kind, std::io::ErrorKind::PermissionDenied);
    // The failed open wrote nothing that matters: the next open is a clean one.
    vfs.deny(None);
    let store = Store::open_with_vfs(&root, config(), vfs).unwrap();
    assert!(
        store.recovery_report().clean_shutdown,
        "{:?}",
        store.recovery_report()
    );
    assert_eq!(store.max_offset("t", 0).unwrap(), 20);
    store.close().unwrap();
    let after = files_under(&root);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
}

/// Names of the entries of `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// A directory of someone's files, not a store root.
fn unrelated_dir(dir: &Path) {
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
    std::fs::create_dir(dir.join("src")).unwrap();
    std::fs::write(dir.join("src").join("main.rs"), b"fn main() {}").unwrap();
}

#[test]
fn a_directory_of_unrelated_files_is_refused_naming_them_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    unrelated_dir(dir.path());
    let before = files_under(dir.path());
    let names_before = names(dir.path());
    match Store::open(dir.path(), config()) {
        Err(e @ Error::NotAStoreRoot { .. }) => {
            let text = e.to_string();
            let Error::NotAStoreRoot {
                path,
                entries,
                total,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(path, dir.path());
            assert_eq!(entries, ["notes.txt", "src"]);
            assert_eq!(total, 2);
            for part in [
                &*dir.path().to_string_lossy(),
                "notes.txt",
                "src",
                "create_in_non_empty_dir",
            ] {
                assert!(text.contains(part), "{part:?} not in {text}");
            }
        }
        other => panic!("expected NotAStoreRoot, got {:?}", other.map(|_| ())),
    }
    assert_eq!(names(dir.path()), names_before, "nothing is created");
    assert_eq!(files_under(dir.path()), before);
}

#[test]
fn a_store_is_created_among_unrelated_files_only_when_asked_and_then_reopens_as_a_root() {
    let dir = tempfile::tempdir().unwrap();
    unrelated_dir(dir.path());
    let store = Store::open(
        dir.path(),
        StoreConfig {
            create_in_non_empty_dir: true,
            ..config()
        },
    )
    .unwrap();
    let r = store.put(&Message::new("t", 0, b"here")).unwrap();
    store.close().unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("notes.txt")).unwrap(),
        b"mine"
    );
    // Now it is a store root: the default refuses nothing.
    let store = Store::open(dir.path(), config()).unwrap();
    let got = store.get("t", 0, r.queue_offset, 1).unwrap();
    assert_eq!(got.messages().next().unwrap().body(), b"here");
    store.close().unwrap();
}

/// A brand-new store that crashed before writing `commitlog/` or `checkpoint` leaves `lock`
/// (and maybe `abort`): that root, an empty directory and a mount point's `lost+found` open.
#[test]
fn leftovers_of_a_new_store_an_empty_dir_and_lost_and_found_still_open() {
    let cases: [&[&str]; 5] = [
        &[],
        &["lock"],
        &["lock", "abort"],
        &["abort", "checkpoint.tmp"],
        &["lost+found/"],
    ];
    for entries in cases {
        let dir = tempfile::tempdir().unwrap();
        for e in entries {
            match e.strip_suffix('/') {
                Some(d) => std::fs::create_dir(dir.path().join(d)).unwrap(),
                None => std::fs::write(dir.path().join(e), b"").unwrap(),
            }
        }
        let store =
            Store::open(dir.path(), config()).unwrap_or_else(|e| panic!("{entries:?}: {e}"));
        store.put(&Message::new("t", 0, b"x")).unwrap();
        store.close().unwrap();
    }
}

/// A broker's root (RocketMQ's `config/` next to `commitlog/`, a `lock`, an `abort`) is a root.
#[test]
fn a_root_with_rocketmq_config_and_an_empty_commitlog_opens() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config").join("topics.json"), b"{}").unwrap();
    std::fs::create_dir(dir.path().join("commitlog")).unwrap();
    std::fs::write(dir.path().join("lock"), b"lock").unwrap();
    std::fs::write(dir.path().join("abort"), b"").unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    store.close().unwrap();
    // `config/` alone is not evidence of a root: a project directory has one too.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    assert!(matches!(
        Store::open(dir.path(), config()),
        Err(Error::NotAStoreRoot { .. })
    ));
}
