//! The layering rule of `src/` (see `src/lib.rs`), checked on the source:
//! every file's `crate::` and `super::` paths may only point to its own
//! layer or the layers below it, no two files may import each other in a
//! circle, `impl Repository` lives in `src/repo/` alone, and no library
//! file words a command-line flag.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every library source file (the binary's `cli/` and `main.rs` left
/// out): its path relative to `src/` and its text.
fn library_sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(&src).into_iter().map(Result::unwrap) {
        let rel = e
            .path()
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let rust = e.path().extension().is_some_and(|x| x == "rs");
        if rust && !rel.starts_with("cli/") && rel != "main.rs" {
            out.push((rel, std::fs::read_to_string(e.path()).unwrap()));
        }
    }
    out
}

/// Layers from the bottom up; a file may use its own layer and lower ones.
const LAYERS: &[&[&str]] = &[
    &["error", "id", "progress", "sys"],
    &["format"],
    &["backend"],
    &["repo"],
    &["sqlite"],
    &["commands"],
    &["service"],
];

fn layer_of(module: &[String]) -> Option<usize> {
    let top = module.first()?;
    LAYERS.iter().position(|l| l.contains(&top.as_str()))
}

/// `repo/index.rs` -> `[repo, index]`; `repo/mod.rs` -> `[repo]`.
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The library source of a file: comments dropped, unit tests cut off.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path after `prefix` (`crate::` or `super::`), with one level of
/// `{a::b, c}` groups expanded.
fn paths(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let base: Vec<String> = rest[..end]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if rest[end..].starts_with('{') {
            let close = rest[end..].find('}').map_or(rest.len(), |c| end + c);
            for item in rest[end + 1..close].split(',') {
                let first = item.trim().split("::").next().unwrap_or("").trim();
                if first.chars().next().is_some_and(char::is_lowercase) && first != "self" {
                    let mut p = base.clone();
                    p.push(first.to_string());
                    out.push(p);
                } else {
                    out.push(base.clone());
                }
            }
        } else {
            out.push(base);
        }
    }
    out
}

#[test]
fn layers_point_down_and_files_import_no_circle() {
    let mut files: BTreeMap<Vec<String>, (String, String)> = BTreeMap::new();
    for (rel, text) in library_sources() {
        if rel != "lib.rs" {
            files.insert(module_of(&rel), (rel, text));
        }
    }
    // The longest module prefix of a path that is a file.
    let resolve = |path: &[String]| -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|m| files.contains_key(m))
    };
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut upward = Vec::new();
    for (module, (rel, text)) in &files {
        let code = code(text);
        // `super::` is relative to the parent of a file's module (its own
        // module for a mod.rs).
        let parent: Vec<String> = if rel.ends_with("mod.rs") {
            module[..module.len().saturating_sub(1)].to_vec()
        } else {
            module[..module.len() - 1].to_vec()
        };
        let mut targets: Vec<Vec<String>> = paths(&code, "crate::");
        for p in paths(&code, "super::") {
            let mut full = parent.clone();
            full.extend(p);
            targets.push(full);
        }
        for t in targets {
            let Some(to) = resolve(&t) else { continue };
            if &to == module {
                continue;
            }
            let (from_layer, to_layer) = (layer_of(module), layer_of(&to));
            if let (Some(a), Some(b)) = (from_layer, to_layer) {
                if b > a {
                    upward.push(format!("{rel} uses {}", to.join("::")));
                }
            }
            edges.entry(module.clone()).or_default().insert(to);
        }
    }
    assert!(
        upward.is_empty(),
        "imports that point up a layer:\n{}",
        upward.join("\n")
    );

    // A circle is a path from a file back to itself.
    let mut circles = Vec::new();
    for start in files.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, trail)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                if next == start {
                    let names: Vec<String> = trail.iter().map(|m| m.join("::")).collect();
                    circles.push(format!("{} -> {}", names.join(" -> "), start.join("::")));
                } else if seen.insert(next.clone()) {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn impl_repository_lives_in_repo_and_the_library_names_no_flag() {
    let mut misplaced = Vec::new();
    let mut flags = Vec::new();
    for (rel, text) in library_sources() {
        let code = code(&text);
        if code.lines().any(|l| l.starts_with("impl Repository")) && !rel.starts_with("repo/") {
            misplaced.push(rel.clone());
        }
        // A string literal naming a long flag ("--live", "`--repo`"); an
        // argument given to another program (`.arg("--reflink=always")`)
        // is not one of ours.
        let parts: Vec<&str> = code.split('"').collect();
        for (i, part) in parts.iter().enumerate() {
            let in_string = i % 2 == 1;
            let child_arg = in_string && parts[i - 1].trim_end().ends_with(".arg(");
            if in_string
                && !child_arg
                && part.split_whitespace().any(|w| {
                    let w = w.trim_start_matches(['`', '(']);
                    w.len() > 2 && w.starts_with("--") && w.as_bytes()[2].is_ascii_lowercase()
                })
            {
                flags.push(format!("{rel}: {part:?}"));
            }
        }
    }
    assert!(
        misplaced.is_empty(),
        "impl Repository outside src/repo/: {misplaced:?}"
    );
    assert!(
        flags.is_empty(),
        "library messages naming flags:\n{}",
        flags.join("\n")
    );
}
