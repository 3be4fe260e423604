//! The house's data flows one way: no file of `src/` (the test kit aside) imports, directly
//! or through others, a file that imports it back, except the pairs named in
//! [`ALLOWED_PAIRS`], each with its reason.
//!
//! An import is any path a file names: `use` declarations (braces expanded), inline
//! `crate::…` paths, `super::`/`self::` paths and `child::` paths of the modules it
//! declares; each resolves to the file of its longest module prefix. Unit tests
//! (`#[cfg(test)] mod tests`) and comments are not imports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The loops of two files the layout keeps, and why.
const ALLOWED_PAIRS: &[(&str, &str, &str)] = &[
    (
        "aauth.rs",
        "builder.rs",
        "the handle and its builder: AAuth::builder() starts one, build() returns one",
    ),
    (
        "httpsig/mod.rs",
        "httpsig/fast_input.rs",
        "the fast parser builds the general parser's ParsedInput and hands it every field it does not handle",
    ),
    (
        "deferred/mod.rs",
        "deferred/poll.rs",
        "a poll is judged by the deferring guard's own rule, and the guard answers its 202 as a poll does",
    ),
];

type Module = Vec<String>;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(root: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Module = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The source without unit tests and comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits `a, b::{c, d}` at the commas outside braces.
fn split_top(list: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (at, c) in list.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(list[start..at].trim());
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(list[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// Every path of one `use` tree, braces expanded, aliases dropped.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().trim().to_owned()];
    };
    let close = tree.rfind('}').unwrap();
    let prefix = &tree[..open];
    split_top(&tree[open + 1..close])
        .into_iter()
        .flat_map(|part| expand(&format!("{prefix}{part}")))
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths `code` names, as written.
fn named_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let line_start = rest[..at].rfind('\n').map_or(0, |n| n + 1);
        let head = rest[line_start..at].trim();
        rest = &rest[at + 4..];
        if !matches!(head, "" | "pub" | "pub(crate)" | "pub(super)") {
            continue;
        }
        let end = rest.find(';').unwrap_or(rest.len());
        paths.extend(expand(&rest[..end]));
        rest = &rest[end..];
    }
    for (at, _) in code.match_indices("crate::") {
        if code[..at].chars().last().is_some_and(is_ident) {
            continue;
        }
        let path: String = code[at..].chars().take_while(|&c| is_ident(c) || c == ':').collect();
        paths.push(path);
    }
    paths
}

fn declared_children(code: &str) -> BTreeSet<String> {
    code.lines()
        .filter_map(|line| {
            let line = line.trim();
            let declaration = line.strip_suffix(';')?;
            let name = declaration.rsplit(' ').next()?;
            declaration
                .split_whitespace()
                .any(|word| word == "mod")
                .then(|| name.to_owned())
        })
        .collect()
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let modules: BTreeMap<Module, String> = files
        .iter()
        .map(|file| {
            let name = file.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
            (module_of(&root, file), name)
        })
        .collect();
    let resolve =
        |path: &[String]| -> Option<&String> { (0..=path.len()).rev().find_map(|len| modules.get(&path[..len])) };
    let mut graph = BTreeMap::new();
    for file in &files {
        let name = &modules[&module_of(&root, file)];
        if name.starts_with("testing") {
            continue;
        }
        let code = code(&std::fs::read_to_string(file).unwrap());
        let me = module_of(&root, file);
        let children = declared_children(&code);
        let mut edges = BTreeSet::new();
        for path in named_paths(&code) {
            let segments: Vec<String> = path.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
            let Some(first) = segments.first() else { continue };
            let target: Module = match first.as_str() {
                "crate" => segments[1..].to_vec(),
                "super" => {
                    let ups = segments.iter().take_while(|s| *s == "super").count();
                    let mut base = me[..me.len().saturating_sub(ups)].to_vec();
                    base.extend_from_slice(&segments[ups..]);
                    base
                }
                "self" => me.iter().chain(&segments[1..]).cloned().collect(),
                child if children.contains(child) => me.iter().chain(&segments).cloned().collect(),
                _ => continue,
            };
            if let Some(target) = resolve(&target)
                && target != name
                && !target.starts_with("testing")
            {
                edges.insert(target.clone());
            }
        }
        graph.insert(name.clone(), edges);
    }
    graph
}

/// Tarjan's strongly connected components.
fn loops(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<BTreeSet<String>>,
    }
    fn visit<'g>(state: &mut State<'g>, node: &'g str) {
        let index = state.index.len();
        state.index.insert(node, index);
        state.low.insert(node, index);
        state.stack.push(node);
        for next in state.graph.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !state.index.contains_key(next) {
                visit(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.stack.contains(&next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = BTreeSet::new();
            while let Some(member) = state.stack.pop() {
                component.insert(member.to_owned());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

#[test]
fn no_file_of_src_is_in_an_import_loop_of_more_than_two() {
    let graph = import_graph();
    for component in loops(&graph) {
        assert!(
            component.len() <= 2,
            "an import loop of {} files: {component:?}",
            component.len()
        );
    }
}

#[test]
fn every_loop_of_two_is_a_named_pair() {
    let graph = import_graph();
    let unnamed: Vec<Vec<String>> = loops(&graph)
        .into_iter()
        .filter(|component| component.len() == 2)
        .map(|component| component.into_iter().collect::<Vec<_>>())
        .filter(|pair| {
            !ALLOWED_PAIRS
                .iter()
                .any(|(a, b, _)| (pair[0] == *a && pair[1] == *b) || (pair[0] == *b && pair[1] == *a))
        })
        .collect();
    assert!(
        unnamed.is_empty(),
        "these files import each other: cut one direction, or name the pair and its reason in ALLOWED_PAIRS: {unnamed:?}"
    );
}

#[test]
fn the_import_graph_sees_the_imports_it_checks() {
    // A parser that saw nothing would pass the two tests above.
    let graph = import_graph();
    assert!(graph["layer.rs"].contains("verifier.rs"), "{:?}", graph["layer.rs"]);
    assert!(graph["builder.rs"].contains("aauth.rs"));
    assert!(graph["aauth.rs"].contains("builder.rs"));
    assert!(
        graph["guard.rs"].contains("guard/requirement.rs"),
        "child modules a parent re-exports"
    );
    assert!(graph["replay/memory.rs"].contains("replay/store.rs"), "super:: paths");
    assert!(
        !graph["error.rs"].contains("policy/audit.rs"),
        "the vocabulary never reaches up"
    );
}

#[test]
fn a_loop_of_three_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
            .into_iter()
            .fold(BTreeMap::new(), |mut graph, (from, to)| {
                graph.entry(from.to_owned()).or_default().insert(to.to_owned());
                graph
            });
    let found = loops(&graph);
    assert_eq!(
        found,
        vec![["a", "b", "c"].into_iter().map(str::to_owned).collect::<BTreeSet<_>>()]
    );
}
