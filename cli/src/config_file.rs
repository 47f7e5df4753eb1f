//! RocketMQ's config files under `<root>/config/` (`consumerOffset.json`, `delayOffset.json`),
//! read as the library's open reads them: the file, or its `.bak` when the file is missing,
//! empty or does not decode (RocketMQ's `ConfigManager` fallback); an error naming the file when
//! neither decodes.

use std::path::{Path, PathBuf};

use rocketstore::format::root::CONFIG_DIR;

use crate::error::{CliError, CliResult};
use crate::root::Root;

/// A config file that was read.
pub struct Loaded<T> {
    /// What it holds.
    pub value: T,
    /// The file it came from (the main file or its `.bak`).
    pub file: PathBuf,
    /// Why the main file was passed over for the `.bak`, if it was.
    pub fallback: Option<String>,
}

/// Reads `config/<name>` or its `.bak`; `None` when neither exists.
pub fn load<T>(
    root: &Root,
    name: &str,
    decode: impl Fn(&str) -> Result<T, String>,
) -> CliResult<Option<Loaded<T>>> {
    let dir = root.path.join(CONFIG_DIR);
    let (main, bak) = (dir.join(name), dir.join(format!("{name}.bak")));
    let why = match read(root, &main, &decode)? {
        Some(Ok(value)) => {
            return Ok(Some(Loaded {
                value,
                file: main,
                fallback: None,
            }))
        }
        Some(Err(why)) => Some(why),
        None => None,
    };
    match (read(root, &bak, &decode)?, why) {
        (Some(Ok(value)), why) => {
            let fallback = format!(
                "{}: {}; using {}",
                main.display(),
                why.as_deref().unwrap_or("missing"),
                bak.display()
            );
            Ok(Some(Loaded {
                value,
                file: bak,
                fallback: Some(fallback),
            }))
        }
        (None, None) => Ok(None),
        (bak_state, Some(why)) => {
            let bak_why = match bak_state {
                Some(Err(e)) => e,
                _ => "missing".into(),
            };
            Err(CliError::layout(
                main,
                format!("{why}; and {}: {bak_why}", bak.display()),
            ))
        }
        (Some(Err(e)), None) => Err(CliError::layout(
            bak,
            format!("{e} ({} is missing)", main.display()),
        )),
    }
}

/// `None`: no such file; `Some(Err(why))`: empty, not UTF-8 or does not decode.
fn read<T>(
    root: &Root,
    path: &Path,
    decode: &impl Fn(&str) -> Result<T, String>,
) -> CliResult<Option<Result<T, String>>> {
    let Some(meta) = root.vfs.metadata(path).map_err(|e| CliError::io(path, e))? else {
        return Ok(None);
    };
    if meta.len == 0 {
        return Ok(Some(Err("empty".into())));
    }
    let bytes = root.read_range(path, 0, meta.len as usize)?;
    let Ok(text) = String::from_utf8(bytes) else {
        return Ok(Some(Err("not UTF-8".into())));
    };
    Ok(Some(decode(&text)))
}
