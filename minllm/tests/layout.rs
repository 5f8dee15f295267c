//! The runtime's modules import each other in layers, never in a circle, and
//! no source file grows past what one reader holds in mind (ARCHITECTURE.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read the source folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// The top-level module a source file belongs to (`node` for `node/run.rs`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component").as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules a file names as `crate::<module>` outside comments.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            // Lower-case names are modules; `crate::Flow` is a re-export.
            if !name.is_empty() && rest[name.len()..].starts_with("::") {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn the_runtime_modules_import_each_other_without_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in sources(&src) {
        let module = module_of(&src, &file);
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let deps = graph.entry(module.clone()).or_default();
        deps.extend(imports(&text).into_iter().filter(|d| *d != module));
    }
    graph.remove("lib");
    // Peel off modules whose imports are all peeled: what is left is a circle.
    let mut done: BTreeSet<String> = BTreeSet::new();
    loop {
        let ready: Vec<String> = graph
            .iter()
            .filter(|(m, deps)| !done.contains(*m) && deps.iter().all(|d| done.contains(d) || !graph.contains_key(d)))
            .map(|(m, _)| m.clone())
            .collect();
        if ready.is_empty() {
            break;
        }
        done.extend(ready);
    }
    let circle: Vec<_> = graph.iter().filter(|(m, _)| !done.contains(*m)).collect();
    assert!(circle.is_empty(), "modules that import each other in a circle: {circle:?}");
    assert!(graph.contains_key("node") && graph.contains_key("flow"), "the walk found the modules: {graph:?}");
}

#[test]
fn no_source_file_is_longer_than_500_lines() {
    // Every crate of the workspace, tests and examples included.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let folders = [
        "minllm/src",
        "minllm/tests",
        "minllm/benches",
        "minllm/graph/src",
        "minllm-macros/src",
        "minllm-py/src",
        "tests",
        "examples",
        "ui-tests",
    ];
    let long: Vec<_> = folders
        .iter()
        .flat_map(|folder| sources(&root.join(folder)))
        .map(|f| (std::fs::read_to_string(&f).expect("read").lines().count(), f))
        .filter(|(lines, _)| *lines > 500)
        .collect();
    assert!(long.is_empty(), "files over 500 lines: {long:?}");
}

#[test]
fn the_import_finder_sees_modules_not_reexports() {
    let text = "use crate::node::{Node};\n// crate::flow::Flow in a comment\nlet x = crate::Flow::new();\ncrate::batch::run();";
    let found: Vec<_> = imports(text).into_iter().collect();
    assert_eq!(found, ["batch", "node"]);
}
