//! The layering rule, checked from the source (issue #16, SPEC's module order): every
//! module imports only modules below it, and no two files import each other, directly
//! or around a cycle.
//!
//! The check reads `src/` as text: `use` statements (braces expanded) and paths that
//! start with `crate::`, `super::`, `self::` or a child module's name. A `mod` line
//! alone is not an edge; using what the child defines is. Test modules are left out:
//! what a unit test imports is not a dependency of the product.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and its rank: a module may import only modules of lower rank.
/// A new module gets a rank here, which is where a reader learns where it sits.
const RANKS: &[(&str, u8)] = &[
    ("x402", 0),
    ("mpp", 0),
    ("codes", 0),
    ("outbound", 0),
    ("chain_rpc", 0),
    ("telemetry", 1),
    ("detect", 1),
    ("policy", 2),
    ("ledger", 3),
    ("trace", 3),
    ("holds", 4),
    ("store", 5),
    ("engine", 6),
    ("proxy", 7),
    ("admin", 8),
    ("app", 9),
    ("redirect", 9),
    ("demo", 10),
    ("cli", 11),
];

type Module = Vec<String>;

#[test]
fn modules_import_only_modules_below_them() {
    let graph = file_graph();
    let rank = |name: &str| RANKS.iter().find(|(n, _)| *n == name).map(|(_, r)| *r);
    let mut unranked = BTreeSet::new();
    let mut upward = BTreeSet::new();
    for (from, targets) in &graph {
        let Some(from_top) = from.first() else {
            continue;
        };
        for to in targets {
            let Some(to_top) = to.first() else { continue };
            if from_top == to_top {
                continue;
            }
            match (rank(from_top), rank(to_top)) {
                (Some(a), Some(b)) if a > b => {}
                (Some(_), Some(_)) => {
                    upward.insert(format!("{} -> {}", from.join("/"), to.join("/")));
                }
                (None, _) => {
                    unranked.insert(from_top.clone());
                }
                (_, None) => {
                    unranked.insert(to_top.clone());
                }
            }
        }
    }
    assert!(
        unranked.is_empty(),
        "give these modules a rank in tests/layers.rs: {unranked:?}"
    );
    assert!(
        upward.is_empty(),
        "imports that point up or sideways between layers:\n{}",
        upward.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn no_two_files_import_each_other() {
    let graph = file_graph();
    let cycles = strongly_connected(&graph)
        .into_iter()
        .filter(|component| component.len() > 1)
        .map(|component| {
            let names: Vec<String> = component.iter().map(display).collect();
            names.join(" <-> ")
        })
        .collect::<Vec<_>>();
    assert!(
        cycles.is_empty(),
        "files that import each other (directly or around a cycle):\n{}",
        cycles.join("\n")
    );
}

fn display(module: &Module) -> String {
    if module.is_empty() {
        "lib".to_string()
    } else {
        module.join("/")
    }
}

/// Every source file's module and the file modules it uses.
fn file_graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect_rust_files(&root, &mut files);
    let modules: BTreeMap<Module, String> = files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            (module_of(&root, path), product_code(&text))
        })
        .collect();
    let known: BTreeSet<Module> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(module, code)| {
            let targets = referenced_paths(code)
                .iter()
                .filter_map(|path| resolve(module, path, &known))
                .filter(|target| target != module)
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs")
            // The binary's `main.rs` is a client of the library, not one of its layers.
            && path.file_name().is_some_and(|name| name != "main.rs")
        {
            out.push(path);
        }
    }
}

/// `src/engine/flow.rs` is `engine::flow`; `mod.rs`, `lib.rs` and `main.rs` name their
/// directory's module.
fn module_of(root: &Path, path: &Path) -> Module {
    let relative = path.strip_prefix(root).unwrap_or(path).with_extension("");
    let mut parts: Module = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file without comments and without its unit tests.
fn product_code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod ").next().unwrap_or(text);
    text.lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string (a URL) cuts the rest of that line only; paths
            // after a URL on the same line are rare enough not to matter here.
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths named by `use` statements (braces expanded) and `crate::`/`super::` paths in code.
fn referenced_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for statement in use_statements(code) {
        expand_braces(&statement, &mut paths);
    }
    let bytes = code.as_bytes();
    for start in 0..bytes.len() {
        if !code.is_char_boundary(start) {
            continue;
        }
        let rest = &code[start..];
        let at_word_start = start == 0 || !is_ident(bytes[start - 1]);
        if at_word_start && (rest.starts_with("crate::") || rest.starts_with("super::")) {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            paths.push(rest[..end].to_string());
        }
    }
    paths
}

fn is_ident(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn use_statements(code: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before_ok = at == 0 || !is_ident(rest.as_bytes()[at - 1]);
        let after = &rest[at + 4..];
        if before_ok {
            if let Some(end) = after.find(';') {
                let statement: String = after[..end].split_whitespace().collect();
                statements.push(statement);
                rest = &after[end..];
                continue;
            }
        }
        rest = after;
    }
    statements
}

/// `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand_braces(path: &str, out: &mut Vec<String>) {
    let Some(open) = path.find('{') else {
        out.push(path.split(" as ").next().unwrap_or(path).to_string());
        return;
    };
    let prefix = &path[..open];
    let inner = path[open + 1..]
        .strip_suffix('}')
        .unwrap_or(&path[open + 1..]);
    let mut depth = 0;
    let mut part = String::new();
    for ch in inner.chars() {
        match ch {
            ',' if depth == 0 => {
                expand_braces(&format!("{prefix}{part}"), out);
                part.clear();
                continue;
            }
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        part.push(ch);
    }
    if !part.is_empty() {
        expand_braces(&format!("{prefix}{part}"), out);
    }
}

/// The file module a path lands in: the longest prefix of it that is a file.
fn resolve(current: &Module, path: &str, known: &BTreeSet<Module>) -> Option<Module> {
    let path = path.strip_suffix("::").unwrap_or(path);
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Module = match segments.first().copied() {
        Some("crate") => {
            segments.remove(0);
            Vec::new()
        }
        Some("super" | "self") => {
            let mut base = current.clone();
            while let Some(&first) = segments.first() {
                match first {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                segments.remove(0);
            }
            base
        }
        Some(child) => {
            let mut candidate = current.clone();
            candidate.push(child.to_string());
            if !known.contains(&candidate) {
                return None;
            }
            current.clone()
        }
        None => return None,
    };
    base.extend(segments.iter().map(|s| s.to_string()));
    (0..=base.len())
        .rev()
        .map(|n| base[..n].to_vec())
        .find(|prefix| known.contains(prefix))
}

/// Tarjan's strongly connected components.
fn strongly_connected(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        components: Vec<Vec<Module>>,
    }
    fn visit<'a>(node: &'a Module, state: &mut State<'a>) {
        let n = state.index.len();
        state.index.insert(node, n);
        state.low.insert(node, n);
        state.stack.push(node);
        state.on_stack.insert(node);
        if let Some(targets) = state.graph.get(node) {
            for target in targets {
                let Some((target, _)) = state.graph.get_key_value(target) else {
                    continue;
                };
                if !state.index.contains_key(target) {
                    visit(target, state);
                    let low = state.low[target].min(state.low[node]);
                    state.low.insert(node, low);
                } else if state.on_stack.contains(target) {
                    let low = state.index[target].min(state.low[node]);
                    state.low.insert(node, low);
                }
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.push(member.clone());
                if member == node {
                    break;
                }
            }
            state.components.push(component);
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node) {
            visit(node, &mut state);
        }
    }
    state.components
}
