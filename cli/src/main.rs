//! `rocketstore`: inspect, verify, recover and load a RocketMQ-compatible store root.
//!
//! ```text
//! rocketstore stat <root>                                   what is in the root
//! rocketstore dump <root> --from OFFSET --count N [--json]  CommitLog records
//! rocketstore dump <root> --topic T --queue Q --from QOFF   records of a queue
//! rocketstore verify <root> [--json]                      CRCs, chain, ConsumeQueue, IndexFile
//! rocketstore query <root> --key K --topic T                messages by key
//! rocketstore query <root> --time MS|RFC3339 --topic T --queue Q  queue offset for a time
//! rocketstore recover <root>                                open (recover) and close
//! rocketstore bench <root> --flush sync --threads 4 ...     write load, print throughput
//! rocketstore check-acks <root> <ack-log>                   every acknowledged put is there
//! rocketstore groups <root> [--json]                        consumer groups' offsets and lag
//! rocketstore delays <root> [--json]                        scheduled messages, retries, DLQs
//! rocketstore dlq <root> --group G [--redrive|--purge]      a group's dead letters
//! ```
//!
//! `stat`, `dump`, `verify`, `query`, `groups`, `delays` and `dlq` (without `--redrive` or
//! `--purge`) only read: they work over the raw files with the
//! library's pure format functions and read-only opens, never `Store::open` (which recovers
//! and writes), so they are safe on a root written by RocketMQ itself or left by a crash.
//! Exit codes: 0 success/healthy, 1 problems found (`verify`, `check-acks`), 2 usage or I/O
//! error.

mod acks;
mod bench;
mod commitlog;
mod config_file;
mod damage;
mod delays;
mod dlq;
mod dump;
mod error;
mod groups;
mod index;
mod open;
mod output;
mod progress;
mod query;
mod queue;
mod recover;
mod render;
mod root;
mod stat;
mod verify;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::error::CliError;

/// Command line of the inspector.
#[derive(Debug, Parser)]
#[command(
    name = "rocketstore",
    version,
    about = "Inspect, verify, recover and load a RocketMQ-compatible store root"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Topics, queues, min/max offsets, sizes, segments, checkpoint, abort marker.
    Stat(stat::StatArgs),
    /// Records of a CommitLog range or of a queue.
    Dump(dump::DumpArgs),
    /// Check CRCs, the record chain, ConsumeQueue and IndexFile (exit 1 if problems).
    Verify(verify::VerifyArgs),
    /// Offline recovery: open the store (recovering it), print the report, close.
    Recover(recover::RecoverArgs),
    /// Messages by key, or the queue offset for a time.
    Query(query::QueryArgs),
    /// Write load into the root and print throughput and put latency.
    Bench(bench::BenchArgs),
    /// Check that every put recorded in an ack log is in the (recovered) root.
    CheckAcks(acks::CheckAcksArgs),
    /// Consumer groups: committed offset, max offset and lag per (group, topic, queue).
    Groups(groups::GroupsArgs),
    /// Scheduled messages per delay level (pending, progress, next due), retry and
    /// dead-letter topics per group.
    Delays(delays::DelaysArgs),
    /// A group's dead letters past its purge point; `--redrive` puts them back into their
    /// topics, `--purge` drops them (both open the store).
    Dlq(dlq::DlqArgs),
}

/// IndexFile geometry, for roots whose index files do not have a recognisable size.
#[derive(Debug, Clone, Copy, Args)]
pub struct IndexGeometryArgs {
    /// Hash slots per IndexFile (default: inferred from the file length).
    #[arg(long)]
    pub index_slots: Option<u32>,
    /// Entries per IndexFile (default: inferred from the file length).
    #[arg(long)]
    pub index_entries: Option<u32>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Stat(a) => stat::run(&a),
        Command::Dump(a) => dump::run(&a),
        Command::Verify(a) => verify::run(&a),
        Command::Recover(a) => recover::run(&a),
        Command::Query(a) => query::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::CheckAcks(a) => acks::run(&a),
        Command::Groups(a) => groups::run(&a),
        Command::Delays(a) => delays::run(&a),
        Command::Dlq(a) => dlq::run(&a),
    };
    match result {
        Ok(code) => code,
        Err(CliError::StdoutClosed) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rocketstore: {}", error::chain(&e));
            ExitCode::from(2)
        }
    }
}
