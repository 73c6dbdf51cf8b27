//! The module structure, checked from the source: layers point one way, no import cycles between the top-level
//! modules of `src/` (nor between sibling files of one module), and clap stays at the command-line edge.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module of `src/` and its layer: a module may import modules of its own layer or below, never
/// above (and, with the cycle check, same-layer imports cannot loop).
const LAYERS: &[(&str, u8)] = &[
    ("cli", 4),
    ("commands", 4),
    ("config", 3),
    ("stages", 2),
    ("inspect", 2),
    ("train", 2),
    ("eval", 2),
    ("sample_data", 2),
    ("gc", 2),
    ("gan", 1),
    ("faces", 1),
    ("env", 0),
    ("imageio", 0),
    ("pixels", 0),
    ("measure", 0),
    ("imagehash", 0),
    ("quality", 0),
    ("cache", 0),
    ("manifest", 0),
    ("shards", 0),
    ("digest", 0),
    ("rundir", 0),
    ("models", 0),
    ("workdir", 0),
    ("runtime", 0),
    ("report", 0),
    ("named", 0),
    ("partition", 0),
    ("memo", 0),
];

/// Same-layer imports the design rules out: training and evaluation share the generator through `gan`, and the
/// pipeline stages know nothing of training or evaluation.
const FORBIDDEN: &[(&str, &str)] =
    &[("train", "eval"), ("eval", "train"), ("stages", "train"), ("stages", "eval"), ("stages", "inspect")];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without its unit tests (by this crate's convention the `#[cfg(test)]` module closes a file: tests may
/// use any layer), comments and string literals (doc examples and messages name modules too).
fn code_only(text: &str) -> String {
    let text = text.split("\n#[cfg(test)]").next().unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let code = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        let mut in_string = false;
        let mut prev = ' ';
        for c in code.chars() {
            if c == '"' && prev != '\\' {
                in_string = !in_string;
            } else if !in_string {
                out.push(c);
            }
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// Names `crate::NAME` refers to in `code` (`use crate::{a, b::c}` included).
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                names.insert(ident(part.trim()));
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

fn ident(s: &str) -> String {
    s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

/// The top-level module a file belongs to (`src/stages/crop.rs` -> `stages`), and its path below that module.
fn module_of(path: &Path) -> (String, Vec<String>) {
    let rel = path.strip_prefix(src_dir()).unwrap();
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    (parts[0].clone(), parts[1..].to_vec())
}

/// Edges `from -> to` between top-level modules.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let (module, _) = module_of(&file);
        if module == "lib" || module == "main" {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(&file).unwrap());
        let targets = graph.entry(module.clone()).or_default();
        for name in crate_references(&code) {
            if name != module && !name.starts_with(char::is_uppercase) && name != "impl_named_str" {
                targets.insert(name);
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn every_top_level_module_has_a_layer_and_imports_only_its_layer_or_below() {
    let layers: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let graph = module_graph();
    for module in graph.keys() {
        assert!(layers.contains_key(module.as_str()), "src/{module} has no layer in LAYERS");
    }
    let mut wrong = Vec::new();
    for (from, targets) in &graph {
        for to in targets {
            let (Some(&a), Some(&b)) = (layers.get(from.as_str()), layers.get(to.as_str())) else {
                panic!("{from} refers to crate::{to}, which is not a top-level module");
            };
            if b > a {
                wrong.push(format!("{from} (layer {a}) -> {to} (layer {b})"));
            }
        }
    }
    for (from, to) in FORBIDDEN {
        if graph.get(*from).is_some_and(|t| t.contains(*to)) {
            wrong.push(format!("{from} -> {to} (ruled out)"));
        }
    }
    assert!(wrong.is_empty(), "imports against the layering:\n{}", wrong.join("\n"));
}

#[test]
fn top_level_modules_form_no_import_cycle() {
    let graph = module_graph();
    assert!(graph.len() >= 20, "{} modules found: is src/ read?", graph.len());
    assert_eq!(find_cycle(&graph), None);
}

#[test]
fn sibling_files_of_a_module_form_no_import_cycle() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    // Per directory: edges between its files (not mod.rs, which declares them), from `super::NAME` uses.
    let mut graphs: BTreeMap<PathBuf, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        if name == "mod" || file.parent() == Some(src_dir().as_path()) {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        let siblings: BTreeSet<String> =
            code.match_indices("super::").map(|(i, _)| ident(&code[i + "super::".len()..])).collect();
        let graph = graphs.entry(file.parent().unwrap().to_path_buf()).or_default();
        graph.entry(name.clone()).or_default().extend(siblings.into_iter().filter(|s| *s != name));
    }
    for (dir, graph) in &graphs {
        let present: BTreeSet<String> = graph.keys().cloned().collect();
        let graph: BTreeMap<String, BTreeSet<String>> =
            graph.iter().map(|(k, v)| (k.clone(), v.intersection(&present).cloned().collect())).collect();
        assert_eq!(find_cycle(&graph), None, "in {}", dir.display());
    }
}

#[test]
fn clap_is_used_only_at_the_command_line_edge() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let users: Vec<String> = files
        .iter()
        .filter(|f| code_only(&std::fs::read_to_string(f).unwrap()).contains("clap::"))
        .map(|f| f.strip_prefix(src_dir()).unwrap().display().to_string())
        .filter(|f| f != "cli.rs" && f != "main.rs" && !f.starts_with("commands/"))
        .collect();
    assert!(users.is_empty(), "clap outside cli.rs and commands/: {users:?}");
}

#[test]
fn the_checker_finds_a_planted_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&graph), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    assert_eq!(
        crate_references("use crate::{a::B, c};\nlet x = crate::d::e();"),
        ["a", "c", "d"].map(String::from).into()
    );
}
