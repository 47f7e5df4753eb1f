//! A progress line on stderr for long scans, drawn only when stderr is a terminal so pipes and
//! logs stay clean.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Redraw at most this often.
const REDRAW: Duration = Duration::from_millis(200);

/// `label: done/total MiB (p%)`, redrawn in place.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: u64,
    enabled: bool,
    last: Option<Instant>,
}

impl Progress {
    /// A progress line for `total` bytes of work.
    pub fn new(label: impl Into<String>, total: u64) -> Self {
        Progress {
            label: label.into(),
            total,
            enabled: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    /// Reports `done` bytes of work finished.
    pub fn update(&mut self, done: u64) {
        if !self.enabled || self.last.is_some_and(|t| t.elapsed() < REDRAW) {
            return;
        }
        self.last = Some(Instant::now());
        let pct = (done.min(self.total) * 100)
            .checked_div(self.total)
            .unwrap_or(100);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{}: {} / {} MiB ({pct}%)\x1b[K",
            self.label,
            done >> 20,
            self.total >> 20
        );
        let _ = err.flush();
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.enabled && self.last.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
        self.last = None;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `label: Ns` on stderr, redrawn by a thread while a call without progress of its own runs
/// (`Store::open`'s recovery reports none); drawn only when stderr is a terminal. Dropping it
/// stops the thread and clears the line.
#[derive(Debug)]
pub struct Ticker {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Starts the line for `label`; nothing happens when stderr is not a terminal.
    pub fn start(label: impl Into<String>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Ticker {
                stop: None,
                thread: None,
            };
        }
        let label = label.into();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut drawn = false;
            // Quiet for the first second: a fast open draws nothing.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(if drawn {
                    REDRAW
                } else {
                    Duration::from_secs(1)
                })
            {
                drawn = true;
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r{}\x1b[K", line(&label, started.elapsed()));
                let _ = err.flush();
            }
            if drawn {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[K");
                let _ = err.flush();
            }
        });
        Ticker {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

/// The ticker's text: `label: 12.3s`.
fn line(label: &str, elapsed: Duration) -> String {
    format!("{label}: {:.1}s", elapsed.as_secs_f64())
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticker_line_shows_label_and_tenths_of_seconds() {
        assert_eq!(
            line("recovering /r", Duration::from_millis(12_345)),
            "recovering /r: 12.3s"
        );
    }
}
