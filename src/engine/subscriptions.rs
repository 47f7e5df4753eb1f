//! Per consumer group settings: RocketMQ's `config/subscriptionGroup.json`
//! ([`subscription_group`](crate::format::subscription_group)), read at open (falling back to
//! its `.bak` as the other config files do) and rewritten whole, atomically, by
//! [`crate::Store::set_subscription_group`]. A group's `retryMaxTimes` is its retry limit.

use super::offsets::{load_config, write_config};
use super::Engine;
use crate::error::{Error, Result};
use crate::format::root::StoreRoot;
use crate::format::subscription_group::{self, SubscriptionGroupConfig, SubscriptionGroups};
use crate::format::topic::check_topic;
use crate::storage::Vfs;

/// Reads `config/subscriptionGroup.json` (or its `.bak`); no groups if neither exists.
pub(super) fn load(vfs: &dyn Vfs, root: &StoreRoot) -> Result<SubscriptionGroups> {
    let loaded = load_config(
        vfs,
        &root.subscription_groups(""),
        &root.subscription_groups(".bak"),
        |text| subscription_group::parse(text).map_err(|e| e.to_string()),
    )?;
    Ok(loaded.unwrap_or_default())
}

impl Engine {
    /// The settings of `group`, if the file has an entry for it.
    pub(crate) fn subscription_group(&self, group: &str) -> Option<SubscriptionGroupConfig> {
        self.subscriptions.lock().groups.get(group).cloned()
    }

    /// Every group's settings.
    pub(crate) fn subscription_groups(&self) -> Vec<SubscriptionGroupConfig> {
        self.subscriptions.lock().groups.values().cloned().collect()
    }

    /// `group`'s `retryMaxTimes`, if the file has an entry for it.
    pub(crate) fn retry_max_times(&self, group: &str) -> Option<i32> {
        self.subscriptions
            .lock()
            .groups
            .get(group)
            .map(|g| g.retry_max_times)
    }

    /// Sets (adds or replaces) the settings of `config.group_name` and writes the whole file
    /// (new version synced, the old one kept as `.bak`, then renamed into place). On an error
    /// nothing changes in memory; the file on disk is the old one or the new one.
    pub(crate) fn set_subscription_group(&self, config: SubscriptionGroupConfig) -> Result<()> {
        self.check_writable()?;
        check_topic(&config.group_name).map_err(|reason| Error::InvalidGroup {
            group: config.group_name.clone(),
            reason,
        })?;
        let mut current = self.subscriptions.lock();
        let mut next = current.clone();
        next.groups.insert(config.group_name.clone(), config);
        let text = subscription_group::encode(&next);
        write_config(
            &*self.vfs,
            &self.root,
            |s| self.root.subscription_groups(s),
            &text,
        )?;
        *current = next;
        Ok(())
    }
}
