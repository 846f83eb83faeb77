//! The top-level modules of auditor/src (its files and folders: `config`,
//! `events`, `http`…) depend on each other without a cycle, so that each
//! can be read, tested and replaced knowing only the ones below it.
//!
//! A module depends on another when its code, tests included, names a path
//! into it: `crate::other::…`, `use crate::{other, …}`, or a `super::` that
//! climbs out of the module. Comments and strings are not code: the files
//! are read as Rust tokens.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    str::FromStr,
};

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// Each top-level module, and the top-level modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn top_level_modules_depend_on_each_other_without_a_cycle() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.contains_key("config") && graph.contains_key("http"));
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "the modules of auditor/src depend on each other in a circle: {}",
            cycle.join(" → ")
        );
    }
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph: Graph = [
        ("config", &["events", "rules"][..]),
        ("events", &["http", "rules"]),
        ("rules", &["http", "config"]),
        ("http", &[]),
    ]
    .into_iter()
    .map(|(module, uses)| (module.into(), uses.iter().map(|u| u.to_string()).collect()))
    .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(vec![
            "config".into(),
            "events".into(),
            "rules".into(),
            "config".into()
        ])
    );
}

#[test]
fn paths_out_of_a_module_are_found_and_the_others_ignored() {
    let code = "use crate::{events::{Event, Redactor}, http};
        use super::exchange::Quality;
        // crate::commented
        const TEXT: &str = \"crate::quoted\";
        pub(crate) fn f() -> crate::rules::Severity { crate::output::f!(crate::metrics::X) }
        mod tests { use super::*; use super::super::reporter::Reporter; }";
    let mut found = BTreeSet::new();
    let depth = 2; // as in src/config/validate.rs
    named_modules(TokenStream::from_str(code).unwrap(), depth, &mut found);
    assert_eq!(
        found,
        ["events", "http", "metrics", "output", "rules"]
            .map(String::from)
            .into()
    );
    found.clear();
    let depth = 1; // as in src/reporter.rs, where `super::` is the crate root
    named_modules(TokenStream::from_str(code).unwrap(), depth, &mut found);
    assert_eq!(
        found,
        ["events", "exchange", "http", "metrics", "output", "reporter", "rules"]
            .map(String::from)
            .into()
    );
}

/// The dependencies between the top-level modules under `src`. Not of
/// lib.rs, which only declares them, nor of main.rs, a crate of its own
/// that reaches them as `auditor::…`.
fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let files = match path.extension() {
            None => rust_files(&path),
            Some(ext) if ext == "rs" && !["lib.rs", "main.rs"].contains(&file_name(&path)) => {
                vec![path.clone()]
            }
            Some(_) => continue,
        };
        let module = path.file_stem().unwrap().to_string_lossy().into_owned();
        let uses = graph.entry(module.clone()).or_default();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let tokens = TokenStream::from_str(&text)
                .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
            named_modules(tokens, depth(src, &file), uses);
        }
        uses.remove(&module);
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for uses in graph.values_mut() {
        uses.retain(|used| modules.contains(used));
    }
    graph
}

fn file_name(path: &Path) -> &str {
    path.file_name().unwrap().to_str().unwrap()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// How many modules deep the code of `file` is: 1 for src/config/mod.rs,
/// 2 for src/config/validate.rs.
fn depth(src: &Path, file: &Path) -> usize {
    let components = file.strip_prefix(src).unwrap().components().count();
    match file_name(file) {
        "mod.rs" => components - 1,
        _ => components,
    }
}

/// Adds to `found` the top-level module each path of `tokens` starts in,
/// when it says: `crate::module`, `crate::{module, …}`, or as many
/// `super::` as `depth` (the nesting of the code), then `module`.
fn named_modules(tokens: TokenStream, depth: usize, found: &mut BTreeSet<String>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        if let Some(after) = crate_root_path(&tokens, i, depth) {
            match tokens.get(after) {
                Some(TokenTree::Ident(module)) => {
                    found.insert(module.to_string());
                }
                Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Brace => {
                    found.extend(first_of_each_item(group.stream()));
                }
                _ => {}
            }
            i = after;
            continue;
        }
        match &tokens[i] {
            TokenTree::Ident(ident) if ident == "mod" => {
                if let Some(TokenTree::Group(body)) = tokens.get(i + 2) {
                    named_modules(body.stream(), depth + 1, found);
                    i += 2;
                }
            }
            TokenTree::Group(group) => named_modules(group.stream(), depth, found),
            _ => {}
        }
        i += 1;
    }
}

/// When a path starts at `tokens[i]` with `crate::`, or with enough
/// `super::` to leave code `depth` modules deep: where the rest begins.
fn crate_root_path(tokens: &[TokenTree], i: usize, depth: usize) -> Option<usize> {
    let segment = |i: usize, name: &str| {
        matches!(tokens.get(i), Some(TokenTree::Ident(ident)) if ident == name)
            && is_path_separator(tokens, i + 1)
    };
    if segment(i, "crate") {
        return Some(i + 3);
    }
    let supers = (0..).take_while(|n| segment(i + 3 * n, "super")).count();
    (supers > 0 && supers >= depth).then_some(i + 3 * supers)
}

/// `::` at `i`.
fn is_path_separator(tokens: &[TokenTree], i: usize) -> bool {
    let colon = |i: usize| matches!(tokens.get(i), Some(TokenTree::Punct(p)) if p.as_char() == ':');
    colon(i) && colon(i + 1)
}

/// The first name of each item of a `use` group: `events` and `http` of
/// `{events::{Event, Redactor}, http}`.
fn first_of_each_item(group: TokenStream) -> Vec<String> {
    let mut names = Vec::new();
    let mut item_start = true;
    for token in group {
        match &token {
            TokenTree::Ident(ident) if item_start && ident != "self" => {
                names.push(ident.to_string())
            }
            TokenTree::Punct(p) if p.as_char() == ',' => {
                item_start = true;
                continue;
            }
            _ => {}
        }
        item_start = false;
    }
    names
}

/// A cycle of `graph` as the modules along it, the first repeated at the
/// end, when there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            let mut cycle = path[start..].to_vec();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for used in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(used, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(module, graph, &mut Vec::new(), &mut done))
}
