//! Topic names (RocketMQ's broker rule). A topic is also a directory name under
//! `consumequeue/`, so the rule keeps it safe as one.

/// Longest topic name: it is a directory name under `consumequeue/`.
pub const MAX_TOPIC_LEN: usize = 255;

/// Checks a topic name: non-empty, at most [`MAX_TOPIC_LEN`] bytes, `[%|a-zA-Z0-9_-]` only
/// (RocketMQ's broker rule; it also keeps the name safe as a directory name).
pub fn check_topic(topic: &str) -> std::result::Result<(), &'static str> {
    if topic.is_empty() {
        return Err("empty");
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err("longer than 255 bytes");
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
    {
        return Err("only [%|a-zA-Z0-9_-] allowed");
    }
    Ok(())
}
