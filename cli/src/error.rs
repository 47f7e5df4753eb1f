//! The inspector's error type: every failure names the path or offset it concerns, and maps to
//! an exit code (2: usage or I/O; problems found by `verify`/`check-acks` are not errors).

use std::io;
use std::path::PathBuf;

/// Why a subcommand could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Reading or writing a file failed (the OS error is the source; [`chain`] prints it).
    #[error("{path}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file of the store root does not have the expected shape.
    #[error("{path}: {reason}")]
    Layout {
        /// The file or directory concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No valid record at a CommitLog offset the user asked for.
    #[error("{path}: no record at commitlog offset {offset}: {reason}")]
    NoRecord {
        /// The segment file (or the commitlog directory when no segment covers the offset).
        path: PathBuf,
        /// The requested offset.
        offset: u64,
        /// Why.
        reason: String,
    },
    /// Arguments that parse but do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// Standard output was closed (e.g. piped into `head`); not worth a message.
    #[error("standard output closed")]
    StdoutClosed,
    /// The library refused (recover, bench, check-acks open the store). Transparent: its
    /// Display and source are the library error's, so the chain has each part once.
    #[error(transparent)]
    Store(#[from] rocketstore::Error),
}

impl CliError {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> CliError {
        CliError::Io {
            path: path.into(),
            source,
        }
    }

    /// A layout error for `path`.
    pub fn layout(path: impl Into<PathBuf>, reason: impl Into<String>) -> CliError {
        CliError::Layout {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// `err` and every error in its [`source`](std::error::Error::source) chain, joined by `": "`.
///
/// Display of an error never repeats its source (see `rocketstore::Error`), so this prints
/// each part once and keeps the OS error text a bare `{err}` would lose.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        text.push_str(": ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    text
}

/// Result of the inspector's functions.
pub type CliResult<T> = Result<T, CliError>;
