//! Display of an [`Error`] never repeats its source (issue 14 item 2): a chain printer (anyhow's
//! `{:#}`, the CLI) shows each part exactly once, and the source still carries the OS error or
//! the decoder's finding.

use std::error::Error as StdError;
use std::io;
use std::path::PathBuf;

use rocketstore::{Error, FormatError};

/// Every error of the chain, outermost first, joined as a chain printer does.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut next = e.source();
    while let Some(s) = next {
        parts.push(s.to_string());
        next = s.source();
    }
    parts.join(": ")
}

/// One of each variant that has a source, with the source's own text.
fn with_sources() -> Vec<(Error, String)> {
    let os = || io::Error::from_raw_os_error(libc_eio());
    let os_text = os().to_string();
    let bad_magic = FormatError::BadMagic { found: 0xdead_beef };
    let bad_text = bad_magic.to_string();
    vec![
        (
            Error::Io {
                path: PathBuf::from("/r/commitlog/00000000000000000000"),
                source: os(),
            },
            os_text.clone(),
        ),
        (
            Error::FlushFailed {
                path: PathBuf::from("/r/commitlog/00000000000000000000"),
                source: os(),
            },
            os_text,
        ),
        (
            Error::CorruptRecord {
                path: PathBuf::from("/r/commitlog/00000000000000001024"),
                offset: 1024,
                source: bad_magic,
            },
            bad_text,
        ),
    ]
}

fn libc_eio() -> i32 {
    5 // EIO on Linux
}

#[test]
fn display_leaves_the_source_to_the_chain_and_the_chain_has_it_once() {
    for (err, source_text) in with_sources() {
        let source = err.source().expect("these variants have a source");
        assert_eq!(source.to_string(), source_text);
        let shown = err.to_string();
        assert!(
            !shown.contains(&source_text),
            "Display repeats its source: {shown:?}"
        );
        // Enough context stays in the message itself.
        assert!(shown.contains("/r/commitlog/"), "{shown:?}");
        let all = chain(&err);
        assert_eq!(all.matches(&source_text).count(), 1, "{all:?}");
        assert!(all.starts_with(&shown), "{all:?}");
    }
}

#[test]
fn errors_without_a_source_keep_their_whole_text() {
    let e = Error::DiskFull {
        path: PathBuf::from("/r/commitlog/00000000000000000000"),
        reason: "creating CommitLog segment 00000000000000000000 needs 1048576 bytes".into(),
    };
    assert!(e.source().is_none());
    assert_eq!(
        e.to_string(),
        "disk full at /r/commitlog/00000000000000000000: creating CommitLog segment \
         00000000000000000000 needs 1048576 bytes"
    );
}
