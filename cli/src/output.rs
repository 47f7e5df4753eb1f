//! Buffered standard output that turns a closed pipe into a quiet stop instead of a panic.

use std::fmt::Display;
use std::io::{self, BufWriter, Stdout, Write};

use crate::error::{CliError, CliResult};

/// Standard output, line by line.
#[derive(Debug)]
pub struct Out {
    w: BufWriter<Stdout>,
}

impl Out {
    /// Buffered standard output.
    pub fn new() -> Self {
        Out {
            w: BufWriter::new(io::stdout()),
        }
    }

    /// Writes `s` and a newline.
    pub fn line(&mut self, s: impl Display) -> CliResult<()> {
        writeln!(self.w, "{s}").map_err(map_err)
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) -> CliResult<()> {
        self.w.flush().map_err(map_err)
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        let _ = self.w.flush();
    }
}

fn map_err(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CliError::StdoutClosed
    } else {
        CliError::io("<stdout>", e)
    }
}
