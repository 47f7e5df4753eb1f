//! The store root's layout: every path of a root, spelled once (spec §0).
//!
//! ```text
//! <root>/commitlog/<20-digit start offset>        CommitLog segments
//! <root>/consumequeue/<topic>/<queueId>/<20-digit> ConsumeQueue files
//! <root>/index/<yyyyMMddHHmmssSSS>                IndexFiles
//! <root>/checkpoint                               RocketMQ's timestamps + rocketstore's trailer
//! <root>/abort                                    present while a store has the root open
//! <root>/lock                                     flock'ed by the process that has it open
//! <root>/config/                                  RocketMQ's JSON configuration files
//! <root>/config/consumerOffset.json               consumer groups' offsets (+ .bak, .tmp)
//! <root>/config/delayOffset.json                  scheduled delivery progress (+ .bak, .tmp)
//! <root>/rocketstore-geometry                     rocketstore: the sizes of the root's files
//! ```
//!
//! Pure path arithmetic: nothing here touches the disk.

use std::path::{Path, PathBuf};

/// Name of the CommitLog directory.
pub const COMMITLOG_DIR: &str = "commitlog";
/// Name of the ConsumeQueue directory.
pub const CONSUME_QUEUE_DIR: &str = "consumequeue";
/// Name of the IndexFile directory.
pub const INDEX_DIR: &str = "index";
/// Name of the checkpoint file.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// Name of the file a new checkpoint is written to before it is renamed over the old one.
pub const CHECKPOINT_TMP_FILE: &str = "checkpoint.tmp";
/// Name of the unclean-shutdown marker.
pub const ABORT_FILE: &str = "abort";
/// Name of the lock file.
pub const LOCK_FILE: &str = "lock";
/// Name of RocketMQ's configuration directory.
pub const CONFIG_DIR: &str = "config";
/// Name of RocketMQ's consumer offset file (`ConsumerOffsetManager`), in [`CONFIG_DIR`].
pub const CONSUMER_OFFSET_FILE: &str = "consumerOffset.json";
/// Name of RocketMQ's delivery progress file of scheduled messages (`ScheduleMessageService`),
/// in [`CONFIG_DIR`].
pub const DELAY_OFFSET_FILE: &str = "delayOffset.json";
/// Name of RocketMQ's per consumer group settings file (`SubscriptionGroupManager`), in
/// [`CONFIG_DIR`].
pub const SUBSCRIPTION_GROUP_FILE: &str = "subscriptionGroup.json";
/// Name of rocketstore's record of the root's file geometry (`format::geometry`); RocketMQ
/// ignores it.
pub const GEOMETRY_FILE: &str = "rocketstore-geometry";
/// Name of the file a new geometry record is written to before it is renamed into place.
pub const GEOMETRY_TMP_FILE: &str = "rocketstore-geometry.tmp";

/// A store root directory and the paths of everything in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreRoot {
    path: PathBuf,
}

impl StoreRoot {
    /// The root at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreRoot { path: path.into() }
    }

    /// The root directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `commitlog/`.
    pub fn commitlog_dir(&self) -> PathBuf {
        self.path.join(COMMITLOG_DIR)
    }

    /// The CommitLog segment starting at `start`.
    pub fn segment(&self, start: u64) -> PathBuf {
        self.commitlog_dir().join(file_name(start))
    }

    /// `consumequeue/`.
    pub fn consume_queue_dir(&self) -> PathBuf {
        self.path.join(CONSUME_QUEUE_DIR)
    }

    /// `consumequeue/<topic>/`.
    pub fn topic_dir(&self, topic: &str) -> PathBuf {
        self.consume_queue_dir().join(topic)
    }

    /// `consumequeue/<topic>/<queue_id>/`.
    pub fn queue_dir(&self, topic: &str, queue_id: i32) -> PathBuf {
        self.topic_dir(topic).join(queue_id.to_string())
    }

    /// `index/`.
    pub fn index_dir(&self) -> PathBuf {
        self.path.join(INDEX_DIR)
    }

    /// `checkpoint`.
    pub fn checkpoint(&self) -> PathBuf {
        self.path.join(CHECKPOINT_FILE)
    }

    /// `checkpoint.tmp`.
    pub fn checkpoint_tmp(&self) -> PathBuf {
        self.path.join(CHECKPOINT_TMP_FILE)
    }

    /// `abort`.
    pub fn abort(&self) -> PathBuf {
        self.path.join(ABORT_FILE)
    }

    /// `lock`.
    pub fn lock(&self) -> PathBuf {
        self.path.join(LOCK_FILE)
    }

    /// `config/`.
    pub fn config_dir(&self) -> PathBuf {
        self.path.join(CONFIG_DIR)
    }

    /// `config/consumerOffset.json`, or with `suffix` (`".bak"`, `".tmp"`) the file RocketMQ
    /// keeps the previous version in, or the one a new version is written to.
    pub fn consumer_offsets(&self, suffix: &str) -> PathBuf {
        self.config_dir()
            .join(format!("{CONSUMER_OFFSET_FILE}{suffix}"))
    }

    /// `config/delayOffset.json`, or with `suffix` its `.bak` / `.tmp`.
    pub fn delay_offsets(&self, suffix: &str) -> PathBuf {
        self.config_dir()
            .join(format!("{DELAY_OFFSET_FILE}{suffix}"))
    }

    /// `config/subscriptionGroup.json`, or with `suffix` its `.bak` / `.tmp`.
    pub fn subscription_groups(&self, suffix: &str) -> PathBuf {
        self.config_dir()
            .join(format!("{SUBSCRIPTION_GROUP_FILE}{suffix}"))
    }

    /// `rocketstore-geometry`.
    pub fn geometry(&self) -> PathBuf {
        self.path.join(GEOMETRY_FILE)
    }

    /// `rocketstore-geometry.tmp`.
    pub fn geometry_tmp(&self) -> PathBuf {
        self.path.join(GEOMETRY_TMP_FILE)
    }
}

impl AsRef<Path> for StoreRoot {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// The name of a CommitLog segment or ConsumeQueue file starting at `start`: the offset as 20
/// decimal digits, zero-padded (RocketMQ's `UtilAll.offset2FileName`).
pub fn file_name(start: u64) -> String {
    format!("{start:020}")
}

/// The start offset a segment or ConsumeQueue file name encodes: exactly 20 decimal digits.
pub fn parse_file_name(name: &str) -> Option<u64> {
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_twenty_zero_padded_digits_and_parse_back() {
        assert_eq!(file_name(0), "00000000000000000000");
        assert_eq!(file_name(1 << 30), "00000000001073741824");
        assert_eq!(parse_file_name("00000000001073741824"), Some(1 << 30));
        assert_eq!(parse_file_name("1073741824"), None);
        assert_eq!(parse_file_name("0000000000107374182x"), None);
        assert_eq!(parse_file_name("+0000000001073741824"), None);
    }

    #[test]
    fn every_path_is_under_the_root() {
        let r = StoreRoot::new("/s");
        assert_eq!(r.segment(5), Path::new("/s/commitlog/00000000000000000005"));
        assert_eq!(r.queue_dir("T", 3), Path::new("/s/consumequeue/T/3"));
        assert_eq!(r.index_dir(), Path::new("/s/index"));
        assert_eq!(r.checkpoint(), Path::new("/s/checkpoint"));
        assert_eq!(r.config_dir(), Path::new("/s/config"));
    }
}
