//! The crate's layers, checked: every `crate::` path in a module of `src/` names a module of a
//! strictly lower layer, so the module graph has no cycle and the dependency arrows point down
//! (ARCHITECTURE.md). The table below is the layout section of the README in executable form;
//! a new module must be given a layer here, or this test fails.
//!
//! Re-check by hand with `cargo test --test layers`.

use std::collections::BTreeMap;
use std::path::Path;

/// Top-level module of `src/` → its layer. A module may use only modules of a lower layer.
const LAYERS: &[(&str, u32)] = &[
    // bytes and the OS
    ("format", 0),
    ("storage", 0),
    ("vfs", 0), // lib.rs's public re-export of the storage seam
    // shared vocabulary
    ("error", 1),
    ("clock", 1),
    ("config", 2),
    ("stats", 2),
    ("message", 3),
    ("results", 4),
    // files of a root
    ("segments", 3),
    ("root", 3), // is a directory a root, and its file geometry
    ("commitlog", 4),
    ("consume_queue", 4),
    ("index", 4),
    ("checkpoint", 5),
    ("dispatch", 5),
    // opening a root
    ("recovery", 6),
    // the running store
    ("engine", 7),
    // consumer groups on the running store
    ("consumer", 8),
    // the facade
    ("store", 9),
    ("lib", 10),
    // the test seams of feature `internals` (the test-support crate builds on them)
    ("internals", 10),
];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|&(_, l)| l)
}

/// Every `crate::<module>` path outside comments and test modules of `file`.
fn references(file: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if !name.is_empty() && rest[name.len()..].starts_with("::") {
                out.push((n + 1, name));
            }
        }
    }
    out
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, files);
        } else if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
}

#[test]
fn every_module_uses_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut problems = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel.iter().next().unwrap().to_string_lossy().into_owned();
        let module = first.trim_end_matches(".rs").to_string();
        let Some(own) = layer(&module) else {
            problems.insert(rel.display().to_string(), "module has no layer".to_string());
            continue;
        };
        for (line, used) in references(&f) {
            if used == module {
                continue;
            }
            match layer(&used) {
                Some(l) if l < own => {}
                Some(l) => {
                    problems.insert(
                        format!("{}:{line}", rel.display()),
                        format!("{module} (layer {own}) uses {used} (layer {l})"),
                    );
                }
                None => {
                    problems.insert(
                        format!("{}:{line}", rel.display()),
                        format!("uses {used}, which has no layer"),
                    );
                }
            }
        }
    }
    assert!(problems.is_empty(), "layer violations: {problems:#?}");
}
