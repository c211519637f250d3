//! The module order of src/lib.rs's doc comment holds in the code: each module of the crate
//! uses (`crate::…`, doc links aside) only modules after it in that order.

use std::path::Path;

/// The order, callers first; modules of one group may not use each other.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["plot", "serve"],
    &["training"],
    &["inference"],
    &["config"],
    &["checkpoint"],
    &["data"],
    &["model"],
    &["metrics", "backend", "fsutil", "alloc"],
    &["error"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|group| group.contains(&module))
}

/// Every `crate::name` used in the code of `path` (a file or a folder), doc comments excluded.
fn uses(path: &Path, found: &mut Vec<(String, String)>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            uses(&entry.unwrap().path(), found);
        }
        return;
    }
    let text = std::fs::read_to_string(path).unwrap();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let name: String = line[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push((name, format!("{}: {}", path.display(), line.trim())));
        }
    }
}

#[test]
fn modules_use_only_modules_after_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut problems = Vec::new();
    for module in lib.lines().filter_map(|l| {
        l.strip_prefix("pub ")
            .unwrap_or(l)
            .strip_prefix("mod ")?
            .strip_suffix(';')
    }) {
        let Some(own) = layer(module) else {
            problems.push(format!("module `{module}` is not in the order of lib.rs"));
            continue;
        };
        let file = src.join(format!("{module}.rs"));
        let path = if file.is_file() {
            file
        } else {
            src.join(module)
        };
        let mut found = Vec::new();
        uses(&path, &mut found);
        for (used, line) in found {
            if used != module && layer(&used).is_none_or(|l| l <= own) {
                problems.push(format!("`{module}` uses `{used}`: {line}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
