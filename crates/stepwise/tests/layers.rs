//! The engine's layers import downwards only (ARCHITECTURE.md, "Layers").
//!
//! Reads every file under `src/`, finds each `crate::…` path in its code (not
//! in comments), and fails when a path names a layer above the file's own —
//! the compiler cannot check this inside one crate, so this test does. Names
//! re-exported at the crate root (`crate::RunOptions`) are traced to the layer
//! that defines them through `lib.rs`'s `pub use` lines.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first. A file may import from its own layer and below.
const LAYERS: [&str; 6] = ["core", "store", "runtime", "durable", "graph", "host"];

/// Inside `core/`, the same rule one level down, lowest first.
const CORE_LAYERS: [&[&str]; 5] = [
    &["event", "builtin", "depth", "error", "ids", "retry", "state"],
    &["context"],
    &["define"],
    &["reducer"],
    &["codec"],
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code without `//` comments (doc links are not imports).
fn code_of(text: &str) -> String {
    let mut code = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_string = false;
        let mut cut = line.len();
        let bytes = line.as_bytes();
        let mut i = 0;
        while i + 1 < bytes.len() {
            match bytes[i] {
                b'\\' if in_string => i += 1,
                b'"' => in_string = !in_string,
                b'/' if !in_string && bytes[i + 1] == b'/' => {
                    cut = i;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        code.push_str(&line[..cut]);
        code.push('\n');
    }
    code
}

/// Every path that follows `crate::`, with `{…}` groups expanded, as its
/// segments (`crate::core::{event::A, reducer}` → `[core, event, A]`, `[core, reducer]`).
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `stepwise_crate::`, not ours
        }
        let (tree, _) = parse_tree(rest);
        for path in tree {
            paths.push(path);
        }
    }
    paths
}

/// Parses `a::b::{c, d::e}` at the start of `text` into its leaf paths.
fn parse_tree(text: &str) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    let mut i = 0;
    let bytes = text.as_bytes();
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'{' {
            i += 1;
            let mut leaves = Vec::new();
            loop {
                let (inner, used) = parse_tree(&text[i..]);
                i += used;
                for leaf in inner {
                    let mut path = prefix.clone();
                    path.extend(leaf);
                    leaves.push(path);
                }
                while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b',') {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    return (leaves, i + 1);
                }
            }
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        if start == i {
            return (vec![prefix], i);
        }
        prefix.push(text[start..i].to_owned());
        if text[i..].starts_with("::") {
            i += 2;
        } else {
            return (vec![prefix], i);
        }
    }
}

/// Root re-exports: name → the path it comes from (from `lib.rs`'s `pub use crate::…`).
fn root_names(lib: &str) -> BTreeMap<String, Vec<String>> {
    let mut names = BTreeMap::new();
    for path in crate_paths(&code_of(lib)) {
        if let Some(last) = path.last() {
            names.insert(last.clone(), path.clone());
        }
    }
    names
}

/// The layer a path (below `crate::`) points into; `None` for the crate root itself.
fn layer_of(path: &[String], roots: &BTreeMap<String, Vec<String>>) -> Option<(usize, Option<usize>)> {
    let first = path.first()?;
    if let Some(layer) = LAYERS.iter().position(|l| l == first) {
        let sub = if layer == 0 {
            path.get(1).and_then(|m| core_layer(m))
        } else {
            None
        };
        return Some((layer, sub));
    }
    match roots.get(first) {
        Some(origin) if origin.first() != Some(first) => layer_of(origin, roots),
        _ => None, // `crate::__private`, macros, `testing`: the root layer
    }
}

fn core_layer(module: &str) -> Option<usize> {
    CORE_LAYERS.iter().position(|group| group.contains(&module))
}

/// The layer of a file, from its place under `src/` (`None`: lib.rs, testing.rs — the top).
fn file_layer(relative: &Path) -> Option<(usize, Option<usize>)> {
    let mut parts = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned());
    let first = parts.next()?;
    let layer = LAYERS.iter().position(|l| *l == first)?;
    let sub = if layer == 0 {
        parts.next().and_then(|m| core_layer(&m))
    } else {
        None
    };
    Some((layer, sub))
}

fn upward_imports() -> Vec<String> {
    let src = src_dir();
    let roots = root_names(&fs::read_to_string(src.join("lib.rs")).expect("lib.rs"));
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src/").to_path_buf();
        let Some((layer, sub)) = file_layer(&relative) else {
            continue; // the top may import anything
        };
        let code = code_of(&fs::read_to_string(&file).expect("readable"));
        for path in crate_paths(&code) {
            let Some((target, target_sub)) = layer_of(&path, &roots) else {
                continue;
            };
            let up = target > layer
                || (layer == 0 && target == 0 && matches!((sub, target_sub), (Some(s), Some(t)) if t > s));
            if up {
                found.push(format!("{}: crate::{}", relative.display(), path.join("::")));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let found = upward_imports();
    assert!(
        found.is_empty(),
        "imports that point up a layer (order, lowest first: {LAYERS:?}; inside core: {CORE_LAYERS:?}):\n{}",
        found.join("\n")
    );
}

/// What `core/` must not use outside its tests: a runtime, I/O, a clock,
/// printing. (`tokio::sync` is fine: channels, no runtime.)
const NOT_IN_CORE: [&str; 9] = [
    "tokio::spawn",
    "tokio::time",
    "tokio::runtime",
    "tokio::task",
    "Instant::now",
    "SystemTime",
    "std::fs",
    "std::net",
    "println!",
];

#[test]
fn the_core_has_no_runtime_io_or_clock() {
    let core = src_dir().join("core");
    let mut files = Vec::new();
    rust_files(&core, &mut files);
    let mut found = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).expect("readable");
        // Unit tests at the end of a file may use a runtime.
        let code = code_of(text.split("#[cfg(test)]").next().unwrap_or_default());
        for banned in NOT_IN_CORE {
            if code.contains(banned) {
                found.push(format!("{}: {banned}", file.strip_prefix(&core).unwrap().display()));
            }
        }
    }
    assert!(found.is_empty(), "core/ must stay pure:\n{}", found.join("\n"));
}

#[test]
fn the_checker_sees_grouped_and_root_paths() {
    let paths = crate_paths(
        "use crate::core::{event::AnyEvent, reducer::{Tick, Command}};\n let x = crate::RunOptions::new();",
    );
    assert_eq!(
        paths,
        vec![
            vec!["core", "event", "AnyEvent"],
            vec!["core", "reducer", "Tick"],
            vec!["core", "reducer", "Command"],
            vec!["RunOptions", "new"],
        ]
    );
    assert!(code_of("let a = 1; // crate::runtime::X\n").find("crate::").is_none());
    assert!(code_of("let s = \"http://x\"; crate::a").contains("crate::a"));
}
